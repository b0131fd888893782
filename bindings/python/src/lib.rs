//! `tokenward._native`: the Python door on the core. A WSGI request is one native call
//! (`Authenticator.handle`, see `door.rs`) that reads the environ as borrowed text; the network
//! work runs with the GIL released, and a cache hit copies only what each request must own
//! from Python objects made once per grant (`grant.rs`).

mod door;
mod grant;
mod logger;
mod wsgi;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use tokenward::log::LogSink;
use tokenward::{AsError, ConfigError, Verdict};

use crate::door::{Door, Handled, Pending, refusal_response};
use crate::grant::PyGrant;
use crate::logger::PythonLogger;

mod keystone;

pyo3::create_exception!(
    tokenward._native,
    TokenwardError,
    PyException,
    "Base of tokenward's errors."
);
pyo3::create_exception!(
    tokenward._native,
    ConfigurationError,
    TokenwardError,
    "A configuration that can never work; `.option` names the option."
);

pyo3::create_exception!(
    tokenward._native,
    TokenRequestError,
    TokenwardError,
    "A Client Credentials token could not be obtained; `.kind` says why."
);
pyo3::create_exception!(
    tokenward._native,
    CredentialsRejectedError,
    TokenRequestError,
    "The AS rejected this client's credentials (invalid_client, 400/401)."
);
pyo3::create_exception!(
    tokenward._native,
    AuthServerUnavailableError,
    TokenRequestError,
    "The AS could not be reached or gave an unusable answer."
);

fn token_error(py: Python<'_>, e: &AsError) -> PyErr {
    let err = match e {
        AsError::CredentialsRejected { .. } => CredentialsRejectedError::new_err(e.to_string()),
        _ => AuthServerUnavailableError::new_err(e.to_string()),
    };
    let _ = err.value(py).setattr("kind", e.code());
    err
}

/// Copies a dict of options into owned (name, text) pairs; None counts as unset.
fn option_pairs(options: &Bound<'_, PyDict>) -> PyResult<Vec<(String, String)>> {
    let mut pairs = Vec::with_capacity(options.len());
    for (k, v) in options.iter() {
        let value = if v.is_none() {
            String::new()
        } else {
            v.str()?.to_cow()?.into_owned()
        };
        pairs.push((k.str()?.to_cow()?.into_owned(), value));
    }
    Ok(pairs)
}

fn config_error(py: Python<'_>, e: &ConfigError) -> PyErr {
    let err = ConfigurationError::new_err(e.to_string());
    let _ = err.value(py).setattr("option", e.option());
    err
}

pub(crate) fn internal_error() -> PyErr {
    TokenwardError::new_err("internal error in tokenward (a bug): request refused")
}

/// What `build` makes from the options, made with the GIL released. Raises
/// `ConfigurationError` naming the option, or `TokenwardError` when `build` panics.
fn built_without_gil<T: Send>(
    py: Python<'_>,
    build: impl FnOnce() -> Result<T, ConfigError> + Send,
) -> PyResult<T> {
    match py.detach(move || catch_unwind(AssertUnwindSafe(build))) {
        Ok(Ok(built)) => Ok(built),
        Ok(Err(e)) => Err(config_error(py, &e)),
        Err(_) => Err(internal_error()),
    }
}

/// The core of an authenticator door, built from option pairs, and the Python logger it logs
/// to (without one it logs nowhere).
pub(crate) fn build_core(
    py: Python<'_>,
    pairs: Vec<(String, String)>,
    logger: Option<Py<PyAny>>,
) -> PyResult<(tokenward::Authenticator, Option<Arc<PythonLogger>>)> {
    let logger = logger.map(|l| Arc::new(PythonLogger::new(py, l)));
    let sink: Arc<dyn LogSink> = match &logger {
        Some(logger) => logger.clone(),
        None => Arc::new(tokenward::log::NoLog),
    };
    let core = built_without_gil(py, move || {
        tokenward::Authenticator::from_options(pairs, sink)
    })?;
    Ok((core, logger))
}

/// The counters of `core`'s `metrics()`, as a dict.
pub(crate) fn metrics_dict<'py>(
    py: Python<'py>,
    core: &tokenward::Authenticator,
) -> PyResult<Bound<'py, PyDict>> {
    let metrics = PyDict::new(py);
    for (name, value) in core.metrics().pairs() {
        metrics.set_item(name, value)?;
    }
    Ok(metrics)
}

/// The result of a check, ready for a WSGI response (`lookup` and `authenticate`; the WSGI
/// filter uses `handle`).
#[pyclass(frozen, module = "tokenward._native")]
struct Outcome {
    /// True when the request may go on.
    #[pyo3(get)]
    allowed: bool,
    /// HTTP status (200 when allowed).
    #[pyo3(get)]
    status: u16,
    /// A stable reason code (`ok`, `inactive`, `as_unavailable`, ...).
    #[pyo3(get)]
    reason: &'static str,
    /// Human-readable detail (no secrets).
    #[pyo3(get)]
    detail: String,
    /// Allowed: the grant whose objects the getters read.
    grant: Option<Arc<tokenward::Grant>>,
    /// Denied: the status line, e.g. `401 Unauthorized`.
    #[pyo3(get)]
    status_line: &'static str,
    /// Denied: response headers.
    #[pyo3(get)]
    headers: Option<Py<PyList>>,
    /// Denied: the JSON body.
    #[pyo3(get)]
    body: Option<Py<PyBytes>>,
}

impl Outcome {
    fn objects(&self) -> Option<&PyGrant> {
        self.grant.as_ref()?.door_data::<PyGrant>()
    }
}

#[pymethods]
impl Outcome {
    /// Allowed: `(environ_key, value)` pairs to set.
    #[getter]
    fn environ<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.objects()
            .map(|o| PyTuple::new(py, o.identity.bind(py).items()))
            .transpose()
    }

    /// Allowed: keystonemiddleware's `token_data` dict, a new one at each read that shares no
    /// dict or list with any other request's.
    #[getter]
    fn token_info<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.objects().map(|o| o.token_info.fresh(py)).transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "Outcome(allowed={}, status={}, reason={:?})",
            self.allowed, self.status, self.reason
        )
    }
}

/// Validates bearer tokens (see `tokenward.external_oauth2_token` for the WSGI filter).
#[pyclass(frozen, module = "tokenward._native")]
struct Authenticator {
    door: Arc<Door>,
}

fn cert_bytes(cert: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    let Some(cert) = cert else { return Ok(None) };
    if cert.is_none() {
        return Ok(None);
    }
    if let Ok(s) = cert.cast::<PyString>() {
        return Ok(Some(s.to_str()?.as_bytes().to_vec()));
    }
    Ok(Some(cert.extract::<Vec<u8>>()?))
}

impl Authenticator {
    fn outcome(&self, py: Python<'_>, verdict: Verdict) -> PyResult<Outcome> {
        match verdict {
            Verdict::Allow(grant) => {
                self.door.objects(py, &grant)?;
                Ok(Outcome {
                    allowed: true,
                    status: 200,
                    reason: "ok",
                    detail: String::new(),
                    grant: Some(grant),
                    status_line: "200 OK",
                    headers: None,
                    body: None,
                })
            }
            Verdict::Deny(denial) => {
                let (headers, body) = refusal_response(py, &self.door.inner, &denial)?;
                Ok(Outcome {
                    allowed: false,
                    status: denial.status(),
                    reason: denial.reason.code(),
                    detail: denial.reason.to_string(),
                    grant: None,
                    status_line: denial.status_line(),
                    headers: Some(headers),
                    body: Some(body),
                })
            }
        }
    }
}

#[pymethods]
impl Authenticator {
    /// Builds from a dict of option name → string value (the paste/oslo options). Raises
    /// `ConfigurationError` naming the option when the configuration can never work.
    #[new]
    #[pyo3(signature = (options, logger=None))]
    fn new(
        py: Python<'_>,
        options: &Bound<'_, PyDict>,
        logger: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let (core, logger) = build_core(py, option_pairs(options)?, logger)?;
        Ok(Self {
            door: Arc::new(Door::new(py, Arc::new(core), logger)),
        })
    }

    /// Start-up warnings (unknown options, weak settings).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.door.inner.warnings().to_vec()
    }

    /// The `WWW-Authenticate` value of a 401.
    #[getter]
    fn challenge(&self) -> &str {
        self.door.inner.challenge()
    }

    /// One WSGI request, without I/O: strips the spoofed identity keys (and the
    /// `client_cert_header` key) from `environ`, reads the credentials, the certificate and the
    /// DPoP inputs, and looks the token up. Returns None when the request may go on (the
    /// identity keys and `external.token_info` are written), `(status, headers, body)` when it
    /// is refused, or a `Pending` when the AS must be asked: call its `run()` (blocking, the
    /// GIL released; under eventlet through `eventlet.tpool`), then `finish(environ)` on the
    /// request's own thread, which answers as this does.
    fn handle(&self, environ: &Bound<'_, PyDict>) -> PyResult<Option<Py<PyAny>>> {
        let py = environ.py();
        Ok(match self.door.handle(environ)? {
            Handled::Allowed => None,
            Handled::Denied(triple) => Some(triple.into_pyobject(py)?.into_any().unbind()),
            Handled::Miss(prepared) => Some(
                Bound::new(py, Pending::new(Arc::clone(&self.door), prepared))?
                    .into_any()
                    .unbind(),
            ),
        })
    }

    /// A verdict from the header and cache alone (no I/O), or None when the AS must be asked.
    #[pyo3(signature = (authorization, client_cert=None, peer=None, forwarded_cert=None, method=None, url=None, dpop_proof=None))]
    #[allow(clippy::too_many_arguments)]
    fn lookup(
        &self,
        py: Python<'_>,
        authorization: Option<&str>,
        client_cert: Option<&Bound<'_, PyAny>>,
        peer: Option<&str>,
        forwarded_cert: Option<&str>,
        method: Option<&str>,
        url: Option<&str>,
        dpop_proof: Option<&str>,
    ) -> PyResult<Option<Outcome>> {
        let cert = cert_bytes(client_cert)?;
        let inner = &self.door.inner;
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            inner.lookup(&inner.prepare(&tokenward::Request {
                authorization,
                client_cert: cert.as_deref(),
                peer,
                forwarded_cert,
                method,
                url,
                dpop_proof,
            }))
        }))
        .map_err(|_| internal_error())?;
        // A check without I/O may still log (an untrusted proxy's header): hand it over here.
        self.door.flush_pending(py);
        verdict.map(|v| self.outcome(py, v)).transpose()
    }

    /// The whole check; blocks on the AS with the GIL released. Under eventlet call it through
    /// `eventlet.tpool`, then `flush_logs` on the request's own greenthread.
    #[pyo3(signature = (authorization, client_cert=None, peer=None, forwarded_cert=None, method=None, url=None, dpop_proof=None))]
    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &self,
        py: Python<'_>,
        authorization: Option<&str>,
        client_cert: Option<&Bound<'_, PyAny>>,
        peer: Option<&str>,
        forwarded_cert: Option<&str>,
        method: Option<&str>,
        url: Option<&str>,
        dpop_proof: Option<&str>,
    ) -> PyResult<Outcome> {
        let cert = cert_bytes(client_cert)?;
        let inner = &self.door.inner;
        let prepared = inner
            .prepare(&tokenward::Request {
                authorization,
                client_cert: cert.as_deref(),
                peer,
                forwarded_cert,
                method,
                url,
                dpop_proof,
            })
            .into_owned();
        let verdict = py
            .detach(|| catch_unwind(AssertUnwindSafe(|| inner.authenticate(&prepared))))
            .map_err(|_| internal_error())?;
        self.outcome(py, verdict)
    }

    /// Hands log lines queued by `authenticate` to the logger. Call it on the request's own
    /// thread or greenthread (not inside `eventlet.tpool`).
    fn flush_logs(&self, py: Python<'_>) {
        self.door.flush(py);
    }

    /// Benchmarks only (the `bench` feature, off in the wheel): caches `count` tokens
    /// `{prefix}{i}` as if the AS had answered `claims_json` for each, each with its own
    /// grant. Returns the entries held.
    #[cfg(feature = "bench")]
    fn _prefill_for_bench(
        &self,
        py: Python<'_>,
        prefix: String,
        count: usize,
        claims_json: &str,
    ) -> PyResult<usize> {
        let inner = Arc::clone(&self.door.inner);
        py.detach(move || inner.prefill_for_bench(&prefix, count, claims_json))
            .map_err(pyo3::exceptions::PyValueError::new_err)
    }

    /// Drops the cached verdict of the token in this `Authorization` value.
    fn forget(&self, authorization: Option<&str>) {
        self.door.inner.forget(authorization);
    }

    /// Prometheus samples: `(family, label name or None, label value or None, value)`, the
    /// value an int (counter), a float (gauge) or `(buckets, sum, count)` (histogram).
    fn samples(&self, py: Python<'_>) -> PyResult<Vec<SampleRow>> {
        sample_rows(py, self.door.inner.samples())
    }

    /// The `filter` label of the Prometheus metrics: `metrics_name`, else `default`.
    fn metrics_label(&self, default: &str) -> String {
        self.door.inner.metrics_label(default).to_owned()
    }

    /// Counters: cache hits, misses, coalesced waits, introspections, AS errors, entries.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, &self.door.inner)
    }
}

/// Obtains and caches access tokens (Client Credentials grant); see
/// `tokenward.client_credentials.ClientCredentials` for the keystoneauth1 plugin.
#[pyclass(frozen, module = "tokenward._native")]
struct TokenClient {
    inner: Arc<tokenward::TokenClient>,
}

#[pymethods]
impl TokenClient {
    /// Builds from Tacker's option names (string values). Raises `ConfigurationError`.
    #[new]
    fn new(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<Self> {
        let pairs = option_pairs(options)?;
        let client = built_without_gil(py, move || tokenward::TokenClient::from_options(pairs))?;
        Ok(Self {
            inner: Arc::new(client),
        })
    }

    /// Start-up warnings.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }

    /// The cached token if no refresh is due (no I/O), else None.
    fn cached(&self) -> Option<String> {
        self.inner.cached().map(|t| t.secret().to_owned())
    }

    /// A valid token, fetched if needed with the GIL released (under eventlet call it through
    /// `eventlet.tpool`). Raises `CredentialsRejectedError` or `AuthServerUnavailableError`.
    fn fetch(&self, py: Python<'_>) -> PyResult<String> {
        let inner = Arc::clone(&self.inner);
        match py.detach(move || catch_unwind(AssertUnwindSafe(|| inner.token()))) {
            Ok(Ok(token)) => Ok(token.secret().to_owned()),
            Ok(Err(e)) => Err(token_error(py, &e)),
            Err(_) => Err(internal_error()),
        }
    }

    /// `(Authorization value, DPoP proof or None)` for a request to `method url`: the scheme
    /// follows the token (`DPoP` for a DPoP-bound one, with a fresh proof). With `fetch`
    /// false, None when no token is cached (no I/O); with `fetch` true the token may be
    /// fetched with the GIL released (under eventlet call it through `eventlet.tpool`).
    fn authorization(
        &self,
        py: Python<'_>,
        method: String,
        url: String,
        fetch: bool,
    ) -> PyResult<Option<(String, Option<String>)>> {
        let inner = Arc::clone(&self.inner);
        let cached = inner.cached();
        let token = match (cached, fetch) {
            (Some(token), _) => token,
            (None, false) => return Ok(None),
            (None, true) => match py.detach(|| catch_unwind(AssertUnwindSafe(|| inner.token()))) {
                Ok(Ok(token)) => token,
                Ok(Err(e)) => return Err(token_error(py, &e)),
                Err(_) => return Err(internal_error()),
            },
        };
        let proof = catch_unwind(AssertUnwindSafe(|| inner.proof(&method, &url, &token)))
            .map_err(|_| internal_error())?
            .map_err(|e| token_error(py, &e))?;
        Ok(Some((
            format!("{} {}", token.scheme(), token.secret()),
            proof.map(|p| p.expose().to_owned()),
        )))
    }

    /// The parsed TLS and timeout settings for resource calls, as `requests` and keystoneauth1
    /// take them: `(verify, cert, timeout)`, `verify` False (insecure), a CA file or True,
    /// `cert` None, a file, or (certificate, key).
    fn session_settings(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>, f64)> {
        let client = &self.inner.config().client;
        let tls = &client.tls;
        let text = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let verify = if tls.insecure {
            false.into_pyobject(py)?.to_owned().into_any().unbind()
        } else {
            match &tls.cafile {
                Some(ca) => text(ca).into_pyobject(py)?.into_any().unbind(),
                None => true.into_pyobject(py)?.to_owned().into_any().unbind(),
            }
        };
        let cert = match (&tls.certfile, &tls.keyfile) {
            (None, _) => py.None(),
            (Some(c), None) => text(c).into_pyobject(py)?.into_any().unbind(),
            (Some(c), Some(k)) => (text(c), text(k)).into_pyobject(py)?.into_any().unbind(),
        };
        Ok((verify, cert, client.timeout.as_secs_f64()))
    }

    /// Drops the cached token.
    fn invalidate(&self) {
        self.inner.invalidate();
    }

    /// Token requests sent by this client's shared cache.
    fn requests_sent(&self) -> u64 {
        self.inner.requests_sent()
    }

    /// Prometheus samples, as `Authenticator.samples`.
    fn samples(&self, py: Python<'_>) -> PyResult<Vec<SampleRow>> {
        sample_rows(py, self.inner.samples())
    }
}

/// One Prometheus sample as Python sees it.
type SampleRow = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Py<PyAny>,
);

fn sample_rows(
    py: Python<'_>,
    samples: Vec<tokenward::prometheus::Sample>,
) -> PyResult<Vec<SampleRow>> {
    use tokenward::prometheus::Value;
    samples
        .into_iter()
        .map(|s| {
            let value: Py<PyAny> = match s.value {
                Value::Counter(n) => n.into_pyobject(py)?.into_any().unbind(),
                Value::Gauge(v) => v.into_pyobject(py)?.into_any().unbind(),
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => (buckets, sum, count).into_pyobject(py)?.into_any().unbind(),
            };
            Ok((s.family, s.label.map(|l| l.0), s.label.map(|l| l.1), value))
        })
        .collect()
}

/// Every Prometheus family: `(name, type, help)`.
#[pyfunction]
fn metric_families() -> Vec<(&'static str, &'static str, &'static str)> {
    tokenward::prometheus::FAMILIES.to_vec()
}

/// One option as Python sees it: name, kind, default, help, choices, origin.
type OptionRow = (
    String,
    String,
    Option<String>,
    String,
    Py<PyAny>,
    &'static str,
);

/// One row of the option table as Python sees it.
fn option_row(py: Python<'_>, o: &tokenward::options::OptionSpec) -> PyResult<OptionRow> {
    use tokenward::options::OptionKind;
    let (kind, choices) = match o.kind {
        OptionKind::Str => ("str", None),
        OptionKind::Secret => ("secret", None),
        OptionKind::Bool => ("bool", None),
        OptionKind::Int => ("int", None),
        OptionKind::List => ("list", None),
        OptionKind::Choice(c) => ("choice", Some(c.to_vec())),
    };
    Ok((
        o.name.to_owned(),
        kind.to_owned(),
        o.default.map(str::to_owned),
        o.help.to_owned(),
        choices.into_pyobject(py)?.into_any().unbind(),
        match o.origin {
            tokenward::options::Origin::Reference => "keystonemiddleware",
            tokenward::options::Origin::Tacker => "tacker",
            tokenward::options::Origin::Tokenward => "tokenward",
            tokenward::options::Origin::KeystoneAuthToken => "keystonemiddleware.auth_token",
        },
    ))
}

/// Option names, types, defaults and help, for oslo.config registration and docs.
#[pyfunction]
fn options(py: Python<'_>) -> PyResult<Vec<OptionRow>> {
    tokenward::options::OPTIONS
        .iter()
        .map(|o| option_row(py, o))
        .collect()
}

/// The rows of the options the token client reads, in its order, and whether each is
/// required: `(row, required)`.
#[pyfunction]
fn client_options(py: Python<'_>) -> PyResult<Vec<(OptionRow, bool)>> {
    use tokenward::token_client_options::{OPTION_NAMES, REQUIRED_OPTIONS};
    OPTION_NAMES
        .iter()
        .filter_map(|name| tokenward::options::OPTIONS.iter().find(|o| o.name == *name))
        .map(|o| Ok((option_row(py, o)?, REQUIRED_OPTIONS.contains(&o.name))))
        .collect()
}

/// `tokenward._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TokenwardError", m.py().get_type::<TokenwardError>())?;
    m.add(
        "ConfigurationError",
        m.py().get_type::<ConfigurationError>(),
    )?;
    m.add_class::<Authenticator>()?;
    m.add_class::<Outcome>()?;
    m.add_class::<Pending>()?;
    m.add_class::<wsgi::WsgiFilter>()?;
    m.add_class::<wsgi::ChallengingStart>()?;
    m.add_class::<TokenClient>()?;
    m.add("TokenRequestError", m.py().get_type::<TokenRequestError>())?;
    m.add(
        "CredentialsRejectedError",
        m.py().get_type::<CredentialsRejectedError>(),
    )?;
    m.add(
        "AuthServerUnavailableError",
        m.py().get_type::<AuthServerUnavailableError>(),
    )?;
    m.add_function(wrap_pyfunction!(options, m)?)?;
    m.add_function(wrap_pyfunction!(client_options, m)?)?;
    m.add_function(wrap_pyfunction!(metric_families, m)?)?;
    keystone::register(m)?;
    Ok(())
}
