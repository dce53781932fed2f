//! State the engine keeps across calls: task ledgers, single-use ids, budgets, pending
//! approvals, break-glass grants and ended tasks.
//!
//! One [`Store`] trait, three implementations that pass the same conformance suite:
//! [`MemoryStore`] (the default), `SqliteStore` (one file, shared by the processes of a host;
//! feature `sqlite`) and `RedisStore` (shared by hosts; feature `redis`). Every method
//! that changes state is atomic; [`Store::commit`] is the one step that makes an allowed call
//! count, and it is all-or-nothing and linearizable per task.

mod breaker;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use crate::approval::{ApprovalStatus, PendingApproval};
pub use crate::break_glass::BreakGlassGrant;
pub use crate::budget::Reservation;
use crate::error::{Error, ErrorCode, Result};
pub(crate) use breaker::{Breaker, SlowFailures};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// One allowed call, as the task ledger remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The tool (or `aegis.approve` for an approval).
    pub tool: String,
    /// The agent that performed it.
    pub agent_id: String,
    /// The agents above it, root first.
    pub lineage: Vec<String>,
    /// The decision that allowed it.
    pub decision_id: String,
    /// When, in seconds since the epoch.
    pub at: i64,
    /// The thumbprint of the key the agent's credential binds: the duty is also recorded under
    /// `key:<thumbprint>`, so a holder acting under another name still has its duties.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

impl LedgerEntry {
    /// The duty identities this entry records: the agent id, and its key when known.
    pub fn duty_holders(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.agent_id.clone()).chain((!self.key.is_empty()).then(|| key_holder(&self.key)))
    }
}

/// The prefix of a key's duty identity.
pub(crate) const KEY_HOLDER_PREFIX: &str = "key:";

/// The duty identity of a key: `key:<thumbprint>`.
pub(crate) fn key_holder(kid: &str) -> String {
    format!("{KEY_HOLDER_PREFIX}{kid}")
}

/// What a decision needs to know about its task: who has done what, the ledger version, and
/// whether the task has ended. (The full ledger is [`Store::ledger`].)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// Moved by every commit (and, in a store whose versions cover the decision state, by every
    /// grant naming the task opened or closed); a commit names the version it was decided on.
    pub version: u64,
    /// Distinct `(holder, tool)` pairs performed in the task; a holder is an agent id or a
    /// `key:<thumbprint>` (see [`LedgerEntry::key`]).
    pub duties: BTreeSet<(String, String)>,
    /// `end_task` was called.
    pub ended: bool,
}

/// What deciding a call reads from the store: the task's state and the open break-glass grants
/// that name the task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecisionState {
    /// The task's duties, version and whether it ended.
    pub task: TaskState,
    /// The grants not yet closed that name the task (the engine checks agent, tool and expiry).
    pub grants: Vec<BreakGlassGrant>,
    /// For a store that keeps one: the task's revision, random per change. A store that can lose
    /// writes (a Redis failover) can count a version up again from an older state, so a version
    /// can name two states; a revision cannot. A commit names it ([`Commit::revision`]).
    pub revision: Option<String>,
}

impl DecisionState {
    /// A task's state and the open grants that name it.
    pub fn new(task: TaskState, grants: Vec<BreakGlassGrant>) -> Self {
        Self { task, grants, revision: None }
    }

    /// With the task's revision.
    pub fn with_revision(mut self, revision: String) -> Self {
        self.revision = Some(revision);
        self
    }
}

/// The revision a commit was decided on and the one it writes (see [`DecisionState::revision`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionChange {
    /// The revision the decision read; another one in the store is a conflict.
    pub expected: String,
    /// The revision the commit writes.
    pub next: String,
}

/// Everything an allowed call changes, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The task.
    pub task_id: String,
    /// The ledger version the decision was made on; a different version is a conflict.
    pub expected_version: u64,
    /// Single-use ids to consume (approval tokens, proof `jti`s), with their expiry.
    pub consume: Vec<(String, i64)>,
    /// The ledger entry to append.
    pub entry: LedgerEntry,
    /// Budget reservations.
    pub reservations: Vec<Reservation>,
    /// Now, in seconds.
    pub now: i64,
    /// For a store that keeps revisions: the one the decision read and the one to write; a
    /// commit without one writes a fresh revision (such a store) and checks the version alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionChange>,
}

/// Why a commit did not apply (or that it did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "key")]
pub enum CommitOutcome {
    /// Applied.
    Committed,
    /// The ledger moved since the decision: decide again.
    Conflict,
    /// A single-use id was already consumed.
    AlreadyUsed(String),
    /// A budget would be exceeded.
    BudgetExceeded(String),
    /// The task has ended.
    TaskEnded,
}

/// Where the engine keeps state. Implementations must make every method atomic and
/// [`Store::commit`] all-or-nothing.
pub trait Store: Send + Sync {
    /// The task's duties, version and whether it ended.
    fn task_state(&self, task_id: &str) -> Result<TaskState>;
    /// What deciding a call in `task_id` reads: its state and the open grants that name it.
    fn decision_state(&self, task_id: &str) -> Result<DecisionState> {
        let task = self.task_state(task_id)?;
        Ok(DecisionState::new(task, naming(self.open_grants()?, task_id)))
    }
    /// Whether the task's version moves with every change to what [`Store::decision_state`]
    /// returns (a commit, and a grant naming the task opened or closed): then the engine
    /// decides on the view of the task it last read, without reading it again. [`Store::commit`]
    /// refuses a stale version (the engine reads the task and decides again), and a decision
    /// that commits nothing (a deny, an approval to ask for) is confirmed against a fresh
    /// [`Store::decision_state`] (its version and revision). The stores shared between
    /// processes say yes: a read saved there is a round trip (Redis) or a query (SQLite).
    fn versions_cover_decision_state(&self) -> bool {
        false
    }
    /// The task's full ledger, oldest first.
    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>>;
    /// Applies an allowed call, or says why not. Takes the commit by value: the ledger keeps
    /// its entry. A reservation that `enforce`s its limit and would take its budget past it
    /// fails the whole commit with [`CommitOutcome::BudgetExceeded`]: this check is the only
    /// one a permitted call's budgets get (the engine reads them first only after such a
    /// refusal), so a store that skipped it would let budgets be exceeded.
    fn commit(&self, commit: Commit) -> Result<CommitOutcome>;
    /// Applies an allowed call and appends its audit record, in one transaction, for a store
    /// that keeps the audit log itself ([`Store::keeps_audit_log`]). Others refuse: the engine
    /// never asks them, and a record must never be dropped silently.
    fn commit_recorded(&self, commit: Commit, record: &crate::audit::Event) -> Result<CommitOutcome> {
        let _ = (commit, record);
        Err(Error::new(ErrorCode::AuditUnavailable, "this store keeps no audit log"))
    }
    /// Whether [`Store::commit_recorded`] is supported (the SQLite store).
    fn keeps_audit_log(&self) -> bool {
        false
    }
    /// What has been spent against `key` since `window_start`.
    fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64>;
    /// Ends a task: later calls with its credentials are denied.
    fn end_task(&self, task_id: &str, now: i64) -> Result<()>;
    /// Records a pending approval (durably, for stores that persist).
    fn insert_pending(&self, pending: &PendingApproval) -> Result<()>;
    /// Looks up an approval by id.
    fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>>;
    /// Approvals still pending, oldest first.
    fn list_pending(&self) -> Result<Vec<PendingApproval>>;
    /// Moves an approval from pending to `resolved.status`; false if it was not pending.
    ///
    /// Takes effect only while the stored approval is pending with exactly `prior_votes` votes
    /// (a vote of a quorum or stage, a resolution): `false` when someone answered in between.
    fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool>;
    /// Records a break-glass grant.
    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()>;
    /// Every grant not yet closed.
    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>>;
    /// Closes a grant with a review reference; false if it was not open.
    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool>;
}

/// The grants among `grants` that name `task_id`.
pub(crate) fn naming(grants: Vec<BreakGlassGrant>, task_id: &str) -> Vec<BreakGlassGrant> {
    grants.into_iter().filter(|g| g.tasks.iter().any(|t| t == task_id)).collect()
}

/// Every store refuses a reservation that would add room to a budget (defence in depth: the
/// engine refuses such a call before it reaches the store).
pub(crate) fn check_amounts(commit: &Commit) -> Result<()> {
    match commit.reservations.iter().find(|r| r.amount < 0) {
        Some(r) => Err(Error::new(
            ErrorCode::BudgetAmountInvalid,
            format!("budget `{}`: a reservation of {} would add room", r.key, r.amount),
        )),
        None => Ok(()),
    }
}

#[cfg_attr(not(any(feature = "sqlite", feature = "redis")), allow(dead_code))]
pub(crate) fn store_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StoreUnavailable, format!("store unavailable: {e}"))
}
