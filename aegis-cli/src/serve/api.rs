//! The HTTP API: routes, who may call each, and the mapping of engine errors to statuses.
//!
//! Agents authenticate with their credential chain (`Authorization: Bearer a~b~c`, root
//! first); approvers and administrators with theirs, as root identities holding
//! `aegis.approve` or `aegis.admin`. Administrative changes are `AdminRequest`s the engine
//! checks (two administrators, signed): the service adds no way around the control plane.

use std::collections::HashMap;
use std::sync::Arc;

use aegis_sod::{AuthorizationRequest, BreakGlassRequest, Error, ErrorCode, ADMIN_SCOPE, APPROVE_ACTION};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::gate::{self, bearer_chain, ProxiedCall};
use super::{chat, Service};

/// The OpenAPI description of this API (checked against the routes by the tests).
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// Every route: method and path template, as the OpenAPI description names them.
#[cfg(test)]
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/metrics"),
    ("get", "/report"),
    ("post", "/v1/authorize"),
    ("get", "/v1/approvals"),
    ("get", "/v1/approvals/{approval_id}"),
    ("post", "/v1/approvals/{approval_id}/approve"),
    ("post", "/v1/approvals/{approval_id}/reject"),
    ("post", "/v1/batches"),
    ("get", "/v1/tasks/{task_id}/ledger"),
    ("post", "/v1/tasks/{task_id}/end"),
    ("get", "/v1/break-glass"),
    ("post", "/v1/break-glass"),
    ("get", "/v1/bundle"),
    ("post", "/v1/admin"),
    ("post", "/v1/ext_authz"),
    ("post", "/v1/ext_authz/{path}"),
    ("post", "/v1/channels/slack/actions"),
    ("post", "/v1/channels/teams/messages"),
];

/// The service's routes.
pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/.well-known/jwks.json", get(receipt_jwks))
        .route("/metrics", get(metrics))
        .route("/report", get(report))
        .route("/v1/authorize", post(authorize))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{approval_id}", get(get_approval))
        .route("/v1/approvals/{approval_id}/approve", post(approve))
        .route("/v1/approvals/{approval_id}/reject", post(reject))
        .route("/v1/batches", post(request_batch))
        .route("/v1/tasks/{task_id}/ledger", get(ledger))
        .route("/v1/tasks/{task_id}/end", post(end_task))
        .route("/v1/break-glass", get(open_break_glass).post(break_glass))
        .route("/v1/bundle", get(bundle_status))
        .route("/v1/admin", post(admin))
        // Envoy's HTTP ext_authz service calls with the original method, at the original path
        // below its `path_prefix`; nginx's `auth_request` subrequest is a GET.
        .route("/v1/ext_authz", any(ext_authz))
        .route("/v1/ext_authz/{*path}", any(ext_authz))
        .route("/v1/channels/slack/actions", post(chat::slack_action))
        .route("/v1/channels/teams/messages", post(chat::teams_action))
        .with_state(service)
}

/// Runs an engine call on the blocking pool (stores may block on disk or network).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| Err(Error::new(ErrorCode::Internal, "the engine call panicked")))
}

/// An error as the core's JSON error, with the status its code calls for.
pub(crate) fn error_response(e: &Error) -> Response {
    let status = match e.code() {
        ErrorCode::MalformedRequest | ErrorCode::ArgsInvalid | ErrorCode::UnknownOperation => StatusCode::BAD_REQUEST,
        ErrorCode::MalformedToken | ErrorCode::ChannelSignatureInvalid | ErrorCode::ChannelReplayed => StatusCode::UNAUTHORIZED,
        ErrorCode::ApprovalNotFound => StatusCode::NOT_FOUND,
        ErrorCode::ApprovalNotPending => StatusCode::CONFLICT,
        ErrorCode::StoreUnavailable | ErrorCode::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::FORBIDDEN,
    };
    let body = aegis_sod::json_api::error_json(e);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn reply<T: serde::Serialize>(result: Result<T, Error>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => error_response(&e),
    }
}

fn bearer(headers: &HeaderMap) -> Result<Vec<String>, Error> {
    bearer_chain(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
}

/// The caller as an approver or an administrator.
fn approver_or_admin(service: &Service, headers: &HeaderMap) -> Result<(), Error> {
    let chain = bearer(headers)?;
    match service.engine.authenticate_person(&chain, APPROVE_ACTION) {
        Ok(_) => Ok(()),
        Err(first) => service.engine.authenticate_person(&chain, ADMIN_SCOPE).map(|_| ()).map_err(|_| first),
    }
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    Json(json!({"status": "ok", "policy_version": service.engine.policy_version()})).into_response()
}

/// The keys that verify this service's decision receipts.
async fn receipt_jwks(State(service): State<Arc<Service>>) -> Response {
    match service.engine.receipt_jwks() {
        Some(jwks) => Json(jwks).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            aegis_sod::json_api::error_json(&Error::new(
                ErrorCode::ReceiptInvalid,
                "this service issues no receipts (engine `receipts`)",
            )),
        )
            .into_response(),
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], service.metrics.render()).into_response()
}

/// The operator's report over the engine's audit log, rendered at each request, for
/// approvers and administrators.
async fn report(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let svc = Arc::clone(&service);
    if let Err(e) = blocking(move || approver_or_admin(&svc, &headers)).await {
        return error_response(&e);
    }
    let Some(log) = service.engine.audit_log().cloned() else {
        return error_response(&Error::new(ErrorCode::AuditUnavailable, "this service keeps no audit log"));
    };
    let dir = log.dir();
    let page = blocking(move || {
        // A checkpoint over everything so far: the page verifies the log up to now.
        log.checkpoint()?;
        let read = aegis_sod::audit::read_log(&dir, None, &[])?;
        Ok(aegis_sod::audit::Report::from_logs(&[(dir.display().to_string(), read)]).to_html())
    })
    .await;
    match page {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn authorize(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    match authorization_request(&headers, &body) {
        Ok(request) => decide(service, request).await,
        Err(e) => error_response(&e),
    }
}

/// The request of `/v1/authorize`: the chain may come as the bearer instead of in the body,
/// never as both with different values.
fn authorization_request(headers: &HeaderMap, body: &Bytes) -> Result<AuthorizationRequest, Error> {
    with_bearer_chain(headers, body, false, "authorization request")
}

/// A JSON request whose `chain` is the bearer's (required, or only when sent), never a
/// different one in the body.
fn with_bearer_chain<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    required: bool,
    what: &str,
) -> Result<T, Error> {
    let mut value: serde_json::Value = aegis_sod::from_str_strict(&String::from_utf8_lossy(body))?;
    if required || headers.contains_key(header::AUTHORIZATION) {
        let chain = json!(bearer(headers)?);
        match value.get("chain") {
            Some(given) if given != &chain && given != &json!([]) => {
                return Err(Error::new(ErrorCode::MalformedRequest, "the body's `chain` is not the bearer's"))
            }
            _ => {
                if let Some(object) = value.as_object_mut() {
                    object.insert("chain".into(), chain);
                }
            }
        }
    }
    serde_json::from_value(value).map_err(|e| Error::new(ErrorCode::MalformedRequest, format!("{what}: {e}")))
}

async fn decide(service: Arc<Service>, request: AuthorizationRequest) -> Response {
    let svc = Arc::clone(&service);
    let tool = request.tool.clone();
    let decided = blocking(move || svc.engine.authorize(&request)).await;
    if let Ok(decision) = &decided {
        service.metrics.decision(&service.engine.bundle(), &tool, decision);
    }
    reply(decided)
}

async fn list_approvals(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let svc = Arc::clone(&service);
    reply(blocking(move || approver_or_admin(&svc, &headers).and_then(|()| svc.engine.pending_approvals())).await)
}

/// An approval, to an approver or administrator, or to the agent that asked (which also gets
/// the override token once it is approved).
async fn get_approval(State(service): State<Arc<Service>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let svc = Arc::clone(&service);
    reply(
        blocking(move || {
            let pending = svc
                .engine
                .approval(&id)?
                .ok_or_else(|| Error::new(ErrorCode::ApprovalNotFound, format!("no approval `{id}`")))?;
            if approver_or_admin(&svc, &headers).is_ok() {
                return Ok(json!({"approval": pending}));
            }
            let caller = svc.engine.verify_chain(&bearer(&headers)?)?;
            if caller.agent_id != pending.agent_id || caller.task_id != pending.task_id {
                return Err(Error::new(
                    ErrorCode::ApproverConflict,
                    "only the requester, approvers and administrators see an approval",
                ));
            }
            Ok(json!({"approval": pending, "override_token": svc.token_for(&id)}))
        })
        .await,
    )
}

/// Asks one approval for a batch of calls (the bearer is the agent's chain): posted to the
/// approval channels like any request.
async fn request_batch(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    let svc = Arc::clone(&service);
    reply(
        blocking(move || {
            let request: aegis_sod::BatchRequest = with_bearer_chain(&headers, &body, true, "batch request")?;
            svc.engine.request_batch(&request)
        })
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Note {
    #[serde(default)]
    note: Option<String>,
}

fn note_of(body: &Bytes) -> Result<Option<String>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(aegis_sod::from_str_strict::<Note>(&String::from_utf8_lossy(body))?.note)
}

async fn approve(state: State<Arc<Service>>, id: Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    resolve(state, id, headers, body, true).await
}

async fn reject(state: State<Arc<Service>>, id: Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    resolve(state, id, headers, body, false).await
}

/// Approves or rejects as the bearer; the override token stays with the service for the
/// agent (it is not the approver's to hold).
async fn resolve(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    approve: bool,
) -> Response {
    let svc = Arc::clone(&service);
    let resolved = blocking(move || {
        let chain = bearer(&headers)?;
        let note = note_of(&body)?;
        match approve {
            true => svc.engine.approve(&id, &chain, note.as_deref()),
            false => svc.engine.reject(&id, &chain, note.as_deref()),
        }
    })
    .await;
    match resolved {
        Ok(mut resolution) => {
            service.metrics.resolution(&resolution);
            service.keep_token(&resolution.approval.approval_id, resolution.override_token.as_ref());
            resolution.override_token = None;
            let status = if resolution.accepted { StatusCode::OK } else { StatusCode::FORBIDDEN };
            (status, Json(resolution)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// The task's ledger, to an agent of the task, an approver or an administrator.
async fn ledger(State(service): State<Arc<Service>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    let svc = Arc::clone(&service);
    reply(
        blocking(move || {
            if approver_or_admin(&svc, &headers).is_err() && svc.engine.verify_chain(&bearer(&headers)?)?.task_id != task {
                return Err(Error::new(
                    ErrorCode::ToolNotInScope,
                    "only the task's agents, approvers and administrators read its ledger",
                ));
            }
            svc.engine.ledger(&task)
        })
        .await,
    )
}

/// Ends a task (revoking its credentials): its root identity or an administrator may.
async fn end_task(State(service): State<Arc<Service>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    let svc = Arc::clone(&service);
    reply(
        blocking(move || {
            let chain = bearer(&headers)?;
            let is_admin = svc.engine.authenticate_person(&chain, ADMIN_SCOPE).is_ok();
            if !is_admin {
                // The shared tasks of external identities and chat answers revoke every person
                // of an issuer or channel: only an administrator ends them.
                if task.starts_with("external:") || task.starts_with("channel:") {
                    return Err(Error::new(ErrorCode::ToolNotInScope, format!("only an administrator ends `{task}`")));
                }
                let caller = svc.engine.verify_chain(&chain)?;
                if !caller.is_root() || caller.task_id != task {
                    return Err(Error::new(
                        ErrorCode::ToolNotInScope,
                        "only the task's root identity or an administrator ends it",
                    ));
                }
            }
            svc.engine.end_task(&task).map(|()| json!({"ended": task}))
        })
        .await,
    )
}

/// A break-glass request: it carries its approvers' chains, which the engine checks.
async fn break_glass(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let request: BreakGlassRequest = match aegis_sod::from_str_strict(&String::from_utf8_lossy(&body)) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let svc = Arc::clone(&service);
    reply(blocking(move || svc.engine.break_glass(&request)).await)
}

async fn open_break_glass(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let svc = Arc::clone(&service);
    reply(blocking(move || approver_or_admin(&svc, &headers).and_then(|()| svc.engine.open_break_glass())).await)
}

async fn bundle_status(State(service): State<Arc<Service>>) -> Response {
    let e = &service.engine;
    Json(json!({
        "policy_version": e.policy_version(),
        "mode": e.mode(),
        "candidate_version": e.candidate_version(),
        "history": e.bundle_history(),
    }))
    .into_response()
}

/// An administrative change, signed by two administrators (checked by the engine).
async fn admin(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let svc = Arc::clone(&service);
    reply(blocking(move || svc.engine.admin(&aegis_sod::from_str_strict(&text)?)).await)
}

/// Envoy's HTTP ext_authz check and nginx's `auth_request`: the original request's headers
/// (and body, when sent) at `/v1/ext_authz<original path>`; nginx gives the path in
/// `X-Original-URI`.
async fn ext_authz(State(service): State<Arc<Service>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: HashMap<String, String> =
        headers.iter().filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))).collect();
    // Envoy calls at `/v1/ext_authz<original path>`: that path is the proxy's, never a
    // header. Only a check at the bare `/v1/ext_authz` (nginx, which sets `X-Original-URI`
    // itself, overwriting any the client sent) takes the path from the header.
    let own = uri.path().strip_prefix("/v1/ext_authz").unwrap_or_default();
    let path = match own {
        "" | "/" => headers.get("x-original-uri").cloned().unwrap_or_default(),
        own => own.to_owned(),
    };
    let svc = Arc::clone(&service);
    let answer = tokio::task::spawn_blocking(move || {
        let body = (!body.is_empty()).then_some(&body[..]);
        gate::check(&svc, &ProxiedCall { headers: &headers, path: &path, body })
    })
    .await;
    let Ok(answer) = answer else {
        return error_response(&Error::new(ErrorCode::Internal, "the gate panicked"));
    };
    let mut response = (StatusCode::from_u16(answer.status).unwrap_or(StatusCode::FORBIDDEN), Json(answer.body)).into_response();
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{OPENAPI, ROUTES};

    /// The description names exactly the routes the router serves.
    #[test]
    fn openapi_matches_routes() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let mut documented: Vec<(String, String)> = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(path, ops)| ops.as_object().into_iter().flatten().map(move |(method, _)| (method.clone(), path.clone())))
            .collect();
        let mut served: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
