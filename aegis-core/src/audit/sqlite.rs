//! The SQLite sink: the audit log in the store's own database (tables `audit` and
//! `audit_meta`), so that an allowed call's record is written in the transaction that commits
//! the call. Each row holds one record's line exactly as a segment file would, and its leaf
//! hash, which the next append links to; verification recomputes every hash from the lines.
//!
//! Positions are taken inside the writing transaction (`BEGIN IMMEDIATE` holds the database's
//! write lock), so the processes of one host can share the log.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::file::{check_link, BadRecord, Scan};
use super::merkle::leaf_hash;
use super::record::{AuditRecord, Event};
use crate::error::{Error, ErrorCode, Result};

/// The `audit_meta` entry holding the latest signed checkpoint.
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// The `audit_meta` entry holding the log's verifier key.
pub(crate) const VERIFIER_KEY: &str = "verifier_key";

/// An audit write that did not happen: the decision it was for is a deny.
pub(crate) fn failed(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::AuditUnavailable, format!("cannot write the audit log in the store: {e}"))
}

/// Appends `events` after the last record, inside the caller's transaction; returns the
/// position of the first.
pub(crate) fn append(conn: &Connection, events: &[Event]) -> Result<u64> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, leaf FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(failed)?;
    let (first, mut prev) = match last {
        None => (0, [0u8; 32]),
        Some((seq, leaf)) => {
            let next = u64::try_from(seq).ok().and_then(|s| s.checked_add(1));
            match (next, <[u8; 32]>::try_from(leaf.as_slice())) {
                (Some(next), Ok(leaf)) => (next, leaf),
                _ => return Err(Error::new(ErrorCode::AuditInvalid, format!("the audit log's last row ({seq}) is damaged"))),
            }
        }
    };
    let mut stmt = conn.prepare_cached("INSERT INTO audit (seq, line, leaf) VALUES (?1, ?2, ?3)").map_err(failed)?;
    for (seq, event) in (first..).zip(events) {
        let line = event.line(seq, &prev)?;
        prev = leaf_hash(&line);
        let text = String::from_utf8(line).map_err(failed)?;
        stmt.execute(params![i64::try_from(seq).map_err(failed)?, text, prev.as_slice()]).map_err(failed)?;
    }
    Ok(first)
}

/// The lines of records `from..`, in order.
pub(crate) fn lines_from(conn: &Connection, from: u64) -> Result<Vec<String>> {
    let from = i64::try_from(from).map_err(failed)?;
    let mut stmt = conn.prepare_cached("SELECT line FROM audit WHERE seq >= ?1 ORDER BY seq").map_err(failed)?;
    let rows = stmt.query_map([from], |r| r.get::<_, String>(0)).map_err(failed)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(failed)
}

/// An `audit_meta` entry.
pub(crate) fn meta(conn: &Connection, name: &str) -> Result<Option<String>> {
    conn.query_row("SELECT value FROM audit_meta WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(failed)
}

/// Sets an `audit_meta` entry.
pub(crate) fn set_meta(conn: &Connection, name: &str, value: &str) -> Result<()> {
    conn.execute("INSERT OR REPLACE INTO audit_meta (name, value) VALUES (?1, ?2)", params![name, value]).map_err(failed)?;
    Ok(())
}

/// Extends `scan` with `lines` (the records that follow it), checking each record's position
/// and link; stops at the first bad one.
pub(crate) fn extend_scan(scan: &mut Scan, lines: &[String], keep_records: bool) -> Result<()> {
    for line in lines {
        if scan.bad.is_some() {
            break;
        }
        let position = scan.tree.size();
        match AuditRecord::parse(line.as_bytes())
            .map_err(|why| (position, format!("record {position}: {why}")))
            .and_then(|record| check_link(&record, position, &scan.last_leaf).map(|()| record))
        {
            Ok(record) => {
                scan.last_leaf = scan.tree.push(line.as_bytes())?.0;
                if keep_records {
                    scan.records.push(record);
                }
            }
            Err((seq, why)) => scan.bad = Some(BadRecord { seq, why }),
        }
    }
    Ok(())
}

/// Whether `path` is an SQLite database (rather than a log directory).
pub(crate) fn is_database(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok()
        && &header == b"SQLite format 3\0"
}

/// A log read back from a database, read-only: its records, stored checkpoint and key.
pub(crate) fn read(path: &Path) -> Result<(Scan, Option<String>, Option<String>)> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::new(ErrorCode::AuditUnavailable, format!("cannot open `{}`: {e}", path.display())))?;
    let mut scan = Scan::default();
    extend_scan(&mut scan, &lines_from(&conn, 0)?, true)?;
    Ok((scan, meta(&conn, CHECKPOINT)?, meta(&conn, VERIFIER_KEY)?))
}
