//! `tokenward._native.KeystoneAuthenticator`: the Python door of `validation = keystone`
//! (see `tokenward.auth_token` for the WSGI filter). As the OAuth door: strings copied out of
//! Python, Keystone asked with the GIL released, results as prebuilt objects cached on each
//! grant so that a cache hit allocates almost nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use tokenward::{Grant, KeystoneRequest, Verdict};

use crate::door::{
    Door, Handled, Pending, environ_key_of, objects_built_by, refusal_response,
    stripped_environ_keys,
};
use crate::{
    ConfigurationError, PythonLogger, SampleRow, build_core, internal_error, metrics_dict,
    option_pairs, sample_rows,
};

/// Where the dicts and lists of a JSON document are (keys and indexes of the containers
/// only), so that a copy touches nothing else: each container is copied at C level
/// (`dict.copy()`, a list slice) and only its container members are replaced.
enum Plan {
    Dict(Vec<(Py<PyAny>, Plan)>),
    List(Vec<(usize, Plan)>),
}

impl Plan {
    fn of(value: &Bound<'_, PyAny>) -> Option<Self> {
        if let Ok(dict) = value.cast_exact::<PyDict>() {
            let children = dict
                .iter()
                .filter_map(|(k, v)| Plan::of(&v).map(|p| (k.unbind(), p)))
                .collect();
            Some(Plan::Dict(children))
        } else if let Ok(list) = value.cast_exact::<PyList>() {
            let children = list
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Plan::of(&v).map(|p| (i, p)))
                .collect();
            Some(Plan::List(children))
        } else {
            None
        }
    }

    /// A copy of `value` (the document this plan was made of, never handed out, so never
    /// changed) that shares no dict or list with it; the scalars, immutable, are shared.
    fn copy<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = value.py();
        match self {
            Plan::Dict(children) => {
                let dict = value.cast::<PyDict>()?;
                let copy = dict.copy()?;
                for (key, plan) in children {
                    let key = key.bind(py);
                    let member = dict.get_item(key)?.ok_or_else(internal_error)?;
                    copy.set_item(key, plan.copy(&member)?)?;
                }
                Ok(copy.into_any())
            }
            Plan::List(children) => {
                let list = value.cast::<PyList>()?;
                let copy = list.get_slice(0, list.len());
                for (i, plan) in children {
                    copy.set_item(*i, plan.copy(&list.get_item(*i)?)?)?;
                }
                Ok(copy.into_any())
            }
        }
    }
}

/// A grant's Python objects: the environ pairs and the parsed `keystone.token_info` (None for
/// the `X-Identity-Status: Invalid` grant of `delay_auth_decision`).
struct KsPyGrant {
    environ: Py<PyTuple>,
    token_info: Option<Arc<TokenInfo>>,
    /// `keystone.token_auth` of a grant with a valid user token (one per token and service
    /// token while cached), made by the door on first use.
    token_auth: Option<Arc<OnceLock<Py<PyAny>>>>,
}

/// `keystone.token_info` as parsed once, with the plan of its copies.
struct TokenInfo {
    document: Py<PyDict>,
    plan: Plan,
}

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn build(py: Python<'_>, grant: &Grant) -> PyResult<KsPyGrant> {
    let items: Vec<Bound<'_, PyTuple>> = grant
        .headers()
        .iter()
        .map(|(h, v)| {
            PyTuple::new(
                py,
                [
                    PyString::intern(py, &environ_key_of(h.name)).into_any(),
                    PyString::new(py, v).into_any(),
                ],
            )
        })
        .collect::<PyResult<_>>()?;
    let token_info = if grant.token_info_json().is_empty() {
        None
    } else {
        let loads = JSON_LOADS.get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("json")?.getattr("loads")?.unbind())
        })?;
        let document = loads
            .call1(py, (grant.token_info_json(),))?
            .into_bound(py)
            .cast_into::<PyDict>()?;
        let plan = Plan::of(document.as_any()).ok_or_else(internal_error)?;
        Some(Arc::new(TokenInfo {
            document: document.unbind(),
            plan,
        }))
    };
    Ok(KsPyGrant {
        environ: PyTuple::new(py, items)?.unbind(),
        token_auth: token_info.as_ref().map(|_| Arc::new(OnceLock::new())),
        token_info,
    })
}

/// The grant's objects: those already stored in its door slot, or new ones built with no lock
/// held and offered to it (see grant.rs).
fn objects<'g>(py: Python<'_>, grant: &'g Grant) -> PyResult<&'g KsPyGrant> {
    objects_built_by(py, grant, || build(py, grant))
}

/// The result of a Keystone check, ready for a WSGI response.
#[pyclass(frozen, module = "tokenward._native")]
pub(crate) struct KeystoneOutcome {
    /// True when the request may go on (with `delay_auth_decision`, also for an invalid token:
    /// `environ` then says `X-Identity-Status: Invalid`).
    #[pyo3(get)]
    allowed: bool,
    /// HTTP status (200 when allowed).
    #[pyo3(get)]
    status: u16,
    /// A stable reason code (`ok`, `keystone_token_not_found`, `keystone_unavailable`, ...).
    #[pyo3(get)]
    reason: &'static str,
    /// Human-readable detail (no secrets).
    #[pyo3(get)]
    detail: String,
    /// Allowed: `(environ_key, value)` pairs to set.
    #[pyo3(get)]
    environ: Option<Py<PyTuple>>,
    token_info: Option<Arc<TokenInfo>>,
    token_auth: Option<Arc<OnceLock<Py<PyAny>>>>,
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
impl KeystoneOutcome {
    /// Allowed with a valid token: `keystone.token_info` (Keystone's answer), a new dict at
    /// each read that shares nothing with another request's; None otherwise.
    #[getter]
    fn token_info<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.token_info
            .as_ref()
            .map(|info| info.plan.copy(info.document.bind(py).as_any()))
            .transpose()
    }

    /// Allowed with a valid token: the grant's `keystone.token_auth`, made by `factory()` the
    /// first time (it is shared by the requests with the same tokens, so it must hold nothing
    /// of one request); None otherwise.
    fn token_auth(
        &self,
        py: Python<'_>,
        factory: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let Some(slot) = &self.token_auth else {
            return Ok(None);
        };
        if let Some(made) = slot.get() {
            return Ok(Some(made.clone_ref(py)));
        }
        // Made with no lock held; the first to store wins (`set` runs no Python code).
        let made = factory.call0()?.unbind();
        let _lost_the_race = slot.set(made);
        Ok(slot.get().map(|made| made.clone_ref(py)))
    }

    fn __repr__(&self) -> String {
        format!(
            "KeystoneOutcome(allowed={}, status={}, reason={:?})",
            self.allowed, self.status, self.reason
        )
    }
}

/// Validates Keystone tokens (`X-Auth-Token`, `X-Service-Token`); see `tokenward.auth_token`.
#[pyclass(frozen, module = "tokenward._native")]
pub(crate) struct KeystoneAuthenticator {
    inner: Arc<tokenward::Authenticator>,
    strip: Py<PyTuple>,
    logger: Option<Arc<PythonLogger>>,
    /// `bearer_validation`: the OAuth filter's own request path on the same core (its
    /// environ reading, certificates and DPoP proofs included).
    bearer: Option<Arc<Door>>,
}

impl KeystoneAuthenticator {
    fn outcome(&self, py: Python<'_>, verdict: Verdict) -> PyResult<KeystoneOutcome> {
        match verdict {
            Verdict::Allow(grant) => {
                let objects = objects(py, &grant)?;
                Ok(KeystoneOutcome {
                    allowed: true,
                    status: 200,
                    reason: "ok",
                    detail: String::new(),
                    environ: Some(objects.environ.clone_ref(py)),
                    token_info: objects.token_info.clone(),
                    token_auth: objects.token_auth.clone(),
                    status_line: "200 OK",
                    headers: None,
                    body: None,
                })
            }
            Verdict::Deny(denial) => {
                let (headers, body) = refusal_response(py, &self.inner, &denial)?;
                Ok(KeystoneOutcome {
                    allowed: false,
                    status: denial.status(),
                    reason: denial.reason.code(),
                    detail: denial.reason.to_string(),
                    environ: None,
                    token_info: None,
                    token_auth: None,
                    status_line: denial.status_line(),
                    headers: Some(headers.into_any()),
                    body: Some(body),
                })
            }
        }
    }
}

#[pymethods]
impl KeystoneAuthenticator {
    /// Builds from a dict of option name → string value (`validation` is `keystone`
    /// whatever it says). Raises `ConfigurationError` naming the option when the
    /// configuration can never work.
    #[new]
    #[pyo3(signature = (options, logger=None))]
    fn new(
        py: Python<'_>,
        options: &Bound<'_, PyDict>,
        logger: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let mut pairs = option_pairs(options)?;
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "validation")
            && !v.is_empty()
            && !v.eq_ignore_ascii_case("keystone")
        {
            let err = ConfigurationError::new_err(format!(
                "option validation must be keystone for the auth_token filter, not {v:?}"
            ));
            let _ = err.value(py).setattr("option", "validation");
            return Err(err);
        }
        pairs.retain(|(k, _)| k != "validation");
        pairs.push(("validation".to_owned(), "keystone".to_owned()));
        let (core, logger) = build_core(py, pairs, logger)?;
        let strip = PyTuple::new(py, stripped_environ_keys(py).map(|(_, key)| key))?.unbind();
        let inner = Arc::new(core);
        let bearer = inner
            .accepts_bearer()
            .then(|| Arc::new(Door::new(py, Arc::clone(&inner), logger.clone())));
        Ok(Self {
            inner,
            strip,
            logger,
            bearer,
        })
    }

    /// Start-up warnings (unknown options, weak settings).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings().to_vec()
    }

    /// Environ keys to delete from every request before anything else (every identity
    /// header, `OpenStack-System-Scope` included).
    #[getter]
    fn strip_environ_keys(&self, py: Python<'_>) -> Py<PyTuple> {
        self.strip.clone_ref(py)
    }

    /// The `WWW-Authenticate` value of a 401 (`Keystone uri="…"`).
    #[getter]
    fn challenge(&self) -> &str {
        self.inner
            .keystone_challenge()
            .unwrap_or_else(|| self.inner.challenge())
    }

    /// Whether a request without `X-Auth-Token` may carry an OAuth bearer token
    /// (`bearer_validation`); check it with `handle_bearer`.
    #[getter]
    fn accepts_bearer(&self) -> bool {
        self.inner.accepts_bearer()
    }

    /// `bearer_validation`: a request without `X-Auth-Token`, checked as the
    /// external_oauth2_token filter checks it (certificate binding and DPoP included): None
    /// when the environ is written (call the application), `(status, headers, body)` for a
    /// refusal, or a `Pending` when the AS must be asked (`run`, then `finish(environ)`).
    fn handle_bearer(&self, environ: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = environ.py();
        let door = self.bearer.as_ref().ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("bearer_validation is not set")
        })?;
        Ok(match door.handle(environ)? {
            Handled::Allowed => py.None(),
            Handled::Denied(triple) => triple.into_pyobject(py)?.into_any().unbind(),
            Handled::Miss(prepared) => {
                Py::new(py, Pending::new(Arc::clone(door), prepared))?.into_any()
            }
        })
    }

    /// A verdict from the headers and the cache alone (no I/O), or None when Keystone must be
    /// asked.
    #[pyo3(signature = (auth_token, service_token=None, method=None, path=None))]
    fn lookup(
        &self,
        py: Python<'_>,
        auth_token: Option<&str>,
        service_token: Option<&str>,
        method: Option<&str>,
        path: Option<&str>,
    ) -> PyResult<Option<KeystoneOutcome>> {
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            self.inner.lookup_keystone(&KeystoneRequest {
                auth_token,
                service_token,
                method,
                path,
            })
        }))
        .map_err(|_| internal_error())?;
        if let Some(logger) = &self.logger {
            logger.flush_pending(py);
        }
        verdict.map(|v| self.outcome(py, v)).transpose()
    }

    /// The whole check; blocks on Keystone with the GIL released. Under eventlet call it
    /// through `eventlet.tpool`.
    #[pyo3(signature = (auth_token, service_token=None, method=None, path=None))]
    fn check(
        &self,
        py: Python<'_>,
        auth_token: Option<String>,
        service_token: Option<String>,
        method: Option<String>,
        path: Option<String>,
    ) -> PyResult<KeystoneOutcome> {
        let core = &self.inner;
        let verdict = py
            .detach(|| {
                catch_unwind(AssertUnwindSafe(|| {
                    core.check_keystone(&KeystoneRequest {
                        auth_token: auth_token.as_deref(),
                        service_token: service_token.as_deref(),
                        method: method.as_deref(),
                        path: path.as_deref(),
                    })
                }))
            })
            .map_err(|_| internal_error())?;
        self.outcome(py, verdict)
    }

    /// This service's own token (password, v3applicationcredential), to send as
    /// `X-Service-Token` on calls made on a user's behalf; None with v3tokenlessauth. May ask
    /// Keystone, with the GIL released (under eventlet call it through `eventlet.tpool`).
    /// Raises `AuthServerUnavailableError` or `CredentialsRejectedError`.
    fn service_token(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let inner = Arc::clone(&self.inner);
        match py.detach(move || catch_unwind(AssertUnwindSafe(|| inner.keystone_service_token()))) {
            Ok(Ok(token)) => Ok(token.map(|t| t.expose().to_owned())),
            Ok(Err(e)) => Err(crate::token_error(py, &e)),
            Err(_) => Err(internal_error()),
        }
    }

    /// Hands log lines queued by `check` to the logger (on the request's own thread or
    /// greenthread, not inside `eventlet.tpool`).
    fn flush_logs(&self, py: Python<'_>) {
        if let Some(logger) = &self.logger {
            logger.flush(py);
        }
    }

    /// Prometheus samples, as `Authenticator.samples`.
    fn samples(&self, py: Python<'_>) -> PyResult<Vec<SampleRow>> {
        sample_rows(py, self.inner.samples())
    }

    /// The `filter` label of the Prometheus metrics: `metrics_name`, else `default`.
    fn metrics_label(&self, default: &str) -> String {
        self.inner.metrics_label(default).to_owned()
    }

    /// Counters: cache hits, misses, coalesced waits, validations, Keystone errors, entries.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, &self.inner)
    }
}

/// The options `validation = keystone` reads: `(name, plugin)`, `plugin` true for the
/// keystoneauth plugin options (read from the `auth_section` group when one is named).
#[pyfunction]
pub(crate) fn keystone_options() -> Vec<(&'static str, bool)> {
    tokenward::options::OPTIONS
        .iter()
        .filter(|o| tokenward::keystone_options::uses_option(o.name))
        .map(|o| {
            (
                o.name,
                tokenward::keystone_options::PLUGIN_OPTIONS.contains(&o.name),
            )
        })
        .collect()
}

/// Registers the Keystone door in `_native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<KeystoneAuthenticator>()?;
    m.add_class::<KeystoneOutcome>()?;
    m.add_function(wrap_pyfunction!(keystone_options, m)?)?;
    Ok(())
}
