//! Slack and Teams: posting approval requests, and taking the answers people give there.
//!
//! An answer is taken only once the platform's request verifies (Slack's signature, Bot
//! Framework's token); the account that answered is then attested as its roster identity by
//! the engine, which runs every approver check. Delivery is best effort and off the decision
//! path: a request that cannot be posted stays pending, and its call stays denied.

use std::sync::Arc;
use std::time::Duration;

use aegis_sod::{
    slack_message, slack_resolved_message, teams_card, teams_invoke_response, ApprovalResolution, Channel, Clock as _, Error,
    ErrorCode, PendingApproval, SlackAction, SystemClock, TeamsAction,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::{blocking, error_response};
use super::Service;

/// A message to post.
pub(crate) enum Outgoing {
    /// A new pending approval: post it to every configured channel.
    NewApproval(Box<PendingApproval>),
    /// A reply to a Slack click (`response_url`).
    SlackUpdate { url: String, body: Value },
}

/// Where new approval requests are posted.
pub(crate) struct Posts {
    pub slack: Option<String>,
    pub teams: Option<String>,
}

/// Posts outgoing messages until the service stops, one at a time, off the runtime's threads.
pub(crate) async fn deliver(service: Arc<Service>, posts: Posts, mut inbox: mpsc::Receiver<Outgoing>) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).http_status_as_error(false).build().into();
    let posts = Arc::new(posts);
    while let Some(message) = inbox.recv().await {
        let (service, agent, posts) = (Arc::clone(&service), agent.clone(), Arc::clone(&posts));
        let _ = tokio::task::spawn_blocking(move || send(&service, &agent, &posts, message)).await;
    }
}

fn send(service: &Service, agent: &ureq::Agent, posts: &Posts, message: Outgoing) {
    match message {
        Outgoing::NewApproval(pending) => {
            if let Some(url) = &posts.slack {
                post(service, agent, "slack", url, &slack_message(&pending));
            }
            if let Some(url) = &posts.teams {
                let card = teams_card(&pending, None);
                let message = json!({"type": "message", "attachments": [
                    {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
                ]});
                post(service, agent, "teams", url, &message);
            }
        }
        Outgoing::SlackUpdate { url, body } => post(service, agent, "slack", &url, &body),
    }
}

fn post(service: &Service, agent: &ureq::Agent, channel: &str, url: &str, body: &Value) {
    let sent = agent.post(url).send_json(body);
    let ok = matches!(&sent, Ok(r) if r.status().is_success());
    service.metrics.delivery(channel, if ok { "ok" } else { "failed" });
    if !ok {
        let why = match sent {
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        eprintln!("aegis serve: posting to {channel} failed ({why}); the approval stays pending");
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /v1/channels/slack/actions`: a button click on an approval message.
pub(crate) async fn slack_action(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(verifier) = &service.slack else {
        return error_response(&Error::new(ErrorCode::ChannelUserUnknown, "slack is not configured"));
    };
    let verified = verifier.verify(
        header(&headers, "x-slack-request-timestamp").unwrap_or_default(),
        header(&headers, "x-slack-signature").unwrap_or_default(),
        &body,
        SystemClock.now_secs(),
    );
    if let Err(e) = verified {
        service.metrics.channel_answer("slack", "unverified");
        return error_response(&e);
    }
    let action = match SlackAction::parse(&body) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let (svc, a) = (Arc::clone(&service), action.clone());
    let resolved =
        blocking(move || svc.engine.resolve_from_channel(Channel::Slack, &a.account, &a.approval_id, a.verdict, None)).await;
    let reply = |body: Value| {
        if let Some(url) = &action.response_url {
            let _ = service.outbox.try_send(Outgoing::SlackUpdate { url: url.clone(), body });
        }
    };
    match resolved {
        Ok(resolution) => {
            let refusal = refusal_of(&resolution);
            reply(slack_resolved_message(&resolution.approval, refusal.as_deref()));
            taken(
                &service,
                "slack",
                resolution,
                |r| json!({"accepted": r.accepted, "approval": r.approval, "reasons": r.reasons}),
            )
        }
        Err(e) => {
            service.metrics.channel_answer("slack", "refused");
            if let Ok(Some(pending)) = service.engine.approval(&action.approval_id) {
                reply(slack_resolved_message(&pending, Some(e.message())));
            }
            error_response(&e)
        }
    }
}

/// `POST /v1/channels/teams/messages`: an `adaptiveCard/action` invoke from the Bot Framework.
pub(crate) async fn teams_action(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(verifier) = &service.teams else {
        return error_response(&Error::new(ErrorCode::ChannelUserUnknown, "teams is not configured"));
    };
    // The token is checked before anything of the activity is acted on; the activity is
    // parsed first only to learn the `serviceUrl` the token must name.
    let action = TeamsAction::parse(&body);
    let service_url = action.as_ref().map(|a| a.service_url.as_str()).unwrap_or_default();
    if let Err(e) = verifier.verify(header(&headers, "authorization"), service_url, SystemClock.now_secs()) {
        service.metrics.channel_answer("teams", "unverified");
        return error_response(&e);
    }
    let action = match action {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let (svc, a) = (Arc::clone(&service), action.clone());
    let resolved =
        blocking(move || svc.engine.resolve_from_channel(Channel::Teams, &a.account, &a.approval_id, a.verdict, None)).await;
    match resolved {
        Ok(resolution) => {
            let refusal = refusal_of(&resolution);
            let card = teams_card(&resolution.approval, refusal.as_deref());
            taken(&service, "teams", resolution, |_| teams_invoke_response(card))
        }
        Err(e) => {
            service.metrics.channel_answer("teams", "refused");
            error_response(&e)
        }
    }
}

/// Why an answer was not taken, when the approver checks refused it.
fn refusal_of(resolution: &ApprovalResolution) -> Option<String> {
    (!resolution.accepted).then(|| resolution.reasons.first().map_or_else(|| "refused".to_owned(), |r| r.message.clone()))
}

/// The response to an answer the engine took or refused; an approval's token is kept for the
/// agent's retry, never returned to the platform.
fn taken(
    service: &Service,
    channel: &str,
    resolution: ApprovalResolution,
    body: impl FnOnce(&ApprovalResolution) -> Value,
) -> Response {
    service.metrics.channel_answer(channel, if resolution.accepted { "accepted" } else { "refused" });
    service.metrics.resolution(&resolution);
    service.keep_token(&resolution.approval.approval_id, resolution.override_token.as_ref());
    let status = if resolution.accepted { StatusCode::OK } else { StatusCode::FORBIDDEN };
    (status, Json(body(&resolution))).into_response()
}
