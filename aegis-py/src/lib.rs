//! The native half of the Python package `aegis`: the core's one operation table as two
//! callables. Everything here converts strings and maps errors; the Python half
//! (`aegis/__init__.py`) turns JSON into typed objects and error JSON into exception classes.

use std::sync::Arc;

use aegis_sod::json_api::{self, error_json};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(_native, NativeError, PyException, "An error from the Aegis core: `args[0]` is its JSON.");

fn to_py(e: aegis_sod::Error) -> PyErr {
    NativeError::new_err(error_json(&e))
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
            .detach(|| aegis_sod::from_str_strict(&config).and_then(|c| json_api::engine_with_notifier(c, notifier)))
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    /// Runs engine operation `op` of the core's table on `input` (JSON), returning JSON.
    fn call(&self, py: Python<'_>, op: String, input: String) -> PyResult<String> {
        py.detach(|| json_api::call(Some(&self.inner), &op, &input)).map_err(to_py)
    }
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
    Ok(())
}
