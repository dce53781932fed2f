//! `aegis.Decision`, a native class: a warm call's decision is one allocation, its fields the
//! same objects call after call but its id (a frozen dataclass took an instance, its dict, the
//! dict's update and a garbage-collector entry). It keeps the dataclass's surface: the fields by
//! keyword or position, read-only attributes, equality and hash over the fields, `repr`,
//! `__match_args__`, pickling, weak references, `FrozenInstanceError` on assignment, and
//! `copy.replace` (Python 3.13; `__replace__` before). Its methods with logic
//! (`allowed`, `enforce`, `_json`, `_from_json`, `repr`) are the Python half's, lent at
//! registration (see `Hooks`), so the logic lives once.

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple, PyType};

use crate::hooks;

/// The decision on one tool call. `outcome` is `allow`, `deny`, `sanitize` or
/// `approval_needed`.
#[pyclass(frozen, weakref, module = "aegis", name = "Decision")]
pub(crate) struct Decision {
    /// `allow`, `deny`, `sanitize` or `approval_needed`.
    #[pyo3(get)]
    outcome: Py<PyAny>,
    /// Why, in order (a tuple of `Reason`).
    #[pyo3(get)]
    reasons: Py<PyAny>,
    /// This decision's unique id (in the audit record and the approval it may ask for).
    #[pyo3(get)]
    decision_id: Py<PyAny>,
    /// The bundle that decided: `name@version+digest`.
    #[pyo3(get)]
    policy_version: Py<PyAny>,
    /// Whether a shadow policy would have blocked the call.
    #[pyo3(get)]
    would_block: Py<PyAny>,
    /// The pending approval an `approval_needed` outcome opened.
    #[pyo3(get)]
    approval_id: Py<PyAny>,
    /// The arguments a `sanitize` outcome lets the tool run with (a read-only mapping).
    #[pyo3(get)]
    sanitized_args: Py<PyAny>,
    /// The break-glass grant that allowed the call.
    #[pyo3(get)]
    break_glass_id: Py<PyAny>,
    /// What a candidate bundle in shadow rollout would have decided (`policy_version`,
    /// `outcome`, `policy_ids`, `would_block`); never the outcome.
    #[pyo3(get)]
    candidate: Py<PyAny>,
    /// For a permitting decision of an engine that issues receipts: the receipt the tool checks
    /// with `verify_receipt`.
    #[pyo3(get)]
    receipt: Py<PyAny>,
}

/// The fields, in the dataclass's order.
const FIELDS: [&str; 10] = [
    "outcome",
    "reasons",
    "decision_id",
    "policy_version",
    "would_block",
    "approval_id",
    "sanitized_args",
    "break_glass_id",
    "candidate",
    "receipt",
];

impl Decision {
    /// A decision of these fields (what `Decision(...)` makes, without its call).
    pub(crate) fn of(fields: [Bound<'_, PyAny>; 10]) -> Self {
        let [outcome, reasons, decision_id, policy_version, would_block, approval_id, sanitized_args, break_glass_id, candidate, receipt] =
            fields.map(Bound::unbind);
        Self {
            outcome,
            reasons,
            decision_id,
            policy_version,
            would_block,
            approval_id,
            sanitized_args,
            break_glass_id,
            candidate,
            receipt,
        }
    }

    fn fields<'py>(&self, py: Python<'py>) -> [Bound<'py, PyAny>; 10] {
        [
            &self.outcome,
            &self.reasons,
            &self.decision_id,
            &self.policy_version,
            &self.would_block,
            &self.approval_id,
            &self.sanitized_args,
            &self.break_glass_id,
            &self.candidate,
            &self.receipt,
        ]
        .map(|f| f.bind(py).clone())
    }

    fn tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.fields(py))
    }
}

#[pymethods]
impl Decision {
    /// A decision of these fields (an engine makes them; this is for tests and tools).
    #[new]
    #[pyo3(signature = (outcome, reasons, decision_id, policy_version, would_block=false, approval_id=None, sanitized_args=None, break_glass_id=None, candidate=None, receipt=None))]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        py: Python<'py>,
        outcome: Bound<'py, PyAny>,
        reasons: Bound<'py, PyAny>,
        decision_id: Bound<'py, PyAny>,
        policy_version: Bound<'py, PyAny>,
        would_block: bool,
        approval_id: Option<Bound<'py, PyAny>>,
        sanitized_args: Option<Bound<'py, PyAny>>,
        break_glass_id: Option<Bound<'py, PyAny>>,
        candidate: Option<Bound<'py, PyAny>>,
        receipt: Option<Bound<'py, PyAny>>,
    ) -> Self {
        let none = || py.None().into_bound(py);
        let would_block = PyBool::new(py, would_block).to_owned().into_any();
        Self::of([
            outcome,
            reasons,
            decision_id,
            policy_version,
            would_block,
            approval_id.unwrap_or_else(none),
            sanitized_args.unwrap_or_else(none),
            break_glass_id.unwrap_or_else(none),
            candidate.unwrap_or_else(none),
            receipt.unwrap_or_else(none),
        ])
    }

    /// The field names, for positional patterns (`case Decision("allow", ...)`).
    #[classattr]
    fn __match_args__(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        PyTuple::new(py, FIELDS)
    }

    /// Whether the tool may run (`allow` or `sanitize`), as the core's enforcement rules.
    #[getter]
    fn allowed(slf: &Bound<'_, Self>) -> PyResult<bool> {
        hooks(slf.py())?.decision_allowed.bind(slf.py()).call1((slf,))?.extract()
    }

    /// The reason codes, in order.
    #[getter]
    fn codes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let reasons = self.reasons.bind(py).try_iter()?;
        PyTuple::new(py, reasons.map(|r| r?.getattr(pyo3::intern!(py, "code"))).collect::<PyResult<Vec<_>>>()?)
    }

    /// The core's enforcement of this decision for a call with `args`: what a guard does.
    fn enforce<'py>(slf: &Bound<'py, Self>, args: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        hooks(slf.py())?.decision_enforce.bind(slf.py()).call1((slf, args))
    }

    /// This decision in the core's JSON form (`null` stands for an absent member).
    fn _json<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        hooks(slf.py())?.decision_json.bind(slf.py()).call1((slf,))
    }

    /// A decision from the core's JSON form.
    #[classmethod]
    fn _from_json<'py>(cls: &Bound<'py, PyType>, data: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        hooks(cls.py())?.decision_from_json.bind(cls.py()).call1((data,))
    }

    fn __repr__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        hooks(slf.py())?.decision_repr.bind(slf.py()).call1((slf,))
    }

    fn __richcmp__<'py>(&self, other: &Bound<'py, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast_exact::<Self>() else { return Ok(py.NotImplemented()) };
        let wanted = match op {
            CompareOp::Eq => true,
            CompareOp::Ne => false,
            _ => return Ok(py.NotImplemented()),
        };
        let equal = self.tuple(py)?.eq(other.get().tuple(py)?)?;
        Ok(PyBool::new(py, equal == wanted).to_owned().into_any().unbind())
    }

    /// The hash of the fields (a decision with read-only mappings in it has none, as a frozen
    /// dataclass's).
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.tuple(py)?.hash()
    }

    /// Refused as a frozen dataclass refuses it.
    fn __setattr__(&self, py: Python<'_>, name: &str, _value: Bound<'_, PyAny>) -> PyResult<()> {
        Err(frozen_instance(py, &format!("cannot assign to field '{name}'")))
    }

    /// Refused as a frozen dataclass refuses it.
    fn __delattr__(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        Err(frozen_instance(py, &format!("cannot delete field '{name}'")))
    }

    /// Pickled as `Decision(*fields)`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        Ok((slf.get_type(), slf.get().tuple(slf.py())?))
    }

    /// A copy with `changes` to its fields (`copy.replace`, as for a dataclass).
    #[pyo3(signature = (**changes))]
    fn __replace__(&self, py: Python<'_>, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut fields = self.fields(py);
        if let Some(changes) = changes {
            for (name, value) in changes.iter() {
                let name = name.cast_into::<PyString>()?;
                let name = name.to_str()?;
                let Some(at) = FIELDS.iter().position(|f| *f == name) else {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!("Decision has no field `{name}`")));
                };
                fields[at] = value;
            }
        }
        Ok(Self::of(fields))
    }
}

/// `dataclasses.FrozenInstanceError(message)`, what a frozen dataclass raises on assignment.
fn frozen_instance(py: Python<'_>, message: &str) -> PyErr {
    match py.import("dataclasses").and_then(|m| m.getattr("FrozenInstanceError")).and_then(|t| Ok(t.cast_into::<PyType>()?)) {
        Ok(class) => PyErr::from_type(class, message.to_owned()),
        Err(e) => e,
    }
}
