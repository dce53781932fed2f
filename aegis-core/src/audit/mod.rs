//! The audit log: every decision, approval, break-glass grant, task end and bundle change as a
//! record in an append-only log, tamper-evident by the proofs Certificate Transparency uses.
//!
//! - `record`: what a record holds ([`AuditRecord`], [`Event`]);
//! - `merkle`: the RFC 6962 tree over the records, inclusion and consistency proofs;
//! - `checkpoint`: signed tree heads (C2SP tlog-checkpoint in a C2SP signed note);
//! - `file`: the segment files and the crash repair;
//! - `sqlite`: the log in the SQLite store's database, written in the commit's transaction;
//! - `verify`: reading a log back and naming the first record that cannot be trusted;
//! - `export`: CloudEvents; `seal`: raw arguments encrypted for replay.
//!
//! Durable before allowed: [`AuditLog::append`] returns only once the record is on disk.
//! Concurrent appends share one write and one `fdatasync` (group commit): the first waiting
//! caller writes everything queued, the others wait for it.

mod checkpoint;
mod export;
mod file;
mod merkle;
mod record;
mod replay;
mod report;
mod seal;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub use checkpoint::{verify_checkpoint, LogKey, LogVerifier, SignedCheckpoint};
pub use export::{cloud_event, rfc3339, EVENT_TYPE_PREFIX};
pub use file::BadRecord;
pub use merkle::{leaf_hash, verify_consistency, verify_inclusion};
pub(crate) use record::{
    approval as approval_event, break_glass as break_glass_event, bundle_loaded as bundle_loaded_event,
    decision as decision_event, DecidedCall,
};
pub use record::{kind, AuditRecord, Event};
pub use replay::{dry_run, Change, DryRunReport};
pub use report::{BreakGlassEntry, Count, Coverage, Latency, LogStatus, Report, Spend};
pub use seal::SealKey;
pub use verify::{read_log, LogReport, ReadLog};

use crate::error::{Error, ErrorCode, Result};
#[cfg(feature = "sqlite")]
use crate::state::SqliteStore;
use crate::state::Store;
use crate::time::{OsRandom, SecureRandom};
use file::{Segments, CHECKPOINT_FILE, VERIFIER_KEY_FILE};
use merkle::Tree;

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Where checkpoints go besides the log's own directory: a place the agent process cannot
/// rewrite.
pub type CheckpointExporter = Arc<dyn Fn(&SignedCheckpoint) -> Result<()> + Send + Sync>;

/// Where a log keeps its records.
enum Target {
    /// Segment files in a directory.
    Dir(PathBuf),
    /// The tables of an SQLite store's database.
    #[cfg(feature = "sqlite")]
    Store(Arc<SqliteStore>),
}

/// Configures and opens an [`AuditLog`].
pub struct AuditLogBuilder {
    target: Target,
    key: LogKey,
    segment_bytes: u64,
    checkpoint_every: u64,
    exporters: Vec<CheckpointExporter>,
    seal: Option<SealKey>,
    random: Arc<dyn SecureRandom>,
}

impl AuditLogBuilder {
    /// Starts a new segment file once the current one holds this many bytes (default 64 MiB).
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// Signs a checkpoint after every `records` records (default 1000; 0: only when asked).
    pub fn checkpoint_every(mut self, records: u64) -> Self {
        self.checkpoint_every = records;
        self
    }

    /// Also writes every checkpoint as a new file `<origin>.<size>.checkpoint` in `dir`, never
    /// replacing one (point it at a directory the agent process may add to but not rewrite).
    pub fn export_checkpoints_to(mut self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.exporters.push(Arc::new(move |cp: &SignedCheckpoint| {
            std::fs::create_dir_all(&dir).map_err(|e| file::io_error("cannot create", &dir, &e))?;
            let name = format!("{}.{:012}.checkpoint", cp.origin.replace(['/', ':'], "_"), cp.size);
            match file::write_new(&dir, &name, cp.note.as_bytes()) {
                // The same size was exported before (a reopened log): the same tree, or the
                // verifier will say otherwise.
                Err(_) if dir.join(&name).exists() => Ok(()),
                other => other,
            }
        }));
        self
    }

    /// Calls `export` with every checkpoint (to a witness, object storage, ...). A failing
    /// exporter fails the checkpoint, not the decisions.
    pub fn on_checkpoint(mut self, export: CheckpointExporter) -> Self {
        self.exporters.push(export);
        self
    }

    /// Keeps each decision's raw arguments, sealed under `key`, for replay.
    pub fn seal_raw_args(mut self, key: SealKey) -> Self {
        self.seal = Some(key);
        self
    }

    /// The randomness for seal nonces (default: the operating system's).
    pub fn random(mut self, random: Arc<dyn SecureRandom>) -> Self {
        self.random = random;
        self
    }

    /// Opens the log: takes the directory's lock, checks every record and the last
    /// checkpoint, and cuts off a torn last record (recording that it did).
    pub fn open(self) -> Result<AuditLog> {
        let dir = match &self.target {
            Target::Dir(dir) => dir.clone(),
            #[cfg(feature = "sqlite")]
            Target::Store(store) => {
                let store = Arc::clone(store);
                return self.open_in_store(store);
            }
        };
        let (segments, scan) = Segments::open(&dir, self.segment_bytes)?;
        let vkey = self.key.verifier_key();
        let vkey_path = dir.join(VERIFIER_KEY_FILE);
        match std::fs::read_to_string(&vkey_path) {
            Ok(existing) if existing.trim() != vkey => {
                return Err(Error::new(
                    ErrorCode::AuditInvalid,
                    format!("the audit log `{}` is signed by `{}`, not by this key", dir.display(), existing.trim()),
                ))
            }
            Ok(_) => {}
            Err(_) => file::write_atomically(&dir, VERIFIER_KEY_FILE, format!("{vkey}\n").as_bytes())?,
        }
        let mut checkpointed = 0;
        if let Ok(note) = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)) {
            let verifier = LogVerifier::new(&vkey)?;
            let cp = verify_checkpoint(&note, &verifier)?;
            checkpointed = cp.size;
            if cp.size > scan.tree.size() || scan.tree.root(cp.size)?.0 != cp.root {
                return Err(Error::new(
                    ErrorCode::AuditInvalid,
                    format!(
                        "the audit log `{}` no longer matches its checkpoint of {} records (it holds {})",
                        dir.display(),
                        cp.size,
                        scan.tree.size()
                    ),
                ));
            }
        }
        let torn = scan.torn.clone();
        let log = self.into_log(Sink::Files(Mutex::new(segments)), scan, checkpointed);
        if let Some(torn) = torn {
            let now = crate::time::SystemClock;
            let event = Event::new(kind::AUDIT_REPAIRED, crate::time::Clock::now_millis(&now))
                .with("dropped_bytes", torn.dropped)
                .with("segment", torn.segment.display().to_string());
            log.append(event)?;
        }
        Ok(log)
    }
}

impl AuditLogBuilder {
    fn into_log(self, sink: Sink, scan: file::Scan, checkpointed: u64) -> AuditLog {
        let size = scan.tree.size();
        AuditLog {
            key: self.key,
            state: Mutex::new(LogState {
                tree: scan.tree,
                last_leaf: scan.last_leaf,
                pending: Vec::new(),
                durable: size,
                flushing: false,
                failed: None,
                // Records a crash left past the last checkpoint get one when the log closes.
                checkpointed,
                batches: 0,
            }),
            flushed: Condvar::new(),
            sink,
            checkpoint_every: self.checkpoint_every,
            exporters: self.exporters,
            seal: self.seal,
            random: self.random,
        }
    }

    /// Opens a log kept in `store`'s database: checks the key, every record and the last
    /// checkpoint, as for a directory.
    #[cfg(feature = "sqlite")]
    fn open_in_store(self, store: Arc<SqliteStore>) -> Result<AuditLog> {
        let vkey = self.key.verifier_key();
        let at = store.path().display().to_string();
        store.with_tx(|conn| match sqlite::meta(conn, sqlite::VERIFIER_KEY)? {
            Some(existing) if existing.trim() != vkey => Err(Error::new(
                ErrorCode::AuditInvalid,
                format!("the audit log in `{at}` is signed by `{}`, not by this key", existing.trim()),
            )),
            Some(_) => Ok(()),
            None => sqlite::set_meta(conn, sqlite::VERIFIER_KEY, &vkey),
        })?;
        let mut scan = file::Scan::default();
        sqlite::extend_scan(&mut scan, &store.with_conn(|conn| sqlite::lines_from(conn, 0))?, false)?;
        if let Some(bad) = &scan.bad {
            return Err(Error::new(
                ErrorCode::AuditInvalid,
                format!("the audit log in `{at}` is damaged at record {}: {}", bad.seq, bad.why),
            ));
        }
        let mut checkpointed = 0;
        if let Some(note) = store.with_conn(|conn| sqlite::meta(conn, sqlite::CHECKPOINT))? {
            let cp = verify_checkpoint(&note, &LogVerifier::new(&vkey)?)?;
            checkpointed = cp.size;
            if cp.size > scan.tree.size() || scan.tree.root(cp.size)?.0 != cp.root {
                return Err(Error::new(
                    ErrorCode::AuditInvalid,
                    format!(
                        "the audit log in `{at}` no longer matches its checkpoint of {} records (it holds {})",
                        cp.size,
                        scan.tree.size()
                    ),
                ));
            }
        }
        Ok(self.into_log(Sink::Store(store), scan, checkpointed))
    }
}

/// Where an open log writes.
enum Sink {
    Files(Mutex<Segments>),
    #[cfg(feature = "sqlite")]
    Store(Arc<SqliteStore>),
}

struct LogState {
    tree: Tree,
    last_leaf: [u8; 32],
    /// Lines queued for the next write.
    pending: Vec<u8>,
    /// Records `0..durable` are on disk.
    durable: u64,
    /// A caller is writing a batch.
    flushing: bool,
    /// A write failed: the log refuses records until it is reopened (and repaired).
    failed: Option<String>,
    checkpointed: u64,
    /// Writes made (each one `fdatasync`), since the log was opened.
    batches: u64,
}

/// An append-only, tamper-evident log of what the engine decided. Safe to share.
pub struct AuditLog {
    key: LogKey,
    state: Mutex<LogState>,
    flushed: Condvar,
    sink: Sink,
    checkpoint_every: u64,
    exporters: Vec<CheckpointExporter>,
    seal: Option<SealKey>,
    random: Arc<dyn SecureRandom>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("origin", &self.key.name()).field("size", &self.size()).finish_non_exhaustive()
    }
}

fn unavailable(why: &str) -> Error {
    Error::new(ErrorCode::AuditUnavailable, format!("the audit log failed and refuses records until reopened: {why}"))
}

impl AuditLog {
    /// A log in `dir` (created if absent), signed with `key`.
    pub fn builder(dir: impl Into<PathBuf>, key: LogKey) -> AuditLogBuilder {
        Self::builder_for(Target::Dir(dir.into()), key)
    }

    /// A log kept in `store`'s database, signed with `key`. An engine built on the same store
    /// writes each allowed call's record in the transaction that commits the call.
    #[cfg(feature = "sqlite")]
    pub fn in_store(store: Arc<SqliteStore>, key: LogKey) -> AuditLogBuilder {
        Self::builder_for(Target::Store(store), key)
    }

    fn builder_for(target: Target, key: LogKey) -> AuditLogBuilder {
        AuditLogBuilder {
            target,
            key,
            segment_bytes: 64 << 20,
            checkpoint_every: 1000,
            exporters: Vec::new(),
            seal: None,
            random: Arc::new(OsRandom),
        }
    }

    fn state(&self) -> MutexGuard<'_, LogState> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log's name (the checkpoints' origin).
    pub fn origin(&self) -> &str {
        self.key.name()
    }

    /// The verifier key an auditor pins.
    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// The number of durable records.
    pub fn size(&self) -> u64 {
        // A log in a database may have grown in another process; when it cannot be read,
        // the records known so far.
        let _ = self.sync();
        self.state().durable
    }

    /// How many writes (each with its own `fdatasync`) made the records since the log was
    /// opened durable: fewer than the records when concurrent decisions shared a flush.
    pub fn batches(&self) -> u64 {
        self.state().batches
    }

    /// The directory the log lives in (for a log in a database, the database file).
    pub fn dir(&self) -> PathBuf {
        match &self.sink {
            Sink::Files(segments) => segments.lock().unwrap_or_else(PoisonError::into_inner).dir().to_owned(),
            #[cfg(feature = "sqlite")]
            Sink::Store(store) => store.path().to_owned(),
        }
    }

    /// Whether `store` keeps this log: its records can then be written in the store's commits
    /// ([`Store::commit_recorded`]).
    #[cfg_attr(not(feature = "sqlite"), allow(unused_variables))]
    pub fn is_kept_by(&self, store: &Arc<dyn Store>) -> bool {
        match &self.sink {
            Sink::Files(_) => false,
            #[cfg(feature = "sqlite")]
            Sink::Store(own) => store.keeps_audit_log() && std::ptr::addr_eq(Arc::as_ptr(own), Arc::as_ptr(store)),
        }
    }

    /// The store that keeps this log, if one does.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        match &self.sink {
            Sink::Files(_) => None,
            #[cfg(feature = "sqlite")]
            Sink::Store(store) => Some(Arc::clone(store) as Arc<dyn Store>),
        }
    }

    /// A record was written by the store in a commit: counts toward the next checkpoint.
    pub(crate) fn recorded_by_store(&self) {
        let due = {
            // Counted per process (others may write too): one checkpoint every so many of ours.
            let mut state = self.state();
            state.batches += 1;
            self.checkpoint_every > 0 && state.batches.is_multiple_of(self.checkpoint_every)
        };
        if due {
            let _ = self.checkpoint();
        }
    }

    /// Reads the records other writers (the store's commits, other processes) added to a log
    /// kept in a database, checking each one.
    fn sync(&self) -> Result<()> {
        #[cfg(feature = "sqlite")]
        if let Sink::Store(store) = &self.sink {
            let mut state = self.state();
            let lines = store.with_conn(|conn| sqlite::lines_from(conn, state.tree.size()))?;
            let mut scan =
                file::Scan { tree: std::mem::take(&mut state.tree), last_leaf: state.last_leaf, ..file::Scan::default() };
            let extended = sqlite::extend_scan(&mut scan, &lines, false);
            state.tree = scan.tree;
            state.last_leaf = scan.last_leaf;
            state.durable = state.tree.size();
            extended?;
            if let Some(bad) = scan.bad {
                return Err(Error::new(
                    ErrorCode::AuditInvalid,
                    format!("the audit log is damaged at record {}: {}", bad.seq, bad.why),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn seal_key(&self) -> Option<(&SealKey, &dyn SecureRandom)> {
        self.seal.as_ref().map(|k| (k, self.random.as_ref()))
    }

    /// Appends a record and returns its position once it is durable.
    pub fn append(&self, event: Event) -> Result<u64> {
        #[cfg(feature = "sqlite")]
        if let Sink::Store(store) = &self.sink {
            // One transaction of its own; the database's lock orders concurrent writers.
            let seq = store.audit_append(std::slice::from_ref(&event))?;
            self.recorded_by_store();
            return Ok(seq);
        }
        let mut state = self.state();
        if let Some(why) = &state.failed {
            return Err(unavailable(why));
        }
        let seq = state.tree.size();
        let line = event.line(seq, &state.last_leaf)?;
        state.last_leaf = state.tree.push(&line)?.0;
        state.pending.extend_from_slice(&line);
        state.pending.push(b'\n');
        loop {
            if state.durable > seq {
                return Ok(seq);
            }
            if let Some(why) = &state.failed {
                return Err(unavailable(why));
            }
            if state.flushing {
                state = self.flushed.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead a batch: everything queued so far, in one write and one sync.
            let batch = std::mem::take(&mut state.pending);
            let (first, upto) = (state.durable, state.tree.size());
            state.flushing = true;
            drop(state);
            let written = match &self.sink {
                Sink::Files(segments) => segments.lock().unwrap_or_else(PoisonError::into_inner).write(&batch, first),
                #[cfg(feature = "sqlite")]
                Sink::Store(_) => Err(Error::new(ErrorCode::Internal, "a log in a database has no segments")),
            };
            state = self.state();
            state.flushing = false;
            match written {
                Ok(()) => {
                    state.durable = upto;
                    state.batches += 1;
                }
                Err(e) => state.failed = Some(e.message().to_owned()),
            }
            self.flushed.notify_all();
            let due = self.checkpoint_every > 0 && state.durable >= state.checkpointed + self.checkpoint_every;
            if due && state.failed.is_none() {
                state.checkpointed = state.durable;
                drop(state);
                // A checkpoint that cannot be written or exported fails the checkpoint, not
                // the record: the record is durable and the next checkpoint covers it.
                let _ = self.checkpoint();
                state = self.state();
            }
        }
    }

    /// Signs a checkpoint of every durable record, writes it beside the log and exports it.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint> {
        self.sync()?;
        let (size, root) = {
            let mut state = self.state();
            let size = state.durable;
            state.checkpointed = state.checkpointed.max(size);
            (size, state.tree.root(size)?.0)
        };
        let cp = checkpoint::sign(&self.key, size, root)?;
        // Checkpoints are written in size order: an older one never replaces a newer one.
        let older = |note: Option<String>| {
            note.and_then(|note| LogVerifier::new(&self.verifier_key()).and_then(|v| verify_checkpoint(&note, &v)).ok())
                .is_none_or(|current| current.size <= size)
        };
        match &self.sink {
            Sink::Files(segments) => {
                let segments = segments.lock().unwrap_or_else(PoisonError::into_inner);
                if older(std::fs::read_to_string(segments.dir().join(CHECKPOINT_FILE)).ok()) {
                    file::write_atomically(segments.dir(), CHECKPOINT_FILE, cp.note.as_bytes())?;
                }
            }
            #[cfg(feature = "sqlite")]
            Sink::Store(store) => store.with_tx(|conn| {
                if older(sqlite::meta(conn, sqlite::CHECKPOINT)?) {
                    sqlite::set_meta(conn, sqlite::CHECKPOINT, &cp.note)?;
                }
                Ok(())
            })?,
        }
        for export in &self.exporters {
            export(&cp)?;
        }
        Ok(cp)
    }

    /// The inclusion proof of record `index` in the tree of the first `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>> {
        self.sync()?;
        Ok(self.state().tree.inclusion_proof(index, size.min(self.size()))?.into_iter().map(|h| h.0).collect())
    }

    /// The consistency proof between the trees of `old` and `new` records.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<[u8; 32]>> {
        if new > self.size() {
            return Err(Error::new(ErrorCode::AuditInvalid, format!("the log holds {} durable records, not {new}", self.size())));
        }
        Ok(self.state().tree.consistency_proof(old, new)?.into_iter().map(|h| h.0).collect())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.sync();
        let state = self.state();
        let due = state.failed.is_none() && state.durable > state.checkpointed;
        drop(state);
        if due {
            // Best effort: the records are durable already; the checkpoint saves a verifier
            // from trusting the tail on the chain alone.
            let _ = self.checkpoint();
        }
    }
}

/// The verifier key stored beside a log (`log.pub`): detects edits, but not a rewrite by
/// someone who can also replace that file; pin the key elsewhere for that.
pub fn stored_verifier_key(dir: &Path) -> Result<LogVerifier> {
    let path = dir.join(VERIFIER_KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| file::io_error("cannot read", &path, &e))?;
    LogVerifier::new(&text)
}
