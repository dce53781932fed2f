//! The Cedar context of a call, built directly from Rust values (Cedar's JSON context path is
//! an order of magnitude slower than `Context::from_pairs`).
//!
//! The attributes and their meaning are documented in `docs/CONTEXT.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Context, RestrictedExpression};
use cedar_policy_core::ast::{Context as CoreContext, Value};
use serde_json::Value as Json;
use smol_str::SmolStr;

use crate::error::{Error, Result};
use crate::identity::VerifiedChain;
use crate::policy::FormerlyBy;
use crate::state::{key_holder, KEY_HOLDER_PREFIX};

/// The context attributes that depend only on the chain, built once per verified chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ChainContext(Vec<(SmolStr, Value)>);

impl ChainContext {
    /// The chain's attributes: `agent_id`, `initiator`, `lineage`, `depth`, `task_id`,
    /// `intent` and, below a root, `parent_agent_id`.
    pub(crate) fn of(chain: &VerifiedChain) -> Self {
        let mut out = Vec::with_capacity(7);
        out.extend([
            (SmolStr::new_static("agent_id"), Value::from(chain.agent_id.as_str())),
            (SmolStr::new_static("initiator"), Value::from(chain.initiator.as_str())),
            (SmolStr::new_static("lineage"), string_set(chain.lineage.iter().map(String::as_str))),
            (SmolStr::new_static("depth"), Value::from(i64::try_from(chain.depth).unwrap_or(i64::MAX))),
            (SmolStr::new_static("task_id"), Value::from(chain.task_id.as_str())),
            (SmolStr::new_static("intent"), Value::from(chain.intent.as_str())),
        ]);
        if let Some(parent) = &chain.parent_agent_id {
            out.push((SmolStr::new_static("parent_agent_id"), Value::from(parent.as_str())));
        }
        Self(out)
    }
}

/// The attributes that do not depend on the call: the chain's, `task` and `break_glass`, and a
/// slot for each attribute every call sets (`now`, `predicates`, `args`). The engine caches it
/// per task and clones it for each call, whose attributes then replace the slots' values in
/// place: a clone of the map with its slots, then a lookup per slot, cost less than inserting
/// into the map (which searched and shifted for each).
#[derive(Debug, Clone)]
pub(crate) struct BaseContext(Arc<BTreeMap<SmolStr, Value>>);

/// The attributes every call sets, which a [`BaseContext`] holds slots for.
const CALL_SLOTS: [&str; 3] = ["now", "predicates", "args"];

/// What the task's ledger says, as the `task` record sees it.
pub(crate) struct TaskFacts<'a> {
    /// `(agent, tool)` pairs of every duty performed in the task.
    pub duties: &'a BTreeSet<(String, String)>,
}

impl BaseContext {
    /// The chain's attributes, the `task` record seen from this chain, and `break_glass`.
    pub(crate) fn new(chain: &VerifiedChain, task: TaskFacts<'_>, break_glass: bool) -> Self {
        let mut map: BTreeMap<SmolStr, Value> = chain.context.0.iter().cloned().collect();
        map.insert(SmolStr::new_static("task"), task_record(task.duties, chain));
        map.insert(SmolStr::new_static("break_glass"), Value::from(break_glass));
        Self::with_slots(map)
    }

    /// `attributes` and the call's slots.
    fn with_slots(mut attributes: BTreeMap<SmolStr, Value>) -> Self {
        for slot in CALL_SLOTS {
            // Replaced by every call before it is evaluated (see `build`).
            attributes.insert(SmolStr::new_static(slot), Value::from(false));
        }
        Self(Arc::new(attributes))
    }
}

/// The `task` context record: what was already done in the task, seen from this chain.
///
/// A duty counts for this chain when its holder is the agent or the agent's key (a holder
/// acting under another name is still itself); for the lineage, any agent or key of the chain.
/// The tools performed in the task by the caller (or its key), by anyone in its chain, or by
/// anyone: the one rule behind `context.task` and the `formerly` facts.
pub(crate) fn duties_by<'d>(
    duties: &'d BTreeSet<(String, String)>,
    chain: &VerifiedChain,
    by: FormerlyBy,
) -> impl Iterator<Item = &'d str> {
    let leaf_key = chain.kids.last().map(|k| key_holder(k));
    let chain_keys: Vec<String> = chain.kids.iter().map(|k| key_holder(k)).collect();
    let (agent, lineage) = (chain.agent_id.clone(), chain.lineage.clone());
    duties
        .iter()
        .filter(move |(a, _)| match by {
            FormerlyBy::Agent => a == &agent || leaf_key.as_ref() == Some(a),
            FormerlyBy::Lineage => a == &agent || lineage.iter().any(|l| l == a) || chain_keys.contains(a),
            FormerlyBy::Task => true,
        })
        .map(|(_, t)| t.as_str())
}

fn task_record(duties: &BTreeSet<(String, String)>, chain: &VerifiedChain) -> Value {
    let actors = duties.iter().map(|(a, _)| a.as_str()).filter(|a| !a.starts_with(KEY_HOLDER_PREFIX));
    Value::record(
        [
            ("duties_by_agent", string_set(duties_by(duties, chain, FormerlyBy::Agent))),
            ("duties_by_lineage", string_set(duties_by(duties, chain, FormerlyBy::Lineage))),
            ("performed", string_set(duties_by(duties, chain, FormerlyBy::Task))),
            ("actors", string_set(actors)),
        ],
        None,
    )
}

/// A temporal fact's value (`context.temporal.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Temporal {
    /// A count or a sum.
    Number(i64),
    /// Whether something happened before.
    Holds(bool),
}

/// The request being approved, as the `approval` record of an `aegis.approve` decision.
pub(crate) struct ApprovalFacts<'a> {
    pub approval_id: &'a str,
    pub tool: &'a str,
    pub requester: &'a str,
    pub initiator: &'a str,
    pub task_id: &'a str,
    pub roles: &'a [String],
    pub policy_ids: &'a [String],
}

impl ApprovalFacts<'_> {
    fn to_value(&self) -> Value {
        Value::record(
            [
                ("approval_id", Value::from(self.approval_id)),
                ("tool", Value::from(self.tool)),
                ("requester", Value::from(self.requester)),
                ("initiator", Value::from(self.initiator)),
                ("task_id", Value::from(self.task_id)),
                ("roles", string_set(self.roles.iter().map(String::as_str))),
                ("policy_ids", string_set(self.policy_ids.iter().map(String::as_str))),
            ],
            None,
        )
    }
}

/// The per-call attributes, added to a [`BaseContext`].
pub(crate) struct CallContext<'a> {
    pub args: &'a Json,
    pub now: i64,
    pub approval: Option<ApprovalFacts<'a>>,
    /// The bundle's temporal facts; none: no `temporal` attribute.
    pub temporal: Vec<(SmolStr, Temporal)>,
}

/// Builds the context as Cedar values directly: the restricted-expression path
/// (`Context::from_pairs`) re-interprets every literal and costs as much as evaluating the
/// policies. Arguments holding decimals take that path, since a decimal is an extension value.
pub(super) fn build(
    base: BaseContext,
    call: CallContext<'_>,
    predicates: impl IntoIterator<Item = (SmolStr, bool)>,
) -> Result<CoreContext> {
    let mut base = Arc::unwrap_or_clone(base.0);
    // Inserted one by one: a tool has few predicates, and `from_iter` allocates and sorts.
    let mut holding = BTreeMap::new();
    for (name, holds) in predicates {
        holding.insert(name, Value::from(holds));
    }
    set(&mut base, "now", Value::from(call.now));
    set(&mut base, "predicates", Value::record_arc(Arc::new(holding), None));
    if let Some(approval) = &call.approval {
        base.insert(SmolStr::new_static("approval"), approval.to_value());
    }
    if !call.temporal.is_empty() {
        let facts: BTreeMap<SmolStr, Value> = call
            .temporal
            .iter()
            .map(|(name, v)| {
                let value = match v {
                    Temporal::Number(n) => Value::from(*n),
                    Temporal::Holds(b) => Value::from(*b),
                };
                (name.clone(), value)
            })
            .collect();
        base.insert(SmolStr::new_static("temporal"), Value::record_arc(Arc::new(facts), None));
    }
    let Some(args) = to_value(call.args)? else {
        // The slot goes: that path adds `args` itself.
        base.remove("args");
        return build_with_decimals(call.args, base);
    };
    set(&mut base, "args", args);
    Ok(CoreContext::Value(Arc::new(base)))
}

/// Sets attribute `key` of `map` to `value`: in its slot, or inserted when there is none.
fn set(map: &mut BTreeMap<SmolStr, Value>, key: &'static str, value: Value) {
    match map.get_mut(key) {
        Some(slot) => *slot = value,
        None => drop(map.insert(SmolStr::new_static(key), value)),
    }
}

/// The slow path, for arguments holding decimals: every attribute goes through
/// `RestrictedExpression`, which can build the decimal extension value.
fn build_with_decimals(args: &Json, attributes: BTreeMap<SmolStr, Value>) -> Result<CoreContext> {
    let mut pairs: Vec<(String, RestrictedExpression)> = vec![("args".into(), to_cedar(args, "args")?)];
    for (key, value) in attributes {
        let expr = RestrictedExpression::from_str(&value.to_string())
            .map_err(|e| Error::internal(format!("context value `{key}`: {e}")))?;
        pairs.push((key.to_string(), expr));
    }
    let context = Context::from_pairs(pairs).map_err(|e| Error::internal(format!("context: {e}")))?;
    Ok(AsRef::<CoreContext>::as_ref(&context).clone())
}

/// Converts JSON to a Cedar value; `None` if it holds a non-integer number (a decimal).
fn to_value(value: &Json) -> Result<Option<Value>> {
    Ok(Some(match value {
        Json::Bool(b) => Value::from(*b),
        Json::String(s) => Value::from(s.as_str()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => return Ok(None),
        },
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match to_value(item)? {
                    Some(v) => out.push(v),
                    None => return Ok(None),
                }
            }
            Value::set(out, None)
        }
        Json::Object(map) => {
            let mut out = BTreeMap::new();
            for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
                match to_value(v)? {
                    Some(v) => out.insert(SmolStr::from(k.as_str()), v),
                    None => return Ok(None),
                };
            }
            Value::record_arc(Arc::new(out), None)
        }
        Json::Null => return Err(Error::malformed_request("`args` holds a null; null has no policy value")),
    }))
}

/// A `Set<String>` from strings.
fn string_set<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::set(items.into_iter().map(Value::from), None)
}

/// Converts a JSON value to a Cedar value; `at` names the position for error messages.
fn to_cedar(value: &Json, at: &str) -> Result<RestrictedExpression> {
    Ok(match value {
        Json::Bool(b) => RestrictedExpression::new_bool(*b),
        Json::String(s) => RestrictedExpression::new_string(s.clone()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_decimal(decimal_literal(n, at)?),
        },
        Json::Array(items) => RestrictedExpression::new_set(
            items.iter().enumerate().map(|(i, v)| to_cedar(v, &format!("{at}[{i}]"))).collect::<Result<Vec<_>>>()?,
        ),
        Json::Object(map) => RestrictedExpression::new_record(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k.clone(), to_cedar(v, &format!("{at}.{k}"))?)))
                .collect::<Result<Vec<_>>>()?,
        )
        .map_err(|e| Error::malformed_request(format!("`{at}`: {e}")))?,
        Json::Null => return Err(Error::malformed_request(format!("`{at}` is null; null has no policy value"))),
    })
}

/// Cedar's `decimal` holds four fractional digits in an i64; anything else is refused rather
/// than rounded, so a policy never sees a different number than the tool will.
fn decimal_literal(n: &serde_json::Number, at: &str) -> Result<String> {
    let refuse = || {
        Error::malformed_request(format!(
            "`{at}` = `{n}` is outside what policies can compare (integers, or decimals with at most 4 fractional digits)"
        ))
    };
    let f = n.as_f64().ok_or_else(refuse)?;
    let scaled = (f * 10_000.0).round();
    if !f.is_finite() || scaled.abs() >= 9.2e18 || (scaled / 10_000.0 - f).abs() > f64::EPSILON * f.abs().max(1.0) {
        return Err(refuse());
    }
    // INVARIANT: |scaled| < 9.2e18, so the cast is exact for an integral f64 in range.
    let units = scaled as i64;
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    Ok(format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The context's attributes as Cedar writes them.
    fn attributes(context: &CoreContext) -> BTreeMap<String, String> {
        match context {
            CoreContext::Value(map) => map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            CoreContext::RestrictedResidual(map) => map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn every_call_attribute_replaces_its_slot() {
        let base = BaseContext::with_slots([(SmolStr::new_static("agent_id"), Value::from("finance-bot"))].into());
        let call = |args: Json| CallContext {
            args: Box::leak(Box::new(args)),
            now: 1_700_000_000,
            approval: None,
            temporal: Vec::new(),
        };
        // Whole numbers: the direct path; a decimal: the restricted-expression path.
        for (args, amount) in [(json!({"amount": 12}), "12"), (json!({"amount": 12.5}), "decimal(\"12.5000\")")] {
            let context = build(base.clone(), call(args), [(SmolStr::new_static("large"), true)]).unwrap();
            let got = attributes(&context);
            let want: BTreeMap<String, String> = [
                ("agent_id", "\"finance-bot\"".to_owned()),
                ("args", format!("{{amount: {amount}}}")),
                ("now", "1700000000".to_owned()),
                ("predicates", "{large: true}".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            assert_eq!(got, want);
        }
        // The cached base is untouched: its slots still hold their placeholder.
        assert_eq!(base.0.get("args"), Some(&Value::from(false)));
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        let n = |v: Json| match v {
            Json::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(decimal_literal(&n(json!(12.5)), "a").unwrap(), "12.5000");
        assert_eq!(decimal_literal(&n(json!(-0.0001)), "a").unwrap(), "-0.0001");
        assert!(decimal_literal(&n(json!(0.00001)), "a").is_err());
        assert!(decimal_literal(&n(json!(1e300)), "a").is_err());
        assert!(to_cedar(&json!(u64::MAX), "a").is_err());
    }
}
