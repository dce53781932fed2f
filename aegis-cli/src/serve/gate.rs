//! The proxy contract (Envoy ext_authz, nginx `auth_request`): a proxied tool call described by
//! its headers, path and (when the proxy sends it) body becomes one `authorize`, and the
//! decision becomes a status and headers. Shared by the HTTP and the gRPC check services.
//!
//! - The agent: `Authorization: Bearer <root>~<link>~...~<leaf>` (its credential chain).
//! - The tool: MCP's `Mcp-Name` header, else `Aegis-Tool`, else the path segment after
//!   `/tools/`.
//! - The arguments: the body (a JSON object, or an MCP `tools/call` request, whose `name` must
//!   be the tool), else `Aegis-Args` (base64url JSON) when the proxy cannot send bodies (nginx),
//!   else `{}` only for the bundle's `decide_without_args` tools; otherwise `args_required`.
//! - `Aegis-Proof`, `Aegis-Approval` (an override token) or `Aegis-Approval-Id` (the approval
//!   this call was approved under: the service presents its token), `traceparent`.
//!
//! Only `allow` passes (200), with `Aegis-Call-Digest` and, when the engine issues receipts,
//! `Aegis-Receipt`. `approval_needed` is a deny (ext_authz has no pending verdict)
//! carrying `Aegis-Approval-Id`; `sanitize` is a deny (`sanitize_unenforceable`): a proxy
//! cannot rewrite the body, and running the tool with what a policy redacted is not an option.

use std::collections::HashMap;

use aegis_sod::{AuthorizationRequest, Decision, Error, ErrorCode, Outcome};
use base64::Engine as _;
use serde_json::{json, Value};

use super::Service;

/// A proxied call, as the proxy describes it.
pub(crate) struct ProxiedCall<'a> {
    /// Header names in lowercase.
    pub headers: &'a HashMap<String, String>,
    /// The original request's path (with its query).
    pub path: &'a str,
    /// The original request's body, if the proxy sent it.
    pub body: Option<&'a [u8]>,
}

/// What the gate answers the proxy.
pub(crate) struct GateAnswer {
    /// 200 allows; 401 and 403 deny.
    pub status: u16,
    /// Headers for the proxy (and, through it, for the tool or the agent).
    pub headers: Vec<(&'static str, String)>,
    /// A JSON description of the decision.
    pub body: Value,
}

/// Decides on a proxied call.
pub(crate) fn check(service: &Service, call: &ProxiedCall<'_>) -> GateAnswer {
    let request = match request_of(service, call) {
        Ok(r) => r,
        Err(e) => return refused(&e),
    };
    let decision = match service.engine.authorize(&request) {
        Ok(d) => d,
        Err(e) => return refused(&e),
    };
    service.metrics.decision(&service.engine.bundle(), &request.tool, &decision);
    answer(&request, &decision)
}

/// The authorization request a proxied call makes.
fn request_of(service: &Service, call: &ProxiedCall<'_>) -> Result<AuthorizationRequest, Error> {
    let header = |name: &str| call.headers.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let chain = bearer_chain(header("authorization"))?;
    // Every place that names the tool must name the same one: the upstream runs the tool of
    // the path, so a header naming another would have the gate decide on the wrong tool.
    let path = call.path.split(['?', '#']).next().unwrap_or_default();
    let from_path = path.split_once("/tools/").map(|(_, rest)| rest.trim_matches('/')).filter(|t| !t.is_empty());
    if from_path.is_some_and(|t| t.contains('/')) {
        return Err(Error::new(ErrorCode::MalformedRequest, "the path names no single tool under `/tools/`"));
    }
    let names: Vec<&str> = [header("mcp-name"), header("aegis-tool"), from_path].into_iter().flatten().collect();
    if let Some(other) = names.iter().find(|n| **n != names[0]) {
        return Err(Error::new(
            ErrorCode::ArgsInvalid,
            format!("the call names two tools, `{}` and `{other}` (path, `Mcp-Name`, `Aegis-Tool`)", names[0]),
        ));
    }
    let mut tool = names.first().map(|t| (*t).to_owned());
    let body_args = match call.body.filter(|b| !b.iter().all(u8::is_ascii_whitespace)) {
        None => None,
        Some(body) => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| Error::new(ErrorCode::MalformedRequest, format!("the body is not JSON: {e}")))?;
            Some(mcp_arguments(value, &mut tool)?)
        }
    };
    let tool = tool.ok_or_else(|| Error::new(ErrorCode::MalformedRequest, "no tool: send `Mcp-Name` or call `/tools/<tool>`"))?;
    let header_args = header("aegis-args").map(decode_args).transpose()?;
    let args = match (body_args, header_args) {
        (Some(body), Some(header)) if body != header => {
            return Err(Error::new(ErrorCode::ArgsInvalid, "the arguments in `Aegis-Args` differ from the body's"))
        }
        (Some(args), _) | (None, Some(args)) => args,
        (None, None) if service.engine.bundle().decides_without_args(&tool) => json!({}),
        (None, None) => {
            return Err(Error::new(
                ErrorCode::ArgsRequired,
                format!("`{tool}` is decided on its arguments: send the body or `Aegis-Args`"),
            ))
        }
    };
    let mut request = AuthorizationRequest::new(chain, tool, args);
    if let Some(proof) = header("aegis-proof") {
        request = request.with_proof(proof);
    }
    let approval_id = header("aegis-approval-id").map(str::to_owned);
    let token =
        header("aegis-approval").map(str::to_owned).or_else(|| approval_id.as_deref().and_then(|id| service.token_for(id)));
    if let Some(token) = token {
        request = request.with_approval_token(token);
    }
    if let Some(traceparent) = header("traceparent") {
        request = request.with_traceparent(traceparent);
    }
    if let Some(id) = header("aegis-tool-call-id") {
        request = request.with_tool_call_id(id);
    }
    Ok(request)
}

/// The arguments of a body: an MCP `tools/call` request's `params.arguments` (its
/// `params.name` fixing or matching the tool), or the body itself.
fn mcp_arguments(body: Value, tool: &mut Option<String>) -> Result<Value, Error> {
    let is_rpc = body.get("jsonrpc").is_some() && body.get("method").is_some();
    if !is_rpc {
        return Ok(body);
    }
    if body["method"] != "tools/call" {
        return Err(Error::new(ErrorCode::MalformedRequest, "only MCP `tools/call` requests are decided on"));
    }
    let name = body["params"]["name"]
        .as_str()
        .ok_or_else(|| Error::new(ErrorCode::MalformedRequest, "`tools/call` without `params.name`"))?;
    match tool {
        Some(t) if t != name => {
            return Err(Error::new(ErrorCode::ArgsInvalid, format!("`Mcp-Name` is `{t}` but the body calls `{name}`")))
        }
        _ => *tool = Some(name.to_owned()),
    }
    Ok(body["params"].get("arguments").cloned().unwrap_or_else(|| json!({})))
}

fn decode_args(header: &str) -> Result<Value, Error> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim().trim_end_matches('='))
        .map_err(|_| Error::new(ErrorCode::ArgsInvalid, "`Aegis-Args` is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::new(ErrorCode::ArgsInvalid, format!("`Aegis-Args` is not JSON: {e}")))
}

/// The credential chain of `Authorization: Bearer a~b~c`, root first.
pub(crate) fn bearer_chain(authorization: Option<&str>) -> Result<Vec<String>, Error> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::new(ErrorCode::MalformedToken, "no `Authorization: Bearer <credential chain>`"))?;
    Ok(token.split('~').map(str::to_owned).collect())
}

fn answer(request: &AuthorizationRequest, decision: &Decision) -> GateAnswer {
    let mut headers = vec![
        ("aegis-decision-id", decision.decision_id.clone()),
        ("aegis-policy-version", decision.policy_version.clone()),
        ("aegis-outcome", decision.outcome.to_string()),
    ];
    let mut body = json!({
        "outcome": decision.outcome,
        "decision_id": decision.decision_id,
        "reasons": decision.reasons,
    });
    let status = match decision.outcome {
        Outcome::Allow => {
            if let Ok(digest) = aegis_sod::call_digest(&request.tool, &request.args) {
                headers.push(("aegis-call-digest", digest));
            }
            // For tools that check for themselves (`/.well-known/jwks.json`).
            if let Some(receipt) = &decision.receipt {
                headers.push(("aegis-receipt", receipt.clone()));
            }
            200
        }
        Outcome::ApprovalNeeded => {
            if let Some(id) = &decision.approval_id {
                headers.push(("aegis-approval-id", id.clone()));
                body["approval_id"] = json!(id);
            }
            403
        }
        Outcome::Sanitize => {
            let e = Error::new(ErrorCode::SanitizeUnenforceable, "the policy redacts arguments, which a proxy cannot rewrite");
            headers.push(("aegis-reason", e.code().to_string()));
            body["reasons"] = json!([{"code": e.code(), "message": e.message()}]);
            403
        }
        _ => {
            if let Some(reason) = decision.reasons.first() {
                headers.push(("aegis-reason", reason.code.to_string()));
            }
            403
        }
    };
    GateAnswer { status, headers, body }
}

/// A call the gate could not put to the engine (no credentials, no arguments): a deny with
/// the error's code.
fn refused(e: &Error) -> GateAnswer {
    let status = if e.code() == ErrorCode::MalformedToken { 401 } else { 403 };
    GateAnswer {
        status,
        headers: vec![("aegis-outcome", "deny".into()), ("aegis-reason", e.code().to_string())],
        body: json!({"outcome": "deny", "reasons": [{"code": e.code(), "message": e.message()}]}),
    }
}
