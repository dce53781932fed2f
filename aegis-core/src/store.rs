//! State the engine keeps across calls: task ledgers, single-use ids, budgets, pending
//! approvals, break-glass grants and ended tasks.
//!
//! One [`Store`] trait, three implementations that pass the same conformance suite:
//! [`MemoryStore`] (the default), [`crate::sqlite::SqliteStore`] (one file, shared by the
//! processes of a host) and [`crate::redis_store::RedisStore`] (shared by hosts). Every method
//! that changes state is atomic; [`Store::commit`] is the one step that makes an allowed call
//! count, and it is all-or-nothing and linearizable per task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorCode, Result};

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
}

/// What a decision needs to know about its task: who has done what, the ledger version, and
/// whether the task has ended. (The full ledger is [`Store::ledger`].)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// Incremented by every commit; a commit names the version it was decided on.
    pub version: u64,
    /// Distinct `(agent_id, tool)` pairs performed in the task.
    pub duties: BTreeSet<(String, String)>,
    /// `end_task` was called.
    pub ended: bool,
}

/// A budget reservation made by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The budget key (budget name and scope, e.g. `payments/task/t-1`).
    pub key: String,
    /// What this call spends.
    pub amount: i64,
    /// The limit over the window.
    pub limit: i64,
    /// Spending before this time (seconds) no longer counts.
    pub window_start: i64,
    /// Whether exceeding the limit fails the commit (false when an approval overrides it).
    pub enforce: bool,
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

/// The state of an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a human.
    Pending,
    /// Approved; an override token was minted.
    Approved,
    /// Rejected.
    Rejected,
    /// Closed by Aegis without a human: the same call ran under another approval of the same
    /// task and agent, so this request is moot (approving it would allow the call again).
    Superseded,
}

/// A call waiting for a human decision: everything the human needs to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The id handed out with `approval_needed`.
    pub approval_id: String,
    /// The call digest the approval is bound to.
    pub call_digest: String,
    /// The tool.
    pub tool: String,
    /// The arguments.
    pub args: Value,
    /// The agent that asked.
    pub agent_id: String,
    /// The agents above it, root first.
    pub lineage: Vec<String>,
    /// The root agent.
    pub initiator: String,
    /// The task.
    pub task_id: String,
    /// The task's intent.
    pub intent: String,
    /// The policies that require approval.
    pub policy_ids: Vec<String>,
    /// Their messages: why approval is needed.
    pub reasons: Vec<String>,
    /// The roles that may approve (from `@approval`).
    pub roles: Vec<String>,
    /// The bundle version that asked.
    pub policy_version: String,
    /// When it was created, milliseconds since the epoch.
    pub created_at_ms: i64,
    /// Pending, approved, rejected or superseded.
    pub status: ApprovalStatus,
    /// Who approved or rejected.
    #[serde(default)]
    pub resolved_by: Option<String>,
    /// When, milliseconds since the epoch.
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    /// The approver's note.
    #[serde(default)]
    pub note: Option<String>,
}

impl PendingApproval {
    /// Milliseconds between the request and its resolution, once resolved.
    pub fn latency_ms(&self) -> Option<i64> {
        self.resolved_at_ms.map(|r| r - self.created_at_ms)
    }
}

/// A time-boxed emergency grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassGrant {
    /// The grant id.
    pub id: String,
    /// The agents it covers.
    pub agents: Vec<String>,
    /// The tools it covers.
    pub tools: Vec<String>,
    /// Why it was opened.
    pub reason: String,
    /// The two (or more) distinct approvers.
    pub approvers: Vec<String>,
    /// Opened at, seconds.
    pub opened_at: i64,
    /// Lifts forbids until this time, seconds.
    pub expires_at: i64,
    /// Closed at, seconds; open (listed) until then, even after it expires.
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// The post-incident review that closed it.
    #[serde(default)]
    pub review_ref: Option<String>,
}

impl BreakGlassGrant {
    /// Whether it lifts breakable forbids for `agent` calling `tool` at `now`.
    pub fn covers(&self, agent: &str, tool: &str, now: i64) -> bool {
        self.closed_at.is_none()
            && now < self.expires_at
            && self.agents.iter().any(|a| a == agent)
            && self.tools.iter().any(|t| t == tool || t == "*")
    }
}

/// Where the engine keeps state. Implementations must make every method atomic and
/// [`Store::commit`] all-or-nothing.
pub trait Store: Send + Sync {
    /// The task's duties, version and whether it ended.
    fn task_state(&self, task_id: &str) -> Result<TaskState>;
    /// The task's full ledger, oldest first.
    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>>;
    /// Applies an allowed call, or says why not. Takes the commit by value: the ledger keeps
    /// its entry.
    fn commit(&self, commit: Commit) -> Result<CommitOutcome>;
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
    fn resolve(&self, resolved: &PendingApproval) -> Result<bool>;
    /// Records a break-glass grant.
    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()>;
    /// Every grant not yet closed.
    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>>;
    /// Closes a grant with a review reference; false if it was not open.
    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool>;
}

pub(crate) fn store_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StoreUnavailable, format!("store unavailable: {e}"))
}

/// Consumed ids kept in memory before expired ones are pruned.
const USED_PRUNE_THRESHOLD: usize = 4096;

/// The in-memory store: fast, per process, gone when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    tasks: HashMap<String, TaskState>,
    ledgers: HashMap<String, Vec<LedgerEntry>>,
    used: HashMap<String, i64>,
    spend: HashMap<String, Vec<(i64, i64)>>,
    approvals: BTreeMap<String, PendingApproval>,
    grants: BTreeMap<String, BreakGlassGrant>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>> {
        self.state.lock().map_err(|_| store_error("memory store lock poisoned"))
    }
}

fn spent(entries: Option<&Vec<(i64, i64)>>, window_start: i64) -> i64 {
    entries.map_or(0, |v| v.iter().filter(|(at, _)| *at >= window_start).map(|(_, a)| *a).sum())
}

impl Store for MemoryStore {
    fn task_state(&self, task_id: &str) -> Result<TaskState> {
        Ok(self.lock()?.tasks.get(task_id).cloned().unwrap_or_default())
    }

    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        Ok(self.lock()?.ledgers.get(task_id).cloned().unwrap_or_default())
    }

    fn commit(&self, c: Commit) -> Result<CommitOutcome> {
        let mut s = self.lock()?;
        let (ended, version) = s.tasks.get(&c.task_id).map_or((false, 0), |t| (t.ended, t.version));
        if ended {
            return Ok(CommitOutcome::TaskEnded);
        }
        if version != c.expected_version {
            return Ok(CommitOutcome::Conflict);
        }
        if let Some((key, _)) = c.consume.iter().find(|(k, _)| s.used.get(k).is_some_and(|exp| *exp > c.now)) {
            return Ok(CommitOutcome::AlreadyUsed(key.clone()));
        }
        if let Some(r) = c.reservations.iter().find(|r| r.enforce && spent(s.spend.get(&r.key), r.window_start) + r.amount > r.limit) {
            return Ok(CommitOutcome::BudgetExceeded(r.key.clone()));
        }
        // Expired ids are harmless (the check above ignores them); prune in bulk, not per commit.
        if s.used.len() >= USED_PRUNE_THRESHOLD {
            s.used.retain(|_, exp| *exp > c.now);
        }
        for (key, exp) in &c.consume {
            s.used.insert(key.clone(), *exp);
        }
        for r in &c.reservations {
            let entries = s.spend.entry(r.key.clone()).or_default();
            entries.retain(|(at, _)| *at >= r.window_start);
            entries.push((c.now, r.amount));
        }
        // Lookups before inserts: the hot path (a known task, a known duty) allocates nothing;
        // the ledger takes the commit's entry.
        let duty = |task: &mut TaskState, entry: &LedgerEntry| {
            task.version += 1;
            if !task.duties.iter().any(|(a, t)| a == &entry.agent_id && t == &entry.tool) {
                task.duties.insert((entry.agent_id.clone(), entry.tool.clone()));
            }
        };
        match s.tasks.get_mut(&c.task_id) {
            Some(task) => duty(task, &c.entry),
            None => duty(s.tasks.entry(c.task_id.clone()).or_default(), &c.entry),
        }
        match s.ledgers.get_mut(&c.task_id) {
            Some(ledger) => ledger.push(c.entry),
            None => {
                s.ledgers.insert(c.task_id, vec![c.entry]);
            }
        }
        Ok(CommitOutcome::Committed)
    }

    fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64> {
        Ok(spent(self.lock()?.spend.get(key), window_start))
    }

    fn end_task(&self, task_id: &str, _now: i64) -> Result<()> {
        self.lock()?.tasks.entry(task_id.to_owned()).or_default().ended = true;
        Ok(())
    }

    fn insert_pending(&self, pending: &PendingApproval) -> Result<()> {
        self.lock()?.approvals.insert(pending.approval_id.clone(), pending.clone());
        Ok(())
    }

    fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        Ok(self.lock()?.approvals.get(approval_id).cloned())
    }

    fn list_pending(&self) -> Result<Vec<PendingApproval>> {
        let mut out: Vec<_> = self.lock()?.approvals.values().filter(|a| a.status == ApprovalStatus::Pending).cloned().collect();
        out.sort_by_key(|a| a.created_at_ms);
        Ok(out)
    }

    fn resolve(&self, resolved: &PendingApproval) -> Result<bool> {
        let mut s = self.lock()?;
        match s.approvals.get_mut(&resolved.approval_id) {
            Some(a) if a.status == ApprovalStatus::Pending => {
                *a = resolved.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
        self.lock()?.grants.insert(grant.id.clone(), grant.clone());
        Ok(())
    }

    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>> {
        Ok(self.lock()?.grants.values().filter(|g| g.closed_at.is_none()).cloned().collect())
    }

    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool> {
        let mut s = self.lock()?;
        match s.grants.get_mut(id) {
            Some(g) if g.closed_at.is_none() => {
                g.closed_at = Some(now);
                g.review_ref = Some(review_ref.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
