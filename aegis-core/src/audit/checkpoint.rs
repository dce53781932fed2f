//! Signed checkpoints: the C2SP tlog-checkpoint body (origin, size, root hash) in a C2SP
//! signed note, signed with the log's own Ed25519 key (apart from the engine's other keys).
//! Parsing and note encoding are `tlog_tiles` and `signed_note`; signatures are made and
//! checked by ed25519-dalek (`verify_strict`).

use std::fmt;

use signed_note::{Note, Signer, Verifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::Hash;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorCode, Result};
use crate::identity::{KeyPair, PublicKey};
use crate::time::SecureRandom;

/// The signed-note algorithm byte of Ed25519 keys.
const ALG_ED25519: u8 = 1;

/// The key a log signs its checkpoints with, under the log's name (its origin).
pub struct LogKey {
    name: String,
    key: KeyPair,
    id: u32,
}

impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKey").field("name", &self.name).field("vkey", &self.verifier_key()).finish_non_exhaustive()
    }
}

fn check_name(name: &str) -> Result<()> {
    if !signed_note::is_key_name_valid(name) {
        return Err(Error::new(ErrorCode::InvalidKey, format!("log name `{name}` is empty or holds a space or `+`")));
    }
    Ok(())
}

fn encoded_public(key: &PublicKey) -> Vec<u8> {
    let mut out = vec![ALG_ED25519];
    out.extend_from_slice(key.as_bytes());
    out
}

impl LogKey {
    /// A fresh key for the log named `name` (for example `aegis.example/host-1`).
    pub fn generate(name: &str, random: &dyn SecureRandom) -> Result<Self> {
        Self::new(name, KeyPair::generate(random)?)
    }

    /// The log key for `name` from an Ed25519 key pair.
    pub fn new(name: &str, key: KeyPair) -> Result<Self> {
        check_name(name)?;
        let id = signed_note::key_id(name, &encoded_public(key.public_key()));
        Ok(Self { name: name.to_owned(), key, id })
    }

    /// A key from its signed-note private key encoding (`PRIVATE+KEY+name+id+base64`), as
    /// Go's `note.GenerateKey` and `aegis audit keygen` write it.
    pub fn from_signer_key(skey: &str) -> Result<Self> {
        let bad = || Error::new(ErrorCode::InvalidKey, "not a signed-note private key `PRIVATE+KEY+<name>+<id>+<key>`");
        let rest = skey.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(bad)?;
        // The key's base64 may itself hold `+`: the name and id end at the first two.
        let mut parts = rest.splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k), None) => (n, i, k),
            _ => return Err(bad()),
        };
        let key = Zeroizing::new(super::b64_decode(key).ok_or_else(bad)?);
        match key.split_first() {
            Some((&ALG_ED25519, seed)) => {
                let log_key = Self::new(name, KeyPair::from_seed(seed)?)?;
                if format!("{:08x}", log_key.id) != id {
                    return Err(Error::new(ErrorCode::InvalidKey, "the key id does not match the key"));
                }
                Ok(log_key)
            }
            _ => Err(Error::new(ErrorCode::InvalidKey, "only ed25519 log keys are supported")),
        }
    }

    /// The signed-note private key encoding: a secret, for the host's secret store.
    pub fn to_signer_key(&self) -> Zeroizing<String> {
        let mut encoded = Zeroizing::new(vec![ALG_ED25519]);
        encoded.extend_from_slice(&self.key.seed_bytes()[..]);
        Zeroizing::new(format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, super::b64_encode(&encoded)))
    }

    /// The verifier key (`name+id+base64`): what an auditor pins.
    pub fn verifier_key(&self) -> String {
        format!("{}+{:08x}+{}", self.name, self.id, super::b64_encode(&encoded_public(self.key.public_key())))
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Signer for LogKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::ed25519::signature::Error> {
        Ok(self.key.sign(msg).to_vec())
    }
}

/// A log's public key, from its verifier key encoding.
#[derive(Clone)]
pub struct LogVerifier {
    name: String,
    id: u32,
    key: PublicKey,
}

impl fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogVerifier({}+{:08x})", self.name, self.id)
    }
}

impl LogVerifier {
    /// Parses a verifier key `name+id+base64` (the key id must match the key).
    pub fn new(vkey: &str) -> Result<Self> {
        let bad = || Error::new(ErrorCode::InvalidKey, format!("`{}` is not a signed-note verifier key", vkey.trim()));
        // The key's base64 may itself hold `+`: the name and id end at the first two.
        let mut parts = vkey.trim().splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k), None) => (n, i, k),
            _ => return Err(bad()),
        };
        check_name(name)?;
        let raw = super::b64_decode(key).ok_or_else(bad)?;
        let key = match raw.split_first() {
            Some((&ALG_ED25519, public)) => PublicKey::from_bytes(public)?,
            _ => return Err(Error::new(ErrorCode::InvalidKey, "only ed25519 log keys are supported")),
        };
        let computed = signed_note::key_id(name, &raw);
        if format!("{computed:08x}") != id {
            return Err(Error::new(ErrorCode::InvalidKey, "the verifier key's id does not match its key"));
        }
        Ok(Self { name: name.to_owned(), id: computed, key })
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Verifier for LogVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.key.verify_strict(msg, sig)
    }
}

/// A checkpoint whose signature verified: the log's name, its size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The log's origin line.
    pub origin: String,
    /// The number of records the checkpoint commits to.
    pub size: u64,
    /// The Merkle root of those records.
    pub root: [u8; 32],
    /// The whole signed note, as written.
    pub note: String,
}

impl SignedCheckpoint {
    /// `{origin, size, root (base64), note}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"origin": self.origin, "size": self.size, "root": super::b64_encode(&self.root), "note": self.note})
    }
}

/// Signs the checkpoint of a tree of `size` records with `root`.
pub(crate) fn sign(key: &LogKey, size: u64, root: [u8; 32]) -> Result<SignedCheckpoint> {
    let invalid = |e: &dyn fmt::Display| Error::new(ErrorCode::Internal, format!("cannot sign a checkpoint: {e}"));
    let body = Checkpoint::new(&key.name, size, Hash(root), "").map_err(|e| invalid(&e))?;
    let mut note = Note::new(&body.to_bytes(), &[]).map_err(|e| invalid(&e))?;
    note.add_sigs(&[key]).map_err(|e| invalid(&e))?;
    let note = String::from_utf8(note.to_bytes()).map_err(|e| invalid(&e))?;
    Ok(SignedCheckpoint { origin: key.name.clone(), size, root, note })
}

/// Verifies a signed checkpoint with the log's key: the signature, then the body.
pub fn verify_checkpoint(note: &str, verifier: &LogVerifier) -> Result<SignedCheckpoint> {
    let invalid = |why: String| Error::new(ErrorCode::AuditInvalid, format!("checkpoint: {why}"));
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    parsed
        .verify(&VerifierList::new(vec![Box::new(verifier.clone())]))
        .map_err(|e| invalid(format!("not signed by `{}`: {e}", verifier.name)))?;
    let body = Checkpoint::from_bytes(parsed.text()).map_err(|e| invalid(e.to_string()))?;
    if body.origin() != verifier.name {
        return Err(invalid(format!("origin `{}` is not the log `{}`", body.origin(), verifier.name)));
    }
    Ok(SignedCheckpoint { origin: body.origin().to_owned(), size: body.size(), root: body.hash().0, note: note.to_owned() })
}
