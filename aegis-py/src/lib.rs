//! The native half of the Python package `aegis`: the core's JSON boundary as Python callables.
//! Everything here converts strings and maps errors; the Python half (`aegis/__init__.py`)
//! turns JSON into typed objects and error codes into exception classes.

use std::sync::Arc;

use aegis_sod::ffi;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(_native, NativeError, PyException, "An error from the Aegis core: `args` is `(code, message)`.");

fn to_py(e: aegis_sod::Error) -> PyErr {
    NativeError::new_err((e.code().as_str(), e.message().to_owned()))
}

/// One Aegis engine. Safe to share between threads; the GIL is released while it works.
#[pyclass(frozen, module = "aegis._native")]
struct Engine {
    inner: aegis_sod::Engine,
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
            .detach(|| aegis_sod::json::from_str_strict(&config).and_then(|c| ffi::engine_with_notifier(c, notifier)))
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    fn authorize(&self, py: Python<'_>, request: String) -> PyResult<String> {
        py.detach(|| ffi::authorize_json(&self.inner, &request)).map_err(to_py)
    }

    fn approve(&self, py: Python<'_>, request: String) -> PyResult<String> {
        py.detach(|| ffi::approve_json(&self.inner, &request)).map_err(to_py)
    }

    fn reject(&self, py: Python<'_>, request: String) -> PyResult<String> {
        py.detach(|| ffi::reject_json(&self.inner, &request)).map_err(to_py)
    }

    fn pending_approvals(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| ffi::pending_approvals_json(&self.inner)).map_err(to_py)
    }

    fn approval(&self, py: Python<'_>, approval_id: String) -> PyResult<String> {
        py.detach(|| ffi::approval_json(&self.inner, &approval_id)).map_err(to_py)
    }

    fn ledger(&self, py: Python<'_>, task_id: String) -> PyResult<String> {
        py.detach(|| ffi::ledger_json(&self.inner, &task_id)).map_err(to_py)
    }

    fn end_task(&self, py: Python<'_>, task_id: String) -> PyResult<()> {
        py.detach(|| self.inner.end_task(&task_id)).map_err(to_py)
    }

    fn break_glass(&self, py: Python<'_>, request: String) -> PyResult<String> {
        py.detach(|| ffi::break_glass_json(&self.inner, &request)).map_err(to_py)
    }

    fn open_break_glass(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| ffi::open_break_glass_json(&self.inner)).map_err(to_py)
    }

    fn close_break_glass(&self, py: Python<'_>, grant_id: String, review_ref: String) -> PyResult<()> {
        py.detach(|| ffi::close_break_glass(&self.inner, &grant_id, &review_ref)).map_err(to_py)
    }

    fn reload_bundle(&self, py: Python<'_>, bundle_dir: String) -> PyResult<String> {
        py.detach(|| self.inner.reload_bundle(&bundle_dir)).map_err(to_py)
    }

    fn time_authorize(&self, py: Python<'_>, request: String, iterations: u32) -> PyResult<f64> {
        py.detach(|| ffi::time_authorize(&self.inner, &request, iterations)).map_err(to_py)
    }

    fn policy_version(&self) -> String {
        self.inner.policy_version()
    }
}

#[pyfunction]
#[pyo3(signature = (seed_hex=None))]
fn generate_key(seed_hex: Option<String>) -> PyResult<String> {
    ffi::generate_key_json(seed_hex.as_deref()).map_err(to_py)
}

#[pyfunction]
fn public_jwk(jwk: String) -> PyResult<String> {
    ffi::public_jwk_json(&jwk).map_err(to_py)
}

#[pyfunction]
fn issue(request: String) -> PyResult<String> {
    ffi::issue_json(&request).map_err(to_py)
}

#[pyfunction]
fn inspect(token: String) -> PyResult<String> {
    ffi::inspect_json(&token).map_err(to_py)
}

#[pyfunction]
fn create_proof(request: String) -> PyResult<String> {
    ffi::create_proof_json(&request).map_err(to_py)
}

#[pyfunction]
fn slack_message(pending: String) -> PyResult<String> {
    ffi::slack_message_json(&pending).map_err(to_py)
}

#[pyfunction]
fn call_digest(tool: String, args: String) -> PyResult<String> {
    ffi::call_digest_json(&tool, &args).map_err(to_py)
}

#[pyfunction]
fn error_codes() -> String {
    ffi::error_codes_json()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_function(wrap_pyfunction!(generate_key, m)?)?;
    m.add_function(wrap_pyfunction!(public_jwk, m)?)?;
    m.add_function(wrap_pyfunction!(issue, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(create_proof, m)?)?;
    m.add_function(wrap_pyfunction!(slack_message, m)?)?;
    m.add_function(wrap_pyfunction!(call_digest, m)?)?;
    m.add_function(wrap_pyfunction!(error_codes, m)?)?;
    Ok(())
}
