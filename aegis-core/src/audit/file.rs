//! File segments: the default, embedded sink. Records are lines in `<first seq>.jsonl` files
//! in one directory; every batch is written with one `write` and made durable with one
//! `fdatasync` before any of its decisions is returned. A `LOCK` file keeps a second process
//! from writing the same log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::merkle::Tree;
use super::record::AuditRecord;
use crate::error::{Error, ErrorCode, Result};

/// The file that holds the latest signed checkpoint.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
/// The file that holds the log's verifier key.
pub(crate) const VERIFIER_KEY_FILE: &str = "log.pub";
const LOCK_FILE: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".jsonl";

pub(crate) fn io_error(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::new(ErrorCode::AuditUnavailable, format!("{what} `{}`: {e}", path.display()))
}

/// The segment files of a log directory, in order.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error("cannot read the audit log", dir, &e))?;
    for entry in entries {
        let path = entry.map_err(|e| io_error("cannot read the audit log", dir, &e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(first) = name.strip_suffix(SEGMENT_SUFFIX).and_then(|n| n.parse::<u64>().ok()) {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

/// The first record that breaks the log, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The position of the first record that cannot be trusted.
    pub seq: u64,
    /// What is wrong.
    pub why: String,
}

/// A torn last record: bytes a crash left after the last whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TornTail {
    pub segment: PathBuf,
    /// The length of the segment's whole records.
    pub keep: u64,
    pub dropped: u64,
}

/// A log read back: its records (when asked for), tree, and the first problem.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub records: Vec<AuditRecord>,
    pub tree: Tree,
    pub last_leaf: [u8; 32],
    pub bad: Option<BadRecord>,
    pub torn: Option<TornTail>,
    /// The last segment and its length (where the next batch goes).
    pub tail: Option<(u64, PathBuf, u64)>,
}

/// Reads every segment of `dir`, checking positions and links record by record.
pub(crate) fn scan(dir: &Path, keep_records: bool) -> Result<Scan> {
    let mut scan = Scan::default();
    let segments = segments(dir)?;
    let count = segments.len();
    for (n, (first, path)) in segments.into_iter().enumerate() {
        let bytes = fs::read(&path).map_err(|e| io_error("cannot read the audit segment", &path, &e))?;
        let last_segment = n + 1 == count;
        if first != scan.tree.size() && scan.bad.is_none() {
            scan.bad = Some(BadRecord {
                seq: scan.tree.size(),
                why: format!("segment `{}` starts at record {first}, not {}", path.display(), scan.tree.size()),
            });
        }
        let mut offset = 0usize;
        let mut lines = bytes.split_inclusive(|&b| b == b'\n');
        while let Some(chunk) = lines.next() {
            let whole = chunk.ends_with(b"\n");
            let line = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            let position = scan.tree.size();
            if scan.bad.is_some() {
                offset += chunk.len();
                continue;
            }
            let parsed = if whole { AuditRecord::parse(line) } else { Err("the record is torn: it has no end of line".into()) };
            match parsed
                .map_err(|why| (position, format!("record {position}: {why}")))
                .and_then(|record| check_link(&record, position, &scan.last_leaf).map(|()| record))
            {
                Ok(record) => {
                    scan.last_leaf = scan.tree.push(line)?.0;
                    if keep_records {
                        scan.records.push(record);
                    }
                }
                Err((at, why)) => {
                    // A crash can leave a partial batch at the end of the last segment: bytes
                    // that are not a whole record, never acknowledged. A whole record that
                    // parses but does not link, or anything followed by a whole record, is not
                    // a crash.
                    let unparsable = !whole || AuditRecord::parse(line).is_err();
                    let record_follows =
                        lines.clone().any(|c| c.ends_with(b"\n") && AuditRecord::parse(&c[..c.len() - 1]).is_ok());
                    if last_segment && unparsable && !record_follows {
                        scan.torn =
                            Some(TornTail { segment: path.clone(), keep: offset as u64, dropped: (bytes.len() - offset) as u64 });
                        break;
                    }
                    scan.bad = Some(BadRecord { seq: at, why });
                }
            }
            offset += chunk.len();
        }
        let len = scan.torn.as_ref().filter(|t| t.segment == path).map_or(bytes.len() as u64, |t| t.keep);
        scan.tail = Some((first, path, len));
    }
    Ok(scan)
}

/// Checks a record against its position and the record before it; `Err` names the first
/// record that cannot be trusted.
pub(crate) fn check_link(record: &AuditRecord, position: u64, prev: &[u8; 32]) -> std::result::Result<(), (u64, String)> {
    if record.seq != position {
        return Err((position, format!("record {position} holds `seq` {}: a record was deleted, inserted or moved", record.seq)));
    }
    if record.prev().as_ref() != Some(prev) {
        let before = position.saturating_sub(1);
        return Err((before, format!("record {before} was edited: record {position} does not link to it")));
    }
    Ok(())
}

/// The writer of one log directory.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    file: File,
    len: u64,
    max_len: u64,
    _lock: File,
}

impl Segments {
    /// Takes the directory's lock, repairs a torn tail, and opens the last segment to append.
    pub fn open(dir: &Path, max_len: u64) -> Result<(Self, Scan)> {
        fs::create_dir_all(dir).map_err(|e| io_error("cannot create the audit log", dir, &e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open", &lock_path, &e))?;
        lock.try_lock().map_err(|_| {
            Error::new(ErrorCode::AuditUnavailable, format!("the audit log `{}` is open in another process", dir.display()))
        })?;
        let scan = scan(dir, false)?;
        if let Some(bad) = &scan.bad {
            return Err(Error::new(
                ErrorCode::AuditInvalid,
                format!("the audit log `{}` is damaged at record {}: {}", dir.display(), bad.seq, bad.why),
            ));
        }
        if let Some(torn) = &scan.torn {
            let file =
                OpenOptions::new().write(true).open(&torn.segment).map_err(|e| io_error("cannot open", &torn.segment, &e))?;
            file.set_len(torn.keep).and_then(|()| file.sync_all()).map_err(|e| io_error("cannot repair", &torn.segment, &e))?;
        }
        let (path, len) = match &scan.tail {
            Some((_, path, len)) => (path.clone(), *len),
            None => (segment_path(dir, 0), 0),
        };
        let file = open_append(&path)?;
        sync_dir(dir)?;
        Ok((Self { dir: dir.to_owned(), file, len, max_len, _lock: lock }, scan))
    }

    /// Appends a batch of whole lines that starts at record `first` and makes it durable.
    pub fn write(&mut self, batch: &[u8], first: u64) -> Result<()> {
        if self.len >= self.max_len && !batch.is_empty() {
            let path = segment_path(&self.dir, first);
            self.file = open_append(&path)?;
            sync_dir(&self.dir)?;
            self.len = 0;
        }
        self.file
            .write_all(batch)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error("cannot write the audit log", &self.dir, &e))?;
        self.len += batch.len() as u64;
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| io_error("cannot open", path, &e))
}

/// Makes a directory's entries (a new segment, a renamed checkpoint) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("cannot sync", dir, &e))
}

/// Writes `contents` to `dir/name` atomically and durably (a temporary file, renamed).
pub(crate) fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| io_error("cannot write", &tmp, &e))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|e| io_error("cannot write", &tmp, &e))?;
    fs::rename(&tmp, &target).map_err(|e| io_error("cannot replace", &target, &e))?;
    sync_dir(dir)
}

/// Writes `contents` to a new file `dir/name`, never replacing one (an export directory
/// keeps every checkpoint).
pub(crate) fn write_new(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| io_error("cannot create", &path, &e))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|e| io_error("cannot write", &path, &e))?;
    sync_dir(dir)
}
