//! Delegable agent credentials: issuing, delegating and inspecting.
//!
//! A chain is root → … → leaf. The root is signed by a trusted issuer key; each delegated link
//! is signed by the key its parent binds in `cnf`, names the parent by digest in `par`, and may
//! only narrow what the parent granted.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{check_narrowing, ParentLink};
use super::jws::{self, b64_encode, JwsHeader, UnverifiedJws};
use super::keys::{Jwk, KeyPair, PublicKey};
use crate::error::{Error, ErrorCode, Result};

/// The `typ` of an Aegis credential.
pub const CREDENTIAL_TYP: &str = "aegis-credential+jwt";

/// The claims of a credential (root or delegated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialClaims {
    /// Issuer: the trusted issuer's name for a root, the parent's agent id for a delegated link.
    pub iss: String,
    /// The agent id this credential is for.
    pub sub: String,
    /// The audience: the engine that accepts it.
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// A unique id of this credential.
    pub jti: String,
    /// The task this credential is for.
    pub task: String,
    /// Why the task exists, in words; handed to policies and approvers.
    pub intent: String,
    /// The tools the agent may call: exact names, `prefix.*`, or `*`.
    pub scope: Vec<String>,
    /// The agent's key (proof of possession and delegation).
    pub cnf: Confirmation,
    /// For delegated links: the digest of the parent credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub par: Option<String>,
    /// Roots only: the roles the issuer attests for this identity (`finance-approver`, ...).
    /// A delegated link carries none: roles are never delegated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The `cnf` claim (RFC 7800): the key the credential is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The agent's public key.
    pub jwk: Jwk,
}

/// What a caller decides when issuing or delegating; the rest is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSpec {
    /// The agent id.
    pub agent_id: String,
    /// The agent's public key, bound as `cnf`.
    pub agent_key: PublicKey,
    /// The audience (the engine's configured audience).
    pub audience: String,
    /// The task id. For a delegated link it must equal the parent's.
    pub task_id: String,
    /// The intent.
    pub intent: String,
    /// The tools granted.
    pub scope: Vec<String>,
    /// Issued at / not before, seconds since the epoch.
    pub issued_at: i64,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
    /// The credential id.
    pub jti: String,
    /// Roots only: the roles the issuer attests (empty for a delegation).
    pub roles: Vec<String>,
}

impl CredentialSpec {
    fn into_claims(self, iss: String, par: Option<String>) -> CredentialClaims {
        CredentialClaims {
            iss,
            sub: self.agent_id,
            aud: self.audience,
            iat: self.issued_at,
            nbf: self.issued_at,
            exp: self.expires_at,
            jti: self.jti,
            task: self.task_id,
            intent: self.intent,
            scope: self.scope,
            cnf: Confirmation { jwk: self.agent_key.to_jwk() },
            par,
            roles: self.roles,
        }
    }
}

/// Issues a root credential signed by an issuer key.
pub fn issue_root(issuer_name: &str, issuer_key: &KeyPair, spec: CredentialSpec) -> Result<String> {
    check_spec(&spec)?;
    jws::sign(&spec.into_claims(issuer_name.to_owned(), None), CREDENTIAL_TYP, issuer_key)
}

/// Delegates from `parent` (a credential bound to `parent_key`) to a new agent.
///
/// Narrowing is checked here too, so a delegation the engine would refuse is not minted.
pub fn delegate(parent: &str, parent_key: &KeyPair, spec: CredentialSpec) -> Result<String> {
    check_spec(&spec)?;
    if !spec.roles.is_empty() {
        return Err(Error::malformed_request("roles are attested by issuers; a delegation cannot carry them"));
    }
    if spec.agent_key.kid() == parent_key.public_key().kid() {
        return Err(Error::new(ErrorCode::DelegationCycle, "a delegation to the delegator's own key is the delegator itself"));
    }
    let parent_claims = inspect(parent)?.claims;
    if parent_claims.cnf.jwk.x != parent_key.public_key().to_jwk().x {
        return Err(Error::new(ErrorCode::InvalidKey, "the signing key is not the key the parent credential binds"));
    }
    let claims = spec.into_claims(parent_claims.sub.clone(), Some(digest(parent)));
    check_narrowing(&ParentLink::of_claims(&parent_claims), &claims)?;
    jws::sign(&claims, CREDENTIAL_TYP, parent_key)
}

/// A credential decoded without verification, for display and debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectedCredential {
    /// The protected header.
    pub header: JwsHeader,
    /// The claims.
    pub claims: CredentialClaims,
    /// The digest a child names in `par`.
    pub digest: String,
}

/// Decodes a credential without checking its signature or validity. Never use the result for
/// a decision; it is for display.
pub fn inspect(token: &str) -> Result<InspectedCredential> {
    let parsed = UnverifiedJws::<CredentialClaims>::parse(token, CREDENTIAL_TYP)?;
    Ok(InspectedCredential { header: parsed.header, claims: parsed.claims, digest: digest(token) })
}

/// The digest of a credential, as named by its children: SHA-256 of the compact form, base64url.
pub fn digest(token: &str) -> String {
    b64_encode(&Sha256::digest(token.as_bytes()))
}

fn check_spec(spec: &CredentialSpec) -> Result<()> {
    if spec.agent_id.is_empty() || spec.task_id.is_empty() {
        return Err(Error::malformed_request("agent id and task id must not be empty"));
    }
    if spec.expires_at <= spec.issued_at {
        return Err(Error::malformed_request("expiry must be after issue time"));
    }
    if spec.agent_id.contains(super::chain::DELEGATE_SEPARATOR) {
        return Err(Error::malformed_request(format!(
            "agent id `{}` contains `/`, which separates delegated ids",
            spec.agent_id
        )));
    }
    Ok(())
}
