//! Approval channels: the messages a human answers.

use serde_json::{json, Value};

use super::PendingApproval;

/// A Slack Block Kit message body (for `chat.postMessage`) asking a human to approve or
/// reject a pending approval. The buttons carry the `approval_id` as their `value`, with
/// `action_id`s `aegis_approve` and `aegis_reject`.
pub fn slack_message(pending: &PendingApproval) -> Value {
    let lineage = if pending.lineage.is_empty() { "(root)".to_owned() } else { pending.lineage.join(" → ") };
    let args = serde_json::to_string_pretty(&pending.args).unwrap_or_default();
    let why: Vec<String> =
        pending.policy_ids.iter().zip(pending.reasons.iter()).map(|(id, msg)| format!("• `{id}`: {msg}")).collect();
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
