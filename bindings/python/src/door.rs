//! The WSGI request in one native call: the environ read (spoofed identity keys stripped, the
//! credentials and certificate sources read as borrowed text), the core's prepared request
//! looked up, and on a hit the identity keys and `external.token_info` written back. The
//! WSGI environ's key names live here, not in the core, which speaks header names.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use tokenward::{Denial, Grant, Prepared, Request, Verdict};

use crate::grant::{PyGrant, SharedStrings};
use crate::logger::PythonLogger;
use crate::{TokenwardError, internal_error};

/// The environ key of an HTTP header, as a WSGI server makes it (`X-User-Id` →
/// `HTTP_X_USER_ID`); PEP 3333 folds `-` and `_` alike, so every spelling lands on one key.
pub(crate) fn environ_key_of(header: &str) -> String {
    format!("HTTP_{}", header.to_ascii_uppercase().replace('-', "_"))
}

/// The core's stripped headers, each with its environ key, interned.
pub(crate) fn stripped_environ_keys(
    py: Python<'_>,
) -> impl ExactSizeIterator<Item = (&'static str, Bound<'_, PyString>)> {
    tokenward::headers::STRIPPED
        .iter()
        .map(move |header| (*header, PyString::intern(py, &environ_key_of(header))))
}

/// The environ keys the door reads and writes, as interned strs made once.
struct Keys {
    authorization: Py<PyString>,
    ssl_client_cert: Py<PyString>,
    wsgi_input: Py<PyString>,
    remote_addr: Py<PyString>,
    dpop: Py<PyString>,
    request_method: Py<PyString>,
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    http_host: Py<PyString>,
    server_name: Py<PyString>,
    url_scheme: Py<PyString>,
    token_info: Py<PyString>,
    get_socket: Py<PyString>,
    getpeercert: Py<PyString>,
    /// The core's stripped headers, by header name and environ key.
    strip: Box<[(&'static str, Py<PyString>)]>,
    /// `client_cert_header`'s key, popped from every request.
    cert_header: Option<Py<PyString>>,
}

impl Keys {
    /// Every stripped environ key (a miss or a refusal deletes them all).
    fn stripped(&self) -> impl Iterator<Item = &Py<PyString>> {
        self.strip.iter().map(|(_, key)| key)
    }

    fn new(py: Python<'_>, cert_header: Option<&str>) -> Self {
        let key = |k: &str| PyString::intern(py, k).unbind();
        Self {
            authorization: key("HTTP_AUTHORIZATION"),
            ssl_client_cert: key("SSL_CLIENT_CERT"),
            wsgi_input: key("wsgi.input"),
            remote_addr: key("REMOTE_ADDR"),
            dpop: key("HTTP_DPOP"),
            request_method: key("REQUEST_METHOD"),
            script_name: key("SCRIPT_NAME"),
            path_info: key("PATH_INFO"),
            http_host: key("HTTP_HOST"),
            server_name: key("SERVER_NAME"),
            url_scheme: key("wsgi.url_scheme"),
            token_info: key("external.token_info"),
            get_socket: key("get_socket"),
            getpeercert: key("getpeercert"),
            strip: stripped_environ_keys(py)
                .map(|(header, key)| (header, key.unbind()))
                .collect(),
            cert_header: cert_header.map(|h| key(&environ_key_of(h))),
        }
    }
}

/// The Python door's state, shared by the authenticator object and its pending misses.
pub(crate) struct Door {
    pub(crate) inner: Arc<tokenward::Authenticator>,
    pub(crate) logger: Option<Arc<PythonLogger>>,
    keys: Keys,
    /// Equal values of different grants' objects, as one object each.
    strings: SharedStrings,
    /// `thumbprint_verify` reads a certificate and no proxy header stands for it.
    reads_socket_cert: bool,
    dpop_public_url: Option<String>,
}

/// What `handle` found: the request may go on (the environ is written), a refusal, or a miss
/// that needs the AS.
pub(crate) enum Handled {
    Allowed,
    Denied(DenyTriple),
    Miss(Prepared<'static>),
}

/// `(status line, headers, body)` for `start_response` and the response body.
pub(crate) type DenyTriple = (Py<PyString>, Py<PyList>, Py<PyBytes>);

/// A certificate as the environ holds it: borrowed from a str or bytes, else copied.
enum CertText<'py> {
    Str(Bound<'py, PyString>),
    Bytes(Bound<'py, PyBytes>),
    Copied(Vec<u8>),
}

impl CertText<'_> {
    fn bytes(&self) -> PyResult<&[u8]> {
        Ok(match self {
            CertText::Str(s) => s.to_str()?.as_bytes(),
            CertText::Bytes(b) => b.as_bytes(),
            CertText::Copied(v) => v,
        })
    }
}

fn cert_text(value: Bound<'_, PyAny>) -> PyResult<Option<CertText<'_>>> {
    if value.is_none() {
        return Ok(None);
    }
    let value = match value.cast_into::<PyString>() {
        Ok(s) => return Ok(Some(CertText::Str(s))),
        Err(e) => e.into_inner(),
    };
    match value.cast_into::<PyBytes>() {
        Ok(b) => Ok(Some(CertText::Bytes(b))),
        Err(e) => Ok(Some(CertText::Copied(e.into_inner().extract()?))),
    }
}

/// A str value of the environ (`None` when absent or None; a TypeError when another type).
fn text<'py>(
    environ: &Bound<'py, PyDict>,
    key: &Py<PyString>,
) -> PyResult<Option<Bound<'py, PyString>>> {
    match environ.get_item(key.bind(environ.py()))? {
        Some(v) if !v.is_none() => Ok(Some(v.cast_into::<PyString>()?)),
        _ => Ok(None),
    }
}

fn borrowed<'a>(value: &'a Option<Bound<'_, PyString>>) -> PyResult<Option<&'a str>> {
    value.as_ref().map(|s| s.to_str()).transpose()
}

impl Door {
    pub(crate) fn new(
        py: Python<'_>,
        inner: Arc<tokenward::Authenticator>,
        logger: Option<Arc<PythonLogger>>,
    ) -> Self {
        let config = inner.config();
        let cert_header = config.proxy_certs.as_ref().map(|p| p.header.as_str());
        Self {
            keys: Keys::new(py, cert_header),
            strings: SharedStrings::new(),
            reads_socket_cert: config.policy.binding.reads_certificate() && cert_header.is_none(),
            dpop_public_url: config.dpop.public_url.clone(),
            inner,
            logger,
        }
    }

    /// The environ key of an identity header, interned.
    fn environ_key<'py>(&self, py: Python<'py>, header: &'static str) -> Bound<'py, PyString> {
        match self.keys.strip.iter().find(|(name, _)| *name == header) {
            Some((_, key)) => key.bind(py).clone(),
            None => PyString::intern(py, &environ_key_of(header)),
        }
    }

    /// The whole request but the AS: read, stripped, prepared, looked up, written on a hit.
    /// A panic (pyo3 panics when CPython cannot allocate an object) is a `TokenwardError`, so
    /// the filter answers its clean 500.
    pub(crate) fn handle(&self, environ: &Bound<'_, PyDict>) -> PyResult<Handled> {
        catch_unwind(AssertUnwindSafe(|| self.handle_inner(environ)))
            .unwrap_or_else(|_| Err(internal_error()))
    }

    fn handle_inner(&self, environ: &Bound<'_, PyDict>) -> PyResult<Handled> {
        let py = environ.py();
        let keys = &self.keys;
        // A forwarded certificate never reaches the application, whoever sent it.
        let forwarded = match &keys.cert_header {
            Some(key) => {
                let key = key.bind(py);
                let value = environ.get_item(key)?;
                if value.is_some() {
                    environ.del_item(key)?;
                }
                value
                    .filter(|v| !v.is_none())
                    .map(|v| v.cast_into::<PyString>())
                    .transpose()?
            }
            None => None,
        };
        let authorization = text(environ, &keys.authorization)?;
        let cert = if self.reads_socket_cert {
            self.client_cert(environ)?
        } else {
            None
        };
        let peer = match forwarded {
            Some(_) => text(environ, &keys.remote_addr)?,
            None => None,
        };
        let proof = text(environ, &keys.dpop)?;
        let (method, url) = match proof {
            Some(_) => (
                text(environ, &keys.request_method)?,
                self.request_url(environ)?,
            ),
            None => (None, None),
        };
        let cert_bytes = cert.as_ref().map(CertText::bytes).transpose()?;
        let request = Request {
            authorization: borrowed(&authorization)?,
            client_cert: cert_bytes,
            peer: borrowed(&peer)?,
            forwarded_cert: borrowed(&forwarded)?,
            method: borrowed(&method)?,
            url: url.as_deref(),
            dpop_proof: borrowed(&proof)?,
        };
        let prepared = self.inner.prepare(&request);
        let verdict = self.inner.lookup(&prepared);
        // A check without I/O may still log (an untrusted proxy's header): hand it over here.
        self.flush_pending(py);
        match verdict {
            Some(verdict) => self.answer(environ, verdict),
            None => {
                self.strip(environ, self.keys.stripped())?;
                Ok(Handled::Miss(prepared.into_owned()))
            }
        }
    }

    /// Deletes `keys` (spoofed identity keys) from the environ where present.
    fn strip<'k>(
        &self,
        environ: &Bound<'_, PyDict>,
        keys: impl Iterator<Item = &'k Py<PyString>>,
    ) -> PyResult<()> {
        let py = environ.py();
        for key in keys {
            let key = key.bind(py);
            if environ.contains(key)? {
                environ.del_item(key)?;
            }
        }
        Ok(())
    }

    /// Writes an allowed request's identity into the environ, or makes the refusal.
    pub(crate) fn answer(
        &self,
        environ: &Bound<'_, PyDict>,
        verdict: Verdict,
    ) -> PyResult<Handled> {
        let py = environ.py();
        match verdict {
            // A spoofed identity key never reaches the application: the grant's own keys
            // overwrite theirs, the others are deleted (a refusal strips them all).
            Verdict::Allow(grant) => {
                let objects = self.objects(py, &grant)?;
                self.strip(environ, objects.unwritten.iter())?;
                environ.update(objects.identity.bind(py).as_mapping())?;
                let token_info = objects
                    .token_info
                    .fresh(py)
                    .map_err(|e| build_error(py, e))?;
                environ.set_item(self.keys.token_info.bind(py), token_info)?;
                Ok(Handled::Allowed)
            }
            Verdict::Deny(denial) => {
                self.strip(environ, self.keys.stripped())?;
                Ok(Handled::Denied(self.refusal(py, &denial)?))
            }
        }
    }

    /// The grant's Python objects: those already stored, or new ones (see `grant.rs`).
    pub(crate) fn objects<'g>(&self, py: Python<'_>, grant: &'g Grant) -> PyResult<&'g PyGrant> {
        objects_built_by(py, grant, || {
            PyGrant::build(
                py,
                grant,
                |h| self.environ_key(py, h),
                &self.keys.strip,
                &self.strings,
            )
        })
    }

    /// The response of a refusal.
    fn refusal(&self, py: Python<'_>, denial: &Denial) -> PyResult<DenyTriple> {
        let (headers, body) = refusal_response(py, &self.inner, denial)?;
        Ok((
            PyString::new(py, denial.status_line()).unbind(),
            headers,
            body,
        ))
    }

    /// The caller's certificate: `SSL_CLIENT_CERT` (PEM, from mod_ssl/mod_wsgi) or the peer
    /// certificate of the TLS socket (DER, eventlet.wsgi); any error of the latter is none.
    fn client_cert<'py>(&self, environ: &Bound<'py, PyDict>) -> PyResult<Option<CertText<'py>>> {
        let py = environ.py();
        if let Some(pem) = environ.get_item(self.keys.ssl_client_cert.bind(py))?
            && pem.is_truthy()?
        {
            return cert_text(pem);
        }
        let peer_cert = || -> PyResult<Bound<'py, PyAny>> {
            environ
                .get_item(self.keys.wsgi_input.bind(py))?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err("wsgi.input"))?
                .call_method0(self.keys.get_socket.bind(py))?
                .call_method1(self.keys.getpeercert.bind(py), (true,))
        };
        match peer_cert() {
            Ok(der) => cert_text(der),
            Err(e) if e.is_instance_of::<PyException>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The URL a DPoP proof's `htu` must name: `dpop_public_url` (or the request's scheme and
    /// Host) + `SCRIPT_NAME` + `PATH_INFO`; no query (RFC 9449 §4.3). None (no proof matches)
    /// when Host is not a host[:port].
    fn request_url(&self, environ: &Bound<'_, PyDict>) -> PyResult<Option<String>> {
        let keys = &self.keys;
        let mut path = String::new();
        for key in [&keys.script_name, &keys.path_info] {
            if let Some(part) = text(environ, key)? {
                quote_latin1(&part.to_string_lossy(), &mut path);
            }
        }
        if let Some(public) = &self.dpop_public_url {
            return Ok(Some(format!("{public}{path}")));
        }
        let host = match text(environ, &keys.http_host)? {
            Some(h) if !h.to_string_lossy().is_empty() => h,
            _ => match text(environ, &keys.server_name)? {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        let host = host.to_string_lossy();
        if !is_host(&host) {
            return Ok(None);
        }
        let scheme = match environ.get_item(keys.url_scheme.bind(environ.py()))? {
            Some(s) => s.str()?.to_string_lossy().into_owned(),
            None => "http".to_owned(),
        };
        Ok(Some(format!("{scheme}://{host}{path}")))
    }

    pub(crate) fn flush_pending(&self, py: Python<'_>) {
        if let Some(logger) = &self.logger {
            logger.flush_pending(py);
        }
    }

    pub(crate) fn flush(&self, py: Python<'_>) {
        if let Some(logger) = &self.logger {
            logger.flush(py);
        }
    }
}

/// The headers and JSON body of `core`'s refusal.
pub(crate) fn refusal_response(
    py: Python<'_>,
    core: &tokenward::Authenticator,
    denial: &Denial,
) -> PyResult<(Py<PyList>, Py<PyBytes>)> {
    let body = denial.body();
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    headers.extend(core.denial_headers(denial));
    headers.push(("Content-Length", body.len().to_string()));
    let headers = PyList::new(
        py,
        headers
            .iter()
            .map(|(k, v)| PyTuple::new(py, [PyString::new(py, k), PyString::new(py, v)]))
            .collect::<PyResult<Vec<_>>>()?,
    )?;
    Ok((headers.unbind(), PyBytes::new(py, body.as_bytes()).unbind()))
}

/// The objects stored on `grant`, else those `build` makes, offered to the grant's slot (the
/// first offer wins). A failed build is not stored: the next request builds again.
pub(crate) fn objects_built_by<'g, T: Any + Send + Sync>(
    py: Python<'_>,
    grant: &'g Grant,
    build: impl FnOnce() -> PyResult<T>,
) -> PyResult<&'g T> {
    if let Some(objects) = grant.door_data::<T>() {
        return Ok(objects);
    }
    let built = build().map_err(|e| build_error(py, e))?;
    grant.offer_door_data(built).ok_or_else(internal_error)
}

fn build_error(py: Python<'_>, cause: PyErr) -> PyErr {
    let err = TokenwardError::new_err("could not build the identity objects: request refused");
    err.set_cause(py, Some(cause));
    err
}

/// PEP 3333 text (bytes decoded as latin-1) encoded back to bytes (a character beyond
/// latin-1 becomes `?`, as `str.encode("latin-1", "replace")`), then percent-encoded as
/// `urllib.parse.quote(raw, safe="/:@!$&'()*+,;=-._~")`.
fn quote_latin1(text: &str, out: &mut String) {
    const SAFE: &[u8] = b"/:@!$&'()*+,;=-._~";
    for c in text.chars() {
        let byte = u8::try_from(u32::from(c)).unwrap_or(b'?');
        if byte.is_ascii_alphanumeric() || SAFE.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// Whether a Host value is only host[:port]: a reg-name (`[A-Za-z0-9._~-]+`) or an IP
/// literal (`[` hex digits, `:` and `.` `]`), then optionally `:` and 1 to 5 digits. Anything
/// else (`/`, `?`, `#`, `@`) would move the request's path into the query, fragment or
/// userinfo of the URL a proof is compared with, so that a proof for any path of that host
/// would pass.
fn is_host(host: &str) -> bool {
    let b = host.as_bytes();
    let rest = if b.first() == Some(&b'[') {
        let Some(close) = b.iter().position(|&c| c == b']') else {
            return false;
        };
        let inner = &b[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
        {
            return false;
        }
        &b[close + 1..]
    } else {
        let name = b
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || b"._~-".contains(c))
            .count();
        if name == 0 {
            return false;
        }
        &b[name..]
    };
    match rest {
        [] => true,
        [b':', port @ ..] => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// A request the cache could not answer: the prepared request waits here for `run` (the
/// round trip, GIL released; under eventlet in `tpool`), then `finish` on the request's own
/// thread writes the answer and hands the log lines to `logging`.
#[pyclass(frozen, module = "tokenward._native")]
pub(crate) struct Pending {
    door: Arc<Door>,
    prepared: Mutex<Option<Prepared<'static>>>,
    verdict: Mutex<Option<Verdict>>,
}

impl Pending {
    pub(crate) fn new(door: Arc<Door>, prepared: Prepared<'static>) -> Self {
        Self {
            door,
            prepared: Mutex::new(Some(prepared)),
            verdict: Mutex::new(None),
        }
    }
}

#[pymethods]
impl Pending {
    /// The blocking part: the AS (or the offline JWT checks), with the GIL released. Under
    /// eventlet call it through `eventlet.tpool`.
    pub(crate) fn run(&self, py: Python<'_>) -> PyResult<()> {
        let Some(prepared) = self
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        let inner = &self.door.inner;
        let verdict = py
            .detach(|| catch_unwind(AssertUnwindSafe(|| inner.authenticate(&prepared))))
            .map_err(|_| internal_error())?;
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
        Ok(())
    }

    /// On the request's thread after `run`: the log lines to `logging`, then None (the
    /// environ is written: call the application) or `(status, headers, body)`.
    pub(crate) fn finish(&self, environ: &Bound<'_, PyDict>) -> PyResult<Option<DenyTriple>> {
        catch_unwind(AssertUnwindSafe(|| self.finish_inner(environ)))
            .unwrap_or_else(|_| Err(internal_error()))
    }
}

impl Pending {
    fn finish_inner(&self, environ: &Bound<'_, PyDict>) -> PyResult<Option<DenyTriple>> {
        self.door.flush(environ.py());
        let verdict = self
            .verdict
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(internal_error)?;
        match self.door.answer(environ, verdict)? {
            Handled::Allowed => Ok(None),
            Handled::Denied(triple) => Ok(Some(triple)),
            Handled::Miss(_) => Err(internal_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        quote_latin1(text, &mut out);
        out
    }

    #[test]
    fn paths_are_quoted_as_urllib_does() {
        assert_eq!(quoted("/v1/a b"), "/v1/a%20b");
        assert_eq!(quoted("/x?y#z%"), "/x%3Fy%23z%25");
        assert_eq!(quoted("/:@!$&'()*+,;=-._~"), "/:@!$&'()*+,;=-._~");
        // PEP 3333: UTF-8 bytes arrive as latin-1 text; beyond latin-1 is `?`, then quoted.
        assert_eq!(quoted("/caf\u{c3}\u{a9}"), "/caf%C3%A9");
        assert_eq!(quoted("/\u{20ac}"), "/%3F");
    }

    #[test]
    fn environ_keys_are_the_wsgi_servers() {
        assert_eq!(
            environ_key_of("X-SSL-Client-Cert"),
            "HTTP_X_SSL_CLIENT_CERT"
        );
        assert_eq!(environ_key_of("x_roles"), environ_key_of("X-Roles"));
        let keys: Vec<String> = tokenward::headers::STRIPPED
            .iter()
            .map(|h| environ_key_of(h))
            .collect();
        for key in [
            "HTTP_OPENSTACK_SYSTEM_SCOPE",
            "HTTP_X_SERVICE_PROJECT_DOMAIN_NAME",
            "HTTP_X_USER_ID",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
    }

    #[test]
    fn hosts_are_host_and_port_only() {
        for ok in [
            "api.example",
            "api.example:8443",
            "[::1]",
            "[::1]:443",
            "a-b_c~d",
            "h:1",
            "h:65535",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in [
            "", "h/", "h?x", "h#x", "u@h", "h:", "h:123456", "h:x", "[]", "[::1", "[g::1]", "h h",
            ":80", "[::1]x",
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod grant_tests {
    use std::sync::Arc;

    use pyo3::exceptions::PyMemoryError;
    use tokenward::transport::{HttpResponse, Transport};
    use tokenward::{AsError, FilterConfig, RawOptions, Secret};

    use super::*;

    struct Active;

    impl Transport for Active {
        fn post_form(
            &self,
            _: &str,
            _: Option<Secret>,
            _: Secret,
        ) -> Result<HttpResponse, AsError> {
            let body = r#"{"active":true,"client_id":"u1","username":"alice","user_domain":{"id":"d","name":"D"},"project":{"id":"p","name":"P","domain":{"id":"d","name":"D"}},"roles":"member"}"#;
            Ok(HttpResponse {
                status: 200,
                body: body.as_bytes().to_vec(),
            })
        }
    }

    fn a_grant() -> Arc<Grant> {
        let options = [
            ("introspect_endpoint", "https://as.example/introspect"),
            ("audience", "https://as.example"),
            ("client_id", "rs"),
            ("client_secret", "s"),
            ("mapping_project_id", "project.id"),
            ("mapping_project_name", "project.name"),
            ("mapping_project_domain_id", "project.domain.id"),
            ("mapping_project_domain_name", "project.domain.name"),
            ("mapping_user_domain_id", "user_domain.id"),
            ("mapping_user_domain_name", "user_domain.name"),
            ("mapping_roles", "roles"),
        ];
        let config = FilterConfig::from_raw(&RawOptions::from_pairs(options)).unwrap();
        let auth = tokenward::Authenticator::with_transport(
            config,
            Arc::new(Active),
            Arc::new(tokenward::log::NoLog),
        )
        .unwrap();
        match auth.check(&Request::new(Some("Bearer abc"), None)) {
            Verdict::Allow(grant) => grant,
            Verdict::Deny(d) => panic!("{d:?}"),
        }
    }

    /// A build that fails (here a MemoryError) refuses the request and stores nothing; the
    /// next request builds and stores; later ones reuse what is stored; a builder that lost
    /// the race gets the stored objects and its own are dropped.
    #[test]
    fn a_failed_build_is_not_kept_and_the_first_stored_wins() {
        Python::initialize();
        Python::attach(|py| {
            let grant = a_grant();
            let build = || {
                PyGrant::build(
                    py,
                    &grant,
                    |h| PyString::intern(py, &environ_key_of(h)),
                    &[],
                    &SharedStrings::new(),
                )
            };
            let failed =
                objects_built_by::<PyGrant>(py, &grant, || Err(PyMemoryError::new_err("injected")));
            let err = failed.err().expect("a failed build is an error");
            assert!(err.is_instance_of::<TokenwardError>(py));
            assert!(err.cause(py).unwrap().is_instance_of::<PyMemoryError>(py));
            assert!(grant.door_data::<PyGrant>().is_none(), "nothing kept");
            let stored: *const PyGrant = objects_built_by(py, &grant, build).unwrap();
            let again: *const PyGrant =
                objects_built_by(py, &grant, || panic!("built twice")).unwrap();
            assert_eq!(stored, again);
            let late = build().unwrap();
            let late_identity = late.identity.clone_ref(py);
            let winner: *const PyGrant = grant.offer_door_data(late).unwrap();
            assert_eq!(winner, stored, "the first offer stays");
            let refcount = py.import("sys").unwrap().getattr("getrefcount").unwrap();
            let held: usize = refcount
                .call1((&late_identity,))
                .unwrap()
                .extract()
                .unwrap();
            assert_eq!(
                held, 2,
                "the loser's objects are dropped (ours and the argument are left)"
            );
            let identity = grant.door_data::<PyGrant>().unwrap().identity.bind(py);
            assert_eq!(
                identity
                    .get_item("HTTP_X_USER_NAME")
                    .unwrap()
                    .unwrap()
                    .to_string(),
                "alice"
            );
            assert_eq!(
                identity
                    .get_item("HTTP_X_PROJECT_ID")
                    .unwrap()
                    .unwrap()
                    .to_string(),
                "p"
            );
        });
    }
}
