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

use cedar_policy::{Context, RestrictedExpression};
use serde_json::Value;

use crate::credential::VerifiedChain;
use crate::error::{Error, Result};

pub(crate) fn build(
    chain: &VerifiedChain,
    args: &Value,
    predicates: Vec<(String, RestrictedExpression)>,
    now: i64,
    extra: Vec<(String, RestrictedExpression)>,
) -> Result<Context> {
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(12 + extra.len());
    pairs.extend(extra);
    pairs.push(("args".into(), to_cedar(args, "args")?));
    pairs.push(("agent_id".into(), RestrictedExpression::new_string(chain.agent_id.clone())));
    if let Some(parent) = &chain.parent_agent_id {
        pairs.push(("parent_agent_id".into(), RestrictedExpression::new_string(parent.clone())));
    }
    pairs.push(("initiator".into(), RestrictedExpression::new_string(chain.initiator.clone())));
    pairs.push((
        "lineage".into(),
        RestrictedExpression::new_set(chain.lineage.iter().cloned().map(RestrictedExpression::new_string)),
    ));
    pairs.push(("depth".into(), RestrictedExpression::new_long(i64::try_from(chain.depth).unwrap_or(i64::MAX))));
    pairs.push(("task_id".into(), RestrictedExpression::new_string(chain.task_id.clone())));
    pairs.push(("intent".into(), RestrictedExpression::new_string(chain.intent.clone())));
    pairs.push(("now".into(), RestrictedExpression::new_long(now)));
    let predicates = RestrictedExpression::new_record(predicates)
        .map_err(|e| Error::internal(format!("predicate record: {e}")))?;
    pairs.push(("predicates".into(), predicates));
    Context::from_pairs(pairs).map_err(|e| Error::internal(format!("context: {e}")))
}

/// Converts a JSON value to a Cedar value; `at` names the position for error messages.
/// A `Set<String>` from strings.
pub(crate) fn string_set<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| RestrictedExpression::new_string(s.to_owned())))
}

/// Converts a JSON value to a Cedar value; `at` names the position for error messages.
fn to_cedar(value: &Value, at: &str) -> Result<RestrictedExpression> {
    Ok(match value {
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_decimal(decimal_literal(n, at)?),
        },
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_cedar(v, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>>>()?,
        ),
        Value::Object(map) => RestrictedExpression::new_record(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k.clone(), to_cedar(v, &format!("{at}.{k}"))?)))
                .collect::<Result<Vec<_>>>()?,
        )
        .map_err(|e| Error::malformed_request(format!("`{at}`: {e}")))?,
        Value::Null => return Err(Error::malformed_request(format!("`{at}` is null; null has no policy value"))),
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
pub(crate) fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Replaces the value at each path with the redaction marker; missing paths are ignored.
pub(crate) fn redact(args: &mut Value, paths: &[&[String]]) {
    for path in paths {
        let Some((last, parents)) = path.split_last() else { continue };
        let parent = parents.iter().try_fold(&mut *args, |v, key| v.as_object_mut()?.get_mut(key));
        if let Some(slot) = parent.and_then(|p| p.as_object_mut()).and_then(|m| m.get_mut(last)) {
            *slot = Value::String(crate::bundle::REDACTED.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_exact_or_refused() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
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
