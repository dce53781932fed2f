//! Per-call proof of possession: a JWS by the leaf agent's key over the call digest, with a
//! `jti` accepted once.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::jws::{self, b64_encode, UnverifiedJws};
use super::keys::{KeyPair, PublicKey};
use crate::error::{Error, ErrorCode, Result};

/// The `typ` of a proof of possession.
pub const PROOF_TYP: &str = "aegis-pop+jwt";

/// The longest a proof may live: a proof is for one call, made right before it.
pub const MAX_PROOF_LIFETIME_SECS: i64 = 300;

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
///
/// RFC 8785 writes every number as the IEEE double it denotes, so two integers beyond ±2^53
/// could share a digest (an approval of one would redeem the other): such arguments are
/// refused (`malformed_request`) wherever a digest binds the call. That includes a whole
/// number beyond ±2^53 held as a double: JSON parsing reads an integer too large for 64 bits
/// as one, so `18446744073709551616` and `18446744073709551617` arrive as the same double.
pub fn call_digest(tool: &str, args: &Value) -> Result<String> {
    check_exact_numbers(args)?;
    let canonical = crate::json::canonical_json(&json!({ "tool": tool, "args": args }));
    Ok(b64_encode(&Sha256::digest(canonical.as_bytes())))
}

/// The largest integer every larger one is not confused with as a double: 2^53.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

fn check_exact_numbers(value: &Value) -> Result<()> {
    match value {
        Value::Number(n) => {
            let exact = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_EXACT_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_EXACT_INTEGER,
                // A fraction is exact as the double it is. A whole double beyond 2^53 may be an
                // integer literal that did not fit 64 bits, rounded on parsing: not exact.
                // (2^53 itself included: `9007199254740993.0` parses to it.)
                (None, None) => n.as_f64().is_some_and(|f| f.fract() != 0.0 || f.abs() < MAX_EXACT_INTEGER as f64),
            };
            if exact {
                Ok(())
            } else {
                Err(Error::malformed_request(format!(
                    "the number `{n}` is a whole number beyond ±2^53, where RFC 8785 cannot tell it from its neighbours"
                )))
            }
        }
        Value::Array(items) => items.iter().try_for_each(check_exact_numbers),
        Value::Object(map) => map.values().try_for_each(check_exact_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// Signs a proof of possession for one call with the leaf agent's key.
pub fn create_proof(key: &KeyPair, tool: &str, args: &Value, jti: &str, issued_at: i64, ttl_secs: i64) -> Result<String> {
    if jti.is_empty() {
        return Err(Error::malformed_request("proof `jti` must not be empty"));
    }
    let claims = ProofClaims { call: call_digest(tool, args)?, jti: jti.to_owned(), iat: issued_at, exp: issued_at + ttl_secs };
    jws::sign(&claims, PROOF_TYP, key)
}

/// Verifies `proof` for the call; returns the single-use key and its expiry for the commit.
pub(crate) fn verify(proof: &str, leaf: &PublicKey, digest: &str, now: i64, leeway: i64) -> Result<(String, i64)> {
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
    // Remembered until the window check would refuse it anyway.
    Ok((format!("proof:{}:{}", leaf.kid(), c.jti), c.exp + leeway + 1))
}

fn as_invalid(e: Error) -> Error {
    match e.code() {
        ErrorCode::SignatureInvalid
        | ErrorCode::MalformedToken
        | ErrorCode::WrongTokenType
        | ErrorCode::UnsupportedAlgorithm
        | ErrorCode::ForbiddenHeader => Error::new(ErrorCode::ProofInvalid, format!("proof: {}", e.message())),
        _ => e,
    }
}
