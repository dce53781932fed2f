//! Decision receipts: tools that check for themselves.
//!
//! With a receipt key configured, every permitting decision carries a short-lived receipt: a
//! JWS (EdDSA, `typ: aegis-receipt+jwt`) binding the decision id, the agent and its task, the
//! tool, the digest of the arguments the tool must run (the redacted ones for `sanitize`), the
//! policy version and an audience. The engine publishes the key as a JWK Set; a tool, an MCP
//! server or an HTTP middleware verifies a receipt offline ([`verify_receipt`]) and refuses a
//! call that carries none, or whose arguments are not the authorized ones. A proxy in front of
//! the tool then cannot be bypassed by calling the tool directly, and cannot change what runs.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::engine::{Decision, Engine, Outcome};
use crate::error::{Error, ErrorCode, PolicyVerdict, ReasonCode, Result};
use crate::identity::jws::{self, UnverifiedJws};
use crate::identity::{call_digest, KeyPair, PublicKey, VerifiedChain};

/// The `typ` of a receipt.
pub const RECEIPT_TYP: &str = "aegis-receipt+jwt";

/// What a receipt says: this call was allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptClaims {
    /// Who issued it (the engine's receipt issuer).
    pub iss: String,
    /// Whom it is for (the tools' audience).
    pub aud: String,
    /// The agent that was allowed.
    pub sub: String,
    /// The agent's task.
    pub task: String,
    /// The tool.
    pub tool: String,
    /// The call digest (RFC 8785) of the tool and the arguments it must run.
    pub call: String,
    /// The decision; also the receipt's single-use id for tools that keep one.
    pub jti: String,
    /// The bundle version that decided.
    pub pv: String,
    /// Issued at, seconds.
    pub iat: i64,
    /// Expiry, seconds.
    pub exp: i64,
}

/// The engine's receipt signer (see [`crate::EngineBuilder::receipts`]).
pub(crate) struct ReceiptSigner {
    pub issuer: String,
    pub audience: String,
    pub key: KeyPair,
    pub ttl_secs: i64,
}

impl Engine {
    /// The receipt keys as a JWK Set (RFC 7517), for tools to verify receipts offline; `None`
    /// when this engine issues none.
    pub fn receipt_jwks(&self) -> Option<Json> {
        let signer = self.receipts.as_ref()?;
        let mut jwk = serde_json::to_value(signer.key.public_key().to_jwk()).ok()?;
        jwk["alg"] = json!("EdDSA");
        jwk["use"] = json!("sig");
        Some(json!({ "keys": [jwk] }))
    }

    /// Adds a receipt to a permitting decision (a failure to sign denies: the call may not run
    /// without what its tool will ask for).
    pub(crate) fn with_receipt(
        &self,
        chain: Option<&VerifiedChain>,
        tool: &str,
        args: &Json,
        mut decision: Decision,
    ) -> Decision {
        let (Some(signer), Some(chain)) = (&self.receipts, chain) else { return decision };
        // Log-only mode lets refused calls through for observation; a tool that checks receipts
        // still refuses them.
        let log_only = decision.reasons.iter().any(|r| r.code == ReasonCode::Verdict(PolicyVerdict::ShadowMode));
        if !decision.outcome.permits_call() || log_only {
            return decision;
        }
        let runs = match (decision.outcome, &decision.sanitized_args) {
            (Outcome::Sanitize, Some(redacted)) => redacted,
            (Outcome::Sanitize, None) => {
                let e = Error::new(ErrorCode::Internal, "a sanitize decision without its redacted arguments");
                return crate::engine::deny(decision, e);
            }
            _ => args,
        };
        let now = self.clock.now_secs();
        let signed = call_digest(tool, runs).and_then(|call| {
            let claims = ReceiptClaims {
                iss: signer.issuer.clone(),
                aud: signer.audience.clone(),
                sub: chain.agent_id.clone(),
                task: chain.task_id.clone(),
                tool: tool.to_owned(),
                call,
                jti: decision.decision_id.clone(),
                pv: decision.policy_version.clone(),
                iat: now,
                exp: now.saturating_add(signer.ttl_secs),
            };
            jws::sign(&claims, RECEIPT_TYP, &signer.key)
        });
        match signed {
            Ok(receipt) => decision.receipt = Some(receipt),
            Err(e) => decision = crate::engine::deny(decision, e),
        }
        decision
    }
}

/// What a tool expects of the receipt presented with a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptCheck {
    /// The issuer the tool trusts.
    pub issuer: String,
    /// The tool's audience.
    pub audience: String,
    /// The tool being called.
    pub tool: String,
    /// The arguments the tool is about to run.
    pub args: Json,
}

/// Verifies a receipt offline at `now` (seconds, with `leeway` seconds of skew): signed by a key
/// of `jwks` (a JWK Set of Ed25519 keys), by `check.issuer`, for `check.audience`, unexpired,
/// and for exactly this tool and these arguments. Errors: `receipt_invalid` (missing, malformed,
/// badly signed, another issuer or audience, expired) and `receipt_mismatch` (another tool or
/// other arguments).
pub fn verify_receipt(token: &str, jwks: &Json, check: &ReceiptCheck, now: i64, leeway: i64) -> Result<ReceiptClaims> {
    let invalid = |why: String| Error::new(ErrorCode::ReceiptInvalid, format!("receipt: {why}"));
    if token.trim().is_empty() {
        return Err(invalid("none presented".into()));
    }
    let parsed = UnverifiedJws::<ReceiptClaims>::parse(token, RECEIPT_TYP).map_err(|e| invalid(e.message().to_owned()))?;
    let keys = jwks["keys"].as_array().ok_or_else(|| invalid("the key set has no `keys`".into()))?;
    if keys.iter().any(|k| k.get("d").is_some()) {
        return Err(invalid("the key set holds a private key: publish public keys only".into()));
    }
    let key = keys
        .iter()
        .filter(|k| parsed.header.kid.is_none() || k["kid"].as_str() == parsed.header.kid.as_deref())
        .filter_map(|k| serde_json::from_value(k.clone()).ok())
        .filter_map(|jwk| PublicKey::from_jwk(&jwk).ok())
        .find(|key| parsed.verify(key).is_ok())
        .ok_or_else(|| invalid("no key of the set verifies it".into()))?;
    let _ = key;
    let c = parsed.claims;
    if c.iss != check.issuer {
        return Err(invalid(format!("issued by `{}`", c.iss)));
    }
    if c.aud != check.audience {
        return Err(invalid(format!("for audience `{}`", c.aud)));
    }
    if now.saturating_sub(leeway) >= c.exp {
        return Err(invalid("expired".into()));
    }
    if now.saturating_add(leeway) < c.iat {
        return Err(invalid("issued in the future".into()));
    }
    if c.tool != check.tool || c.call != call_digest(&check.tool, &check.args)? {
        return Err(Error::new(ErrorCode::ReceiptMismatch, "receipt: it authorized another tool or other arguments"));
    }
    Ok(c)
}

/// Receipts consumed by this process ([`verify_receipt_once`]), by `jti`, with their expiry.
static CONSUMED: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Unexpired consumed receipts a process remembers; past this, new ones are refused rather than
/// an old one forgotten early (a flood cannot reopen a replay).
const MAX_CONSUMED: usize = 100_000;

/// [`verify_receipt`], then consumes the receipt in this process: the same receipt presented
/// again before it expires is refused (`receipt_invalid`). What a tool that runs each
/// authorized call once uses (the MCP guards do).
pub fn verify_receipt_once(token: &str, jwks: &Json, check: &ReceiptCheck, now: i64, leeway: i64) -> Result<ReceiptClaims> {
    let claims = verify_receipt(token, jwks, check, now, leeway)?;
    let mut consumed = CONSUMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if consumed.len() >= MAX_CONSUMED / 2 {
        consumed.retain(|_, exp| now.saturating_sub(leeway) < *exp);
    }
    let key = format!("{}\u{0}{}", claims.iss, claims.jti);
    if consumed.contains_key(&key) {
        return Err(Error::new(ErrorCode::ReceiptInvalid, "receipt: already used"));
    }
    if consumed.len() >= MAX_CONSUMED {
        return Err(Error::new(ErrorCode::ReceiptInvalid, "receipt: too many recent receipts to check for replay"));
    }
    consumed.insert(key, claims.exp);
    Ok(claims)
}
