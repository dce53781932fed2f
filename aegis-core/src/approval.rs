//! Human approvals: override tokens bound to one call, and the message a human answers.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::decision::Reason;
use crate::store::PendingApproval;

/// The `typ` of an override token.
pub const OVERRIDE_TYP: &str = "aegis-approval+jwt";

/// The claims of an override token, signed by the engine's approval key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideClaims {
    /// The approval it redeems; also its single-use id.
    pub approval_id: String,
    /// The call digest it is bound to.
    pub call: String,
    /// The agent that may present it.
    pub sub: String,
    /// The task it is valid in.
    pub task: String,
    /// The policy version it was approved under.
    pub pv: String,
    /// Who approved.
    pub approver: String,
    /// Issued at, seconds.
    pub iat: i64,
    /// Expiry, seconds.
    pub exp: i64,
}

/// The result of `approve` or `reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalResolution {
    /// Whether the approver's action took effect.
    pub accepted: bool,
    /// Why not, or what decided it.
    pub reasons: Vec<Reason>,
    /// For an accepted approval: the single-use override token to present with the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_token: Option<String>,
    /// The approval as it now stands.
    pub approval: PendingApproval,
}

/// A Slack Block Kit message body (for `chat.postMessage`) asking a human to approve or
/// reject a pending approval. The buttons carry the `approval_id` as their `value`, with
/// `action_id`s `aegis_approve` and `aegis_reject`.
pub fn slack_message(pending: &PendingApproval) -> Value {
    let lineage = if pending.lineage.is_empty() { "(root)".to_owned() } else { pending.lineage.join(" → ") };
    let args = serde_json::to_string_pretty(&pending.args).unwrap_or_default();
    let why: Vec<String> = pending
        .policy_ids
        .iter()
        .zip(pending.reasons.iter())
        .map(|(id, msg)| format!("• `{id}`: {msg}"))
        .collect();
    json!({
        "text": format!("Approval needed: {} wants to call {}", pending.agent_id, pending.tool),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("Approval needed: {}", pending.tool)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Agent*\n{}", pending.agent_id)},
                {"type": "mrkdwn", "text": format!("*Delegated by*\n{lineage}")},
                {"type": "mrkdwn", "text": format!("*Task*\n{}", pending.task_id)},
                {"type": "mrkdwn", "text": format!("*Intent*\n{}", pending.intent)},
                {"type": "mrkdwn", "text": format!("*Approver role*\n{}", pending.roles.join(", "))},
                {"type": "mrkdwn", "text": format!("*Approval id*\n`{}`", pending.approval_id)},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Arguments*\n```{args}```")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Why*\n{}", why.join("\n"))}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("policy version `{}` · call digest `{}`", pending.policy_version, pending.call_digest)},
            ]},
            {"type": "actions", "block_id": format!("aegis_approval_{}", pending.approval_id), "elements": [
                {"type": "button", "style": "primary", "action_id": "aegis_approve", "value": pending.approval_id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "style": "danger", "action_id": "aegis_reject", "value": pending.approval_id,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ]},
        ],
    })
}
