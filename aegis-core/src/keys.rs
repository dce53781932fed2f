//! Ed25519 keys: generation, seeds, JWK (RFC 8037) import and export, RFC 7638 thumbprints.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorCode, Result};
use crate::jws::{b64_decode, b64_encode};
use crate::time::SecureRandom;

/// An Ed25519 public key in JWK form (`kty: OKP`, `crv: Ed25519`), optionally with the private
/// part `d`. Never printed with `d` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The private key (the seed), base64url. Present only in private JWKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// The key id; Aegis sets it to the RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use; informational.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// Algorithm; when present it must be `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("x", &self.x)
            .field("d", &self.d.as_ref().map(|_| "<redacted>"))
            .field("kid", &self.kid)
            .finish()
    }
}

/// An Ed25519 public key with its decompressed point and thumbprint computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: String,
}

impl PublicKey {
    /// A public key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::new(ErrorCode::InvalidKey, "an ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| Error::new(ErrorCode::InvalidKey, "not a valid ed25519 point"))?;
        if key.is_weak() {
            return Err(Error::new(ErrorCode::InvalidKey, "refusing a weak (small-order) ed25519 key"));
        }
        Ok(Self { kid: thumbprint(&b64_encode(&raw)), key })
    }

    /// A public key from a JWK (RFC 8037). A private JWK is accepted; only its public part is used.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        check_jwk_shape(jwk)?;
        let raw = b64_decode(&jwk.x)
            .map_err(|_| Error::new(ErrorCode::InvalidKey, "jwk `x` is not canonical base64url"))?;
        let key = Self::from_bytes(&raw)?;
        if let Some(kid) = &jwk.kid {
            if kid != &key.kid {
                return Err(Error::new(
                    ErrorCode::InvalidKey,
                    format!("jwk `kid` `{kid}` is not the key's thumbprint `{}`", key.kid),
                ));
            }
        }
        Ok(key)
    }

    /// A public key from a JWK in JSON.
    pub fn from_jwk_json(json: &str) -> Result<Self> {
        Self::from_jwk(&parse_jwk(json)?)
    }

    /// The public JWK, with `kid` set to the thumbprint.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: b64_encode(self.key.as_bytes()),
            d: None,
            kid: Some(self.kid.clone()),
            key_use: None,
            alg: None,
        }
    }

    /// The RFC 7638 thumbprint (SHA-256, base64url), used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Verifies an Ed25519 signature strictly (RFC 8032 with canonical `S`, no small-order `R`
    /// or key): the check every Aegis token goes through.
    pub fn verify_strict(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

/// An Ed25519 key pair. The secret is zeroized on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct KeyPair {
    secret: SigningKey,
    public: PublicKey,
}

impl KeyPair {
    /// A fresh key pair from the given randomness.
    pub fn generate(random: &dyn SecureRandom) -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        random.fill(seed.as_mut())?;
        Self::from_seed(seed.as_ref())
    }

    /// The key pair for a 32-byte seed (RFC 8032 private key). Deterministic: use for fixtures.
    pub fn from_seed(seed: &[u8]) -> Result<Self> {
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.try_into()
                .map_err(|_| Error::new(ErrorCode::InvalidKey, "an ed25519 seed is 32 bytes"))?,
        );
        let secret = SigningKey::from_bytes(&seed);
        let public = PublicKey::from_bytes(secret.verifying_key().as_bytes())?;
        Ok(Self { secret, public })
    }

    /// A key pair from a private JWK (with `d`).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        check_jwk_shape(jwk)?;
        let d = jwk
            .d
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::InvalidKey, "jwk has no private part `d`"))?;
        let seed = Zeroizing::new(
            b64_decode(d)
                .map_err(|_| Error::new(ErrorCode::InvalidKey, "jwk `d` is not canonical base64url"))?,
        );
        let pair = Self::from_seed(&seed)?;
        if b64_encode(pair.public.as_bytes()) != jwk.x {
            return Err(Error::new(ErrorCode::InvalidKey, "jwk `x` does not match `d`"));
        }
        Ok(pair)
    }

    /// A key pair from a private JWK in JSON.
    pub fn from_jwk_json(json: &str) -> Result<Self> {
        Self::from_jwk(&parse_jwk(json)?)
    }

    /// The private JWK (contains the secret: handle with care).
    pub fn to_private_jwk(&self) -> Jwk {
        let mut jwk = self.public.to_jwk();
        jwk.d = Some(b64_encode(self.secret.as_bytes()));
        jwk
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.secret.sign(message).to_bytes()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("kid", &self.public.kid).finish_non_exhaustive()
    }
}

fn parse_jwk(json: &str) -> Result<Jwk> {
    crate::json::from_str_strict(json)
        .map_err(|e| Error::new(ErrorCode::InvalidKey, format!("not a valid jwk: {}", e.message())))
}

fn check_jwk_shape(jwk: &Jwk) -> Result<()> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(Error::new(
            ErrorCode::InvalidKey,
            format!("expected an `OKP`/`Ed25519` jwk, found `{}`/`{}`", jwk.kty, jwk.crv),
        ));
    }
    if let Some(alg) = &jwk.alg {
        if alg != "EdDSA" {
            return Err(Error::new(ErrorCode::InvalidKey, format!("jwk `alg` `{alg}` is not `EdDSA`")));
        }
    }
    Ok(())
}

/// RFC 7638 thumbprint of an Ed25519 public key given as base64url `x`.
fn thumbprint(x: &str) -> String {
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    b64_encode(&Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 appendix A.1–A.3.
    const D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    #[test]
    fn rfc8037_a1_to_a3_key_and_thumbprint() {
        let pair = KeyPair::from_seed(&b64_decode(D).unwrap()).unwrap();
        assert_eq!(b64_encode(pair.public_key().as_bytes()), X);
        assert_eq!(pair.kid(), THUMBPRINT);
    }

    #[test]
    fn private_jwk_round_trips_and_debug_hides_secret() {
        let pair = KeyPair::from_seed(&[7u8; 32]).unwrap();
        let jwk = pair.to_private_jwk();
        let json = serde_json::to_string(&jwk).unwrap();
        let back = KeyPair::from_jwk_json(&json).unwrap();
        assert_eq!(back.kid(), pair.kid());
        assert!(!format!("{pair:?}").contains(jwk.d.as_deref().unwrap()));
        assert!(!format!("{jwk:?}").contains(jwk.d.as_deref().unwrap()));
    }

    #[test]
    fn jwk_with_wrong_kid_or_curve_is_rejected() {
        let pair = KeyPair::from_seed(&[7u8; 32]).unwrap();
        let mut jwk = pair.public_key().to_jwk();
        jwk.kid = Some("not-the-thumbprint".into());
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap_err().code(), ErrorCode::InvalidKey);
        let mut jwk = pair.public_key().to_jwk();
        jwk.crv = "X25519".into();
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap_err().code(), ErrorCode::InvalidKey);
    }

    #[test]
    fn small_order_key_is_rejected() {
        // The identity point encodes as 0x01 followed by zeros.
        let mut raw = [0u8; 32];
        raw[0] = 1;
        assert_eq!(PublicKey::from_bytes(&raw).unwrap_err().code(), ErrorCode::InvalidKey);
    }
}
