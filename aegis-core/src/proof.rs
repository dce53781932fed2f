//! Per-call proof of possession: a JWS by the leaf agent's key over the call digest, with a
//! `jti` accepted once.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, Result};
use crate::jws::{self, b64_encode, UnverifiedJws};
use crate::keys::{KeyPair, PublicKey};

/// The `typ` of a proof of possession.
pub const PROOF_TYP: &str = "aegis-pop+jwt";

/// The longest a proof may live: a proof is for one call, made right before it.
pub const MAX_PROOF_LIFETIME_SECS: i64 = 300;

/// Entries kept before expired `jti`s are pruned.
const REPLAY_PRUNE_THRESHOLD: usize = 65_536;

/// The claims of a proof of possession.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofClaims {
    /// The call digest ([`call_digest`]).
    pub call: String,
    /// A unique id; the engine accepts it once.
    pub jti: String,
    /// Issued at, seconds.
    pub iat: i64,
    /// Expiry, seconds.
    pub exp: i64,
}

/// The digest that binds a call: SHA-256 over the RFC 8785 canonical JSON of
/// `{"args": args, "tool": tool}`, base64url. One changed argument changes it.
pub fn call_digest(tool: &str, args: &Value) -> String {
    let canonical = crate::json::canonical_json(&json!({ "tool": tool, "args": args }));
    b64_encode(&Sha256::digest(canonical.as_bytes()))
}

/// Signs a proof of possession for one call with the leaf agent's key.
pub fn create_proof(key: &KeyPair, tool: &str, args: &Value, jti: &str, issued_at: i64, ttl_secs: i64) -> Result<String> {
    if jti.is_empty() {
        return Err(Error::malformed_request("proof `jti` must not be empty"));
    }
    let claims = ProofClaims { call: call_digest(tool, args), jti: jti.to_owned(), iat: issued_at, exp: issued_at + ttl_secs };
    jws::sign(&claims, PROOF_TYP, key)
}

/// Remembers used proof ids until they expire.
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Verifies `proof` for the call and consumes its `jti`.
    pub fn verify_and_consume(&self, proof: &str, leaf: &PublicKey, digest: &str, now: i64, leeway: i64) -> Result<()> {
        let parsed = UnverifiedJws::<ProofClaims>::parse(proof, PROOF_TYP).map_err(as_invalid)?;
        parsed.verify(leaf).map_err(as_invalid)?;
        let c = &parsed.claims;
        if c.call != digest {
            return Err(Error::new(ErrorCode::ProofInvalid, "proof is for another call"));
        }
        if c.jti.is_empty() || c.exp <= c.iat || c.exp - c.iat > MAX_PROOF_LIFETIME_SECS {
            return Err(Error::new(ErrorCode::ProofInvalid, "proof has no `jti` or an unacceptable lifetime"));
        }
        if now + leeway < c.iat || now - leeway >= c.exp {
            return Err(Error::new(ErrorCode::ProofInvalid, "proof is outside its validity window"));
        }
        let key = format!("{}:{}", leaf.kid(), c.jti);
        let mut seen = self.seen.lock().map_err(|_| Error::internal("replay guard lock poisoned"))?;
        if seen.len() >= REPLAY_PRUNE_THRESHOLD {
            seen.retain(|_, expiry| *expiry > now);
        }
        if seen.get(&key).is_some_and(|expiry| *expiry > now) {
            return Err(Error::new(ErrorCode::ProofReplayed, format!("proof `jti` `{}` was already used", c.jti)));
        }
        // Remembered past its expiry plus leeway: after that the window check refuses it anyway.
        seen.insert(key, c.exp + leeway + 1);
        Ok(())
    }
}

fn as_invalid(e: Error) -> Error {
    match e.code() {
        ErrorCode::SignatureInvalid | ErrorCode::MalformedToken | ErrorCode::WrongTokenType
        | ErrorCode::UnsupportedAlgorithm | ErrorCode::ForbiddenHeader => {
            Error::new(ErrorCode::ProofInvalid, format!("proof: {}", e.message()))
        }
        _ => e,
    }
}
