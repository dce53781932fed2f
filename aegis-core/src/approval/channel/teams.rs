//! Microsoft Teams: the Adaptive Card a human answers (`Action.Execute`), and the verification
//! of the `adaptiveCard/action` invoke the Bot Framework sends back: a bearer JWT whose issuer
//! is the Bot Framework, whose audience is the bot's app id, unexpired, signed by a key of the
//! configured key set, and whose `serviceurl` is the activity's.

use serde_json::{json, Value};

use super::{lineage, shown_args, ChannelVerdict};
use crate::approval::{ApprovalStatus, PendingApproval};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::ExternalIssuer;

/// The `iss` of the tokens the Bot Framework sends bots.
pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";

/// Clock skew allowed on the Bot Framework's tokens, in seconds (its documented 5 minutes).
const LEEWAY_SECS: i64 = 300;

/// Checks the requests the Bot Framework sends a bot.
#[derive(Debug, Clone)]
pub struct TeamsVerifier {
    tokens: ExternalIssuer,
}

impl TeamsVerifier {
    /// Verifies tokens for the bot `app_id` against `jwks_json` (the Bot Framework's key set,
    /// as fetched from its OpenID metadata by the operator). RS256 only.
    pub fn new(app_id: &str, jwks_json: &str) -> Result<Self> {
        let tokens = ExternalIssuer::new(BOT_FRAMEWORK_ISSUER, app_id, jwks_json)?.algorithms(&["RS256"])?;
        Ok(Self { tokens })
    }

    /// Replaces the key set (the Bot Framework rotates its keys).
    pub fn update_jwks(&self, jwks_json: &str) -> Result<()> {
        self.tokens.update_jwks(jwks_json)
    }

    /// Accepts an invoke whose `Authorization` header is `Bearer <jwt>` verifying at `now`, for
    /// the activity's `service_url`.
    pub fn verify(&self, authorization: Option<&str>, service_url: &str, now: i64) -> Result<()> {
        let invalid = |why: String| Error::new(ErrorCode::ChannelSignatureInvalid, format!("teams request: {why}"));
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("no bearer token".into()))?;
        let (claims, _, _) = self
            .tokens
            .verify_claims(token, now, LEEWAY_SECS, &["exp", "iss", "aud"])
            .map_err(|e| invalid(e.message().to_owned()))?;
        let claimed = claims.get("serviceurl").or_else(|| claims.get("serviceUrl")).and_then(Value::as_str);
        if claimed.map(|u| u.trim_end_matches('/')) != Some(service_url.trim_end_matches('/')) {
            return Err(invalid("the token's `serviceurl` is not the activity's".into()));
        }
        Ok(())
    }
}

/// An `Action.Execute` on an approval card, as the Bot Framework invokes the bot with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsAction {
    /// The Entra ID object id of the person who acted: what the roster lists.
    pub account: String,
    /// Approve or reject.
    pub verdict: ChannelVerdict,
    /// The approval the card carries.
    pub approval_id: String,
    /// The activity's `serviceUrl` (which the token must name).
    pub service_url: String,
}

impl TeamsAction {
    /// Parses an invoke activity (`type: invoke`, `name: adaptiveCard/action`).
    pub fn parse(body: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::malformed_request(format!("teams activity: {why}"));
        let activity: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("not JSON: {e}")))?;
        if activity["type"] != "invoke" || activity["name"] != "adaptiveCard/action" {
            return Err(bad("not an `adaptiveCard/action` invoke"));
        }
        let action = &activity["value"]["action"];
        if action["type"] != "Action.Execute" {
            return Err(bad("not an `Action.Execute`"));
        }
        let verdict = action["verb"]
            .as_str()
            .and_then(ChannelVerdict::from_action)
            .ok_or_else(|| bad("the verb is not `aegis_approve` or `aegis_reject`"))?;
        let approval_id =
            action["data"]["approval_id"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("no `approval_id`"))?;
        let account =
            activity["from"]["aadObjectId"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("no `from.aadObjectId`"))?;
        let service_url = activity["serviceUrl"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| bad("no `serviceUrl`"))?;
        Ok(Self {
            account: account.to_owned(),
            verdict,
            approval_id: approval_id.to_owned(),
            service_url: service_url.to_owned(),
        })
    }
}

/// An Adaptive Card (1.4, `Action.Execute`) asking a human to approve or reject a pending
/// approval; with `refusal` or once resolved, the card that replaces it (no buttons while
/// resolved). The actions carry the `approval_id` in their data, never a token. Card text is
/// plain `TextBlock` text: Adaptive Cards render no markup from it but a Markdown subset, so
/// arguments are shown in a monospace block as JSON.
pub fn teams_card(pending: &PendingApproval, refusal: Option<&str>) -> Value {
    let fact = |title: &str, value: &str| json!({"title": title, "value": inert(value)});
    let why: Vec<Value> = pending
        .policy_ids
        .iter()
        .zip(pending.reasons.iter())
        .map(|(id, msg)| json!({"type": "TextBlock", "text": inert(&format!("{id}: {msg}")), "wrap": true}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Large", "weight": "Bolder", "text": inert(&format!("Approval needed: {}", pending.tool)), "wrap": true}),
        json!({"type": "FactSet", "facts": [
            fact("Agent", &pending.agent_id),
            fact("Delegated by", &lineage(pending)),
            fact("Task", &pending.task_id),
            fact("Intent", &pending.intent),
            fact("Approver role", &pending.roles.join(", ")),
            fact("Approval id", &pending.approval_id),
        ]}),
        json!({"type": "TextBlock", "text": inert(&shown_args(pending)), "fontType": "Monospace", "wrap": true}),
    ];
    body.extend(why);
    body.push(json!({"type": "TextBlock", "isSubtle": true, "size": "Small", "wrap": true,
        "text": format!("policy version {} · call digest {}", pending.policy_version, pending.call_digest)}));
    let answered = pending.status != ApprovalStatus::Pending;
    if !pending.votes.is_empty() && !answered {
        let who: Vec<&str> = pending.votes.iter().map(|v| v.approver.as_str()).collect();
        body.push(json!({"type": "TextBlock", "wrap": true, "text": format!(
            "approved by {} ({} of {} needed)", who.join(", "), pending.votes.len(), pending.votes_needed()
        )}));
    }
    if let Some(why) = refusal {
        body.push(
            json!({"type": "TextBlock", "color": "Attention", "wrap": true, "text": inert(&format!("answer not taken: {why}"))}),
        );
    } else if answered {
        let status = match pending.status {
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Superseded => "superseded",
            ApprovalStatus::Pending => "pending",
        };
        body.push(json!({"type": "TextBlock", "weight": "Bolder", "wrap": true, "text": format!(
            "{status} by {} at {} ms",
            pending.resolved_by.as_deref().unwrap_or("-"),
            pending.resolved_at_ms.unwrap_or_default()
        )}));
    }
    let data = json!({"approval_id": pending.approval_id});
    let actions = if answered {
        json!([])
    } else {
        json!([
            {"type": "Action.Execute", "title": "Approve", "verb": "aegis_approve", "data": data, "style": "positive"},
            {"type": "Action.Execute", "title": "Reject", "verb": "aegis_reject", "data": data, "style": "destructive"},
        ])
    };
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": body,
        "actions": actions,
    })
}

/// Text from a request, made inert in a card's Markdown subset: no links (`[text](url)`) and no
/// emphasis, by swapping the brackets and asterisks for look-alikes.
fn inert(text: &str) -> String {
    text.replace('[', "\u{FF3B}").replace(']', "\u{FF3D}").replace('*', "\u{2217}")
}

/// The body of the answer to an `adaptiveCard/action` invoke: the card that replaces the one
/// acted on.
pub fn teams_invoke_response(card: Value) -> Value {
    json!({"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": card})
}
