//! The SQLite store: one file, durable, safe for the processes of one host.
//!
//! WAL journal, `synchronous=FULL` (an approval or a consumed token survives power loss), and
//! every state change in a `BEGIN IMMEDIATE` transaction, which takes the database's write lock
//! before reading: check and apply are one step across processes.
//!
//! Commits made at the same time share one transaction and one fsync (group commit): the first
//! caller leads, applying every commit queued by then in order, each in its own savepoint (a
//! refused or failed one leaves the others untouched), and none is answered before the
//! transaction holding it is durable; a failed `COMMIT` fails them all. A leader that has been
//! committing beside others waits a moment for them to queue (`Group::siblings`), and a
//! waiting commit polls for its answer before it sleeps (`POLL_FOR_ANSWER`): without either,
//! two threads committed no faster than one.
//!
//! The database can also keep the audit log (tables `audit` and `audit_meta`): an allowed
//! call's record is then written in the same transaction as the state it changes, so a record
//! exists exactly when the call was committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    check_amounts, store_error, ApprovalStatus, BreakGlassGrant, Commit, CommitOutcome, LedgerEntry, PendingApproval,
    SlowFailures, Store, TaskState,
};
use crate::audit::Event;
use crate::budget::exceeds;
use crate::error::{ErrorCode, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0, ended INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ledger (task_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (task_id, seq));
CREATE TABLE IF NOT EXISTS duties (task_id TEXT NOT NULL, agent_id TEXT NOT NULL, tool TEXT NOT NULL, PRIMARY KEY (task_id, agent_id, tool));
CREATE TABLE IF NOT EXISTS used (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS spend (key TEXT NOT NULL, at INTEGER NOT NULL, amount INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS spend_by_key ON spend (key, at);
CREATE TABLE IF NOT EXISTS spend_sum (key TEXT PRIMARY KEY, total INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS spend_sum_add AFTER INSERT ON spend BEGIN
  INSERT INTO spend_sum (key, total) VALUES (NEW.key, NEW.amount) ON CONFLICT (key) DO UPDATE SET total = total + NEW.amount;
END;
CREATE TRIGGER IF NOT EXISTS spend_sum_drop AFTER DELETE ON spend BEGIN
  UPDATE spend_sum SET total = total - OLD.amount WHERE key = OLD.key;
END;
CREATE INDEX IF NOT EXISTS used_by_expiry ON used (expires_at);
CREATE TABLE IF NOT EXISTS approvals (approval_id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, closed_at INTEGER, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, line TEXT NOT NULL, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    /// The connection every change is made on.
    conn: Mutex<Connection>,
    /// Connections for reads, which WAL lets run beside a commit: a decision reading its task
    /// does not wait for another decision's fsync (commits check the version they were decided
    /// on, so a read that misses a commit in flight is decided again).
    readers: Mutex<Vec<Connection>>,
    /// Commits waiting for the current leader's next transaction (group commit).
    group: Mutex<Group>,
    /// Signalled when a commit joins the queue: a leader waiting for its siblings wakes.
    joined: Condvar,
    path: PathBuf,
    /// A breaker for the audit log kept here: the engine's breaker covers the store's own
    /// steps, and a record appended on its own (a denied call's) would otherwise wait the busy
    /// timeout on every decision while another process holds the database.
    audit_breaker: SlowFailures,
    /// The file opened, by device and inode: a database deleted or replaced underneath would
    /// otherwise take writes into an unlinked file that nobody will ever read.
    #[cfg(unix)]
    file: (u64, u64),
}

/// How long a step waits for a lock another process holds before it fails (and the call is
/// denied); the engine's breaker then refuses at once for a moment instead of every decision
/// waiting as long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Compiled statements kept per connection.
const STATEMENTS_CACHED: usize = 64;

/// Reader connections kept open.
const READERS: usize = 8;

#[cfg(unix)]
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path.as_ref()).map_err(store_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(store_error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(store_error)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(store_error)?;
        // Every statement a commit runs stays compiled (the default keeps 16).
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        Self::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            readers: Mutex::default(),
            group: Mutex::default(),
            joined: Condvar::new(),
            path: path.as_ref().to_owned(),
            audit_breaker: SlowFailures::new(ErrorCode::AuditUnavailable, "audit log"),
            #[cfg(unix)]
            file: file_id(path.as_ref()).map_err(store_error)?,
        })
    }

    /// Creates the tables, in one transaction with the write lock (two processes opening a new
    /// database at once), and fills `spend_sum` from `spend` when a database made before it
    /// is opened for the first time. Triggers keep `spend_sum` exact from then on, whoever
    /// writes `spend` (a process of an older version too); integer sums, so a total past
    /// `i64` fails its commit (denied) rather than rounding.
    fn migrate(conn: &Connection) -> Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(store_error)?;
        let migrated = (|| {
            let had_sums: bool = conn
                .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'spend_sum'", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(store_error)?
                > 0;
            conn.execute_batch(SCHEMA).map_err(store_error)?;
            if !had_sums {
                conn.execute("INSERT INTO spend_sum (key, total) SELECT key, SUM(amount) FROM spend GROUP BY key", [])
                    .map_err(store_error)?;
            }
            Ok(())
        })();
        let end = if migrated.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute_batch(end).map_err(store_error)?;
        migrated
    }

    /// Whether the file at `path` is still the one opened.
    fn check_file(&self) -> Result<()> {
        #[cfg(unix)]
        match file_id(&self.path) {
            Ok(id) if id == self.file => {}
            Ok(_) => return Err(store_error(format!("the database `{}` was replaced underneath", self.path.display()))),
            Err(e) => return Err(store_error(format!("the database `{}` is gone: {e}", self.path.display()))),
        }
        Ok(())
    }

    /// The connection for changes, once the file it writes is still the one at `path`.
    fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.check_file()?;
        // A panic during a batch is caught (the group answers its commits with an error): the
        // connection is taken over, its transaction rolled back, rather than refused for ever.
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK").map_err(store_error)?;
        }
        Ok(conn)
    }

    /// Runs `read` on a reader connection (opened when none is free; at most `READERS` kept).
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.check_file()?;
        let free = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match free {
            Some(conn) => conn,
            None => {
                // Read-only and never created: a database moved away meanwhile is an error, not
                // a new empty one; and the file must still be the one the store opened.
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags).map_err(store_error)?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(store_error)?;
                self.check_file()?;
                conn
            }
        };
        let out = read(&conn);
        // A connection that failed is dropped rather than reused.
        if out.is_ok() {
            let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < READERS {
                pool.push(conn);
            }
        }
        out
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events` to the audit log kept in this database, in one transaction; returns
    /// the position of the first.
    pub(crate) fn audit_append(&self, events: &[Event]) -> Result<u64> {
        self.with_tx(|tx| crate::audit::sqlite::append(tx, events))
    }

    /// Runs `write` (the audit log's: records, checkpoints, its key) in an immediate
    /// transaction, committed when it returns `Ok`, behind the log's breaker.
    pub(crate) fn with_tx<T>(&self, write: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.audit_breaker.guard(|| {
            let mut conn = self.conn()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(crate::audit::sqlite::failed)?;
            let out = write(&tx)?;
            tx.commit().map_err(crate::audit::sqlite::failed)?;
            Ok(out)
        })
    }

    /// Runs `read` on the connection (audit rows and metadata).
    pub(crate) fn with_conn<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        read(&conn)
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(store_error)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(store_error)
}

fn status_str(s: ApprovalStatus) -> &'static str {
    match s {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Rejected => "rejected",
        ApprovalStatus::Superseded => "superseded",
    }
}

/// What was spent since `window_start`: the key's running total (kept by triggers), less what
/// is older than the window and not yet dropped by a commit (an index range over those rows
/// only), in one statement (one snapshot), so a call late in a long window costs what an early
/// one does.
fn spent(conn: &Connection, key: &str, window_start: i64) -> rusqlite::Result<i64> {
    let total: i64 = conn
        .prepare_cached(
            "SELECT COALESCE((SELECT total FROM spend_sum WHERE key = ?1), 0) \
             - COALESCE((SELECT SUM(amount) FROM spend WHERE key = ?1 AND at < ?2), 0)",
        )?
        .query_row(params![key, window_start], |r| r.get(0))?;
    Ok(total.max(0))
}

/// Adds a reservation to its key's spending, dropping what left the window (the window only
/// moves forward for a key: nothing dropped is needed again); the triggers keep the total.
fn reserve(tx: &Connection, r: &crate::budget::Reservation, now: i64) -> rusqlite::Result<()> {
    // Rows of zero amounts go too: they add nothing, but would be read at every check.
    exec(tx, "DELETE FROM spend WHERE key = ?1 AND at < ?2", params![r.key, r.window_start])?;
    exec(tx, "INSERT INTO spend (key, at, amount) VALUES (?1, ?2, ?3)", params![r.key, now, r.amount])?;
    Ok(())
}

/// Moves a task's version on (creating its row at 1).
const BUMP_VERSION: &str =
    "INSERT INTO tasks (task_id, version) VALUES (?1, 1) ON CONFLICT (task_id) DO UPDATE SET version = version + 1";

/// Runs `sql` through the connection's statement cache: a commit runs the same dozen
/// statements every time, and compiling them again for each one is CPU spent holding the
/// write lock that every other commit waits for.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// One commit waiting in the group, and where its answer goes.
struct Job {
    commit: Commit,
    record: Option<Event>,
    answer: Arc<Answer>,
}

/// The queue of the group commit, and whether a caller is leading it.
#[derive(Debug, Default)]
struct Group {
    queue: Vec<Job>,
    leading: bool,
    /// How many callers were committing when the last transaction ended: those it answered
    /// and those already queued for the next. The answered ones come back within a decision's
    /// time (microseconds) while a transaction takes an fsync (a tenth of a millisecond or
    /// more), so a leader that starts at once carries only the commits that queued during the
    /// previous fsync: two threads would alternate, one commit per fsync each. A leader
    /// therefore waits, briefly, for this many commits (PostgreSQL's `commit_siblings`).
    siblings: usize,
}

/// The longest a leader waits for its siblings: a fraction of an fsync on a fast disk. Only a
/// caller that has been committing beside others waits; one alone never does, and a wait that
/// times out lowers the count it waits for to what came.
const SIBLINGS_WAIT: Duration = Duration::from_micros(60);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("task_id", &self.commit.task_id).finish_non_exhaustive()
    }
}

/// What a waiting commit is told: lead the next batch (its own commit still queued), or its
/// outcome, once the transaction holding it is durable (or failed).
enum Word {
    Lead,
    Done(Result<CommitOutcome>),
}

/// Where a waiting commit is told.
#[derive(Default)]
struct Answer {
    word: Mutex<Option<Word>>,
    ready: Condvar,
    /// Set once `word` is: what a waiter polls before it sleeps.
    told: AtomicBool,
}

/// How long a waiting commit polls for its answer before it sleeps. A transaction takes about
/// an fsync, and a thread woken from sleep on a virtual machine can take as long again to run
/// (its idle vCPU halted), which the whole group then waits for: two threads committed no
/// faster than one. Polling (yielding the core between polls, so the leader is not slowed)
/// keeps the wake-up out of the commit's latency.
const POLL_FOR_ANSWER: Duration = Duration::from_micros(250);

impl Answer {
    fn tell(&self, word: Word) {
        let mut slot = self.word.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Some(word);
        self.told.store(true, Ordering::Release);
        drop(slot);
        self.ready.notify_all();
    }

    fn give(&self, outcome: Result<CommitOutcome>) {
        self.tell(Word::Done(outcome));
    }

    fn wait(&self) -> Word {
        let start = Instant::now();
        while !self.told.load(Ordering::Acquire) && start.elapsed() < POLL_FOR_ANSWER {
            std::thread::yield_now();
        }
        let mut slot = self.word.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(word) = slot.take() {
                // A caller handed the lead waits again, for its outcome.
                self.told.store(false, Ordering::Relaxed);
                return word;
            }
            slot = self.ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Applies one commit inside the current transaction; writes nothing unless it returns
/// `Committed` (every check comes before the first write).
fn apply(tx: &Connection, c: &Commit, record: Option<&Event>) -> Result<CommitOutcome> {
    let (version, ended) = task_row(tx, &c.task_id).map_err(store_error)?.unwrap_or((0, 0));
    if ended != 0 {
        return Ok(CommitOutcome::TaskEnded);
    }
    if u64::try_from(version).unwrap_or(u64::MAX) != c.expected_version {
        return Ok(CommitOutcome::Conflict);
    }
    for (key, _) in &c.consume {
        let used: Option<i64> = tx
            .prepare_cached("SELECT expires_at FROM used WHERE key = ?1 AND expires_at > ?2")
            .and_then(|mut s| s.query_row(params![key, c.now], |r| r.get(0)).optional())
            .map_err(store_error)?;
        if used.is_some() {
            return Ok(CommitOutcome::AlreadyUsed(key.clone()));
        }
    }
    check_amounts(c)?;
    for r in c.reservations.iter().filter(|r| r.enforce) {
        if exceeds(spent(tx, &r.key, r.window_start).map_err(store_error)?, r.amount, r.limit) {
            return Ok(CommitOutcome::BudgetExceeded(r.key.clone()));
        }
    }
    exec(tx, "DELETE FROM used WHERE expires_at <= ?1", [c.now]).map_err(store_error)?;
    for (key, exp) in &c.consume {
        exec(tx, "INSERT OR REPLACE INTO used (key, expires_at) VALUES (?1, ?2)", params![key, exp]).map_err(store_error)?;
    }
    for r in &c.reservations {
        reserve(tx, r, c.now).map_err(store_error)?;
    }
    exec(tx, BUMP_VERSION, [&c.task_id]).map_err(store_error)?;
    exec(tx, "INSERT INTO ledger (task_id, seq, entry) VALUES (?1, ?2, ?3)", params![c.task_id, version + 1, to_json(&c.entry)?])
        .map_err(store_error)?;
    for holder in c.entry.duty_holders() {
        exec(
            tx,
            "INSERT OR IGNORE INTO duties (task_id, agent_id, tool) VALUES (?1, ?2, ?3)",
            params![c.task_id, holder, c.entry.tool],
        )
        .map_err(store_error)?;
    }
    if let Some(record) = record {
        // An error here rolls this commit back: no state without its record.
        crate::audit::sqlite::append(tx, std::slice::from_ref(record))?;
    }
    Ok(CommitOutcome::Committed)
}

impl SqliteStore {
    /// Applies `c` and, when given, appends `record` to the audit log, in the next group
    /// transaction; returns once that transaction is durable (or failed).
    fn commit_with(&self, commit: Commit, record: Option<&Event>) -> Result<CommitOutcome> {
        let answer = Arc::new(Answer::default());
        {
            let mut group = self.group.lock().unwrap_or_else(PoisonError::into_inner);
            group.queue.push(Job { commit, record: record.cloned(), answer: Arc::clone(&answer) });
            if group.leading {
                drop(group);
                self.joined.notify_one();
                match answer.wait() {
                    Word::Done(outcome) => return outcome,
                    // Handed the lead: this commit is still queued, and goes in the next batch.
                    Word::Lead => {}
                }
            } else {
                group.leading = true;
            }
        }
        // Lead one batch (everything queued, this commit included), then hand the lead to the
        // first commit queued meanwhile: no caller keeps leading for others after its own
        // answer, however fast they queue.
        let jobs = self.gather();
        // A panic while leading must not leave the followers waiting for ever (nor the group
        // led by nobody): they are answered with an error, and the lead passes on.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply_batch(&jobs)));
        if applied.is_err() {
            for job in &jobs {
                job.answer.give(Err(store_error("the group commit failed unexpectedly")));
            }
        }
        {
            let mut group = self.group.lock().unwrap_or_else(PoisonError::into_inner);
            group.siblings = jobs.len() + group.queue.len();
            match group.queue.first() {
                Some(next) => next.answer.tell(Word::Lead),
                None => group.leading = false,
            }
        }
        match answer.wait() {
            Word::Done(outcome) => outcome,
            Word::Lead => Err(store_error("the group commit lost a commit")),
        }
    }

    /// The next batch, taken by its leader: everything queued, once as many commits as were in
    /// flight at the end of the last transaction have queued, or `SIBLINGS_WAIT` has passed.
    fn gather(&self) -> Vec<Job> {
        let group = self.group.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut group, waited) = self
            .joined
            .wait_timeout_while(group, SIBLINGS_WAIT, |g| g.queue.len() < g.siblings)
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() {
            group.siblings = group.queue.len();
        }
        std::mem::take(&mut group.queue)
    }

    /// One transaction for `jobs`, each in its own savepoint; every answer is given after the
    /// `COMMIT` (a failed one fails them all).
    fn apply_batch(&self, jobs: &[Job]) {
        let outcomes = self.run_batch(jobs);
        match outcomes {
            Ok(outcomes) => {
                for (job, outcome) in jobs.iter().zip(outcomes) {
                    job.answer.give(outcome);
                }
            }
            Err(e) => {
                for job in jobs {
                    job.answer.give(Err(e.clone()));
                }
            }
        }
    }

    fn run_batch(&self, jobs: &[Job]) -> Result<Vec<Result<CommitOutcome>>> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(store_error)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            exec(&tx, "SAVEPOINT job", []).map_err(store_error)?;
            let outcome = apply(&tx, &job.commit, job.record.as_ref());
            // A commit that did not apply leaves nothing behind, whatever it got to write.
            if !matches!(outcome, Ok(CommitOutcome::Committed)) {
                exec(&tx, "ROLLBACK TO job", []).map_err(store_error)?;
            }
            exec(&tx, "RELEASE job", []).map_err(store_error)?;
            outcomes.push(outcome);
        }
        tx.commit().map_err(store_error)?;
        Ok(outcomes)
    }
}

/// Moves the versions of `tasks` (a grant naming them opened or closed): a decision made on
/// their state before does not commit.
fn move_versions(tx: &rusqlite::Transaction<'_>, tasks: &[String]) -> Result<()> {
    for task in tasks {
        exec(tx, BUMP_VERSION, [task]).map_err(store_error)?;
    }
    Ok(())
}

/// A task's row: its version and whether it ended (0 or 1); `None` for a task never written.
fn task_row(conn: &Connection, task_id: &str) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.prepare_cached("SELECT version, ended FROM tasks WHERE task_id = ?1")?
        .query_row([task_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// A task's version, whether it ended, and its duties.
fn task_state(conn: &Connection, task_id: &str) -> Result<TaskState> {
    let Some((version, ended)) = task_row(conn, task_id).map_err(store_error)? else { return Ok(TaskState::default()) };
    let mut stmt = conn.prepare_cached("SELECT agent_id, tool FROM duties WHERE task_id = ?1").map_err(store_error)?;
    let duties = stmt
        .query_map([task_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(store_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(store_error)?;
    Ok(TaskState { version: u64::try_from(version).unwrap_or(0), duties, ended: ended != 0 })
}

impl Store for SqliteStore {
    fn task_state(&self, task_id: &str) -> Result<TaskState> {
        self.read(|conn| task_state(conn, task_id))
    }

    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT entry FROM ledger WHERE task_id = ?1 ORDER BY seq").map_err(store_error)?;
            let rows = stmt.query_map([task_id], |r| r.get::<_, String>(0)).map_err(store_error)?;
            rows.map(|e| from_json::<LedgerEntry>(&e.map_err(store_error)?)).collect()
        })
    }

    fn commit(&self, c: Commit) -> Result<CommitOutcome> {
        self.commit_with(c, None)
    }

    fn commit_recorded(&self, c: Commit, record: &Event) -> Result<CommitOutcome> {
        self.commit_with(c, Some(record))
    }

    fn keeps_audit_log(&self) -> bool {
        true
    }

    fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64> {
        self.read(|conn| spent(conn, key, window_start).map_err(store_error))
    }

    fn end_task(&self, task_id: &str, _now: i64) -> Result<()> {
        self.conn()?
            .execute("INSERT INTO tasks (task_id, ended) VALUES (?1, 1) ON CONFLICT (task_id) DO UPDATE SET ended = 1", [task_id])
            .map_err(store_error)?;
        Ok(())
    }

    fn insert_pending(&self, p: &PendingApproval) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO approvals (approval_id, status, created_at_ms, body) VALUES (?1, ?2, ?3, ?4)",
                params![p.approval_id, status_str(p.status), p.created_at_ms, to_json(p)?],
            )
            .map_err(store_error)?;
        Ok(())
    }

    fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        let body: Option<String> = self.read(|conn| {
            conn.query_row("SELECT body FROM approvals WHERE approval_id = ?1", [approval_id], |r| r.get(0))
                .optional()
                .map_err(store_error)
        })?;
        body.map(|b| from_json(&b)).transpose()
    }

    fn list_pending(&self) -> Result<Vec<PendingApproval>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body FROM approvals WHERE status = 'pending' ORDER BY created_at_ms, approval_id")
                .map_err(store_error)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(store_error)?;
            rows.map(|b| from_json(&b.map_err(store_error)?)).collect()
        })
    }

    fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool> {
        let prior = i64::try_from(prior_votes).map_err(store_error)?;
        let changed = self
            .conn()?
            .execute(
                "UPDATE approvals SET status = ?2, body = ?3 WHERE approval_id = ?1 AND status = 'pending' \
                 AND COALESCE(json_array_length(body, '$.votes'), 0) = ?4",
                params![resolved.approval_id, status_str(resolved.status), to_json(resolved)?, prior],
            )
            .map_err(store_error)?;
        Ok(changed == 1)
    }

    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(store_error)?;
        tx.execute("INSERT INTO grants (id, closed_at, body) VALUES (?1, NULL, ?2)", params![grant.id, to_json(grant)?])
            .map_err(store_error)?;
        move_versions(&tx, &grant.tasks)?;
        tx.commit().map_err(store_error)
    }

    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT body FROM grants WHERE closed_at IS NULL ORDER BY id").map_err(store_error)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(store_error)?;
            rows.map(|b| from_json(&b.map_err(store_error)?)).collect()
        })
    }

    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(store_error)?;
        let body: Option<String> = tx
            .query_row("SELECT body FROM grants WHERE id = ?1 AND closed_at IS NULL", [id], |r| r.get(0))
            .optional()
            .map_err(store_error)?;
        let Some(body) = body else { return Ok(false) };
        let mut grant: BreakGlassGrant = from_json(&body)?;
        grant.closed_at = Some(now);
        grant.review_ref = Some(review_ref.to_owned());
        tx.execute("UPDATE grants SET closed_at = ?2, body = ?3 WHERE id = ?1", params![id, now, to_json(&grant)?])
            .map_err(store_error)?;
        move_versions(&tx, &grant.tasks)?;
        tx.commit().map_err(store_error)?;
        Ok(true)
    }

    fn versions_cover_decision_state(&self) -> bool {
        true
    }
}
