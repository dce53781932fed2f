//! Strict EdDSA compact JWS (RFC 7515 + RFC 8037).
//!
//! Only `alg: EdDSA`; only the header members `alg`, `typ` and `kid`; canonical unpadded
//! base64url in every segment; duplicate JSON keys rejected; `verify_strict` signatures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorCode, Result};
use crate::keys::{KeyPair, PublicKey};

/// Header members that let a token choose its own key or processing rules.
const FORBIDDEN_HEADERS: &[&str] = &["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "zip"];

/// Encodes bytes as unpadded base64url.
pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url, accepting only the canonical encoding (no padding, no stray
/// trailing bits, no other alphabets): one value has exactly one accepted spelling.
pub fn b64_decode(text: &str) -> Result<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| Error::malformed_token("segment is not canonical base64url"))?;
    if URL_SAFE_NO_PAD.encode(&bytes) != text {
        return Err(Error::malformed_token("segment is not canonical base64url"));
    }
    Ok(bytes)
}

/// The protected header Aegis writes and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwsHeader {
    /// Always `EdDSA`.
    pub alg: String,
    /// The token type, e.g. `aegis-credential+jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The signing key's RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// A compact JWS whose structure, header and payload were checked but whose signature was not.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a, T> {
    pub header: JwsHeader,
    pub claims: T,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a, T: DeserializeOwned> UnverifiedJws<'a, T> {
    /// Parses and checks everything but the signature.
    pub fn parse(token: &'a str, expected_typ: &str) -> Result<Self> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::malformed_token("a compact jws has exactly three segments"));
        };
        let header_value = decode_json_segment(h, "header")?;
        let header = check_header(header_value, expected_typ)?;
        // Typed claims are decoded directly: derived deserializers already refuse duplicate and
        // unknown members, so no intermediate tree is needed.
        let payload = b64_decode(p)?;
        let claims = serde_json::from_slice(&payload)
            .map_err(|e| Error::malformed_token(format!("invalid claims: {e}")))?;
        let signature = b64_decode(s)?;
        if signature.len() != 64 {
            return Err(Error::new(ErrorCode::SignatureInvalid, "an ed25519 signature is 64 bytes"));
        }
        Ok(Self { header, claims, signing_input: &token[..h.len() + 1 + p.len()], signature })
    }

    /// Checks the signature with `key` (strict: no malleable or small-order encodings).
    pub fn verify(&self, key: &PublicKey) -> Result<()> {
        if key.verify_strict(self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(Error::new(ErrorCode::SignatureInvalid, "signature does not verify"))
        }
    }
}

/// Signs any `claims` as a compact JWS with `alg: EdDSA`, the given `typ` and the key's `kid`.
/// No checks: for tools and tests that need to craft tokens (including hostile ones).
pub fn sign<T: Serialize>(claims: &T, typ: &str, key: &KeyPair) -> Result<String> {
    let header = JwsHeader { alg: "EdDSA".into(), typ: Some(typ.into()), kid: Some(key.kid().into()) };
    let header_json =
        serde_json::to_vec(&header).map_err(|e| Error::internal(format!("header encoding failed: {e}")))?;
    let claims_json =
        serde_json::to_vec(claims).map_err(|e| Error::internal(format!("claims encoding failed: {e}")))?;
    let mut token = b64_encode(&header_json);
    token.push('.');
    token.push_str(&b64_encode(&claims_json));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64_encode(&signature));
    Ok(token)
}

fn decode_json_segment(segment: &str, what: &str) -> Result<Value> {
    let bytes = b64_decode(segment)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::malformed_token(format!("{what} is not utf-8")))?;
    crate::json::parse_value_strict(text)
        .map_err(|e| Error::malformed_token(format!("{what}: {}", e.message())))
}

fn check_header(value: Value, expected_typ: &str) -> Result<JwsHeader> {
    let Value::Object(map) = &value else {
        return Err(Error::malformed_token("header is not a json object"));
    };
    match map.get("alg") {
        Some(Value::String(alg)) if alg == "EdDSA" => {}
        Some(Value::String(alg)) => {
            return Err(Error::new(
                ErrorCode::UnsupportedAlgorithm,
                format!("algorithm `{alg}` is not accepted; only `EdDSA` is"),
            ))
        }
        _ => return Err(Error::new(ErrorCode::UnsupportedAlgorithm, "header has no string `alg`")),
    }
    for name in map.keys() {
        if FORBIDDEN_HEADERS.contains(&name.as_str()) || !matches!(name.as_str(), "alg" | "typ" | "kid") {
            return Err(Error::new(
                ErrorCode::ForbiddenHeader,
                format!("header member `{name}` is not accepted"),
            ));
        }
    }
    let header: JwsHeader = serde_json::from_value(value)
        .map_err(|e| Error::malformed_token(format!("invalid header: {e}")))?;
    match header.typ.as_deref() {
        Some(typ) if typ.eq_ignore_ascii_case(expected_typ) => Ok(header),
        Some(typ) => Err(Error::new(
            ErrorCode::WrongTokenType,
            format!("token type `{typ}` where `{expected_typ}` was expected"),
        )),
        None => Err(Error::new(ErrorCode::WrongTokenType, format!("token has no `typ`; expected `{expected_typ}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_a4_a5_signature_known_answer() {
        // RFC 8037 A.4: header {"alg":"EdDSA"}, payload "Example of Ed25519 signing".
        let d = b64_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let pair = KeyPair::from_seed(&d).unwrap();
        let signing_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let expected = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        assert_eq!(b64_encode(&pair.sign(signing_input.as_bytes())), expected);
        // A.5: verification of the same.
        let sig = b64_decode(expected).unwrap();
        assert!(pair.public_key().verify_strict(signing_input.as_bytes(), &sig));
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!pair.public_key().verify_strict(signing_input.as_bytes(), &bad));
    }

    #[test]
    fn non_canonical_base64_is_rejected() {
        assert!(b64_decode("AA").is_ok());
        // Same byte with non-zero trailing bits, padding, and the standard alphabet.
        assert!(b64_decode("AB").is_err());
        assert!(b64_decode("AA==").is_err());
        assert!(b64_decode("+/").is_err());
    }
}
