//! What the log records: one JSON object per line, the exact bytes the Merkle leaf hashes.
//!
//! Every record starts with `seq` (its index, from 0) and `prev` (the base64 leaf hash of the
//! record before it, 32 zero bytes for the first), then `kind`, `time_ms` and the event's
//! fields. `seq` exposes a deleted or reordered record at its position and `prev` an edited
//! one at the next; the signed checkpoint covers the last and the log's length.

use serde_json::{json, Map, Value as Json};

use crate::approval::PendingApproval;
use crate::break_glass::BreakGlassGrant;
use crate::engine::{AuthorizationRequest, Decision};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::VerifiedChain;

/// The kinds of record.
pub mod kind {
    /// A decision on a tool call (any outcome).
    pub const DECISION: &str = "decision";
    /// A call was put before a human.
    pub const APPROVAL_OPENED: &str = "approval.opened";
    /// A human approved it (the last vote of a quorum or the last stage).
    pub const APPROVAL_APPROVED: &str = "approval.approved";
    /// One approver of several voted for it; it stays pending.
    pub const APPROVAL_VOTED: &str = "approval.voted";
    /// A human rejected it.
    pub const APPROVAL_REJECTED: &str = "approval.rejected";
    /// Closed without a decision: the same call already ran under another approval.
    pub const APPROVAL_SUPERSEDED: &str = "approval.superseded";
    /// A break-glass grant was opened.
    pub const BREAK_GLASS_OPENED: &str = "break_glass.opened";
    /// A break-glass grant was closed with its review reference.
    pub const BREAK_GLASS_CLOSED: &str = "break_glass.closed";
    /// `end_task`.
    pub const TASK_ENDED: &str = "task.ended";
    /// A bundle was put in force (at start, by a swap or a reload).
    pub const BUNDLE_LOADED: &str = "bundle.loaded";
    /// An administrative change (a key set replaced, ...).
    pub const ADMIN: &str = "admin";
    /// The log was opened after a crash and a torn last record was cut off.
    pub const AUDIT_REPAIRED: &str = "audit.repaired";
}

/// One event, before the log gives it its place.
#[derive(Debug, Clone)]
pub struct Event {
    fields: Map<String, Json>,
}

impl Event {
    /// An event of `kind` at `time_ms`.
    pub fn new(kind: &str, time_ms: i64) -> Self {
        let mut fields = Map::new();
        fields.insert("kind".into(), kind.into());
        fields.insert("time_ms".into(), time_ms.into());
        Self { fields }
    }

    /// Adds a field (`seq`, `prev`, `kind` and `time_ms` are the log's).
    pub fn with(mut self, name: &str, value: impl Into<Json>) -> Self {
        if !matches!(name, "seq" | "prev" | "kind" | "time_ms") {
            self.fields.insert(name.to_owned(), value.into());
        }
        self
    }

    /// A field of the event.
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.fields.get(name)
    }

    /// The event's kind.
    pub fn kind(&self) -> &str {
        self.fields.get("kind").and_then(Json::as_str).unwrap_or_default()
    }

    /// The record's line for position `seq` after a record with leaf hash `prev`.
    pub(crate) fn line(&self, seq: u64, prev: &[u8; 32]) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(&self.fields)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot encode an audit record: {e}")))?;
        let mut line = Vec::with_capacity(body.len() + 80);
        line.extend_from_slice(b"{\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(super::b64_encode(prev).as_bytes());
        line.push(b'"');
        // `fields` always holds `kind`, so `body` is `{...}` with at least one member.
        line.push(b',');
        line.extend_from_slice(&body[1..]);
        Ok(line)
    }
}

/// The strings of a JSON array field (a record's `lineage`, `policy_ids`, ...); nothing for
/// anything else.
pub(crate) fn string_list(value: Option<&Json>) -> Vec<String> {
    value.and_then(Json::as_array).map_or_else(Vec::new, |a| a.iter().filter_map(Json::as_str).map(str::to_owned).collect())
}

/// A record read back from a log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Its position in the log.
    pub seq: u64,
    /// Its kind (see [`kind`]).
    pub kind: String,
    /// When, in milliseconds since the epoch.
    pub time_ms: i64,
    /// Every field, `seq` and `prev` included.
    pub fields: Map<String, Json>,
    /// The RFC 6962 leaf hash of its line.
    pub leaf_hash: [u8; 32],
}

impl AuditRecord {
    /// A field as a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Json::as_str)
    }

    /// Parses one line; `Err` names what is wrong with it.
    pub(crate) fn parse(line: &[u8]) -> std::result::Result<Self, String> {
        let fields: Map<String, Json> = serde_json::from_slice(line).map_err(|e| format!("not a json record: {e}"))?;
        let seq = fields.get("seq").and_then(Json::as_u64).ok_or("no `seq`")?;
        let kind = fields.get("kind").and_then(Json::as_str).ok_or("no `kind`")?.to_owned();
        let time_ms = fields.get("time_ms").and_then(Json::as_i64).ok_or("no `time_ms`")?;
        Ok(Self { seq, kind, time_ms, fields, leaf_hash: super::merkle::leaf_hash(line) })
    }

    /// The `prev` field, decoded.
    pub(crate) fn prev(&self) -> Option<[u8; 32]> {
        self.str("prev").and_then(super::b64_decode).and_then(|b| b.try_into().ok())
    }
}

/// The fields a verified chain contributes: who, through whom, in which task.
fn with_chain(event: Event, chain: &VerifiedChain) -> Event {
    event
        .with("agent_id", chain.agent_id.as_str())
        .with("parent_agent_id", chain.parent_agent_id.clone().map_or(Json::Null, Json::from))
        .with("lineage", chain.lineage.clone())
        .with("initiator", chain.initiator.as_str())
        .with("issuer", chain.issuer.as_str())
        .with("roles", chain.roles.clone())
        .with("task_id", chain.task_id.as_str())
        .with("intent", chain.intent.as_str())
}

/// What the engine knows about a call when it records the decision.
pub(crate) struct DecidedCall<'a> {
    pub request: &'a AuthorizationRequest,
    /// The caller, when its chain verified.
    pub chain: Option<&'a VerifiedChain>,
    /// The call digest (tool and arguments, RFC 8785).
    pub digest: Option<String>,
    /// The arguments with every redaction the tool's policies name.
    pub args: Json,
    /// How many matches each `@detect` detector of the tool's policies replaced in `args`
    /// (detectors that found none are left out); never the matched text.
    pub detections: std::collections::BTreeMap<&'static str, u64>,
    /// The raw arguments, sealed, when the log keeps them for replay.
    pub sealed_args: Option<Json>,
    /// Shadow policies that would have blocked the call.
    pub shadow_policies: Vec<String>,
    /// Each reason's policy `@category`, in order.
    pub categories: Vec<Option<String>>,
    /// What an allowed call spent: budget key and amount.
    pub spent: Vec<(String, i64)>,
}

/// The record of a decision.
pub(crate) fn decision(call: DecidedCall<'_>, decision: &Decision, time_ms: i64) -> Event {
    let reasons: Vec<Json> = decision
        .reasons
        .iter()
        .zip(call.categories.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(r, category)| {
            let category = category.cloned().flatten();
            json!({"code": r.code.as_str(), "policy_id": r.policy_id, "category": category, "message": r.message})
        })
        .collect();
    let spent: Vec<Json> = call.spent.iter().map(|(budget, amount)| json!({"budget": budget, "amount": amount})).collect();
    let mut policy_ids: Vec<&str> = decision.reasons.iter().filter_map(|r| r.policy_id.as_deref()).collect();
    policy_ids.dedup();
    let mut event = Event::new(kind::DECISION, time_ms)
        .with("decision_id", decision.decision_id.as_str())
        .with("outcome", decision.outcome.as_str())
        .with("reasons", reasons)
        .with("policy_ids", policy_ids.into_iter().map(Json::from).collect::<Vec<_>>())
        .with("policy_version", decision.policy_version.as_str())
        .with("tool", call.request.tool.as_str())
        .with("tool_call_id", call.request.tool_call_id.clone().map_or(Json::Null, Json::from))
        .with("resource", call.request.resource.as_ref().map_or(Json::Null, |r| json!({"type": r.entity_type, "id": r.id})))
        .with("call_digest", call.digest.map_or(Json::Null, Json::from))
        .with("args", call.args)
        .with("detections", call.detections.into_iter().map(|(d, n)| (d.to_owned(), Json::from(n))).collect::<Map<_, _>>())
        .with("would_block", decision.would_block)
        .with("candidate", decision.candidate.as_ref().and_then(|c| serde_json::to_value(c).ok()).unwrap_or(Json::Null))
        .with("shadow_policies", call.shadow_policies)
        .with("spent", spent)
        .with("approval_id", decision.approval_id.clone().map_or(Json::Null, Json::from))
        .with("approval_redeemed", call.request.approval_token.is_some() && decision.permits_call())
        .with("break_glass_id", decision.break_glass_id.clone().map_or(Json::Null, Json::from));
    if let Some(sealed) = call.sealed_args {
        event = event.with("sealed_args", sealed);
    }
    match call.chain {
        Some(chain) => with_chain(event, chain),
        None => event.with("agent_id", Json::Null).with("task_id", Json::Null),
    }
}

/// The record of an approval's change: opened, approved or rejected.
pub(crate) fn approval(kind: &str, pending: &PendingApproval, approver: Option<&VerifiedChain>, time_ms: i64) -> Event {
    let mut event = Event::new(kind, time_ms)
        .with("approval_id", pending.approval_id.as_str())
        .with("status", serde_json::to_value(pending.status).unwrap_or(Json::Null))
        .with("tool", pending.tool.as_str())
        .with("call_digest", pending.call_digest.as_str())
        .with("args", pending.args.clone())
        .with("agent_id", pending.agent_id.as_str())
        .with("lineage", pending.lineage.clone())
        .with("initiator", pending.initiator.as_str())
        .with("task_id", pending.task_id.as_str())
        .with("intent", pending.intent.as_str())
        .with("policy_ids", pending.policy_ids.clone())
        .with("policy_version", pending.policy_version.as_str())
        .with("reasons", pending.reasons.clone())
        .with("created_at_ms", pending.created_at_ms)
        .with("latency_ms", pending.latency_ms().map_or(Json::Null, Json::from))
        .with("note", pending.note.clone().map_or(Json::Null, Json::from));
    if let Some(approver) = approver {
        event = event
            .with("approver_id", approver.agent_id.as_str())
            .with("approver_issuer", approver.issuer.as_str())
            .with("approver_roles", approver.roles.clone());
    }
    event
}

/// The record of a bundle put in force: its version, tools and their coverage by forbids.
pub(crate) fn bundle_loaded(bundle: &crate::policy::Bundle, previous: Option<&str>, time_ms: i64) -> Event {
    let names = |tools: Vec<&str>| tools.into_iter().map(Json::from).collect::<Vec<_>>();
    Event::new(kind::BUNDLE_LOADED, time_ms)
        .with("policy_version", bundle.policy_version())
        .with("previous_version", previous.map_or(Json::Null, Json::from))
        .with("tools", names(bundle.tools().collect()))
        .with("critical_tools", names(bundle.critical_tools()))
        .with("forbidden_tools", names(bundle.forbidden_tools()))
}

/// The record of a break-glass grant opened or closed.
pub(crate) fn break_glass(kind: &str, grant: &BreakGlassGrant, time_ms: i64) -> Event {
    Event::new(kind, time_ms)
        .with("break_glass_id", grant.id.as_str())
        .with("agents", grant.agents.clone())
        .with("tools", grant.tools.clone())
        .with("tasks", grant.tasks.clone())
        .with("reason", grant.reason.as_str())
        .with("approvers", grant.approvers.clone())
        .with("opened_at", grant.opened_at)
        .with("expires_at", grant.expires_at)
        .with("closed_at", grant.closed_at.map_or(Json::Null, Json::from))
        .with("review_ref", grant.review_ref.clone().map_or(Json::Null, Json::from))
}
