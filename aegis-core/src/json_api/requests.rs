//! The requests of the engine-free operations: issuing credentials and proofs, resolving
//! approvals.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorCode, Result};
use crate::identity::{self, CredentialSpec, Jwk, KeyPair, PublicKey};
use crate::time::{random_id, Clock, OsRandom, SystemClock};

/// A request to issue a root credential or delegate one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Root: the issuer's name (`iss`). Ignored when delegating (the parent's agent id is used).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The signing key: the issuer's private JWK for a root, the parent agent's for a link.
    pub signing_key: Jwk,
    /// Delegation only: the parent credential.
    #[serde(default)]
    pub parent: Option<String>,
    /// The agent id.
    pub agent_id: String,
    /// The agent's public key.
    pub agent_key: Jwk,
    /// The audience (default `aegis`).
    #[serde(default)]
    pub audience: Option<String>,
    /// The task id (delegation: defaults to the parent's).
    #[serde(default)]
    pub task_id: Option<String>,
    /// The intent (delegation: defaults to the parent's).
    #[serde(default)]
    pub intent: Option<String>,
    /// The tools granted.
    pub scope: Vec<String>,
    /// Issue time in seconds (default: now).
    #[serde(default)]
    pub issued_at: Option<i64>,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
    /// The credential id (default: random).
    #[serde(default)]
    pub jti: Option<String>,
    /// Roots only: the roles the issuer attests.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Delegation only: keep the tools of `scope` that the parent's scope covers (in order,
    /// without repeats) and end no later than the parent, instead of refusing a wider scope or
    /// a longer life. For integrations that mint a sub-agent's delegation from the sub-agent's
    /// tools: a tool its delegator does not hold is then denied on use (`tool_not_in_scope`)
    /// rather than the whole chain refused.
    #[serde(default)]
    pub narrow: bool,
}

/// Issues a root credential or delegates one.
pub fn issue(req: IssueRequest) -> Result<String> {
    let signing_key = KeyPair::from_jwk(&req.signing_key)?;
    let issued_at = req.issued_at.unwrap_or_else(|| SystemClock.now_secs());
    let parent = req.parent.as_deref().map(identity::inspect).transpose()?;
    let inherited = |own: Option<String>, from_parent: fn(&identity::CredentialClaims) -> &String| {
        own.or_else(|| parent.as_ref().map(|p| from_parent(&p.claims).clone()))
            .ok_or_else(|| Error::malformed_request("`task_id` and `intent` are required for a root credential"))
    };
    let (scope, expires_at) = match (&parent, req.narrow) {
        (Some(p), true) => narrowed(&p.claims, req.scope, issued_at, req.ttl_secs)?,
        (None, true) => return Err(Error::malformed_request("`narrow` applies to a delegation only")),
        (_, false) => (req.scope, issued_at.saturating_add(req.ttl_secs)),
    };
    let spec = CredentialSpec {
        agent_id: req.agent_id,
        agent_key: PublicKey::from_jwk(&req.agent_key)?,
        audience: req
            .audience
            .or_else(|| parent.as_ref().map(|p| p.claims.aud.clone()))
            .unwrap_or_else(|| crate::engine::DEFAULT_AUDIENCE.into()),
        task_id: inherited(req.task_id, |c| &c.task)?,
        intent: inherited(req.intent, |c| &c.intent)?,
        scope,
        issued_at,
        expires_at,
        roles: req.roles,
        jti: match req.jti {
            Some(j) => j,
            None => random_id(&OsRandom, "cred_")?,
        },
    };
    match (&req.parent, req.issuer) {
        (Some(parent), _) => identity::delegate(parent, &signing_key, spec),
        (None, Some(issuer)) => identity::issue_root(&issuer, &signing_key, spec),
        (None, None) => Err(Error::malformed_request("a root credential needs `issuer`")),
    }
}

/// The scope and expiry of a delegation narrowed to what its parent holds: the wanted tools the
/// parent's scope covers (by the rule the chain check applies), and the earlier of the asked
/// expiry and the parent's.
fn narrowed(
    parent: &identity::CredentialClaims,
    wanted: Vec<String>,
    issued_at: i64,
    ttl_secs: i64,
) -> Result<(Vec<String>, i64)> {
    if ttl_secs <= 0 {
        return Err(Error::malformed_request(format!("`ttl_secs` must be positive, not {ttl_secs}")));
    }
    let expires_at = issued_at.saturating_add(ttl_secs).min(parent.exp);
    if expires_at <= issued_at {
        return Err(Error::new(
            ErrorCode::CredentialExpired,
            format!("the parent credential of `{}` has expired: it cannot delegate", parent.sub),
        ));
    }
    let mut scope: Vec<String> = Vec::with_capacity(wanted.len());
    for tool in wanted {
        if !scope.contains(&tool) && parent.scope.iter().any(|grant| identity::scope_entry_covers(grant, &tool)) {
            scope.push(tool);
        }
    }
    Ok((scope, expires_at))
}

/// A request for a proof of possession.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofRequest {
    /// The leaf agent's private JWK.
    pub key: Jwk,
    /// The tool.
    pub tool: String,
    /// The exact arguments of the call.
    pub args: Value,
    /// Issue time in seconds (default: now).
    #[serde(default)]
    pub issued_at: Option<i64>,
    /// Lifetime in seconds (default 60).
    #[serde(default)]
    pub ttl_secs: Option<i64>,
    /// The proof id (default: random).
    #[serde(default)]
    pub jti: Option<String>,
}

/// Creates a proof of possession for one call.
pub fn create_proof(req: ProofRequest) -> Result<String> {
    let key = KeyPair::from_jwk(&req.key)?;
    let jti = match req.jti {
        Some(j) => j,
        None => random_id(&OsRandom, "pop_")?,
    };
    identity::create_proof(
        &key,
        &req.tool,
        &req.args,
        &jti,
        req.issued_at.unwrap_or_else(|| SystemClock.now_secs()),
        req.ttl_secs.unwrap_or(60),
    )
}

/// A request to approve or reject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The approval.
    pub approval_id: String,
    /// The approver's credential chain, root first.
    pub approver_chain: Vec<String>,
    /// A note for the record.
    #[serde(default)]
    pub note: Option<String>,
}
