//! A circuit breaker in front of the engine's store: a store that fails *slowly* (a database
//! locked by another process until the busy timeout, a Redis server paused or unreachable until
//! the read timeout, replicas that do not acknowledge until `WAIT` gives up) would otherwise make
//! every decision wait as long before it is denied. After such a failure the breaker refuses at
//! once, with the same `store_unavailable`, for a cool-down; then one call at a time probes the
//! store, and the first success closes it.
//!
//! Only slow failures trip it: a store that answers quickly, even with an error, is asked every
//! time, so one task's bad input never denies the others. Nothing is decided here and nothing
//! is allowed: refusing is what the store's error would have done, sooner.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Commit, CommitOutcome, DecisionState, LedgerEntry, PendingApproval, Store, TaskState};
use crate::break_glass::BreakGlassGrant;
use crate::error::{Error, ErrorCode, Result};

/// A failure that took at least this long trips the breaker.
const SLOW: Duration = Duration::from_millis(20);
/// How long the breaker refuses before one call probes the store again.
const COOL_DOWN: Duration = Duration::from_millis(1000);
/// `open_until` of a closed breaker.
const CLOSED: u64 = 0;

/// The store behind a breaker (see the module docs).
pub(crate) struct Breaker {
    inner: Arc<dyn Store>,
    gate: SlowFailures,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("gate", &self.gate).finish_non_exhaustive()
    }
}

impl Breaker {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, gate: SlowFailures::new(ErrorCode::StoreUnavailable, "store") }
    }

    /// Whether the store failed slowly less than a cool-down ago (its next call is refused).
    pub(crate) fn cooling_down(&self) -> bool {
        self.gate.cooling_down()
    }

    /// Runs `op` on the store unless the breaker is open; trips it when `op` fails slowly.
    fn guard<T>(&self, op: impl FnOnce(&dyn Store) -> Result<T>) -> Result<T> {
        self.gate.guard(|| op(&*self.inner))
    }
}

/// The breaker's state, for anything that can fail slowly with one error code: the store
/// behind [`Breaker`], and the audit log a SQLite store keeps (a locked database makes each
/// append wait the busy timeout).
pub(crate) struct SlowFailures {
    /// The error that counts as the resource failing, and the one a refusal carries.
    code: ErrorCode,
    /// What fails, for the refusal's message.
    what: &'static str,
    /// The zero of `open_until`: a monotonic clock, whatever the engine's clock says.
    epoch: Instant,
    /// Milliseconds since `epoch` (plus one, so that 0 means closed) until which calls are
    /// refused without asking the resource.
    open_until: AtomicU64,
}

impl std::fmt::Debug for SlowFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowFailures")
            .field("what", &self.what)
            .field("open_until", &self.open_until.load(Ordering::Relaxed))
            .finish()
    }
}

impl SlowFailures {
    /// A closed breaker for failures with `code`, of `what`.
    pub(crate) fn new(code: ErrorCode, what: &'static str) -> Self {
        Self { code, what, epoch: Instant::now(), open_until: AtomicU64::new(CLOSED) }
    }

    /// Whether a call now would be refused: the breaker is open and its cool-down has not
    /// ended. (Once it has, the next call probes; an open breaker nobody probes stays open, so
    /// "open" alone would say nothing about the resource.)
    pub(crate) fn cooling_down(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != CLOSED && self.now_ms() < until
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1).saturating_add(1)
    }

    fn cool_down_from(&self, now: u64) -> u64 {
        now.saturating_add(u64::try_from(COOL_DOWN.as_millis()).unwrap_or(u64::MAX))
    }

    /// Runs `op` unless the breaker is open; trips it when `op` fails slowly with `code`.
    pub(crate) fn guard<T>(&self, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let until = self.open_until.load(Ordering::Acquire);
        let probing = until != CLOSED;
        if probing {
            // Open: refuse until the cool-down ends, then let exactly one caller probe (the one
            // that moves the deadline on); the others keep being refused meanwhile. (Closed, the
            // clock is read once per step: a decision makes two.)
            let now = self.now_ms();
            let claimed = now >= until
                && self.open_until.compare_exchange(until, self.cool_down_from(now), Ordering::AcqRel, Ordering::Acquire).is_ok();
            if !claimed {
                return Err(Error::new(
                    self.code,
                    format!(
                        "{} unavailable: it failed slowly a moment ago, and is not asked again until its cool-down ends",
                        self.what
                    ),
                ));
            }
        }
        let started = Instant::now();
        let result = op();
        match &result {
            Ok(_) if probing => self.open_until.store(CLOSED, Ordering::Release),
            Err(e) if e.code() == self.code && (probing || started.elapsed() >= SLOW) => {
                self.open_until.store(self.cool_down_from(self.now_ms()), Ordering::Release);
            }
            _ => {}
        }
        result
    }
}

impl Store for Breaker {
    fn task_state(&self, task_id: &str) -> Result<TaskState> {
        self.guard(|s| s.task_state(task_id))
    }
    fn decision_state(&self, task_id: &str) -> Result<DecisionState> {
        self.guard(|s| s.decision_state(task_id))
    }
    fn versions_cover_decision_state(&self) -> bool {
        self.inner.versions_cover_decision_state()
    }
    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        self.guard(|s| s.ledger(task_id))
    }
    fn commit(&self, commit: Commit) -> Result<CommitOutcome> {
        self.guard(|s| s.commit(commit))
    }
    fn commit_recorded(&self, commit: Commit, record: &crate::audit::Event) -> Result<CommitOutcome> {
        self.guard(|s| s.commit_recorded(commit, record))
    }
    fn keeps_audit_log(&self) -> bool {
        self.inner.keeps_audit_log()
    }
    fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64> {
        self.guard(|s| s.budget_spent(key, window_start))
    }
    fn end_task(&self, task_id: &str, now: i64) -> Result<()> {
        self.guard(|s| s.end_task(task_id, now))
    }
    fn insert_pending(&self, pending: &PendingApproval) -> Result<()> {
        self.guard(|s| s.insert_pending(pending))
    }
    fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        self.guard(|s| s.approval(approval_id))
    }
    fn list_pending(&self) -> Result<Vec<PendingApproval>> {
        self.guard(|s| s.list_pending())
    }
    fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool> {
        self.guard(|s| s.resolve(resolved, prior_votes))
    }
    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
        self.guard(|s| s.insert_grant(grant))
    }
    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>> {
        self.guard(|s| s.open_grants())
    }
    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool> {
        self.guard(|s| s.close_grant(id, review_ref, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use std::sync::atomic::AtomicBool;

    /// A store that fails slowly while `down` is set.
    struct Flaky {
        inner: MemoryStore,
        down: AtomicBool,
        asked: AtomicU64,
        delay: Duration,
    }

    impl Flaky {
        fn step<T>(&self, ok: impl FnOnce() -> Result<T>) -> Result<T> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                std::thread::sleep(self.delay);
                return Err(Error::new(ErrorCode::StoreUnavailable, "down"));
            }
            ok()
        }
    }

    impl Store for Flaky {
        fn task_state(&self, task_id: &str) -> Result<TaskState> {
            self.step(|| self.inner.task_state(task_id))
        }
        fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
            self.step(|| self.inner.ledger(task_id))
        }
        fn commit(&self, commit: Commit) -> Result<CommitOutcome> {
            self.step(|| self.inner.commit(commit))
        }
        fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64> {
            self.step(|| self.inner.budget_spent(key, window_start))
        }
        fn end_task(&self, task_id: &str, now: i64) -> Result<()> {
            self.step(|| self.inner.end_task(task_id, now))
        }
        fn insert_pending(&self, pending: &PendingApproval) -> Result<()> {
            self.step(|| self.inner.insert_pending(pending))
        }
        fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
            self.step(|| self.inner.approval(approval_id))
        }
        fn list_pending(&self) -> Result<Vec<PendingApproval>> {
            self.step(|| self.inner.list_pending())
        }
        fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool> {
            self.step(|| self.inner.resolve(resolved, prior_votes))
        }
        fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
            self.step(|| self.inner.insert_grant(grant))
        }
        fn open_grants(&self) -> Result<Vec<BreakGlassGrant>> {
            self.step(|| self.inner.open_grants())
        }
        fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool> {
            self.step(|| self.inner.close_grant(id, review_ref, now))
        }
    }

    fn flaky(delay: Duration) -> (Arc<Flaky>, Breaker) {
        let store = Arc::new(Flaky { inner: MemoryStore::new(), down: AtomicBool::new(false), asked: AtomicU64::new(0), delay });
        (store.clone(), Breaker::new(store))
    }

    /// A slow failure opens it: later calls are refused without asking the store, with the
    /// store's code; after the cool-down one probe closes it again.
    #[test]
    fn a_slow_failure_opens_it_and_a_probe_closes_it() {
        let (store, breaker) = flaky(Duration::from_millis(30));
        assert!(breaker.task_state("t").is_ok());
        store.down.store(true, Ordering::SeqCst);
        assert_eq!(breaker.task_state("t").unwrap_err().code(), ErrorCode::StoreUnavailable);
        let asked = store.asked.load(Ordering::SeqCst);
        for _ in 0..1000 {
            assert_eq!(breaker.task_state("t").unwrap_err().code(), ErrorCode::StoreUnavailable);
        }
        assert_eq!(store.asked.load(Ordering::SeqCst), asked, "refused without asking the store");
        assert!(breaker.cooling_down());
        store.down.store(false, Ordering::SeqCst);
        std::thread::sleep(COOL_DOWN + Duration::from_millis(50));
        // Still open (nobody probed), but no longer cooling down: the next call is asked.
        assert!(!breaker.cooling_down());
        assert!(breaker.task_state("t").is_ok(), "the probe succeeds and closes it");
        assert!(breaker.task_state("t").is_ok());
        assert_eq!(store.asked.load(Ordering::SeqCst), asked + 2);
    }

    /// A fast failure does not trip it: the next call asks the store again.
    #[test]
    fn a_fast_failure_is_asked_again() {
        let (store, breaker) = flaky(Duration::ZERO);
        store.down.store(true, Ordering::SeqCst);
        for _ in 0..10 {
            assert!(breaker.task_state("t").is_err());
        }
        assert_eq!(store.asked.load(Ordering::SeqCst), 10);
    }
}
