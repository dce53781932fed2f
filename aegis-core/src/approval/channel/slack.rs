//! Slack: the Block Kit message a human answers, and the verification of the button click
//! Slack sends back (`X-Slack-Signature`, v0: HMAC-SHA256 of `v0:<timestamp>:<raw body>` under
//! the app's signing secret).

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{lineage, shown_args, ChannelVerdict};
use crate::approval::{ApprovalStatus, PendingApproval};
use crate::error::{Error, ErrorCode, Result};

/// How far a request's timestamp may be from now, in seconds (Slack's recommendation).
const WINDOW_SECS: i64 = 300;

/// Signatures remembered to refuse replays; beyond this many unexpired ones, new requests are
/// refused rather than forgetting one early (a flood cannot open a replay window).
const MAX_REMEMBERED: usize = 100_000;

/// Checks the requests Slack sends an app: the signature, the timestamp window, replays.
pub struct SlackVerifier {
    secret: Zeroizing<Vec<u8>>,
    /// Digest of each accepted signature, with when it leaves the window.
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

impl std::fmt::Debug for SlackVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackVerifier").finish_non_exhaustive()
    }
}

impl SlackVerifier {
    /// Verifies requests signed with the app's `signing_secret`.
    pub fn new(signing_secret: &str) -> Self {
        Self { secret: Zeroizing::new(signing_secret.as_bytes().to_vec()), seen: Mutex::new(HashMap::new()) }
    }

    /// Accepts a request once: its `X-Slack-Request-Timestamp` within 300 s of `now`, its
    /// `X-Slack-Signature` the HMAC of exactly `body` (compared in constant time), and the
    /// same signature never accepted before.
    pub fn verify(&self, timestamp: &str, signature: &str, body: &[u8], now: i64) -> Result<()> {
        let invalid = |why: &str| Err(Error::new(ErrorCode::ChannelSignatureInvalid, format!("slack request: {why}")));
        let Ok(ts) = timestamp.trim().parse::<i64>() else { return invalid("the timestamp is not a number") };
        if now.abs_diff(ts) > WINDOW_SECS.unsigned_abs() {
            return invalid("the timestamp is outside the 300 s window");
        }
        let Some(given) = signature.trim().strip_prefix("v0=").and_then(|h| hex::decode(h).ok()) else {
            return invalid("the signature is not `v0=<hex>`");
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else { return invalid("no signing secret") };
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        if mac.verify_slice(&given).is_err() {
            return invalid("the signature does not match the body");
        }
        let digest: [u8; 32] = Sha256::digest(&given).into();
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED / 2 {
            seen.retain(|_, expires| *expires >= now);
        }
        if seen.contains_key(&digest) {
            return Err(Error::new(ErrorCode::ChannelReplayed, "slack request: already received"));
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(Error::new(ErrorCode::ChannelReplayed, "slack request: too many recent requests to check for replay"));
        }
        seen.insert(digest, ts.saturating_add(WINDOW_SECS));
        Ok(())
    }
}

/// A button click on an approval message, as Slack posts it (`block_actions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackAction {
    /// `<team id>/<user id>` of the person who clicked: what the roster lists.
    pub account: String,
    /// Approve or reject.
    pub verdict: ChannelVerdict,
    /// The approval the button carries.
    pub approval_id: String,
    /// Where to post the updated message, if Slack gave one.
    pub response_url: Option<String>,
}

impl SlackAction {
    /// Parses a verified interaction body (`application/x-www-form-urlencoded` with one
    /// `payload` field holding JSON).
    pub fn parse(body: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::malformed_request(format!("slack interaction: {why}"));
        let payload = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| bad("no `payload` field"))?;
        let payload: Value = serde_json::from_str(&payload).map_err(|e| bad(&format!("payload is not JSON: {e}")))?;
        if payload["type"] != "block_actions" {
            return Err(bad("not a `block_actions` interaction"));
        }
        let user = payload["user"]["id"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("no `user.id`"))?;
        let team = payload["user"]["team_id"]
            .as_str()
            .or_else(|| payload["team"]["id"].as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("no team id"))?;
        let actions = payload["actions"].as_array().ok_or_else(|| bad("no `actions`"))?;
        let [action] = actions.as_slice() else { return Err(bad("expected exactly one action")) };
        let verdict = action["action_id"]
            .as_str()
            .and_then(ChannelVerdict::from_action)
            .ok_or_else(|| bad("the action is not `aegis_approve` or `aegis_reject`"))?;
        let approval_id = action["value"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("the button has no value"))?;
        Ok(Self {
            account: format!("{team}/{user}"),
            verdict,
            approval_id: approval_id.to_owned(),
            response_url: payload["response_url"].as_str().map(str::to_owned),
        })
    }
}

/// Who approved so far, of how many needed.
fn votes_line(pending: &PendingApproval) -> String {
    let who: Vec<String> = pending.votes.iter().map(|v| format!("`{}`", inert(&v.approver))).collect();
    format!("approved by {} ({} of {} needed)", who.join(", "), pending.votes.len(), pending.votes_needed())
}

/// Text from a request, made inert in Slack's `mrkdwn`: `&`, `<` and `>` escaped (no mentions,
/// links or channel pings) and code fences broken so arguments cannot end their block.
fn inert(text: &str) -> String {
    let mut text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    // No two backticks stay adjacent, however many were sent.
    while text.contains("``") {
        text = text.replace("``", "`\u{200b}`");
    }
    text
}

/// A Slack Block Kit message body (for `chat.postMessage` or an incoming webhook) asking a
/// human to approve or reject a pending approval: the tool, the sanitized arguments, who asks
/// and through whom, the policies that asked and why. The buttons carry the `approval_id` as
/// their `value` (never a token), with `action_id`s `aegis_approve` and `aegis_reject`.
pub fn slack_message(pending: &PendingApproval) -> Value {
    let why: Vec<String> = pending
        .policy_ids
        .iter()
        .zip(pending.reasons.iter())
        .map(|(id, msg)| format!("• `{}`: {}", inert(id), inert(msg)))
        .collect();
    json!({
        "text": format!("Approval needed: {} wants to call {}", inert(&pending.agent_id), inert(&pending.tool)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("Approval needed: {}", pending.tool)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Agent*\n{}", inert(&pending.agent_id))},
                {"type": "mrkdwn", "text": format!("*Delegated by*\n{}", inert(&lineage(pending)))},
                {"type": "mrkdwn", "text": format!("*Task*\n{}", inert(&pending.task_id))},
                {"type": "mrkdwn", "text": format!("*Intent*\n{}", inert(&pending.intent))},
                {"type": "mrkdwn", "text": format!("*Approver role*\n{}", inert(&pending.roles.join(", ")))},
                {"type": "mrkdwn", "text": format!("*Approval id*\n`{}`", pending.approval_id)},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Arguments*\n```{}```", inert(&shown_args(pending)))}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Why*\n{}", why.join("\n"))}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("policy version `{}` · call digest `{}`", inert(&pending.policy_version), pending.call_digest)},
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

/// The message that replaces an approval request once answered (for the click's
/// `response_url`): the request without its buttons, and who decided what and when. `refusal`
/// is why an answer was not taken (the request then stays as it was, answerable by someone
/// else).
pub fn slack_resolved_message(pending: &PendingApproval, refusal: Option<&str>) -> Value {
    let mut message = slack_message(pending);
    let status = match (refusal, pending.status) {
        (Some(why), _) => format!(":no_entry: answer not taken: {}", inert(why)),
        (None, ApprovalStatus::Approved) => "approved".to_owned(),
        (None, ApprovalStatus::Rejected) => "rejected".to_owned(),
        (None, ApprovalStatus::Superseded) => "superseded".to_owned(),
        (None, ApprovalStatus::Pending) => "pending".to_owned(),
    };
    let by = pending.resolved_by.as_deref().map(inert).unwrap_or_else(|| "-".into());
    let when = pending.resolved_at_ms.map(|ms| format!("<!date^{}^{{date_short_pretty}} {{time_secs}}|{ms} ms>", ms / 1000));
    let partial = refusal.is_none() && pending.status == ApprovalStatus::Pending;
    let line = match (refusal, partial) {
        (Some(_), _) => status,
        // A vote of several: the buttons stay for the next approver.
        (None, true) => votes_line(pending),
        (None, false) => format!("*{status}* by `{by}` at {}", when.unwrap_or_default()),
    };
    if let Some(blocks) = message["blocks"].as_array_mut() {
        if refusal.is_none() && !partial {
            blocks.retain(|b| b["type"] != "actions");
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": line}}));
    }
    message["replace_original"] = Value::Bool(refusal.is_none());
    message
}
