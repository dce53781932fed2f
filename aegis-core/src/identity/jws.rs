//! Strict EdDSA compact JWS (RFC 7515 + RFC 8037).
//!
//! Only `alg: EdDSA`; only the header members `alg`, `typ` and `kid`; canonical unpadded
//! base64url in every segment; duplicate JSON keys rejected; `verify_strict` signatures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::{KeyPair, PublicKey};
use crate::error::{Error, ErrorCode, Result};

/// Encodes bytes as unpadded base64url.
pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url, accepting only the canonical encoding (no padding, no stray
/// trailing bits, no other alphabets): one value has exactly one accepted spelling.
///
/// The `URL_SAFE_NO_PAD` engine already refuses padding, non-zero trailing bits and foreign
/// characters; `every_accepted_spelling_is_canonical` checks that exhaustively for every
/// final quantum, so no re-encoding is needed here.
pub fn b64_decode(text: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| Error::malformed_token("segment is not canonical base64url"))
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
    signature: [u8; 64],
}

impl<'a, T: DeserializeOwned> UnverifiedJws<'a, T> {
    /// Parses and checks everything but the signature.
    pub fn parse(token: &'a str, expected_typ: &str) -> Result<Self> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Error::malformed_token("a compact jws has exactly three segments"));
        };
        let header = parse_header(&b64_decode(h)?, expected_typ)?;
        // Typed claims are decoded directly: derived deserializers already refuse duplicate and
        // unknown members, so no intermediate tree is needed.
        let payload = b64_decode(p)?;
        let claims = serde_json::from_slice(&payload).map_err(|e| Error::malformed_token(format!("invalid claims: {e}")))?;
        // Exactly 86 characters decode to 64 bytes; other lengths are checked as base64 first,
        // so a padded or otherwise malformed segment is reported as such.
        let mut signature = [0u8; 64];
        if s.len() != 86 {
            b64_decode(s)?;
            return Err(Error::new(ErrorCode::SignatureInvalid, "an ed25519 signature is 64 bytes"));
        }
        URL_SAFE_NO_PAD
            .decode_slice(s, &mut signature)
            .map_err(|_| Error::malformed_token("segment is not canonical base64url"))?;
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
    let header_json = serde_json::to_vec(&header).map_err(|e| Error::internal(format!("header encoding failed: {e}")))?;
    let claims_json = serde_json::to_vec(claims).map_err(|e| Error::internal(format!("claims encoding failed: {e}")))?;
    let mut token = b64_encode(&header_json);
    token.push('.');
    token.push_str(&b64_encode(&claims_json));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64_encode(&signature));
    Ok(token)
}

/// The members of a protected header, as found (before any check).
#[derive(Default)]
struct HeaderMembers {
    alg: Option<Value>,
    typ: Option<Value>,
    kid: Option<Value>,
    /// The first member that is not `alg`, `typ` or `kid`.
    other: Option<String>,
}

impl<'de> Deserialize<'de> for HeaderMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}

/// Reads the header's members in one pass, refusing duplicates at any depth, without building
/// a tree for the whole header: this runs for every link of every cold chain.
struct HeaderVisitor;

impl<'de> serde::de::Visitor<'de> for HeaderVisitor {
    type Value = HeaderMembers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a json object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<HeaderMembers, A::Error> {
        let mut members = HeaderMembers::default();
        let mut seen: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if seen.contains(&name) {
                return Err(serde::de::Error::custom(format!("duplicate key `{name}`")));
            }
            let crate::json::StrictValue(value) = map.next_value()?;
            match name.as_ref() {
                "alg" => members.alg = Some(value),
                "typ" => members.typ = Some(value),
                "kid" => members.kid = Some(value),
                other => {
                    members.other.get_or_insert_with(|| other.to_owned());
                }
            }
            seen.push(name);
        }
        Ok(members)
    }
}

fn parse_header(bytes: &[u8], expected_typ: &str) -> Result<JwsHeader> {
    let members: HeaderMembers =
        serde_json::from_slice(bytes).map_err(|e| Error::malformed_token(format!("header: invalid json: {e}")))?;
    match &members.alg {
        Some(Value::String(alg)) if alg == "EdDSA" => {}
        Some(Value::String(alg)) => {
            return Err(Error::new(
                ErrorCode::UnsupportedAlgorithm,
                format!("algorithm `{alg}` is not accepted; only `EdDSA` is"),
            ))
        }
        _ => return Err(Error::new(ErrorCode::UnsupportedAlgorithm, "header has no string `alg`")),
    }
    if let Some(name) = &members.other {
        // `jwk`, `jku`, `x5u`, `x5c`, `crit`, ... would let a token pick its own key or rules.
        return Err(Error::new(ErrorCode::ForbiddenHeader, format!("header member `{name}` is not accepted")));
    }
    let text = |v: Option<Value>, member: &str| match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::malformed_token(format!("invalid header: `{member}` is not a string"))),
    };
    let header = JwsHeader { alg: "EdDSA".into(), typ: text(members.typ, "typ")?, kid: text(members.kid, "kid")? };
    match header.typ.as_deref() {
        Some(typ) if typ.eq_ignore_ascii_case(expected_typ) => Ok(header),
        Some(typ) => {
            Err(Error::new(ErrorCode::WrongTokenType, format!("token type `{typ}` where `{expected_typ}` was expected")))
        }
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
    fn every_accepted_spelling_is_canonical() {
        // Every string of up to 3 characters over the alphabet plus look-alikes covers every
        // final quantum (the only place a second spelling could hide); longer inputs add only
        // whole 4-character groups, which have a single spelling.
        let chars: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .".chars().collect();
        let mut accepted = 0;
        let mut strings = vec![String::new()];
        for _ in 0..3 {
            strings = strings.iter().flat_map(|s| chars.iter().map(move |c| format!("{s}{c}"))).collect();
            for text in &strings {
                for prefixed in [text.clone(), format!("QUJD{text}")] {
                    if let Ok(bytes) = b64_decode(&prefixed) {
                        assert_eq!(b64_encode(&bytes), prefixed);
                        accepted += 1;
                    }
                }
            }
        }
        // One character never decodes; two carry 4 spare bits (4 choices for the last one),
        // three carry 2 (16 choices): alone and after a full group.
        assert_eq!(accepted, 2 * (64 * 4 + 64 * 64 * 16));
    }

    #[test]
    fn header_members_are_checked_in_one_pass() {
        let header = |json: &str| parse_header(json.as_bytes(), "t").map_err(|e| e.code());
        assert!(header(r#"{"alg":"EdDSA","typ":"t","kid":"k"}"#).is_ok());
        assert_eq!(header(r#"{"alg":"EdDSA","typ":"t","alg":"EdDSA"}"#), Err(ErrorCode::MalformedToken));
        assert_eq!(header(r#"{"alg":"EdDSA","typ":"t","x":{"a":1,"a":2}}"#), Err(ErrorCode::MalformedToken));
        assert_eq!(header(r#"{"alg":"none","typ":"t"}"#), Err(ErrorCode::UnsupportedAlgorithm));
        assert_eq!(header(r#"{"alg":1,"typ":"t"}"#), Err(ErrorCode::UnsupportedAlgorithm));
        assert_eq!(header(r#"{"typ":"t"}"#), Err(ErrorCode::UnsupportedAlgorithm));
        for member in ["jwk", "jku", "x5u", "x5c", "crit", "b64", "zip", "extra"] {
            assert_eq!(
                header(&format!(r#"{{"alg":"EdDSA","typ":"t","{member}":"x"}}"#)),
                Err(ErrorCode::ForbiddenHeader),
                "{member}"
            );
        }
        assert_eq!(header(r#"{"alg":"EdDSA","typ":"JWT"}"#), Err(ErrorCode::WrongTokenType));
        assert_eq!(header(r#"{"alg":"EdDSA"}"#), Err(ErrorCode::WrongTokenType));
        assert_eq!(header(r#"{"alg":"EdDSA","typ":7}"#), Err(ErrorCode::MalformedToken));
        assert_eq!(header(r#"["alg","EdDSA"]"#), Err(ErrorCode::MalformedToken));
        assert_eq!(header(r#"{"alg":"EdDSA","typ":"t"} x"#), Err(ErrorCode::MalformedToken));
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
