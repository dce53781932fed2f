//! Python values to and from the core's types without JSON text: the arguments of a call become
//! a `serde_json::Value` directly, and a `Decision` becomes the Python half's frozen dataclasses
//! directly (built the way `Decision._from_json` builds them, field for field).
//!
//! Only plain JSON-shaped values are converted here; anything else (a subclass, a frozen view, a
//! key that is not a `str`, a float that is not finite, an int outside 64 bits, nesting deeper
//! than the core's parser allows, a string with a lone surrogate) returns `None`, and the Python
//! half takes the JSON-text path for the whole request, with exactly `json.dumps`'s semantics.
//! So the fast path can never accept what the text path refuses, nor read a value differently.

use aegis_sod::{Decision, Enforcement, Reason};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use pyo3::{intern, IntoPyObjectExt};
use serde_json::{Map, Number, Value};
use std::sync::Mutex;

/// The deepest nesting of arrays and objects the text path reads in `args`: serde_json refuses
/// a 128th level, and the request object around `args` is the first. Deeper arguments are
/// handed to the text path, which refuses them.
const MAX_DEPTH: usize = 126;

/// A chain of tokens: a `list` or `tuple` of `str` read item by item (no iterator protocol),
/// anything else (any other sequence) as PyO3 extracts a `Vec<String>`. A token that is not an
/// exact `str`, or not valid UTF-8 (a lone surrogate), raises `TypeError`: the Python half then
/// sends the request as text, which refuses it as it refuses any such request.
pub(crate) fn chain(chain: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let token = |t: Bound<'_, PyAny>| -> PyResult<String> {
        let text = t.cast_exact::<PyString>().ok().and_then(|s| s.to_str().ok().map(str::to_owned));
        text.ok_or_else(|| PyTypeError::new_err("a chain token that is not plain text: send it as text"))
    };
    if let Ok(list) = chain.cast_exact::<PyList>() {
        return list.iter().map(token).collect();
    }
    if let Ok(tuple) = chain.cast_exact::<PyTuple>() {
        return tuple.iter().map(token).collect();
    }
    // A sequence that is not of text is the text path's to refuse; an error its iteration
    // raises (an interrupt, no memory) is the caller's.
    chain.extract().map_err(|e: PyErr| match e.is_instance_of::<PyTypeError>(chain.py()) {
        true => PyTypeError::new_err("a chain that is not plain text: send it as text"),
        false => e,
    })
}

/// Whether `chain` is a list or tuple of exactly the `str` objects `tokens` (by identity: a
/// `str` never changes, so the same objects are the same text).
pub(crate) fn same_tokens(chain: &Bound<'_, PyAny>, tokens: &[Py<PyString>]) -> bool {
    if let Ok(list) = chain.cast_exact::<PyList>() {
        return list.len() == tokens.len()
            && tokens.iter().enumerate().all(|(i, t)| list.get_item(i).is_ok_and(|item| item.is(t)));
    }
    if let Ok(tuple) = chain.cast_exact::<PyTuple>() {
        return tuple.len() == tokens.len()
            && tokens.iter().enumerate().all(|(i, t)| tuple.get_item(i).is_ok_and(|item| item.is(t)));
    }
    false
}

/// The token objects of `chain` when it is a list or tuple of exact `str`s (what
/// [`same_tokens`] recognizes again); `None` otherwise.
pub(crate) fn token_objects(chain: &Bound<'_, PyAny>) -> Option<Vec<Py<PyString>>> {
    let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = chain.cast_exact::<PyList>() {
        list.iter().collect()
    } else {
        chain.cast_exact::<PyTuple>().ok()?.iter().collect()
    };
    items.into_iter().map(|t| t.cast_exact::<PyString>().ok().map(|s| s.clone().unbind())).collect()
}

/// Python's arguments read into `slot` in place where its shape allows (strings into its
/// strings, lists into its arrays, a dict into an object with the same keys in the same order):
/// an agent calls a tool with arguments of one shape call after call, and reading them afresh
/// allocates every key and string. What is read is what [`to_value`] reads, whatever `slot`
/// held; `false` when the arguments are not plain (then `slot` holds part of the old and part
/// of the new).
pub(crate) fn args_into(args: &Bound<'_, PyAny>, slot: &mut Value) -> bool {
    args.is_exact_instance_of::<PyDict>() && value_into(args, slot, 0).is_some()
}

fn value_into(obj: &Bound<'_, PyAny>, slot: &mut Value, depth: usize) -> Option<()> {
    match slot {
        Value::String(old) => {
            if let Ok(s) = obj.cast_exact::<PyString>() {
                let text = s.to_str().ok()?;
                old.clear();
                old.push_str(text);
                return Some(());
            }
        }
        Value::Object(map) if depth < MAX_DEPTH => {
            if let Ok(d) = obj.cast_exact::<PyDict>() {
                if d.len() == map.len() {
                    let mut same = true;
                    for ((k, v), (key, value)) in d.iter().zip(map.iter_mut()) {
                        let k = k.cast_exact::<PyString>().ok()?.to_str().ok()?;
                        if k != key {
                            same = false;
                            break;
                        }
                        value_into(&v, value, depth + 1)?;
                    }
                    if same {
                        return Some(());
                    }
                }
            }
        }
        Value::Array(items) if depth < MAX_DEPTH => {
            if let Ok(l) = obj.cast_exact::<PyList>() {
                return items_into(l.len(), |i| l.get_item(i).ok(), items, depth);
            }
            if let Ok(t) = obj.cast_exact::<PyTuple>() {
                return items_into(t.len(), |i| t.get_item(i).ok(), items, depth);
            }
        }
        _ => {}
    }
    *slot = to_value(obj, depth)?;
    Some(())
}

/// The `len` items of a list or tuple (`get` reads one) into `items`.
fn items_into<'py>(
    len: usize,
    get: impl Fn(usize) -> Option<Bound<'py, PyAny>>,
    items: &mut Vec<Value>,
    depth: usize,
) -> Option<()> {
    items.truncate(len);
    for i in 0..len {
        let item = get(i)?;
        match items.get_mut(i) {
            Some(slot) => value_into(&item, slot, depth + 1)?,
            None => items.push(to_value(&item, depth + 1)?),
        }
    }
    Some(())
}

/// `obj` as a JSON value; `depth` counts the arrays and objects around it.
fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> Option<Value> {
    if obj.is_none() {
        return Some(Value::Null);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return s.to_str().ok().map(|s| Value::String(s.to_owned()));
    }
    // `bool` before `int`: in Python a bool is an int.
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Some(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast_exact::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Some(Value::Number(v.into()));
        }
        return i.extract::<u64>().ok().map(|v| Value::Number(v.into()));
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Number::from_f64(f.value()).map(Value::Number);
    }
    if depth >= MAX_DEPTH {
        return None; // a container one level too deep (or anything else: the text path decides)
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key = k.cast_exact::<PyString>().ok()?.to_str().ok()?.to_owned();
            map.insert(key, to_value(&v, depth + 1)?);
        }
        return Some(Value::Object(map));
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return l.iter().map(|v| to_value(&v, depth + 1)).collect::<Option<Vec<_>>>().map(Value::Array);
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return t.iter().map(|v| to_value(&v, depth + 1)).collect::<Option<Vec<_>>>().map(Value::Array);
    }
    None
}

/// The Python half's classes, registered once at import (`_native.register`).
pub(crate) struct Classes {
    reason: Py<PyType>,
    enforced: Py<PyType>,
    enforcement: Py<PyType>,
    mapping_proxy: Py<PyType>,
    /// `object.__new__`: an instance without `__init__`.
    object_new: Py<PyAny>,
    /// Recent reasons as the tuples of `Reason` they become: a warm call gives the same reasons
    /// (the same policy, the same message) call after call, and the objects are immutable.
    reasons: Mutex<Vec<(Vec<Reason>, Py<PyTuple>)>>,
    /// The last policy version, as a Python string.
    policy_version: Mutex<Option<(String, Py<PyString>)>>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// Registers the classes decisions are built as; the second registration is ignored.
pub(crate) fn register(py: Python<'_>, classes: Classes) {
    let _ = CLASSES.set(py, classes);
}

impl Classes {
    /// Reads the classes from the Python half's objects.
    pub(crate) fn new(reason: Bound<'_, PyType>, enforced: Bound<'_, PyType>, enforcement: Bound<'_, PyType>) -> PyResult<Self> {
        let py = reason.py();
        let mapping_proxy = py.import("types")?.getattr("MappingProxyType")?.cast_into::<PyType>()?.unbind();
        let object_new = py.get_type::<PyAny>().getattr("__new__")?.unbind();
        Ok(Self {
            reason: reason.unbind(),
            enforced: enforced.unbind(),
            enforcement: enforcement.unbind(),
            mapping_proxy,
            object_new,
            reasons: Mutex::new(Vec::new()),
            policy_version: Mutex::new(None),
        })
    }
}

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get(py).ok_or_else(|| PyRuntimeError::new_err("aegis._native.register was not called"))
}

/// An instance of frozen dataclass `cls` with `fields` set, without running `__init__` (whose
/// frozen `__setattr__` is most of a dataclass's construction cost): what `cls(**fields)` makes.
fn instance<'py>(
    c: &Classes,
    cls: &Bound<'py, PyType>,
    fields: &[(&Bound<'py, PyString>, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let obj = c.object_new.bind(py).call1((cls,))?;
    let dict = obj.getattr(intern!(py, "__dict__"))?.cast_into::<PyDict>()?;
    for (name, value) in fields {
        dict.set_item(name, value)?;
    }
    Ok(obj)
}

fn opt_str<'py>(py: Python<'py>, s: &Option<String>) -> Bound<'py, PyAny> {
    match s {
        Some(s) => PyString::new(py, s).into_any(),
        None => py.None().into_bound(py),
    }
}

/// A JSON value as the Python half's `freeze(json.loads(...))` gives it: dicts as read-only
/// mappings, arrays as tuples.
fn frozen<'py>(py: Python<'py>, c: &Classes, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py)?,
            (None, Some(u)) => u.into_bound_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?,
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            PyTuple::new(py, items.iter().map(|v| frozen(py, c, v)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, frozen(py, c, v)?)?;
            }
            c.mapping_proxy.bind(py).call1((dict,))?
        }
    })
}

fn reason<'py>(py: Python<'py>, c: &Classes, r: &Reason) -> PyResult<Bound<'py, PyAny>> {
    let link = match r.link {
        Some(l) => l.into_bound_py_any(py)?,
        None => py.None().into_bound(py),
    };
    instance(
        c,
        c.reason.bind(py),
        &[
            (intern!(py, "code"), PyString::intern(py, r.code.as_str()).into_any()),
            (intern!(py, "message"), PyString::new(py, &r.message).into_any()),
            (intern!(py, "policy_id"), opt_str(py, &r.policy_id)),
            (intern!(py, "link"), link),
        ],
    )
}

/// How many distinct reason lists are kept (the cache is cleared when full).
const REASONS_KEPT: usize = 64;

fn reasons<'py>(py: Python<'py>, c: &Classes, reasons: &[Reason]) -> PyResult<Bound<'py, PyTuple>> {
    {
        let kept = c.reasons.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, tuple)) = kept.iter().find(|(r, _)| r == reasons) {
            return Ok(tuple.bind(py).clone());
        }
    }
    // Built without the lock: allocating Python objects may run the garbage collector, and a
    // finalizer that decides would otherwise wait for this lock on this very thread.
    let tuple = PyTuple::new(py, reasons.iter().map(|r| reason(py, c, r)).collect::<PyResult<Vec<_>>>()?)?;
    let mut kept = c.reasons.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= REASONS_KEPT {
        kept.clear();
    }
    kept.push((reasons.to_vec(), tuple.clone().unbind()));
    Ok(tuple)
}

fn policy_version<'py>(py: Python<'py>, c: &Classes, version: &str) -> Bound<'py, PyString> {
    let mut last = c.policy_version.lock().unwrap_or_else(|e| e.into_inner());
    match &*last {
        Some((text, string)) if text == version => string.bind(py).clone(),
        _ => {
            let string = PyString::new(py, version);
            *last = Some((version.to_owned(), string.clone().unbind()));
            string
        }
    }
}

/// The outcome's name, interned once per name.
fn outcome<'py>(py: Python<'py>, o: aegis_sod::Outcome) -> Bound<'py, PyString> {
    use aegis_sod::Outcome::*;
    match o {
        Allow => intern!(py, "allow").clone(),
        Deny => intern!(py, "deny").clone(),
        Sanitize => intern!(py, "sanitize").clone(),
        ApprovalNeeded => intern!(py, "approval_needed").clone(),
        // An outcome this binding does not know yet: by its name.
        #[allow(unreachable_patterns)]
        other => PyString::intern(py, other.as_str()),
    }
}

/// A decision as `aegis.Decision`: a warm call's fields are the same objects as the last call's
/// (the outcome's interned name, the reasons' tuple, the policy version's string) but its id.
pub(crate) fn decision<'py>(py: Python<'py>, d: &Decision) -> PyResult<Bound<'py, PyAny>> {
    let c = classes(py)?;
    let none = || py.None().into_bound(py);
    let sanitized = match &d.sanitized_args {
        Some(v) => frozen(py, c, v)?,
        None => none(),
    };
    let candidate = match &d.candidate {
        Some(v) => frozen(py, c, &serde_json::to_value(v).map_err(|e| PyRuntimeError::new_err(e.to_string()))?)?,
        None => none(),
    };
    let fields = [
        outcome(py, d.outcome).into_any(),
        reasons(py, c, &d.reasons)?.into_any(),
        PyString::new(py, &d.decision_id).into_any(),
        policy_version(py, c, &d.policy_version).into_any(),
        PyBool::new(py, d.would_block).to_owned().into_any(),
        opt_str(py, &d.approval_id),
        sanitized,
        opt_str(py, &d.break_glass_id),
        candidate,
        opt_str(py, &d.receipt),
    ];
    Ok(Bound::new(py, crate::decision::Decision::of(fields))?.into_any())
}

/// A decision and its enforcement as the Python half's `Enforced`.
pub(crate) fn enforced<'py>(py: Python<'py>, d: &Decision, e: &Enforcement) -> PyResult<Bound<'py, PyAny>> {
    let c = classes(py)?;
    let none = || py.None().into_bound(py);
    let text = |s: &str| PyString::new(py, s).into_any();
    let (action, args, approval_id, code, message) = match e {
        Enforcement::Run { args } => ("run", frozen(py, c, args)?, none(), none(), none()),
        Enforcement::AwaitApproval { approval_id, message } => {
            ("await_approval", none(), text(approval_id), none(), text(message))
        }
        Enforcement::Refuse { code, message } => ("refuse", none(), none(), text(code.as_str()), text(message)),
        // An action this binding does not know: passed on by name, which every guard refuses.
        other => {
            let value = serde_json::to_value(other).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            let action = value.get("action").and_then(Value::as_str).unwrap_or("unknown").to_owned();
            return enforced_with(py, c, d, &action, none(), none(), none(), none());
        }
    };
    enforced_with(py, c, d, action, args, approval_id, code, message)
}

#[allow(clippy::too_many_arguments)]
fn enforced_with<'py>(
    py: Python<'py>,
    c: &Classes,
    d: &Decision,
    action: &str,
    args: Bound<'py, PyAny>,
    approval_id: Bound<'py, PyAny>,
    code: Bound<'py, PyAny>,
    message: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let enforcement = instance(
        c,
        c.enforcement.bind(py),
        &[
            (intern!(py, "action"), PyString::intern(py, action).into_any()),
            (intern!(py, "args"), args),
            (intern!(py, "approval_id"), approval_id),
            (intern!(py, "code"), code),
            (intern!(py, "message"), message),
        ],
    )?;
    instance(c, c.enforced.bind(py), &[(intern!(py, "decision"), decision(py, d)?), (intern!(py, "enforcement"), enforcement)])
}
