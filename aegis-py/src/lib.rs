//! The native half of the Python package `aegis`: the core's one operation table as two
//! callables, and `Engine.authorize` itself. Everything here converts values and maps errors;
//! the Python half (`aegis/__init__.py`) turns JSON into typed objects and error JSON into
//! exception classes, and lends `authorize` those classes, its JSON text path and its
//! OpenTelemetry lookup ([`register`]), so that a call runs no Python frame of the package.

mod convert;
mod decision;
mod gil;

use std::sync::{Arc, Mutex, PoisonError};

use aegis_sod::json_api::{self, error_json};
use aegis_sod::{AuthorizationRequest, ResourceRef};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use serde_json::Value;

create_exception!(_native, NativeError, PyException, "An error from the Aegis core: `args[0]` is its JSON.");

fn to_py(e: aegis_sod::Error) -> PyErr {
    NativeError::new_err(error_json(&e))
}

/// What the Python half lends `Engine.authorize` (registered once at import).
pub(crate) struct Hooks {
    /// `from_native(NativeError)`: the core's error as its exception class.
    from_native: Py<PyAny>,
    /// `_authorize_text(engine, op, chain, tool, args, resource, proof, approval_token,
    /// traceparent, tool_call_id)`: the call sent as JSON text, its result typed.
    authorize_text: Py<PyAny>,
    /// `_host_traceparent()`: the W3C `traceparent` of the caller's current span, or `None`.
    host_traceparent: Py<PyAny>,
    /// `Decision`'s methods with logic, each taking the decision first: `allowed`,
    /// `enforce(args)`, `_json()`, `repr`; and `_from_json(data)`.
    decision_allowed: Py<PyAny>,
    decision_enforce: Py<PyAny>,
    decision_json: Py<PyAny>,
    decision_repr: Py<PyAny>,
    decision_from_json: Py<PyAny>,
}

static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

pub(crate) fn hooks(py: Python<'_>) -> PyResult<&Hooks> {
    HOOKS.get(py).ok_or_else(|| PyRuntimeError::new_err("aegis._native.register was not called"))
}

/// The core's error raised as the Python half's exception class for its code.
fn raised(py: Python<'_>, hooks: &Hooks, e: &aegis_sod::Error) -> PyErr {
    let native = NativeError::new_err(error_json(e)).into_value(py);
    match hooks.from_native.bind(py).call1((native,)) {
        Ok(exception) => PyErr::from_value(exception),
        Err(failed) => failed,
    }
}

/// How an engine finds the caller's trace context for a call that passes no `traceparent`.
enum Tracing {
    /// OpenTelemetry is not installed: there is none.
    Off,
    /// OpenTelemetry keeps its current context in a `ContextVar` (its default runtime context),
    /// whose bound `get` this is: the host is asked for a `traceparent` only while that context
    /// holds something (it answers `None` for an empty one).
    Peek(Py<PyAny>),
    /// OpenTelemetry is installed with a context kept elsewhere: the host is asked every call.
    Ask,
}

/// One Aegis engine. Safe to share between threads; the GIL is released while it works. The
/// package's `aegis.Engine` is this class, subclassed.
#[pyclass(frozen, subclass, module = "aegis._native")]
struct Engine {
    inner: aegis_sod::Engine,
    /// The request of the last call, with the token objects of its chain: an agent presents the
    /// same chain (the same `str` objects) call after call, and its request is then filled
    /// again rather than built (the tokens not copied, the arguments read in place). A call
    /// made while another thread holds it builds its own.
    held: Mutex<Option<Box<Held>>>,
    tracing: Tracing,
}

/// A call's request with the token objects of its chain (none when the chain is not a plain
/// list or tuple of `str`), kept between calls cleared (see `AuthorizationRequest::clear_call`).
/// Boxed: it moves between the engine and a call several times per call.
struct Held {
    tokens: Option<Vec<Py<PyString>>>,
    request: AuthorizationRequest,
}

/// The two operations `authorize` runs natively.
#[derive(Clone, Copy)]
enum Op {
    Authorize,
    AuthorizeEnforced,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Authorize => "authorize",
            Op::AuthorizeEnforced => "authorize_enforced",
        }
    }
}

/// One call's arguments as Python passed them.
struct Call<'a, 'py> {
    chain: &'a Bound<'py, PyAny>,
    tool: &'a Bound<'py, PyAny>,
    args: &'a Bound<'py, PyAny>,
    resource: Option<&'a Bound<'py, PyAny>>,
    proof: Option<&'a Bound<'py, PyAny>>,
    approval_token: Option<&'a Bound<'py, PyAny>>,
    traceparent: Option<&'a Bound<'py, PyAny>>,
    tool_call_id: Option<&'a Bound<'py, PyAny>>,
}

#[pymethods]
impl Engine {
    /// An engine from the core's `EngineConfig` (JSON); `notifier` is called with each new
    /// pending approval (JSON). `otel` says OpenTelemetry is installed, and `otel_context` is
    /// the `ContextVar` holding its current context, when it keeps one.
    #[new]
    #[pyo3(signature = (config, notifier=None, otel=false, otel_context=None))]
    fn new(
        py: Python<'_>,
        config: String,
        notifier: Option<Py<PyAny>>,
        otel: bool,
        otel_context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
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
        let tracing = match (otel, otel_context) {
            (false, _) => Tracing::Off,
            (true, Some(var)) => Tracing::Peek(var.bind(py).getattr("get")?.unbind()),
            (true, None) => Tracing::Ask,
        };
        Ok(Self { inner, held: Mutex::new(None), tracing })
    }

    /// Runs engine operation `op` of the core's table on `input` (JSON), returning JSON.
    #[pyo3(name = "_call")]
    fn call(&self, py: Python<'_>, op: String, input: String) -> PyResult<String> {
        py.detach(|| json_api::call(Some(&self.inner), &op, &input)).map_err(to_py)
    }

    /// Decides on one call; problems with credentials or policies are a `deny`, not an error.
    ///
    /// With OpenTelemetry installed, the current span's context is passed on (W3C
    /// `traceparent`), so the engine's span nests under the caller's; `traceparent` sets it
    /// explicitly. `tool_call_id` is the agent framework's id for the call
    /// (`gen_ai.tool.call.id` on the span and in the audit record).
    #[pyo3(signature = (chain, tool, args, *, resource=None, proof=None, approval_token=None, traceparent=None, tool_call_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn authorize<'py>(
        slf: &Bound<'py, Self>,
        chain: &Bound<'py, PyAny>,
        tool: &Bound<'py, PyAny>,
        args: &Bound<'py, PyAny>,
        resource: Option<&Bound<'py, PyAny>>,
        proof: Option<&Bound<'py, PyAny>>,
        approval_token: Option<&Bound<'py, PyAny>>,
        traceparent: Option<&Bound<'py, PyAny>>,
        tool_call_id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let call = Call { chain, tool, args, resource, proof, approval_token, traceparent, tool_call_id };
        slf.get().decide(slf, Op::Authorize, &call)
    }

    /// Decides on one call and returns the core's enforcement with it: what guards act on
    /// (see `args_to_run`). Trace context and `tool_call_id` as for `authorize`.
    #[pyo3(signature = (chain, tool, args, *, resource=None, proof=None, approval_token=None, traceparent=None, tool_call_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn authorize_enforced<'py>(
        slf: &Bound<'py, Self>,
        chain: &Bound<'py, PyAny>,
        tool: &Bound<'py, PyAny>,
        args: &Bound<'py, PyAny>,
        resource: Option<&Bound<'py, PyAny>>,
        proof: Option<&Bound<'py, PyAny>>,
        approval_token: Option<&Bound<'py, PyAny>>,
        traceparent: Option<&Bound<'py, PyAny>>,
        tool_call_id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let call = Call { chain, tool, args, resource, proof, approval_token, traceparent, tool_call_id };
        slf.get().decide(slf, Op::AuthorizeEnforced, &call)
    }
}

/// The result of a call that has decided (and may have committed): a `TypeError` now would read
/// as a refusal of the call's values, so none is raised past this point.
fn decided<'py>(py: Python<'py>, result: PyResult<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    result.map_err(|e| match e.is_instance_of::<PyTypeError>(py) {
        true => PyRuntimeError::new_err(format!("building the decision failed after deciding: {e}")),
        false => e,
    })
}

impl Engine {
    /// Runs `op` on `call`: natively when every value is plain, else as JSON text (the Python
    /// half's path, which reads anything `json.dumps` writes, exactly as it writes it).
    fn decide<'py>(&self, slf: &Bound<'py, Self>, op: Op, call: &Call<'_, 'py>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let hooks = hooks(py)?;
        let traceparent = match call.traceparent {
            Some(given) => Some(given.clone()),
            None => self.host_traceparent(py, hooks)?,
        };
        let Some(held) = self.request(call, traceparent.as_ref())? else {
            let Call { chain, tool, args, resource, proof, approval_token, tool_call_id, .. } = *call;
            let values = (slf, op.name(), chain, tool, args, resource, proof, approval_token, traceparent, tool_call_id);
            return hooks.authorize_text.bind(py).call1(values);
        };
        let request = &held.request;
        let result = match op {
            Op::Authorize => {
                let decision = gil::detached(py, || self.inner.authorize(request));
                decision.map_err(|e| raised(py, hooks, &e)).map(|d| (d, None))
            }
            Op::AuthorizeEnforced => {
                let decided_call = gil::detached(py, || self.inner.authorize(request).map(|d| (d.enforce(&request.args), d)));
                decided_call.map_err(|e| raised(py, hooks, &e)).map(|(e, d)| (d, Some(e)))
            }
        };
        self.keep(held);
        let (decision, enforcement) = result?;
        decided(
            py,
            match enforcement {
                None => convert::decision(py, &decision),
                Some(enforcement) => convert::enforced(py, &decision, &enforcement),
            },
        )
    }

    /// The caller's `traceparent`, asked of the host only when OpenTelemetry may hold one.
    fn host_traceparent<'py>(&self, py: Python<'py>, hooks: &Hooks) -> PyResult<Option<Bound<'py, PyAny>>> {
        let ask = match &self.tracing {
            Tracing::Off => false,
            // An empty context (no span, no baggage) has nothing to pass on; a variable that
            // cannot be read is left to the host.
            Tracing::Peek(get) => get.bind(py).call0().and_then(|c| c.is_truthy()).unwrap_or(true),
            Tracing::Ask => true,
        };
        if !ask {
            return Ok(None);
        }
        let traceparent = hooks.host_traceparent.bind(py).call0()?;
        Ok((!traceparent.is_none()).then_some(traceparent))
    }

    /// The request for `call` with `traceparent`: the held one when the call's chain holds the
    /// very token objects it was made for, else a new one. `Ok(None)` when a value is not plain (a
    /// token or argument that is not a JSON-shaped value, a tool or string option that is not
    /// text, a resource that is not a pair of texts): the call then goes as JSON text, which
    /// reads them exactly as `json.dumps` writes them. An error reading the chain that is not a
    /// `TypeError` (an interrupt, no memory) is raised.
    fn request(&self, call: &Call<'_, '_>, traceparent: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Box<Held>>> {
        let text = |value: Option<&Bound<'_, PyAny>>| -> Option<Option<String>> {
            match value {
                None => Some(None),
                Some(v) => v.extract::<String>().ok().map(Some),
            }
        };
        let tool = call.tool.cast::<PyString>().ok();
        let Some(tool) = tool.as_ref().and_then(|t| t.to_str().ok()) else { return Ok(None) };
        let resource = match call.resource {
            None => None,
            Some(r) => match r.extract::<(String, String)>() {
                Ok((kind, id)) => Some(ResourceRef::new(kind, id)),
                Err(_) => return Ok(None),
            },
        };
        let (Some(proof), Some(approval_token)) = (text(call.proof), text(call.approval_token)) else { return Ok(None) };
        let (Some(traceparent), Some(tool_call_id)) = (text(traceparent), text(call.tool_call_id)) else { return Ok(None) };
        let kept = {
            let mut slot = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(h) if h.tokens.as_deref().is_some_and(|t| convert::same_tokens(call.chain, t)) => slot.take(),
                _ => None,
            }
        };
        let mut held = match kept {
            Some(held) => held,
            None => {
                let chain = match convert::chain(call.chain) {
                    Ok(chain) => chain,
                    Err(e) if e.is_instance_of::<PyTypeError>(call.chain.py()) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let request = AuthorizationRequest::new(chain, "", Value::Null);
                Box::new(Held { tokens: convert::token_objects(call.chain), request })
            }
        };
        if !convert::args_into(call.args, &mut held.request.args) {
            return Ok(None);
        }
        held.request.set_call(tool, resource, proof, approval_token, traceparent, tool_call_id);
        Ok(Some(held))
    }

    /// Holds `held` (its request cleared) for the next call with its chain's tokens.
    fn keep(&self, mut held: Box<Held>) {
        if held.tokens.is_none() {
            return;
        }
        held.request.clear_call();
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(held);
    }
}

/// Registers what the Python half lends: the classes `Engine.authorize` builds a decision's
/// parts as, and the functions of [`Hooks`], in its order. A second registration is ignored.
#[pyfunction]
fn register(
    py: Python<'_>,
    reason: Bound<'_, PyType>,
    enforced: Bound<'_, PyType>,
    enforcement: Bound<'_, PyType>,
    hooks: [Py<PyAny>; 8],
) -> PyResult<()> {
    convert::register(py, convert::Classes::new(reason, enforced, enforcement)?);
    let [from_native, authorize_text, host_traceparent, decision_allowed, decision_enforce, decision_json, decision_repr, decision_from_json] =
        hooks;
    let hooks = Hooks {
        from_native,
        authorize_text,
        host_traceparent,
        decision_allowed,
        decision_enforce,
        decision_json,
        decision_repr,
        decision_from_json,
    };
    let _ = HOOKS.set(py, hooks);
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
    m.add_class::<decision::Decision>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(register, m)?)?;
    Ok(())
}
