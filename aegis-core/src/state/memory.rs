//! The in-memory store.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    check_amounts, ApprovalStatus, BreakGlassGrant, Commit, CommitOutcome, LedgerEntry, PendingApproval, Store, TaskState,
};
use crate::budget::exceeds;
use crate::error::{Error, ErrorCode, Result};

/// Consumed ids kept in a shard before expired ones are pruned.
const USED_PRUNE_THRESHOLD: usize = 1024;

/// Shards of the decision state: tasks, single-use ids and budgets are spread over them by a
/// seeded hash of their key, so decisions on different tasks rarely meet on a lock. A commit
/// locks the shards it touches in ascending order (a bit set of at most `SHARDS` bits), so two
/// commits never wait on each other in a cycle.
const SHARDS: usize = 32;

/// The in-memory store: fast, per process, gone when the process ends.
#[derive(Debug)]
pub struct MemoryStore {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    /// Approvals and grants: not on the path of a decision that needs no human.
    people: Mutex<People>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::default()), hasher: RandomState::new(), people: Mutex::default() }
    }
}

/// One shard's tasks, ledgers, consumed ids and budgets.
#[derive(Debug, Default)]
struct Shard {
    tasks: HashMap<String, TaskState>,
    ledgers: HashMap<String, Vec<LedgerEntry>>,
    used: HashMap<String, i64>,
    spend: HashMap<String, Spend>,
}

#[derive(Debug, Default)]
struct People {
    approvals: BTreeMap<String, PendingApproval>,
    grants: BTreeMap<String, BreakGlassGrant>,
}

/// A poisoned lock is taken over. A panic while one was held (none is known: every number is
/// checked) must not turn into an outage of every task, and each step checks before it changes
/// anything.
fn take<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard_of(&self, key: &str) -> usize {
        // The remainder is below SHARDS, so the cast back cannot truncate.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        take(&self.shards[self.shard_of(key)])
    }

    fn people(&self) -> MutexGuard<'_, People> {
        take(&self.people)
    }
}

/// The shards one commit holds, locked in ascending order.
struct Locked<'a> {
    guards: [Option<MutexGuard<'a, Shard>>; SHARDS],
    /// The task's shard, found once (the task is looked up twice per commit).
    task: usize,
}

impl<'a> Locked<'a> {
    fn new(store: &'a MemoryStore, c: &Commit) -> Self {
        let task = store.shard_of(&c.task_id);
        let mut wanted = 1u32 << task;
        let keys = c.consume.iter().map(|(k, _)| k.as_str()).chain(c.reservations.iter().map(|r| r.key.as_str()));
        for key in keys {
            wanted |= 1 << store.shard_of(key);
        }
        // `from_fn` visits the indices in order: the locks are taken in ascending order.
        Self { guards: std::array::from_fn(|i| (wanted & (1 << i) != 0).then(|| take(&store.shards[i]))), task }
    }

    /// The task's shard, locked above.
    fn task(&mut self) -> Result<&mut Shard> {
        self.guards[self.task]
            .as_deref_mut()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "memory store: the task's shard was not locked"))
    }

    /// The shard of `key`, locked above. Every key of the commit was locked, so a missing one is
    /// an internal error, refused rather than decided on.
    fn of(&mut self, store: &MemoryStore, key: &str) -> Result<&mut Shard> {
        self.guards[store.shard_of(key)]
            .as_deref_mut()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "memory store: a shard the commit needs was not locked"))
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
        Ok(self.shard(task_id).tasks.get(task_id).cloned().unwrap_or_default())
    }

    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        Ok(self.shard(task_id).ledgers.get(task_id).cloned().unwrap_or_default())
    }

    fn commit(&self, c: Commit) -> Result<CommitOutcome> {
        let mut locked = Locked::new(self, &c);
        // Every check before any change: a refused commit changes nothing.
        let task = locked.task()?.tasks.get(&c.task_id);
        let (ended, version) = task.map_or((false, 0), |t| (t.ended, t.version));
        if ended {
            return Ok(CommitOutcome::TaskEnded);
        }
        if version != c.expected_version {
            return Ok(CommitOutcome::Conflict);
        }
        for (key, _) in &c.consume {
            if locked.of(self, key)?.used.get(key).is_some_and(|exp| *exp > c.now) {
                return Ok(CommitOutcome::AlreadyUsed(key.clone()));
            }
        }
        check_amounts(&c)?;
        for r in c.reservations.iter().filter(|r| r.enforce) {
            if exceeds(spent(&locked.of(self, &r.key)?.spend, &r.key, r.window_start), r.amount, r.limit) {
                return Ok(CommitOutcome::BudgetExceeded(r.key.clone()));
            }
        }
        for (key, exp) in &c.consume {
            let shard = locked.of(self, key)?;
            // Expired ids are harmless (the check above ignores them); prune in bulk, not per commit.
            if shard.used.len() >= USED_PRUNE_THRESHOLD {
                shard.used.retain(|_, exp| *exp > c.now);
            }
            shard.used.insert(key.clone(), *exp);
        }
        for r in &c.reservations {
            let shard = locked.of(self, &r.key)?;
            let spend = match shard.spend.get_mut(&r.key) {
                Some(spend) => spend,
                None => shard.spend.entry(r.key.clone()).or_default(),
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
        let shard = locked.task()?;
        match shard.tasks.get_mut(&c.task_id) {
            Some(task) => duty(task, &c.entry),
            None => duty(shard.tasks.entry(c.task_id.clone()).or_default(), &c.entry),
        }
        match shard.ledgers.get_mut(&c.task_id) {
            Some(ledger) => ledger.push(c.entry),
            None => {
                shard.ledgers.insert(c.task_id, vec![c.entry]);
            }
        }
        Ok(CommitOutcome::Committed)
    }

    fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64> {
        Ok(spent(&self.shard(key).spend, key, window_start))
    }

    fn end_task(&self, task_id: &str, _now: i64) -> Result<()> {
        self.shard(task_id).tasks.entry(task_id.to_owned()).or_default().ended = true;
        Ok(())
    }

    fn insert_pending(&self, pending: &PendingApproval) -> Result<()> {
        self.people().approvals.insert(pending.approval_id.clone(), pending.clone());
        Ok(())
    }

    fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        Ok(self.people().approvals.get(approval_id).cloned())
    }

    fn list_pending(&self) -> Result<Vec<PendingApproval>> {
        let mut out: Vec<_> = self.people().approvals.values().filter(|a| a.status == ApprovalStatus::Pending).cloned().collect();
        out.sort_by_key(|a| a.created_at_ms);
        Ok(out)
    }

    fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool> {
        let mut s = self.people();
        match s.approvals.get_mut(&resolved.approval_id) {
            Some(a) if a.status == ApprovalStatus::Pending && a.votes.len() == prior_votes => {
                *a = resolved.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
        self.people().grants.insert(grant.id.clone(), grant.clone());
        Ok(())
    }

    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>> {
        Ok(self.people().grants.values().filter(|g| g.closed_at.is_none()).cloned().collect())
    }

    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool> {
        let mut s = self.people();
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
