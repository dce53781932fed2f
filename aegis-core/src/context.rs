//! The Cedar context of a call, built directly from Rust values (Cedar's JSON context path is
//! an order of magnitude slower than `Context::from_pairs`).
//!
//! Attributes (declare the ones your policies use in the schema's `context`):
//!
//! | attribute          | Cedar type          | meaning                                          |
//! |--------------------|---------------------|--------------------------------------------------|
//! | `args`             | record              | the tool's arguments                             |
//! | `agent_id`         | `String`            | the leaf agent (also the principal's id)         |
//! | `parent_agent_id`  | `String`, optional  | the agent that delegated to the leaf; absent for a root credential |
//! | `initiator`        | `String`            | the root agent of the chain                      |
//! | `lineage`          | `Set<String>`       | every agent above the leaf                       |
//! | `depth`            | `Long`              | 0 for a root credential                          |
//! | `task_id`          | `String`            | the task shared by the chain                     |
//! | `intent`           | `String`            | the root credential's intent                     |
//! | `now`              | `Long`              | seconds since the epoch, from the engine's clock |
//! | `predicates`       | record of `Bool`    | the manifest's predicates for this tool          |
//! | `task`             | record              | what was already done in this task (below)       |
//! | `break_glass`      | `Bool`              | an open break-glass grant covers this call       |
//! | `approval`         | record              | only for `aegis.approve`: the request being approved (below) |
//!
//! `task` has four `Set<String>` attributes: `duties_by_agent` (tools this agent performed in
//! the task), `duties_by_lineage` (tools this agent or anyone above it performed),
//! `performed` (every tool performed by anyone) and `actors` (every agent that performed
//! anything). Approvals count as the duty `aegis.approve`.
//!
//! `approval` has `approval_id`, `tool`, `requester`, `initiator`, `task_id` (all `String`),
//! and `roles` and `policy_ids` (`Set<String>`).
//!
//! Argument values map as: string → `String`, boolean → `Bool`, integer → `Long`, number with
//! a fraction → `decimal` (at most 4 fractional digits), array → `Set`, object → record. A
//! `null` member of an object is dropped (so `has` is false); `null` elsewhere is refused.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Context, RestrictedExpression};
use cedar_policy_core::ast::{Context as CoreContext, Value};
use serde_json::Value as Json;
use smol_str::SmolStr;

use crate::credential::VerifiedChain;
use crate::error::{Error, Result};

/// The attributes that do not depend on the call: the chain's, `task` and `break_glass`.
/// The engine caches this map per task and clones it for each call.
pub(crate) fn base(chain: &VerifiedChain, task: Value, break_glass: bool) -> BTreeMap<SmolStr, Value> {
    let mut map: BTreeMap<SmolStr, Value> = chain.context.iter().cloned().collect();
    map.insert(SmolStr::new_static("task"), task);
    map.insert(SmolStr::new_static("break_glass"), Value::from(break_glass));
    map
}

/// Builds the context as Cedar values directly: the restricted-expression path
/// (`Context::from_pairs`) re-interprets every literal and costs as much as evaluating the
/// policies. Arguments holding decimals take that path, since a decimal is an extension value.
pub(crate) fn build(
    mut base: BTreeMap<SmolStr, Value>,
    args: &Json,
    predicates: impl IntoIterator<Item = (SmolStr, bool)>,
    now: i64,
    approval: Option<Value>,
) -> Result<CoreContext> {
    // Inserted one by one: a tool has few predicates, and `from_iter` allocates and sorts.
    let mut holding = BTreeMap::new();
    for (name, holds) in predicates {
        holding.insert(name, Value::from(holds));
    }
    base.insert(SmolStr::new_static("now"), Value::from(now));
    base.insert(SmolStr::new_static("predicates"), Value::record_arc(Arc::new(holding), None));
    if let Some(approval) = approval {
        base.insert(SmolStr::new_static("approval"), approval);
    }
    let Some(args) = to_value(args)? else {
        return build_with_decimals(args, base);
    };
    base.insert(SmolStr::new_static("args"), args);
    Ok(CoreContext::Value(Arc::new(base)))
}

/// The context attributes that depend only on the chain.
pub(crate) fn chain_values(chain: &VerifiedChain) -> Vec<(SmolStr, Value)> {
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
    out
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
pub(crate) fn string_set<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
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
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_cedar(v, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>>>()?,
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

/// Looks up a dotted path in a JSON object.
pub(crate) fn lookup<'v>(value: &'v Json, path: &[String]) -> Option<&'v Json> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Replaces the value at each path with the redaction marker; missing paths are ignored.
pub(crate) fn redact(args: &mut Json, paths: &[&[String]]) {
    for path in paths {
        let Some((last, parents)) = path.split_last() else { continue };
        let parent = parents.iter().try_fold(&mut *args, |v, key| v.as_object_mut()?.get_mut(key));
        if let Some(slot) = parent.and_then(|p| p.as_object_mut()).and_then(|m| m.get_mut(last)) {
            *slot = Json::String(crate::bundle::REDACTED.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn redaction_touches_only_named_paths() {
        let mut args = json!({"card": {"number": "4242", "exp": "12/30"}, "amount": 5});
        let path = vec!["card".to_owned(), "number".to_owned()];
        let missing = vec!["nope".to_owned(), "x".to_owned()];
        redact(&mut args, &[&path, &missing]);
        assert_eq!(args, json!({"card": {"number": REDACTED_TEXT, "exp": "12/30"}, "amount": 5}));
    }

    const REDACTED_TEXT: &str = crate::bundle::REDACTED;
}
