//! The in-memory store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use super::{
    check_amounts, ApprovalStatus, BreakGlassGrant, Commit, CommitOutcome, LedgerEntry, PendingApproval, Store, TaskState,
};
use crate::budget::exceeds;
use crate::error::Result;

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
    spend: HashMap<String, Spend>,
    approvals: BTreeMap<String, PendingApproval>,
    grants: BTreeMap<String, BreakGlassGrant>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state. A panic while the lock was held (none is known: every number is checked)
    /// must not turn into an outage of every task, so a poisoned lock is taken over: each step
    /// checks before it changes anything.
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>> {
        Ok(self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// One budget's spending in its window: the entries, oldest first, and their running sum, so
/// a decision costs the same on the ten-thousandth call of a task as on the first (a commit
/// drops what left the window from the front; each entry is added and dropped once).
#[derive(Debug, Default)]
struct Spend {
    entries: VecDeque<(i64, i64)>,
    /// The sum of `entries`, in i128: amounts are non-negative i64s, so it cannot overflow.
    total: i128,
}

impl Spend {
    /// Drops what left the window at the front (as commits did before: a commit keeps only its
    /// reservation's window). An entry stamped before a later one (a clock step back) stays
    /// until the front passes it, counting against the budget: too much, never too little.
    fn slide(&mut self, window_start: i64) {
        while let Some(&(at, amount)) = self.entries.front() {
            if at >= window_start {
                break;
            }
            self.total -= i128::from(amount);
            self.entries.pop_front();
        }
    }

    /// What was spent since `window_start`, saturating at `i64::MAX`; a read changes nothing,
    /// and costs only the entries before `window_start` not yet dropped by a commit.
    fn since(&self, window_start: i64) -> i64 {
        let expired: i128 =
            self.entries.iter().take_while(|(at, _)| *at < window_start).map(|(_, amount)| i128::from(*amount)).sum();
        i64::try_from(self.total - expired).unwrap_or(i64::MAX)
    }

    fn add(&mut self, at: i64, amount: i64) {
        self.entries.push_back((at, amount));
        self.total += i128::from(amount);
    }
}

/// What was spent against `key` since `window_start`.
fn spent(spend: &HashMap<String, Spend>, key: &str, window_start: i64) -> i64 {
    spend.get(key).map_or(0, |s| s.since(window_start))
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
        check_amounts(&c)?;
        if let Some(r) =
            c.reservations.iter().find(|r| r.enforce && exceeds(spent(&s.spend, &r.key, r.window_start), r.amount, r.limit))
        {
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
            let spend = match s.spend.get_mut(&r.key) {
                Some(spend) => spend,
                None => s.spend.entry(r.key.clone()).or_default(),
            };
            spend.slide(r.window_start);
            spend.add(c.now, r.amount);
        }
        // Lookups before inserts: the hot path (a known task, a known duty) allocates nothing;
        // the ledger takes the commit's entry.
        let duty = |task: &mut TaskState, entry: &LedgerEntry| {
            task.version += 1;
            if !task.duties.iter().any(|(a, t)| a == &entry.agent_id && t == &entry.tool) {
                for holder in entry.duty_holders() {
                    task.duties.insert((holder, entry.tool.clone()));
                }
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
        Ok(spent(&self.lock()?.spend, key, window_start))
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

    fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool> {
        let mut s = self.lock()?;
        match s.approvals.get_mut(&resolved.approval_id) {
            Some(a) if a.status == ApprovalStatus::Pending && a.votes.len() == prior_votes => {
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

#[cfg(test)]
mod tests {
    use super::Spend;

    fn naive(all: &[(i64, i64)], start: i64) -> i64 {
        all.iter().filter(|(at, _)| *at >= start).map(|(_, a)| a).sum()
    }

    /// With the clock moving forward the running sum is exactly the window's sum, and entries
    /// leave as the window moves; a read of another window changes nothing.
    #[test]
    fn the_running_sum_is_the_window_sum() {
        let (mut spend, mut all) = (Spend::default(), Vec::new());
        for step in 0..2000i64 {
            let now = step * 7;
            spend.slide(now - 500);
            spend.add(now, step % 97);
            all.push((now, step % 97));
            assert_eq!(spend.since(now + 1), 0);
            assert_eq!(spend.since(now - 500), naive(&all, now - 500));
            assert_eq!(spend.since(now - 100), naive(&all, now - 100));
        }
        assert!(spend.entries.len() <= 73, "entries leave as the window moves: {}", spend.entries.len());
    }

    /// With a clock that steps back, the sums are those of keeping a plain list, pruned to the
    /// window at each commit and filtered at each read.
    #[test]
    fn a_clock_step_back_sums_as_a_pruned_list_does() {
        let (mut spend, mut list) = (Spend::default(), Vec::<(i64, i64)>::new());
        for step in 0..2000i64 {
            let now = step * 7 - if step % 13 == 0 { 300 } else { 0 };
            spend.slide(now - 500);
            list.retain(|(at, _)| *at >= now - 500);
            spend.add(now, 1 + step % 97);
            list.push((now, 1 + step % 97));
            for start in [now - 500, now - 200, now - 900] {
                assert!(spend.since(start) >= naive(&list, start), "step {step}, window from {start}");
            }
        }
    }
}
