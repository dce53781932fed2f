//! Replay: the logged calls re-decided under a candidate bundle (`aegis policy dry-run`), and
//! every decision that would change, DENY→ALLOW flips first.
//!
//! Each decision record is replayed in log order on an engine of its own (the candidate, a
//! fresh in-memory store, the recorded clock), with the identity the record attests and the
//! approvals the log shows, so a rule over the task's ledger sees what it would have seen.
//! Arguments: the raw ones, opened with the seal key, when the log keeps them; otherwise the
//! recorded ones, which equal the raw ones unless a redaction changed them; a call whose
//! recorded arguments were redacted is reported as not re-evaluable, never guessed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

use super::record::{kind, string_list as strings, AuditRecord};
use super::seal::SealKey;
use super::verify::ReadLog;
use crate::engine::{AuthorizationRequest, Engine, ResourceRef};
use crate::error::{PolicyVerdict, Result};
use crate::identity::{KeyPair, VerifiedChain};
use crate::policy::{Bundle, REDACTED};
use crate::state::LedgerEntry;
use crate::time::{Clock, ManualClock, OsRandom};

/// Reason codes a policy evaluation produces (beside the verdicts): a decision that carries any
/// other (a bad credential, proof or token, an ended task, a store error) was not made by
/// the policies, and replaying it under another bundle says nothing.
const EVALUATION_ERRORS: &[&str] = &["budget_exceeded", "budget_amount_invalid", "args_invalid"];

/// One decision that would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The log it was read from.
    pub log: String,
    /// The original decision.
    pub decision_id: String,
    /// The caller, task and tool.
    pub agent_id: String,
    /// The task.
    pub task_id: String,
    /// The tool.
    pub tool: String,
    /// The recorded outcome.
    pub from: String,
    /// The candidate's outcome.
    pub to: String,
    /// The policies behind the difference: those in one decision's reasons and not the other's.
    pub policies: Vec<String>,
    /// Whether a refused call would now run (`deny` or `approval_needed` to `allow` or
    /// `sanitize`): the changes to read first.
    pub opens: bool,
}

/// What replaying logs under a candidate found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRunReport {
    /// The candidate's version.
    pub candidate_version: String,
    /// The decision records read.
    pub decisions: u64,
    /// Those re-decided.
    pub replayed: u64,
    /// Decisions made before policies ran (the caller, a proof or token, an ended task): not
    /// replayed.
    pub not_policy_decisions: u64,
    /// Decisions whose arguments the log keeps only redacted (and no seal key opened them):
    /// not re-evaluable, never guessed.
    pub not_reevaluable: Vec<String>,
    /// Decisions a break-glass grant decided: not replayed (grants are not re-opened).
    pub break_glass: u64,
    /// Every change, calls that would now run first.
    pub changes: Vec<Change>,
    /// Changes by policy.
    pub by_policy: BTreeMap<String, u64>,
    /// Changes by agent.
    pub by_agent: BTreeMap<String, u64>,
}

impl DryRunReport {
    /// Changes that let a refused call run.
    pub fn opened(&self) -> usize {
        self.changes.iter().filter(|c| c.opens).count()
    }
}

/// Re-decides every decision of `logs` (each with where it was read from) under `candidate`.
pub fn dry_run(candidate: Bundle, logs: &[(String, ReadLog)], seal: Option<&SealKey>) -> Result<DryRunReport> {
    let candidate_version = candidate.policy_version().to_owned();
    let clock = Arc::new(ManualClock::at_secs(0));
    // The replay engine trusts no one: every chain it decides on is built from a record.
    let engine = Engine::builder()
        .bundle(candidate)
        .trust_issuer("aegis-replay", KeyPair::generate(&OsRandom)?.public_key().clone())
        .clock(clock.clone())
        .build()?;
    let mut records: Vec<(&str, &AuditRecord)> =
        logs.iter().flat_map(|(source, log)| log.records.iter().map(move |r| (source.as_str(), r))).collect();
    // Several hosts' logs interleave by time; each log's own order is kept for equal times.
    records.sort_by_key(|(_, r)| r.time_ms);
    let mut report = DryRunReport {
        candidate_version,
        decisions: 0,
        replayed: 0,
        not_policy_decisions: 0,
        not_reevaluable: Vec::new(),
        break_glass: 0,
        changes: Vec::new(),
        by_policy: BTreeMap::new(),
        by_agent: BTreeMap::new(),
    };
    for (source, record) in records {
        clock.set_millis(record.time_ms);
        match record.kind.as_str() {
            kind::APPROVAL_APPROVED => replay_approval(&engine, record, clock.now_secs())?,
            kind::DECISION => {
                report.decisions += 1;
                replay_decision(&engine, source, record, seal, clock.now_secs(), &mut report)?;
            }
            _ => {}
        }
    }
    report.changes.sort_by_key(|c| !c.opens);
    for change in &report.changes {
        for policy in &change.policies {
            *report.by_policy.entry(policy.clone()).or_default() += 1;
        }
        *report.by_agent.entry(change.agent_id.clone()).or_default() += 1;
    }
    Ok(report)
}

fn reason_codes(record: &AuditRecord) -> Vec<String> {
    record
        .fields
        .get("reasons")
        .and_then(Json::as_array)
        .map_or_else(Vec::new, |a| a.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
}

/// An approval's duty: the approver performed `aegis.approve` in the requester's task.
fn replay_approval(engine: &Engine, record: &AuditRecord, now: i64) -> Result<()> {
    let (Some(task), Some(approver)) = (record.str("task_id"), record.str("approver_id")) else { return Ok(()) };
    let entry = LedgerEntry {
        tool: crate::approval::APPROVE_ACTION.to_owned(),
        agent_id: approver.to_owned(),
        lineage: Vec::new(),
        decision_id: record.str("approval_id").unwrap_or_default().to_owned(),
        at: now,
        key: format!("replay:{approver}"),
    };
    engine.replay_duty(task, entry, now)
}

fn replay_decision(
    engine: &Engine,
    source: &str,
    record: &AuditRecord,
    seal: Option<&SealKey>,
    now: i64,
    report: &mut DryRunReport,
) -> Result<()> {
    let decision_id = record.str("decision_id").unwrap_or_default().to_owned();
    let codes = reason_codes(record);
    let by_policy =
        |code: &String| PolicyVerdict::ALL.iter().any(|v| v.as_str() == code) || EVALUATION_ERRORS.contains(&code.as_str());
    let (Some(agent_id), Some(task_id), Some(tool)) = (record.str("agent_id"), record.str("task_id"), record.str("tool")) else {
        report.not_policy_decisions += 1;
        return Ok(());
    };
    if !codes.iter().all(by_policy) {
        report.not_policy_decisions += 1;
        return Ok(());
    }
    if record.str("break_glass_id").is_some() {
        report.break_glass += 1;
        return Ok(());
    }
    let args = match (seal, record.fields.get("sealed_args")) {
        (Some(key), Some(sealed)) => key.open(sealed, &decision_id)?,
        _ => {
            let args = record.fields.get("args").cloned().unwrap_or(Json::Null);
            // A detector's replacement sits inside a string, where `holds_redaction` does not
            // look; the record's counts say whether one changed the arguments.
            let detected = record.fields.get("detections").and_then(Json::as_object).is_some_and(|d| !d.is_empty());
            if !args.is_object() || detected || holds_redaction(&args) {
                report.not_reevaluable.push(decision_id);
                return Ok(());
            }
            args
        }
    };
    let chain = VerifiedChain::replayed(
        agent_id.to_owned(),
        strings(record.fields.get("roles")),
        record.str("issuer").unwrap_or_default().to_owned(),
        record.str("parent_agent_id").map(str::to_owned),
        record.str("initiator").unwrap_or(agent_id).to_owned(),
        strings(record.fields.get("lineage")),
        task_id.to_owned(),
        record.str("intent").unwrap_or_default().to_owned(),
        tool,
    );
    let mut request = AuthorizationRequest::new(Vec::new(), tool, args);
    request.resource = record.fields.get("resource").and_then(|r| serde_json::from_value::<ResourceRef>(r.clone()).ok());
    let approved = record.fields.get("approval_redeemed").and_then(Json::as_bool) == Some(true);
    let replayed = engine.redecide(Arc::new(chain), &request, now, approved);
    report.replayed += 1;
    let from = record.str("outcome").unwrap_or_default().to_owned();
    let to = replayed.outcome.as_str().to_owned();
    // An approved call the candidate would still put before a human: the human's answer stands.
    let same = from == to || (approved && to == "approval_needed" && matches!(from.as_str(), "allow" | "sanitize"));
    if same {
        return Ok(());
    }
    let recorded: Vec<String> = strings(record.fields.get("policy_ids"));
    let now_ids: Vec<String> = replayed.reasons.iter().filter_map(|r| r.policy_id.clone()).collect();
    let mut policies: Vec<String> = recorded
        .iter()
        .filter(|p| !now_ids.contains(p))
        .chain(now_ids.iter().filter(|p| !recorded.contains(p)))
        .cloned()
        .collect();
    policies.sort();
    policies.dedup();
    let permits = |o: &str| matches!(o, "allow" | "sanitize");
    report.changes.push(Change {
        log: source.to_owned(),
        decision_id,
        agent_id: agent_id.to_owned(),
        task_id: task_id.to_owned(),
        tool: tool.to_owned(),
        opens: !permits(&from) && permits(&to),
        from,
        to,
        policies,
    });
    Ok(())
}

/// Whether a redaction replaced any value (the recorded arguments then differ from the raw).
fn holds_redaction(value: &Json) -> bool {
    match value {
        Json::String(s) => s == REDACTED,
        Json::Array(items) => items.iter().any(holds_redaction),
        Json::Object(map) => map.values().any(holds_redaction),
        _ => false,
    }
}
