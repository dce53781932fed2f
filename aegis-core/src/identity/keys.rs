//! Ed25519 keys: generation, seeds, JWK (RFC 8037) import and export, RFC 7638 thumbprints.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::jws::{b64_decode, b64_encode};
use crate::error::{Error, ErrorCode, Result};
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

/// An Ed25519 public key with its thumbprint computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: String,
}

impl PublicKey {
    /// A public key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; 32] =
            bytes.try_into().map_err(|_| Error::new(ErrorCode::InvalidKey, "an ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| Error::new(ErrorCode::InvalidKey, "not a valid ed25519 point"))?;
        if key.is_weak() {
            return Err(Error::new(ErrorCode::InvalidKey, "refusing a weak (small-order) ed25519 key"));
        }
        Ok(Self { kid: thumbprint(&b64_encode(&raw)), key })
    }

    /// A public key from a JWK (RFC 8037). A private JWK is accepted; only its public part is used.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        check_jwk_shape(jwk)?;
        let raw = b64_decode(&jwk.x).map_err(|_| Error::new(ErrorCode::InvalidKey, "jwk `x` is not canonical base64url"))?;
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

    /// Verifies an Ed25519 signature strictly: the check every Aegis token goes through.
    ///
    /// ed25519-dalek's `verify_strict`: `S` canonical (`S < L`), `R` and the key not of small
    /// order, the cofactorless equation. The Wycheproof and CCTV suites pin what it accepts.
    pub fn verify_strict(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &signature).is_ok()
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
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(seed.try_into().map_err(|_| Error::new(ErrorCode::InvalidKey, "an ed25519 seed is 32 bytes"))?);
        let secret = SigningKey::from_bytes(&seed);
        let public = PublicKey::from_bytes(secret.verifying_key().as_bytes())?;
        Ok(Self { secret, public })
    }

    /// A key pair from a private JWK (with `d`).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        check_jwk_shape(jwk)?;
        let d = jwk.d.as_ref().ok_or_else(|| Error::new(ErrorCode::InvalidKey, "jwk has no private part `d`"))?;
        let seed =
            Zeroizing::new(b64_decode(d).map_err(|_| Error::new(ErrorCode::InvalidKey, "jwk `d` is not canonical base64url"))?);
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

    /// The 32-byte seed (a secret; zeroized when dropped).
    pub(crate) fn seed_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
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
    crate::json::from_str_strict(json).map_err(|e| Error::new(ErrorCode::InvalidKey, format!("not a valid jwk: {}", e.message())))
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
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    use sha2::Sha512;

    /// The canonical encodings of the eight points of small order (the torsion subgroup E[8]).
    /// `verify_strict` refuses a signature whose `R` is one of them; the test
    /// `small_order_encodings_are_exactly_the_torsion_subgroup` proves the list complete.
    const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
        [
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ],
        [
            0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ],
        [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ],
        [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
        ],
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac,
            0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac,
            0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x85,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53,
            0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53,
            0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0xfa,
        ],
    ];

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
    fn small_order_encodings_are_exactly_the_torsion_subgroup() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let mut points = Vec::new();
        for encoding in SMALL_ORDER_ENCODINGS {
            let point = CompressedEdwardsY(encoding).decompress().expect("decodes");
            assert!(point.is_small_order(), "{encoding:02x?} has small order");
            assert_eq!(point.compress().to_bytes(), encoding, "canonical");
            assert!(!points.contains(&point), "distinct");
            points.push(point);
        }
        // E[8] has exactly eight elements: eight distinct ones are all of them.
        assert_eq!(points.len(), 8);
    }

    /// Regression test from the days of a hand-kept verifier: `PublicKey::verify_strict`
    /// accepts exactly what ed25519-dalek's `verify_strict` accepts, on valid signatures and on
    /// every kind of damage to them (bit flips, `S + L`, forged small-order `R` that satisfies
    /// the equation, non-canonical and torsioned `R`).
    #[test]
    fn verify_strict_agrees_with_ed25519_dalek() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        use ed25519_dalek::Verifier as _;
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut checked = 0usize;
        let mut check = |pair: &KeyPair, message: &[u8], signature: &[u8; 64]| {
            let dalek_key = VerifyingKey::from_bytes(pair.public_key().as_bytes()).unwrap();
            let dalek = dalek_key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok();
            assert_eq!(
                pair.public_key().verify_strict(message, signature),
                dalek,
                "message {message:02x?}, signature {signature:02x?}"
            );
            // Strict implies the permissive check; never the other way round here.
            if dalek {
                assert!(dalek_key.verify(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok());
            }
            checked += 1;
            dalek
        };
        for seed in 0..8u8 {
            let pair = KeyPair::from_seed(&[seed.wrapping_mul(37).wrapping_add(1); 32]).unwrap();
            let message: Vec<u8> = (0..(seed as usize * 50)).map(|i| (i * 7 + seed as usize) as u8).collect();
            let good = pair.sign(&message);
            assert!(check(&pair, &message, &good));
            // Every single-bit flip of the signature, and of the message's first bytes.
            for bit in 0..512 {
                let mut bad = good;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!check(&pair, &message, &bad));
            }
            for bit in 0..(message.len().min(4) * 8) {
                let mut other = message.clone();
                other[bit / 8] ^= 1 << (bit % 8);
                assert!(!check(&pair, &other, &good));
            }
            // Non-canonical S: S + L verifies under a permissive rule, never a strict one.
            let mut s_plus_l = good;
            let mut carry = 0u16;
            for i in 0..32 {
                let sum = u16::from(good[32 + i]) + u16::from(L[i]) + carry;
                s_plus_l[32 + i] = sum as u8;
                carry = sum >> 8;
            }
            assert!(!check(&pair, &message, &s_plus_l));
            // R of small order with S chosen so the cofactorless equation holds for R = identity:
            // [S]B - [k]A = identity when S = k·a. Strict verification must refuse it.
            let k_of = |r: &[u8; 32]| {
                let hash: [u8; 64] = Sha512::new()
                    .chain_update(r)
                    .chain_update(pair.public_key().as_bytes())
                    .chain_update(&message)
                    .finalize()
                    .into();
                Scalar::from_bytes_mod_order_wide(&hash)
            };
            for r in SMALL_ORDER_ENCODINGS {
                let s = k_of(&r) * pair.secret.to_scalar();
                let mut forged = [0u8; 64];
                forged[..32].copy_from_slice(&r);
                forged[32..].copy_from_slice(s.as_bytes());
                assert!(!check(&pair, &message, &forged));
            }
            let identity = SMALL_ORDER_ENCODINGS[0];
            let s = k_of(&identity) * pair.secret.to_scalar();
            assert_eq!(
                EdwardsPoint::vartime_double_scalar_mul_basepoint(
                    &k_of(&identity),
                    &-VerifyingKey::from_bytes(pair.public_key().as_bytes()).unwrap().to_edwards(),
                    &s
                )
                .compress()
                .to_bytes(),
                identity,
                "the forgery satisfies the equation"
            );
            // Non-canonical encodings of R (y + p for small y, and "negative zero").
            for r in [
                hex_bytes("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
                hex_bytes("0100000000000000000000000000000000000000000000000000000000000080"),
            ] {
                let mut bad = good;
                bad[..32].copy_from_slice(&r);
                assert!(!check(&pair, &message, &bad));
            }
            // R with a torsion component added: the equation can only produce prime-order points.
            let r_point = curve25519_dalek::edwards::CompressedEdwardsY(good[..32].try_into().unwrap()).decompress().unwrap();
            for t in SMALL_ORDER_ENCODINGS.iter().skip(1) {
                let torsion = curve25519_dalek::edwards::CompressedEdwardsY(*t).decompress().unwrap();
                let mut bad = good;
                bad[..32].copy_from_slice(&(r_point + torsion).compress().to_bytes());
                assert!(!check(&pair, &message, &bad));
            }
            // Random R that is a valid point, with the real S.
            let mut bad = good;
            bad[..32].copy_from_slice(&(B * Scalar::from(u64::from(seed) + 2)).compress().to_bytes());
            assert!(!check(&pair, &message, &bad));
        }
        assert!(checked > 4000);
        // Malformed lengths.
        let pair = KeyPair::from_seed(&[9; 32]).unwrap();
        assert!(!pair.public_key().verify_strict(b"m", &[0u8; 63]));
        assert!(!pair.public_key().verify_strict(b"m", &[0u8; 65]));
    }

    fn hex_bytes(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
        bytes.try_into().unwrap()
    }

    #[test]
    fn small_order_key_is_rejected() {
        // The identity point encodes as 0x01 followed by zeros.
        let mut raw = [0u8; 32];
        raw[0] = 1;
        assert_eq!(PublicKey::from_bytes(&raw).unwrap_err().code(), ErrorCode::InvalidKey);
    }
}
