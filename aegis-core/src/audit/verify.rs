//! Reading a log back to check it: every record's position and link, the signed checkpoint
//! beside it, and any trusted checkpoints kept elsewhere. The result names the first record
//! that cannot be trusted.

use std::path::Path;

use super::checkpoint::{verify_checkpoint, LogVerifier, SignedCheckpoint};
use super::file::{scan, BadRecord, Scan, CHECKPOINT_FILE};
use super::merkle::Tree;
use super::record::AuditRecord;
use super::stored_verifier_key;
use crate::error::Result;

/// What checking a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// The log's name.
    pub origin: String,
    /// The records that checked out, from the first.
    pub records: u64,
    /// The checkpoint stored beside the log, when its signature verified.
    pub checkpoint: Option<SignedCheckpoint>,
    /// The sizes of the trusted checkpoints the log was checked against.
    pub trusted: Vec<u64>,
    /// The first record that cannot be trusted, if any.
    pub first_bad: Option<BadRecord>,
    /// Bytes after the last whole record (a torn write; cut off when the log is next opened).
    pub torn_bytes: Option<u64>,
    /// The key was taken from the log's own directory rather than pinned by the caller.
    pub key_from_log: bool,
}

impl LogReport {
    /// Whether every check held.
    pub fn intact(&self) -> bool {
        self.first_bad.is_none() && self.torn_bytes.is_none()
    }

    /// The report as JSON (what `aegis audit verify --json` and the bindings return).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "origin": self.origin,
            "intact": self.intact(),
            "records": self.records,
            "checkpoint": self.checkpoint.as_ref().map(SignedCheckpoint::to_json),
            "trusted": self.trusted,
            "first_bad": self.first_bad.as_ref().map(|b| serde_json::json!({"seq": b.seq, "why": b.why})),
            "torn_bytes": self.torn_bytes,
            "key_from_log": self.key_from_log,
        })
    }

    fn fail(&mut self, seq: u64, why: String) {
        if self.first_bad.as_ref().is_none_or(|b| seq < b.seq) {
            self.first_bad = Some(BadRecord { seq, why });
        }
    }
}

/// A log read back: the records that checked out and the report.
#[derive(Debug)]
pub struct ReadLog {
    /// The records before the first bad one.
    pub records: Vec<AuditRecord>,
    /// What the checks found.
    pub report: LogReport,
    pub(crate) tree: Tree,
}

impl ReadLog {
    /// The inclusion proof of record `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>> {
        Ok(self.tree.inclusion_proof(index, size)?.into_iter().map(|h| h.0).collect())
    }

    /// The consistency proof between the trees of `old` and `new` records.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>> {
        Ok(self.tree.consistency_proof(old, new)?.into_iter().map(|h| h.0).collect())
    }

    /// The Merkle root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<[u8; 32]> {
        Ok(self.tree.root(size)?.0)
    }
}

/// Reads and checks the log in `dir`. `key` pins the log's verifier key (otherwise the
/// `log.pub` beside it is used, which detects edits but not a rewrite by whoever can replace
/// that file); `trusted` are checkpoints kept elsewhere, each of which the log must extend.
///
/// `dir` may also be an SQLite store's database that keeps the log (its tables are read
/// read-only, with the checkpoint and the key stored beside the records).
pub fn read_log(dir: &Path, key: Option<&LogVerifier>, trusted: &[String]) -> Result<ReadLog> {
    let (scan, stored_checkpoint, stored_key) = read_records(dir)?;
    let (verifier, key_from_log) = match key {
        Some(k) => (k.clone(), false),
        None => (stored_key?, true),
    };
    let mut report = LogReport {
        origin: verifier.name().to_owned(),
        records: scan.tree.size(),
        checkpoint: None,
        trusted: Vec::new(),
        first_bad: scan.bad.clone(),
        torn_bytes: scan.torn.as_ref().map(|t| t.dropped),
        key_from_log,
    };
    if let Some(torn) = &scan.torn {
        report.fail(
            scan.tree.size(),
            format!("record {} is torn: {} bytes after the last whole record", scan.tree.size(), torn.dropped),
        );
    }
    let mut checkpoints = Vec::new();
    match stored_checkpoint {
        Some(note) => match verify_checkpoint(&note, &verifier) {
            Ok(cp) => {
                report.checkpoint = Some(cp.clone());
                checkpoints.push(("the log's checkpoint", cp));
            }
            Err(e) => report.fail(0, format!("the log's checkpoint does not verify: {}", e.message())),
        },
        None if scan.tree.size() > 0 => report.fail(0, "the log has no checkpoint".into()),
        None => {}
    }
    for note in trusted {
        let cp = verify_checkpoint(note, &verifier)?;
        report.trusted.push(cp.size);
        checkpoints.push(("the trusted checkpoint", cp));
    }
    for (which, cp) in checkpoints {
        let held = scan.tree.size();
        if cp.size > held {
            report.fail(
                held,
                format!("{which} commits to {} records; the log holds {held}: records from {held} were removed", cp.size),
            );
        } else if cp.size > 0 && scan.tree.root(cp.size)?.0 != cp.root {
            let last = cp.size - 1;
            report.fail(
                last,
                format!(
                    "the first {} records do not match {which}: record {last} was edited, or the history before it rewritten",
                    cp.size
                ),
            );
        }
    }
    Ok(ReadLog { records: scan.records, report, tree: scan.tree })
}

/// The records of a log directory or database, its stored checkpoint and its stored key.
fn read_records(path: &Path) -> Result<(Scan, Option<String>, Result<LogVerifier>)> {
    #[cfg(feature = "sqlite")]
    if super::sqlite::is_database(path) {
        let (scan, checkpoint, key) = super::sqlite::read(path)?;
        let key = key
            .ok_or_else(|| {
                crate::error::Error::new(
                    crate::error::ErrorCode::AuditInvalid,
                    format!("`{}` keeps no audit log", path.display()),
                )
            })
            .and_then(|k| LogVerifier::new(&k));
        return Ok((scan, checkpoint, key));
    }
    let scan = scan(path, true)?;
    Ok((scan, std::fs::read_to_string(path.join(CHECKPOINT_FILE)).ok(), stored_verifier_key(path)))
}
