//! `tokenward._native`: the Python door on the core. Strings are copied out of Python, the
//! network work runs with the GIL released, and results come back as prebuilt objects cached
//! on each grant so that a cache hit allocates almost nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use tokenward::authenticator::Verdict;
use tokenward::log::{Level, LogSink};
use tokenward::{AsError, ConfigError};

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

fn internal_error() -> PyErr {
    TokenwardError::new_err("internal error in tokenward (a bug): request refused")
}

/// Core log lines for a Python `logging.Logger`. The core may log from a thread that is not
/// Python's (a miss runs with the GIL released, and under eventlet in `tpool`, where touching
/// eventlet's green locks inside `logging` is unsafe), so lines are queued here and handed to
/// the logger by [`PythonLogger::flush`] on the calling thread, with the GIL held.
struct PythonLogger {
    logger: Py<PyAny>,
    /// The logger's effective level, refreshed at each flush.
    threshold: AtomicI32,
    pending: Mutex<Vec<(i32, String)>>,
}

fn python_level(level: Level) -> i32 {
    match level {
        Level::Debug => 10,
        Level::Info => 20,
        Level::Warning => 30,
        Level::Error => 40,
    }
}

impl PythonLogger {
    fn new(py: Python<'_>, logger: Py<PyAny>) -> Self {
        let this = Self {
            logger,
            threshold: AtomicI32::new(0),
            pending: Mutex::new(Vec::new()),
        };
        this.refresh_threshold(py);
        this
    }

    fn refresh_threshold(&self, py: Python<'_>) {
        if let Ok(level) = self
            .logger
            .call_method0(py, "getEffectiveLevel")
            .and_then(|v| v.extract::<i32>(py))
        {
            self.threshold.store(level, Ordering::Relaxed);
        }
    }

    /// Hands the queued lines to the logger (GIL held, caller's thread).
    fn flush(&self, py: Python<'_>) {
        let lines =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (level, message) in lines {
            let _ = self.logger.call_method1(py, "log", (level, "%s", message));
        }
        self.refresh_threshold(py);
    }

    /// [`PythonLogger::flush`] when a line is queued (a lock and a length check otherwise).
    fn flush_pending(&self, py: Python<'_>) {
        let queued = !self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if queued {
            self.flush(py);
        }
    }
}

impl LogSink for PythonLogger {
    fn enabled(&self, level: Level) -> bool {
        python_level(level) >= self.threshold.load(Ordering::Relaxed)
    }

    fn log(&self, level: Level, message: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() < 1000 {
            pending.push((python_level(level), message.to_owned()));
        }
    }
}

/// Python objects made once per grant: the environ pairs (immutable, shared by every request)
/// and the parsed `token_data`, which is only ever handed out as a deep copy.
struct PyGrant {
    environ: Py<PyTuple>,
    token_info: Py<PyDict>,
}

/// The grant's slot for [`PyGrant`]. The slot is attached to the grant by pure Rust code, and
/// the objects are built with no lock held and then offered to it: a thread holding the GIL
/// never waits for a build that may itself need the GIL (the build runs Python code, which
/// may let other threads run at any bytecode).
#[derive(Default)]
struct PyGrantSlot(OnceLock<PyGrant>);

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn build_py_grant(py: Python<'_>, grant: &tokenward::Grant) -> PyResult<PyGrant> {
    let items: Vec<Bound<'_, PyTuple>> = grant
        .headers()
        .iter()
        .map(|(h, v)| {
            PyTuple::new(
                py,
                [
                    PyString::intern(py, h.environ_key).into_any(),
                    PyString::new(py, v).into_any(),
                ],
            )
        })
        .collect::<PyResult<_>>()?;
    let loads = JSON_LOADS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("json")?.getattr("loads")?.unbind())
    })?;
    let token_info = loads
        .call1(py, (grant.token_info_json(),))?
        .into_bound(py)
        .cast_into::<PyDict>()?;
    Ok(PyGrant {
        environ: PyTuple::new(py, items)?.unbind(),
        token_info: token_info.unbind(),
    })
}

/// The grant's Python objects: those already stored, or new ones. Two threads may build at
/// once; the first to store wins and the other's objects are dropped. A failed build is not
/// stored, so the next request with the token tries again.
fn py_grant<'g>(py: Python<'_>, grant: &'g tokenward::Grant) -> PyResult<&'g PyGrant> {
    let slot = grant
        .attachment(PyGrantSlot::default)
        .ok_or_else(internal_error)?;
    if let Some(objects) = slot.0.get() {
        return Ok(objects);
    }
    let built = build_py_grant(py, grant).map_err(|cause| {
        let err = TokenwardError::new_err("could not build the identity objects: request refused");
        err.set_cause(py, Some(cause));
        err
    })?;
    // `set` only moves the value in (no Python code), so a wait in it is short.
    let _lost_the_race = slot.0.set(built);
    slot.0.get().ok_or_else(internal_error)
}

/// A copy of JSON data (dicts, lists, immutable scalars) that shares no dict or list with
/// `value`.
fn deep_copy<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    if let Ok(dict) = value.cast::<PyDict>() {
        let copy = PyDict::new(py);
        for (k, v) in dict.iter() {
            copy.set_item(k, deep_copy(&v)?)?;
        }
        Ok(copy.into_any())
    } else if let Ok(list) = value.cast::<PyList>() {
        let items = list
            .iter()
            .map(|v| deep_copy(&v))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?.into_any())
    } else {
        Ok(value.clone())
    }
}

/// The result of a check, ready for a WSGI response.
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
    /// Allowed: `(environ_key, value)` pairs to set.
    #[pyo3(get)]
    environ: Option<Py<PyTuple>>,
    token_info: Option<Py<PyDict>>,
    /// Denied: the status line, e.g. `401 Unauthorized`.
    #[pyo3(get)]
    status_line: &'static str,
    /// Denied: response headers.
    #[pyo3(get)]
    headers: Option<Py<PyAny>>,
    /// Denied: the JSON body.
    #[pyo3(get)]
    body: Option<Py<PyBytes>>,
}

#[pymethods]
impl Outcome {
    /// Allowed: keystonemiddleware's `token_data` dict, a new one at each read that shares no
    /// dict or list with any other request's.
    #[getter]
    fn token_info<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.token_info
            .as_ref()
            .map(|d| deep_copy(d.bind(py).as_any()))
            .transpose()
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
    inner: Arc<tokenward::Authenticator>,
    strip: Py<PyTuple>,
    logger: Option<Arc<PythonLogger>>,
}

fn cert_bytes(cert: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    let Some(cert) = cert else { return Ok(None) };
    if cert.is_none() {
        return Ok(None);
    }
    if let Ok(s) = cert.cast::<PyString>() {
        return Ok(Some(s.to_cow()?.as_bytes().to_vec()));
    }
    Ok(Some(cert.extract::<Vec<u8>>()?))
}

impl Authenticator {
    fn outcome(&self, py: Python<'_>, verdict: Verdict) -> PyResult<Outcome> {
        match verdict {
            Verdict::Allow(grant) => {
                let objects = py_grant(py, &grant)?;
                Ok(Outcome {
                    allowed: true,
                    status: 200,
                    reason: "ok",
                    detail: String::new(),
                    environ: Some(objects.environ.clone_ref(py)),
                    token_info: Some(objects.token_info.clone_ref(py)),
                    status_line: "200 OK",
                    headers: None,
                    body: None,
                })
            }
            Verdict::Deny(denial) => {
                let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
                headers.extend(
                    self.inner
                        .denial_headers(&denial)
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v)),
                );
                let body = denial.body();
                headers.push(("Content-Length".to_owned(), body.len().to_string()));
                Ok(Outcome {
                    allowed: false,
                    status: denial.status(),
                    reason: denial.reason.code(),
                    detail: denial.reason.to_string(),
                    environ: None,
                    token_info: None,
                    status_line: denial.status_line(),
                    headers: Some(headers.into_pyobject(py)?.into_any().unbind()),
                    body: Some(PyBytes::new(py, body.as_bytes()).unbind()),
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
        let pairs = option_pairs(options)?;
        let logger = logger.map(|l| Arc::new(PythonLogger::new(py, l)));
        let sink: Arc<dyn LogSink> = match &logger {
            Some(logger) => logger.clone(),
            None => Arc::new(tokenward::log::NoLog),
        };
        let built = py.detach(move || {
            catch_unwind(AssertUnwindSafe(|| {
                tokenward::Authenticator::from_options(pairs, sink)
            }))
        });
        let inner = match built {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(config_error(py, &e)),
            Err(_) => return Err(internal_error()),
        };
        let keys: Vec<String> = tokenward::headers::stripped_environ_keys();
        let strip = PyTuple::new(py, keys.iter().map(|k| PyString::intern(py, k)))?.unbind();
        Ok(Self {
            inner: Arc::new(inner),
            strip,
            logger,
        })
    }

    /// Start-up warnings (unknown options, weak settings).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }

    /// Environ keys to delete from every request before anything else.
    #[getter]
    fn strip_environ_keys(&self, py: Python<'_>) -> Py<PyTuple> {
        self.strip.clone_ref(py)
    }

    /// Whether the door must read the TLS client certificate (`SSL_CLIENT_CERT`, the socket):
    /// `thumbprint_verify` is true or auto and no `client_cert_header` is configured.
    #[getter]
    fn thumbprint_verify(&self) -> bool {
        let config = self.inner.config();
        config.policy.binding.reads_certificate() && config.proxy_certs.is_none()
    }

    /// `dpop_public_url` (the external scheme://host[:port]), or None.
    #[getter]
    fn dpop_public_url(&self) -> Option<String> {
        self.inner.config().dpop.public_url.clone()
    }

    /// The environ key of `client_cert_header` (popped from every request), or None.
    #[getter]
    fn cert_header_key(&self) -> Option<String> {
        self.inner
            .config()
            .proxy_certs
            .as_ref()
            .map(|p| p.wsgi_key())
    }

    /// The `WWW-Authenticate` value of a 401.
    #[getter]
    fn challenge(&self) -> &str {
        self.inner.challenge()
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
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            let prepared = self.inner.prepare(&tokenward::Request {
                authorization,
                client_cert: cert.as_deref(),
                peer,
                forwarded_cert,
                method,
                url,
                dpop_proof,
            });
            self.inner.lookup(&prepared)
        }))
        .map_err(|_| internal_error())?;
        // A check without I/O may still log (an untrusted proxy's header): hand it over here.
        if let Some(logger) = &self.logger {
            logger.flush_pending(py);
        }
        verdict.map(|v| self.outcome(py, v)).transpose()
    }

    /// The whole check; blocks on the AS with the GIL released. Under eventlet call it through
    /// `eventlet.tpool`.
    #[pyo3(signature = (authorization, client_cert=None, peer=None, forwarded_cert=None, method=None, url=None, dpop_proof=None))]
    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &self,
        py: Python<'_>,
        authorization: Option<String>,
        client_cert: Option<&Bound<'_, PyAny>>,
        peer: Option<String>,
        forwarded_cert: Option<String>,
        method: Option<String>,
        url: Option<String>,
        dpop_proof: Option<String>,
    ) -> PyResult<Outcome> {
        let cert = cert_bytes(client_cert)?;
        let inner = Arc::clone(&self.inner);
        let verdict = py
            .detach(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    inner.check(&tokenward::Request {
                        authorization: authorization.as_deref(),
                        client_cert: cert.as_deref(),
                        peer: peer.as_deref(),
                        forwarded_cert: forwarded_cert.as_deref(),
                        method: method.as_deref(),
                        url: url.as_deref(),
                        dpop_proof: dpop_proof.as_deref(),
                    })
                }))
            })
            .map_err(|_| internal_error())?;
        self.outcome(py, verdict)
    }

    /// Hands log lines queued by `authenticate` to the logger. Call it on the request's own
    /// thread or greenthread (not inside `eventlet.tpool`).
    fn flush_logs(&self, py: Python<'_>) {
        if let Some(logger) = &self.logger {
            logger.flush(py);
        }
    }

    /// Benchmarks only: caches `count` tokens `{prefix}{i}` as if the AS had answered
    /// `claims_json` for each. Returns the entries held.
    fn _prefill_for_bench(
        &self,
        py: Python<'_>,
        prefix: String,
        count: usize,
        claims_json: &str,
    ) -> PyResult<usize> {
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(claims_json)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let inner = Arc::clone(&self.inner);
        Ok(py.detach(move || inner.prefill_for_bench(&prefix, count, &claims)))
    }

    /// Drops the cached verdict of the token in this `Authorization` value.
    fn forget(&self, authorization: Option<&str>) {
        self.inner.forget(authorization);
    }

    /// Prometheus samples: `(family, label name or None, label value or None, value)`, the
    /// value an int (counter), a float (gauge) or `(buckets, sum, count)` (histogram).
    fn samples(&self, py: Python<'_>) -> PyResult<Vec<SampleRow>> {
        sample_rows(py, self.inner.samples())
    }

    /// The `filter` label of the Prometheus metrics: `metrics_name`, else `default`.
    fn metrics_label(&self, default: &str) -> String {
        self.inner.metrics_label(default).to_owned()
    }

    /// Counters: cache hits, misses, coalesced waits, introspections, AS errors, entries.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.metrics().pairs() {
            d.set_item(k, v)?;
        }
        Ok(d)
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
        let built = py.detach(move || {
            catch_unwind(AssertUnwindSafe(|| {
                tokenward::TokenClient::from_options(pairs)
            }))
        });
        match built {
            Ok(Ok(inner)) => Ok(Self {
                inner: Arc::new(inner),
            }),
            Ok(Err(e)) => Err(config_error(py, &e)),
            Err(_) => Err(internal_error()),
        }
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
fn option_row(py: Python<'_>, o: &tokenward::config::OptionSpec) -> PyResult<OptionRow> {
    use tokenward::config::OptionKind;
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
            tokenward::config::Origin::Reference => "keystonemiddleware",
            tokenward::config::Origin::Tacker => "tacker",
            tokenward::config::Origin::Tokenward => "tokenward",
            tokenward::config::Origin::KeystoneAuthToken => "keystonemiddleware.auth_token",
        },
    ))
}

/// Option names, types, defaults and help, for oslo.config registration and docs.
#[pyfunction]
fn options(py: Python<'_>) -> PyResult<Vec<OptionRow>> {
    tokenward::config::OPTIONS
        .iter()
        .map(|o| option_row(py, o))
        .collect()
}

/// The rows of the options the token client reads, in its order, and whether each is
/// required: `(row, required)`.
#[pyfunction]
fn client_options(py: Python<'_>) -> PyResult<Vec<(OptionRow, bool)>> {
    use tokenward::token_client::{OPTION_NAMES, REQUIRED_OPTIONS};
    OPTION_NAMES
        .iter()
        .filter_map(|name| tokenward::config::OPTIONS.iter().find(|o| o.name == *name))
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
