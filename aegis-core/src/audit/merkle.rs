//! The RFC 6962 / RFC 9162 Merkle tree over the records, by `tlog_tiles` (a port of Go's
//! `sumdb/tlog`, the code Go's checksum database and Sigsum-style logs run): leaf hashes,
//! tree heads, inclusion and consistency proofs. Aegis keeps the stored hashes in memory
//! (two per record) and never combines hashes itself.

use tlog_tiles::tlog::{self, Hash, HashReader};

use crate::error::{Error, ErrorCode, Result};

/// The stored hashes of a tree (see `tlog::stored_hashes`), appended record by record.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tree {
    stored: Vec<Hash>,
    size: u64,
}

struct Stored<'a>(&'a [Hash]);

impl HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| usize::try_from(i).ok().and_then(|i| self.0.get(i)).copied().ok_or(tlog::Error::IndexesNotInTree))
            .collect()
    }
}

/// A tlog error as an Aegis error: a proof that does not hold, or a size out of range.
fn proof_error(what: &str, e: tlog::Error) -> Error {
    Error::new(ErrorCode::AuditInvalid, format!("{what}: {e}"))
}

impl Tree {
    /// The number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one record (its exact bytes); returns its leaf hash.
    pub fn push(&mut self, record: &[u8]) -> Result<Hash> {
        let hashes = tlog::stored_hashes(self.size, record, &Stored(&self.stored))
            .map_err(|e| proof_error("cannot extend the tree", e))?;
        self.stored.extend(hashes);
        self.size += 1;
        Ok(tlog::record_hash(record))
    }

    /// The root of the tree of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash> {
        if size > self.size {
            return Err(Error::new(ErrorCode::AuditInvalid, format!("the log holds {} records, not {size}", self.size)));
        }
        tlog::tree_hash(size, &Stored(&self.stored)).map_err(|e| proof_error("cannot hash the tree", e))
    }

    /// The inclusion proof of record `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        tlog::prove_record(size, index, &Stored(&self.stored)).map_err(|e| proof_error("no inclusion proof", e))
    }

    /// The consistency proof from the tree of `old` records to the tree of `new` records.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        tlog::prove_tree(new, old, &Stored(&self.stored)).map_err(|e| proof_error("no consistency proof", e))
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.size {
            return Err(Error::new(ErrorCode::AuditInvalid, format!("the log holds {} records, not {size}", self.size)));
        }
        Ok(())
    }
}

/// The leaf hash of a record's bytes (RFC 6962: SHA-256 of 0x00 and the record).
pub fn leaf_hash(record: &[u8]) -> [u8; 32] {
    tlog::record_hash(record).0
}

/// Checks that `proof` shows the record with leaf hash `leaf` at `index` in the tree of
/// `size` records with root `root`.
pub fn verify_inclusion(proof: &[[u8; 32]], index: u64, size: u64, leaf: [u8; 32], root: [u8; 32]) -> Result<()> {
    let proof: Vec<Hash> = proof.iter().map(|h| Hash(*h)).collect();
    tlog::check_record(&proof, size, Hash(root), index, Hash(leaf))
        .map_err(|e| proof_error(&format!("record {index} is not in the tree of {size} records"), e))
}

/// Checks that `proof` shows the tree of `old_size` records with root `old_root` is a prefix
/// of the tree of `new_size` records with root `new_root`.
pub fn verify_consistency(
    proof: &[[u8; 32]],
    old_size: u64,
    old_root: [u8; 32],
    new_size: u64,
    new_root: [u8; 32],
) -> Result<()> {
    let proof: Vec<Hash> = proof.iter().map(|h| Hash(*h)).collect();
    tlog::check_tree(&proof, new_size, Hash(new_root), old_size, Hash(old_root))
        .map_err(|e| proof_error(&format!("the tree of {old_size} records is not a prefix of the tree of {new_size}"), e))
}
