//! The WSGI call of `ExternalAuth2Protocol` in native code: the Python class subclasses
//! [`WsgiFilter`], so a cache hit or a refusal goes from the server to the application with
//! no Python frame of the filter's own. A miss is settled here too when eventlet is not in
//! the process (nothing to hand the blocking part to); otherwise it goes back to the
//! subclass's `_miss`, which runs it in eventlet's thread pool when patched. An internal
//! error goes to the subclass's `_internal_error`.

use std::sync::{Arc, OnceLock};

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::TokenwardError;
use crate::door::{Door, Handled, Pending};

/// What the subclass's `__init__` binds. Its hooks are looked up on the instance when needed
/// (`_miss(environ, start_response, pending)`: None to call the application, else the
/// response; `_internal_error(start_response, error)`), never held here: a bound method
/// would make a cycle through this native object that the garbage collector cannot see.
struct Wiring {
    app: Py<PyAny>,
    door: Arc<Door>,
    challenge: Py<PyString>,
    /// `sys.modules`, to see whether eventlet is loaded.
    modules: Py<PyDict>,
}

/// The native base of `tokenward.external_oauth2_token.ExternalAuth2Protocol`.
#[pyclass(subclass, frozen, module = "tokenward._native")]
pub(crate) struct WsgiFilter {
    wiring: OnceLock<Wiring>,
}

#[pymethods]
impl WsgiFilter {
    /// Empty until `_wsgi_bind`; the subclass's `__init__` takes the arguments.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            wiring: OnceLock::new(),
        }
    }

    /// Binds the application and the authenticator (once).
    fn _wsgi_bind(
        &self,
        app: Py<PyAny>,
        authenticator: &Bound<'_, crate::Authenticator>,
    ) -> PyResult<()> {
        let py = authenticator.py();
        let door = Arc::clone(&authenticator.get().door);
        let challenge = PyString::new(py, door.inner.challenge()).unbind();
        let modules = py
            .import(intern!(py, "sys"))?
            .getattr(intern!(py, "modules"))?
            .cast_into::<PyDict>()?
            .unbind();
        self.wiring
            .set(Wiring {
                app,
                door,
                challenge,
                modules,
            })
            .map_err(|_| PyRuntimeError::new_err("this filter is already bound"))
    }

    /// One WSGI request.
    fn __call__(
        slf: &Bound<'_, Self>,
        environ: &Bound<'_, PyDict>,
        start_response: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = environ.py();
        let wiring = slf
            .get()
            .wiring
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("the filter's __init__ did not complete"))?;
        let internal_error = |e: PyErr| -> PyResult<Py<PyAny>> {
            if e.is_instance_of::<TokenwardError>(py) {
                Ok(slf
                    .call_method1(intern!(py, "_internal_error"), (&start_response, e))?
                    .unbind())
            } else {
                Err(e)
            }
        };
        let handled = match wiring.door.handle(environ) {
            Ok(handled) => handled,
            Err(e) => return internal_error(e),
        };
        let refused = match handled {
            Handled::Allowed => None,
            Handled::Denied(triple) => Some(triple),
            Handled::Miss(prepared) => {
                let pending = Pending::new(Arc::clone(&wiring.door), prepared);
                if wiring.modules.bind(py).contains(intern!(py, "eventlet"))? {
                    let answer = slf
                        .call_method1(intern!(py, "_miss"), (environ, &start_response, pending))?;
                    if !answer.is_none() {
                        return Ok(answer.unbind());
                    }
                    None
                } else {
                    // What `_settle` does without a green executor, without its frames.
                    match pending.run(py).and_then(|()| pending.finish(environ)) {
                        Ok(refused) => refused,
                        Err(e) => return internal_error(e),
                    }
                }
            }
        };
        if let Some((status, headers, body)) = refused {
            start_response.call1((status, headers))?;
            return Ok(PyList::new(py, [body])?.into_any().unbind());
        }
        let start = ChallengingStart {
            start_response: start_response.unbind(),
            challenge: wiring.challenge.clone_ref(py),
        };
        wiring.app.call1(py, (environ, start))
    }
}

/// The `start_response` the application gets: a 401 of its own gets the filter's
/// `WWW-Authenticate` challenge unless it sent one (the reference adds a second).
#[pyclass(frozen, module = "tokenward._native")]
pub(crate) struct ChallengingStart {
    start_response: Py<PyAny>,
    challenge: Py<PyString>,
}

#[pymethods]
impl ChallengingStart {
    /// Wraps a server's `start_response` (the Keystone filter makes one per request too).
    #[new]
    fn new(start_response: Py<PyAny>, challenge: Py<PyString>) -> Self {
        Self {
            start_response,
            challenge,
        }
    }

    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: Bound<'_, PyAny>,
        exc_info: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let is_401 = status
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok().map(|s| s.starts_with("401")))
            .unwrap_or(false);
        let headers = if is_401 && !has_challenge(&headers)? {
            let extended = PyList::empty(py);
            for header in headers.try_iter()? {
                extended.append(header?)?;
            }
            extended.append(("WWW-Authenticate", self.challenge.bind(py)))?;
            extended.into_any()
        } else {
            headers
        };
        self.start_response.call1(py, (status, headers, exc_info))
    }
}

/// Whether `headers` (an iterable of `(name, value)`) holds a `WWW-Authenticate`.
fn has_challenge(headers: &Bound<'_, PyAny>) -> PyResult<bool> {
    for header in headers.try_iter()? {
        let header = header?;
        let name = header.get_item(0)?;
        let name = name.cast::<PyString>()?;
        if name.to_str()?.eq_ignore_ascii_case("www-authenticate") {
            return Ok(true);
        }
    }
    Ok(false)
}
