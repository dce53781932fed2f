//! The native half of the Python package `aegis`: the core's one operation table as two
//! callables. Everything here converts strings and maps errors; the Python half
//! (`aegis/__init__.py`) turns JSON into typed objects and error JSON into exception classes.

mod convert;
mod gil;

use std::sync::{Arc, Mutex, PoisonError};

use aegis_sod::json_api::{self, error_json};
use aegis_sod::{AuthorizationRequest, ResourceRef};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};
use serde_json::Value;

create_exception!(_native, NativeError, PyException, "An error from the Aegis core: `args[0]` is its JSON.");

fn to_py(e: aegis_sod::Error) -> PyErr {
    NativeError::new_err(error_json(&e))
}

/// One Aegis engine. Safe to share between threads; the GIL is released while it works.
#[pyclass(frozen, module = "aegis._native")]
struct Engine {
    inner: aegis_sod::Engine,
    /// The request of the last call, with the token objects of its chain: an agent presents the
    /// same chain (the same `str` objects) call after call, and its request is then filled
    /// again rather than built (the tokens not copied, the arguments read in place). A call
    /// made while another thread holds it builds its own.
    held: Mutex<Option<Held>>,
}

/// A request kept between calls (cleared: see `AuthorizationRequest::clear_call`).
struct Held {
    tokens: Vec<Py<PyString>>,
    request: AuthorizationRequest,
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (config, notifier=None))]
    fn new(py: Python<'_>, config: String, notifier: Option<Py<PyAny>>) -> PyResult<Self> {
        let notifier = notifier.map(|callback| {
            Arc::new(move |pending: String| {
                Python::attach(|py| {
                    // A failing notifier must not fail the decision; Python reports the error.
                    if let Err(e) = callback.call1(py, (pending,)) {
                        e.write_unraisable(py, None);
                    }
                })
            }) as Arc<dyn Fn(String) + Send + Sync>
        });
        let inner = py
            .detach(|| aegis_sod::from_str_strict(&config).and_then(|c| json_api::engine_with_notifier(c, notifier)))
            .map_err(to_py)?;
        Ok(Self { inner, held: Mutex::new(None) })
    }

    /// Runs engine operation `op` of the core's table on `input` (JSON), returning JSON.
    fn call(&self, py: Python<'_>, op: String, input: String) -> PyResult<String> {
        py.detach(|| json_api::call(Some(&self.inner), &op, &input)).map_err(to_py)
    }

    /// The `authorize` operation without JSON text: the same request, the same `Decision`.
    #[allow(clippy::too_many_arguments)]
    fn authorize<'py>(
        &self,
        py: Python<'py>,
        chain: &Bound<'py, PyAny>,
        tool: &str,
        args: &Bound<'py, PyAny>,
        resource: Option<(String, String)>,
        proof: Option<String>,
        approval_token: Option<String>,
        traceparent: Option<String>,
        tool_call_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (tokens, mut request) = self.request(chain, args)?;
        request.set_call(tool, resource.map(|(t, id)| ResourceRef::new(t, id)), proof, approval_token, traceparent, tool_call_id);
        let decision = gil::detached(py, || self.inner.authorize(&request));
        self.keep(tokens, request);
        decided(py, convert::decision(py, &decision.map_err(to_py)?))
    }

    /// The `authorize_enforced` operation without JSON text.
    #[allow(clippy::too_many_arguments)]
    fn authorize_enforced<'py>(
        &self,
        py: Python<'py>,
        chain: &Bound<'py, PyAny>,
        tool: &str,
        args: &Bound<'py, PyAny>,
        resource: Option<(String, String)>,
        proof: Option<String>,
        approval_token: Option<String>,
        traceparent: Option<String>,
        tool_call_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (tokens, mut request) = self.request(chain, args)?;
        request.set_call(tool, resource.map(|(t, id)| ResourceRef::new(t, id)), proof, approval_token, traceparent, tool_call_id);
        let decided_call = gil::detached(py, || self.inner.authorize(&request).map(|d| (d.enforce(&request.args), d)));
        self.keep(tokens, request);
        let (enforcement, decision) = decided_call.map_err(to_py)?;
        decided(py, convert::enforced(py, &decision, &enforcement))
    }
}

/// The result of a call that has decided (and may have committed): a `TypeError` now would send
/// the Python half down the text path to decide the same call again, so none is raised past this
/// point.
fn decided<'py>(py: Python<'py>, result: PyResult<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    result.map_err(|e| match e.is_instance_of::<PyTypeError>(py) {
        true => pyo3::exceptions::PyRuntimeError::new_err(format!("building the decision failed after deciding: {e}")),
        false => e,
    })
}

impl Engine {
    /// The request for a call with `args` by `chain` (the caller sets the rest of the call):
    /// the held one when `chain` holds the very token objects it was made for, else a new one;
    /// and the token objects to hold it under afterwards (none when `chain` is not a plain list
    /// or tuple of `str`). Arguments that are not plain JSON-shaped values raise `TypeError`:
    /// the Python half then sends the whole request as JSON text, which reads them exactly as
    /// `json.dumps` writes them.
    fn request(
        &self,
        chain: &Bound<'_, PyAny>,
        args: &Bound<'_, PyAny>,
    ) -> PyResult<(Option<Vec<Py<PyString>>>, AuthorizationRequest)> {
        let held = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            match held.as_ref() {
                Some(h) if convert::same_tokens(chain, &h.tokens) => held.take(),
                _ => None,
            }
        };
        let (tokens, mut request) = match held {
            Some(h) => (Some(h.tokens), h.request),
            None => (convert::token_objects(chain), AuthorizationRequest::new(convert::chain(chain)?, "", Value::Null)),
        };
        if !convert::args_into(args, &mut request.args) {
            return Err(PyTypeError::new_err("the arguments are not plain JSON values: send them as text"));
        }
        Ok((tokens, request))
    }

    /// Holds `request` (cleared) for the next call with the chain of `tokens`.
    fn keep(&self, tokens: Option<Vec<Py<PyString>>>, mut request: AuthorizationRequest) {
        let Some(tokens) = tokens else { return };
        request.clear_call();
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(Held { tokens, request });
    }
}

/// Registers the Python half's classes: what `Engine.authorize` builds its results as.
#[pyfunction]
fn register(
    py: Python<'_>,
    decision: Bound<'_, PyType>,
    reason: Bound<'_, PyType>,
    enforced: Bound<'_, PyType>,
    enforcement: Bound<'_, PyType>,
) -> PyResult<()> {
    convert::register(py, convert::Classes::new(decision, reason, enforced, enforcement)?);
    Ok(())
}

/// Runs an operation of the core's table that needs no engine.
#[pyfunction]
fn call(py: Python<'_>, op: String, input: String) -> PyResult<String> {
    py.detach(|| json_api::call(None, &op, &input)).map_err(to_py)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(register, m)?)?;
    Ok(())
}
