//! Raw arguments kept for replay, sealed (XChaCha20-Poly1305, RustCrypto's
//! `chacha20poly1305`) under a key the host supplies. The decision id is the associated data:
//! a sealed value moved to another record does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorCode, Result};
use crate::time::SecureRandom;

/// The algorithm name a sealed value carries.
const ALG: &str = "xchacha20poly1305";

/// A 32-byte key that seals raw arguments in audit records.
pub struct SealKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A key from 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self> {
        let key: [u8; 32] = key.try_into().map_err(|_| Error::new(ErrorCode::InvalidKey, "a seal key is 32 bytes"))?;
        Ok(Self(Zeroizing::new(key)))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Seals `args` for the record of decision `decision_id`.
    pub(crate) fn seal(&self, args: &Json, decision_id: &str, random: &dyn SecureRandom) -> Result<Json> {
        let mut nonce = [0u8; 24];
        random.fill(&mut nonce)?;
        let plain = Zeroizing::new(serde_json::to_vec(args).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?);
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: decision_id.as_bytes() })
            .map_err(|_| Error::new(ErrorCode::Internal, "cannot seal the arguments"))?;
        Ok(json!({"alg": ALG, "nonce": super::b64_encode(&nonce), "ciphertext": super::b64_encode(&sealed)}))
    }

    /// Opens the sealed arguments of the record of decision `decision_id`.
    pub fn open(&self, sealed: &Json, decision_id: &str) -> Result<Json> {
        let bad = |why: &str| Error::new(ErrorCode::AuditInvalid, format!("sealed arguments of `{decision_id}`: {why}"));
        if sealed.get("alg").and_then(Json::as_str) != Some(ALG) {
            return Err(bad("unknown algorithm"));
        }
        let field =
            |name: &str| sealed.get(name).and_then(Json::as_str).and_then(super::b64_decode).ok_or_else(|| bad("malformed"));
        let nonce = field("nonce")?;
        if nonce.len() != 24 {
            return Err(bad("malformed nonce"));
        }
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(XNonce::from_slice(&nonce), Payload { msg: &field("ciphertext")?, aad: decision_id.as_bytes() })
                .map_err(|_| bad("they do not open under this key"))?,
        );
        serde_json::from_slice(&plain).map_err(|_| bad("not json"))
    }
}
