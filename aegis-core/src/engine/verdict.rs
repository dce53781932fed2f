//! The verdict: from Cedar's evaluation to an outcome with reasons. Pure: no state, no I/O.

use cedar_policy::{Decision as CedarDecision, Effect, PolicyId};
use serde_json::Value as Json;

use super::decision::{Decision, Outcome, Reason};
use crate::error::{Error, PolicyVerdict, ReasonCode};
use crate::policy::{redact, scrub, Bundle, Detector, Evaluation};

/// Whether every forbid that denied the call is `@breakable` (and nothing errored).
pub(crate) fn breakable(bundle: &Bundle, eval: &Evaluation) -> bool {
    eval.erroring_forbids.is_empty()
        && !eval.determining.is_empty()
        && eval.determining.iter().all(|id| bundle.policy_meta(id).is_some_and(|m| m.effect == Effect::Forbid && m.breakable))
}

/// A deny with no reasons yet: what a decision is until evaluation says otherwise.
pub(crate) fn undecided(decision_id: String, bundle: &Bundle) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        reasons: Vec::new(),
        approval_id: None,
        sanitized_args: None,
        would_block: false,
        break_glass_id: None,
        decision_id,
        policy_version: bundle.policy_version().to_owned(),
        candidate: None,
        receipt: None,
    }
}

/// Sets the decision's outcome, reasons and sanitized arguments from an evaluation.
pub(crate) fn apply_evaluation(bundle: &Bundle, eval: &Evaluation, tool: &str, args: &Json, decision: &mut Decision) {
    let reason = |code: ReasonCode, id: &PolicyId, fallback: &str| {
        let message = bundle.policy_meta(id).and_then(|m| m.message.clone()).unwrap_or_else(|| fallback.to_owned());
        Reason::new(code, message).for_policy(id.as_ref())
    };
    if !eval.erroring_forbids.is_empty() {
        decision.outcome = Outcome::Deny;
        for (id, error) in eval.erroring.iter().filter(|(id, _)| eval.erroring_forbids.contains(id)) {
            let message = format!("forbid policy failed to evaluate, which counts as a deny: {error}");
            decision.reasons.push(Reason::new(ReasonCode::POLICY_ERROR, message).for_policy(id.as_ref()));
        }
        return;
    }
    match eval.cedar_decision {
        CedarDecision::Deny if eval.determining.is_empty() => {
            decision.outcome = Outcome::Deny;
            decision
                .reasons
                .push(Reason::new(ReasonCode::NO_MATCHING_PERMIT, format!("no policy permits `{tool}` for this caller")));
        }
        CedarDecision::Deny => {
            let approvable = eval.determining.iter().all(|id| bundle.policy_meta(id).is_some_and(|m| m.approval.is_some()));
            let code = if approvable { ReasonCode::APPROVAL_REQUIRED } else { ReasonCode::POLICY_FORBID };
            for id in &eval.determining {
                decision.reasons.push(reason(code, id, "forbidden by policy"));
            }
            decision.outcome = if approvable { Outcome::ApprovalNeeded } else { Outcome::Deny };
        }
        CedarDecision::Allow => {
            for id in &eval.determining {
                decision.reasons.push(reason(ReasonCode::POLICY_PERMIT, id, "permitted by policy"));
            }
            permit_with_obligations(bundle, &eval.determining, args, decision);
        }
    }
}

/// The call may run: `allow`, or `sanitize` with the redactions of `permits`.
///
/// A permit's `@sanitize` paths make the outcome `sanitize` whether or not the arguments hold
/// them (the permit's `when` usually tests that they do). Its `@detect` detectors make it
/// `sanitize` only when one of them matched: they look at every string, so a permit that
/// detects in the call's free text would otherwise turn every such call into `sanitize`.
fn permit_with_obligations(bundle: &Bundle, permits: &[PolicyId], args: &Json, decision: &mut Decision) {
    let paths = sanitize_paths(bundle, permits);
    let detectors = detectors(bundle, permits);
    if paths.is_empty() && detectors.is_empty() {
        decision.outcome = Outcome::Allow;
        return;
    }
    let mut sanitized = args.clone();
    redact(&mut sanitized, &paths);
    let detected = scrub(&mut sanitized, &detectors);
    if paths.is_empty() && detected.is_empty() {
        decision.outcome = Outcome::Allow;
    } else {
        decision.outcome = Outcome::Sanitize;
        decision.sanitized_args = Some(sanitized);
    }
}

/// The decision as a deny for `error`.
pub(crate) fn deny(mut decision: Decision, error: Error) -> Decision {
    decision.outcome = Outcome::Deny;
    decision.approval_id = None;
    decision.sanitized_args = None;
    decision.receipt = None;
    decision.reasons = vec![Reason::from_error(&error)];
    decision
}

/// Whether an approval that lifts `lifts` answers every forbid that denied the call.
pub(crate) fn lifts_forbids(eval: &Evaluation, lifts: &[String]) -> bool {
    eval.erroring_forbids.is_empty()
        && !eval.determining.is_empty()
        && eval.determining.iter().all(|id| lifts.iter().any(|l| l.as_str() == AsRef::<str>::as_ref(id)))
}

/// Lifts the forbids that denied the call (an approval or break-glass answered them): the
/// call runs if a permit held, with that permit's redactions; with no permit it stays denied.
pub(crate) fn lift_forbids(bundle: &Bundle, eval: &Evaluation, args: &Json, decision: &mut Decision, code: ReasonCode) {
    if eval.satisfied_permits().is_empty() {
        decision.outcome = Outcome::Deny;
        decision.reasons = vec![Reason::new(
            ReasonCode::NO_MATCHING_PERMIT,
            "no policy permits this call; an override lifts forbids, not a missing permit",
        )];
        return;
    }
    for r in &mut decision.reasons {
        r.code = code;
    }
    permit_with_obligations(bundle, eval.satisfied_permits(), args, decision);
}

/// The arguments with the redactions of every permit that held (what an approver sees).
pub(crate) fn redacted_by_permits(bundle: &Bundle, eval: &Evaluation, tool: &str, args: &Json) -> Json {
    let mut shown = args.clone();
    redact(&mut shown, &sanitize_paths(bundle, eval.satisfied_permits()));
    // What a human is shown gets every detector the tool's policies name: whichever permit
    // would hold once approved, nothing it would scrub is shown in the meantime.
    // (The union holds every permit's detectors.)
    let all = bundle.tool(tool).map(|t| t.audit_detectors.clone()).unwrap_or_default();
    scrub(&mut shown, &all);
    shown
}

fn sanitize_paths<'b>(bundle: &'b Bundle, permits: &[PolicyId]) -> Vec<&'b [String]> {
    permits.iter().filter_map(|id| bundle.policy_meta(id)).flat_map(|m| m.sanitize.iter().map(Vec::as_slice)).collect()
}

fn detectors(bundle: &Bundle, permits: &[PolicyId]) -> Vec<Detector> {
    permits.iter().filter_map(|id| bundle.policy_meta(id)).flat_map(|m| m.detect.iter().copied()).collect()
}

/// Whether the policies (and nothing else) refused the call: a forbid, no permit, or an
/// approval it would need; at least one such reason and no other.
pub(crate) fn refused_by_policy(decision: &Decision) -> bool {
    !decision.outcome.permits_call()
        && !decision.reasons.is_empty()
        && decision.reasons.iter().all(|r| {
            matches!(
                r.code,
                ReasonCode::Verdict(
                    PolicyVerdict::PolicyForbid | PolicyVerdict::NoMatchingPermit | PolicyVerdict::ApprovalRequired
                )
            )
        })
}

/// Log-only mode: a call the policies refused (a forbid, no permit, an approval it would need)
/// is allowed and marked `would_block`; a refusal for any other reason (the caller, a proof, a
/// token, the task's state, an error) stands. Obligations still apply, conservatively: every
/// redaction and detector any of the tool's policies names (the permits that would have held
/// are not known once forbids refused).
pub(crate) fn log_only(mut decision: Decision, bundle: &Bundle, tool: &str, args: &Json) -> Decision {
    if !refused_by_policy(&decision) {
        return decision;
    }
    let mut sanitized = args.clone();
    if let Some(entry) = bundle.tool(tool) {
        redact(&mut sanitized, &entry.audit_redactions.iter().map(Vec::as_slice).collect::<Vec<_>>());
        scrub(&mut sanitized, &entry.audit_detectors);
    }
    let changed = &sanitized != args;
    decision.outcome = if changed { Outcome::Sanitize } else { Outcome::Allow };
    decision.sanitized_args = changed.then_some(sanitized);
    decision.would_block = true;
    decision
        .reasons
        .push(Reason::new(ReasonCode::Verdict(PolicyVerdict::ShadowMode), "log-only mode: the policies refused this call"));
    decision
}
