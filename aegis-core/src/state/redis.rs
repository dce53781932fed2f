//! The Redis store: shared by the hosts of a deployment.
//!
//! Each atomic step is one Lua script. Keys are hash-tagged by task (`aegis:{<task>}:...`);
//! budgets (which may span tasks) and single-use ids (global) live in slots of their own. On a
//! single server a commit is one script over all of them: the reservations, the ids, then the
//! task. On Redis Cluster a script keeps to one slot, so each reservation and id is its own
//! script first, given back if the task commit does not apply (a budget is never overspent; a
//! failed commit at worst holds it for one round trip). Both ways use the same keys, so they
//! share every total and id. The store refuses to start if `maxmemory-policy` could evict its keys, and can wait
//! for replica acknowledgement after each change.
//!
//! A task's version moves with every change to what a decision reads of it (a commit; a
//! break-glass grant naming it opened or closed), and each change writes a random revision
//! beside it (a failover that loses a write counts the version up again from an older state;
//! the revision tells the two apart). So the engine decides on the view it last read, and a
//! call in steady state costs one round trip: the commit script, which refuses a stale version
//! or revision (the engine then reads the task and decides again).
//!
//! On Redis Cluster ([`RedisStore::open_cluster`]) the same steps go through a cluster client,
//! which sends each to the node owning its slot; this store follows `MOVED`, `ASK` and
//! `TRYAGAIN` while slots migrate (`with`). The eviction policy is checked on every node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Connection, ConnectionLike, Script};

use super::{
    check_amounts, naming, store_error, ApprovalStatus, BreakGlassGrant, Commit, CommitOutcome, DecisionState, LedgerEntry,
    PendingApproval, Store, TaskState,
};
use crate::error::{Error, ErrorCode, Result};
use crate::time::{random_id, OsRandom};

/// The task's part of a commit, on its hash, ledger and duty set (one slot). `ARGV[1]`: the
/// version the decision read; `ARGV[2]`: the ledger entry; `ARGV[4]`: the revision the decision
/// read (empty: the version alone decides); `ARGV[5]`: the revision to write; the duties from
/// `ARGV[first_duty]` on. Checks everything before it writes anything.
const TASK_LIB: &str = r"
local function commit_task(task, ledger, duties, first_duty)
  if redis.call('HGET', task, 'ended') == '1' then return 'task_ended' end
  local version = tonumber(redis.call('HGET', task, 'version') or '0')
  if version ~= tonumber(ARGV[1]) then return 'conflict' end
  if ARGV[4] ~= '' and (redis.call('HGET', task, 'rev') or '') ~= ARGV[4] then return 'conflict' end
  redis.call('HINCRBY', task, 'version', 1)
  redis.call('HSET', task, 'rev', ARGV[5])
  redis.call('RPUSH', ledger, ARGV[2])
  for i = first_duty, #ARGV do redis.call('SADD', duties, ARGV[i]) end
  return 'committed'
end
";

/// The task's commit alone (`ARGV[1..5]` as in [`TASK_LIB`], then the duties).
const COMMIT: &str = r"
return {commit_task(KEYS[1], KEYS[2], KEYS[3], 6)}
";

/// Budgets keep their reservations (a sorted set by time, members `<amount>:<decision>:<n>`)
/// and, beside them in the same slot, a hash with their exact integer total `t` and their count
/// `n`: a reservation drops what left the window and adjusts both (`HINCRBY`), so the cost of
/// a check does not grow with the window. When `n` disagrees with the set (a budget made
/// before the hash, or written by a process of another version) the total is recomputed from
/// the members first.
const BUDGET_LIB: &str = r"
local function amount(m) return string.match(m, '^(-?%d+):') end
-- Exact integer arithmetic on the decimal strings (a Lua number past 2^53 would round, and
-- `-0` is no integer to HINCRBY).
local function add(sums, field, digits)
  if tonumber(digits) ~= 0 then redis.call('HINCRBY', sums, field, digits) end
end
local function sub(sums, field, digits)
  if tonumber(digits) ~= 0 then
    if string.sub(digits, 1, 1) == '-' then add(sums, field, string.sub(digits, 2)) else add(sums, field, '-' .. digits) end
  end
end
local function sum(members)
  local total = 0
  for _, m in ipairs(members) do total = total + tonumber(amount(m)) end
  return total
end
local function in_window(zset, sums, window_start)
  local n = redis.call('HGET', sums, 'n')
  if (not n) or tonumber(n) ~= redis.call('ZCARD', zset) then
    redis.call('HSET', sums, 't', string.format('%.0f', sum(redis.call('ZRANGE', zset, 0, -1))), 'n', redis.call('ZCARD', zset))
  end
  return tonumber(redis.call('HGET', sums, 't')) - sum(redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. window_start))
end
-- Reserves `digits` at time `now` as `member`, after dropping what left the window; refused (0)
-- when `enforce` is '1' and the window's total would pass `limit`. Also returns whether the
-- member is new (a member already there is the same call's, reserved before).
local function reserve(zset, sums, window_start, digits, limit, enforce, now, member)
  local total = in_window(zset, sums, window_start)
  local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. window_start)
  for _, m in ipairs(gone) do sub(sums, 't', amount(m)) end
  redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. window_start)
  sub(sums, 'n', tostring(#gone))
  if enforce == '1' and total + tonumber(digits) > tonumber(limit) then return 0, false end
  if redis.call('ZADD', zset, now, member) == 1 then
    add(sums, 't', digits)
    add(sums, 'n', '1')
    return 1, true
  end
  return 1, false
end
local function release(zset, sums, member)
  if redis.call('ZREM', zset, member) == 1 then
    sub(sums, 't', amount(member))
    sub(sums, 'n', '1')
  end
end
";

const RESERVE: &str = r"
return (reserve(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]))
";

/// Gives back a reservation of a commit that did not apply (if the window has not dropped it).
const RELEASE: &str = r"
release(KEYS[1], KEYS[2], ARGV[1])
return 1
";

/// The whole commit as one script, on a server that runs a script over keys of any slot (a
/// single server; a cluster node refuses with `CROSSSLOT` and nothing runs): the budget
/// reservations (`reserve`, in order), the single-use ids (as [`CONSUME`], in order), then the
/// task's part (`commit_task`), each undoing what came before it when it refuses, so a commit
/// costs one round trip under budgets and ids too. The keys, members and functions are those of
/// the separate steps, so a process running them (on a cluster, or of an older version) shares
/// every total and id.
///
/// `KEYS`: task, ledger, duties; each budget's set and sums; each id's key. `ARGV[1..5]` as in
/// [`TASK_LIB`]; `ARGV[6]`, `ARGV[7]`: how many budgets and ids; `ARGV[8]`: the decision id (each
/// consumed id's value); five per budget (window start, amount, limit, enforce, member); one
/// expiry per id; then the duties.
const COMMIT_ALL: &str = r"
local budgets, ids = tonumber(ARGV[6]), tonumber(ARGV[7])
local reserved, consumed = {}, {}
local function undo()
  for _, key in ipairs(consumed) do redis.call('DEL', key) end
  for _, r in ipairs(reserved) do release(r[1], r[2], r[3]) end
end
for i = 1, budgets do
  local zset, sums, a = KEYS[2 + 2 * i], KEYS[3 + 2 * i], 9 + 5 * (i - 1)
  local ok, new = reserve(zset, sums, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[3], ARGV[a + 4])
  if ok == 0 then
    undo()
    return {'budget_exceeded', tostring(i)}
  end
  if new then reserved[#reserved + 1] = {zset, sums, ARGV[a + 4]} end
end
for j = 1, ids do
  local key = KEYS[3 + 2 * budgets + j]
  if not redis.call('SET', key, ARGV[8], 'NX', 'EX', ARGV[8 + 5 * budgets + j]) then
    undo()
    return {'already_used', tostring(j)}
  end
  consumed[#consumed + 1] = key
end
local outcome = commit_task(KEYS[1], KEYS[2], KEYS[3], 9 + 5 * budgets + ids)
if outcome ~= 'committed' then undo() end
return {outcome}
";

/// Consumes a single-use id in its own slot (ids are global: a proof is accepted once, in any
/// task), before the task's commit; released if that commit does not apply.
const CONSUME: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
";

/// Gives back a single-use id only while it holds the decision id that consumed it.
const UNCONSUME: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The spending in the window, as a decimal string: an integer reply of 2^63 or more would wrap
/// (Redis casts the Lua number), so Rust reads the text and saturates.
const SPENT: &str = r"
local total = in_window(KEYS[1], KEYS[2], ARGV[1])
if total < 0 then total = 0 end
return string.format('%.0f', total)
";

const RESOLVE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local approval = cjson.decode(current)
if approval['status'] ~= 'pending' then return 0 end
local votes = approval['votes']
local n = 0
if type(votes) == 'table' then n = #votes end
if n ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

const CLOSE_GRANT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local grant = cjson.decode(current)
if grant['closed_at'] ~= nil and grant['closed_at'] ~= cjson.null then return 0 end
grant['closed_at'] = tonumber(ARGV[3])
grant['review_ref'] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(grant))
return 1
";

/// A grant naming the task opened or closed: the task's version moves (and its revision,
/// `ARGV[1]`), so a decision made on the task's old state does not commit.
const MOVE_VERSION: &str = r"
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'rev', ARGV[1])
return 1
";
/// The task's version, whether it ended, its revision, and its duties: one atomic read.
const READ_TASK: &str = r"
local t = redis.call('HMGET', KEYS[1], 'version', 'ended', 'rev')
return {t[1], t[2], t[3], redis.call('SMEMBERS', KEYS[2])}
";

/// A store on a Redis server or a Redis Cluster.
pub struct RedisStore {
    client: Client,
    /// Idle connections: a step takes one (or opens one), so threads deciding in different tasks
    /// talk to the server side by side instead of queueing on one socket.
    idle: Mutex<Vec<Live>>,
    /// Connections to nodes importing a slot (after `ASK`), by address: see `asked`.
    importing: Mutex<Vec<(String, Live)>>,
    prefix: String,
    replicas: Option<(usize, u64)>,
    scripts: Scripts,
    /// Whether commits go as separate steps, one slot each: always on a cluster, and on a
    /// server once it refused the one-script commit with `CROSSSLOT` (a cluster node reached
    /// as a single server).
    split_steps: AtomicBool,
}

/// A client of one server, or of a cluster (with how to reach one of its nodes directly: a
/// node's address with the first configured node's credentials and TLS).
enum Client {
    Server(redis::Client),
    Cluster(ClusterClient, redis::ConnectionInfo),
}

/// A connection to one server, or to a cluster (one socket per node, routed by slot).
enum Conn {
    Server(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Server(c) => c,
            Self::Cluster(c) => c.as_mut(),
        }
    }
}

/// A connection, and when the eviction policy was last seen to be `noeviction`.
struct Live {
    conn: Conn,
    policy_checked: Instant,
    /// Which connection this is (for `replicate`: the ids are never reused).
    id: u64,
}

thread_local! {
    /// With replicas to wait for: the connection this thread's steps used since its change
    /// began, and whether they used more than one. `WAIT` counts its own connection's writes
    /// only, so a change whose writes and `WAIT` did not all go on one connection (another
    /// thread's failed step dropped it in between) cannot be known to be replicated.
    static CHANGE_CONNECTION: std::cell::Cell<(u64, bool)> = const { std::cell::Cell::new((0, false)) };
}

/// This thread's change begins: the steps from here on are its writes.
fn begin_change() {
    CHANGE_CONNECTION.with(|c| c.set((0, false)));
}

/// A step of this thread's change went on connection `id`.
fn stepped_on(id: u64) {
    CHANGE_CONNECTION.with(|c| {
        let (was, mixed) = c.get();
        c.set((id, mixed || (was != 0 && was != id)));
    });
}

/// Whether every step of this thread's change went on one connection; the change ends.
fn change_kept_one_connection() -> bool {
    CHANGE_CONNECTION.with(|c| !c.replace((0, false)).1)
}

/// How long a reply may take (beyond a `WAIT`'s own timeout) before the step fails.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the eviction policy is checked again: a server reconfigured to evict would drop
/// consumed tokens and pending approvals (a replay would then be accepted), so from at most
/// this long after such a change every step fails closed.
const POLICY_RECHECK: Duration = Duration::from_secs(1);

/// How many times a step is sent again after a cluster node answered that another owns its slot.
const MAX_REDIRECTS: usize = 2;

/// Whether `e` says a cluster node ran nothing because another node owns the slot.
fn redirected(conn: &Conn, e: &redis::RedisError) -> bool {
    matches!(conn, Conn::Cluster(_)) && matches!(e.kind(), redis::ErrorKind::Moved | redis::ErrorKind::Ask)
}

/// A number for a new connection (never reused).
fn next_connection_id() -> u64 {
    static OPENED: AtomicU64 = AtomicU64::new(1);
    OPENED.fetch_add(1, Ordering::Relaxed)
}

/// How many times, and how long apart, a step waits for a slot's keys to finish moving
/// (`TRYAGAIN`) before it fails.
const MAX_MIGRATION_WAITS: usize = 8;
const MIGRATION_WAIT: Duration = Duration::from_millis(25);

/// Whether `e` says a cluster node ran nothing because the step's keys are split by a slot
/// migration in progress.
fn migrating(conn: &Conn, e: &redis::RedisError) -> bool {
    matches!(conn, Conn::Cluster(_)) && e.kind() == redis::ErrorKind::TryAgain
}

/// A connection to the node importing a slot that sends `ASKING` before each command, in one
/// write with it: each command of a step redirected by `ASK` (a script's `EVALSHA`, and its
/// load after `NOSCRIPT`) needs its own.
struct Asking<'c>(&'c mut Connection);

/// `ASKING` in the protocol's encoding.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

impl ConnectionLike for Asking<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        let packed = [ASKING, cmd].concat();
        let mut replies = self.0.req_packed_commands(&packed, 1, 1)?;
        replies.pop().ok_or_else(|| (redis::ErrorKind::ResponseError, "no reply after `ASKING`").into())
    }

    fn req_packed_commands(&mut self, _: &[u8], _: usize, _: usize) -> redis::RedisResult<Vec<redis::Value>> {
        // No step is a pipeline; one would need `ASKING` before each of its commands.
        Err((redis::ErrorKind::ClientError, "a pipeline does not follow an `ASK` redirection").into())
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.0.check_connection()
    }

    fn is_open(&self) -> bool {
        self.0.is_open()
    }
}

/// A connection to one server: a paused or overloaded server fails each step after
/// `READ_TIMEOUT` (plus `wait`, a `WAIT`'s own timeout).
fn server_connection(client: &redis::Client, wait: Duration) -> Result<Conn> {
    let conn = client.get_connection_with_timeout(Duration::from_secs(2)).map_err(store_error)?;
    conn.set_read_timeout(Some(READ_TIMEOUT + wait)).map_err(store_error)?;
    conn.set_write_timeout(Some(READ_TIMEOUT)).map_err(store_error)?;
    Ok(Conn::Server(conn))
}

/// A new connection, once the eviction policy it reaches keeps every key.
fn checked(mut conn: Conn) -> Result<Live> {
    check_policy(&mut conn)?;
    Ok(Live { conn, policy_checked: Instant::now(), id: next_connection_id() })
}

/// How many idle connections are kept (more threads than this open and close their own).
const MAX_IDLE: usize = 16;

/// Whether the server's (every cluster node's) `maxmemory-policy` keeps every key; an error
/// names the policy.
fn check_policy(conn: &mut Conn) -> Result<()> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("maxmemory-policy");
    match conn {
        Conn::Server(c) => policy_keeps_keys(get.query(c).map_err(store_error)?),
        Conn::Cluster(c) => {
            let replies = c.route_command(&get, RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None)));
            let redis::Value::Map(by_node) = replies.map_err(store_error)? else {
                return Err(Error::new(ErrorCode::StoreUnavailable, "cannot read redis `maxmemory-policy` from the cluster"));
            };
            if by_node.is_empty() {
                return Err(Error::new(ErrorCode::StoreUnavailable, "the redis cluster has no nodes"));
            }
            by_node.iter().try_for_each(|(_, reply)| policy_keeps_keys(redis::from_redis_value(reply).map_err(store_error)?))
        }
    }
}

/// Whether a `CONFIG GET maxmemory-policy` reply is `noeviction`.
fn policy_keeps_keys(policy: Vec<String>) -> Result<()> {
    match policy.get(1).map(String::as_str) {
        Some("noeviction") => Ok(()),
        Some(other) => Err(Error::new(
            ErrorCode::StoreUnavailable,
            format!(
                "redis `maxmemory-policy` is `{other}`, which can evict approvals and consumed tokens; set it to `noeviction`"
            ),
        )),
        None => Err(Error::new(ErrorCode::StoreUnavailable, "cannot read redis `maxmemory-policy`")),
    }
}

struct Scripts {
    commit: Script,
    commit_all: Script,
    reserve: Script,
    release: Script,
    consume: Script,
    unconsume: Script,
    spent: Script,
    resolve: Script,
    close_grant: Script,
    move_version: Script,
    read_task: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379/0`) and checks the eviction policy.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with_prefix(url, "aegis")
    }

    /// Like [`RedisStore::open`], with a key prefix other than `aegis` (to share a server).
    pub fn open_with_prefix(url: &str, prefix: &str) -> Result<Self> {
        Self::with_client(Client::Server(redis::Client::open(url).map_err(store_error)?), prefix)
    }

    /// Connects to the Redis Cluster that `nodes` (one or more of its nodes' URLs, e.g.
    /// `redis://10.0.0.1:6379`) belong to, and checks every node's eviction policy. Every step
    /// keeps to one hash slot, so the cluster client sends each to the node that owns it.
    pub fn open_cluster(nodes: &[String], prefix: &str) -> Result<Self> {
        // The cluster client's own retries are off: by default it sends a step that timed out
        // again on the same connection (16 times: a paused node held a call for 17 s), and a
        // reply that arrives late would then answer the next step on that connection. A failed
        // step is this store's error instead: the connection is dropped, and only a step the
        // node ran nothing of (`MOVED`, `ASK`, `TRYAGAIN`) is sent again (`with`). Every reply,
        // the startup checks and the slot map's included, waits at most `READ_TIMEOUT`.
        let client = ClusterClient::builder(nodes.to_vec())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(READ_TIMEOUT)
            .retries(0)
            .build()
            .map_err(store_error)?;
        let first = nodes.first().ok_or_else(|| store_error("a redis cluster needs at least one node"))?;
        let template = redis::IntoConnectionInfo::into_connection_info(first.as_str()).map_err(store_error)?;
        Self::with_client(Client::Cluster(client, template), prefix)
    }

    fn with_client(client: Client, prefix: &str) -> Result<Self> {
        let split_steps = AtomicBool::new(matches!(client, Client::Cluster(..)));
        let store = Self {
            client,
            idle: Mutex::new(Vec::new()),
            importing: Mutex::new(Vec::new()),
            prefix: prefix.to_owned(),
            replicas: None,
            split_steps,
            scripts: Scripts {
                commit: Script::new(&format!("{TASK_LIB}{COMMIT}")),
                commit_all: Script::new(&format!("{BUDGET_LIB}{TASK_LIB}{COMMIT_ALL}")),
                reserve: Script::new(&format!("{BUDGET_LIB}{RESERVE}")),
                release: Script::new(&format!("{BUDGET_LIB}{RELEASE}")),
                consume: Script::new(CONSUME),
                unconsume: Script::new(UNCONSUME),
                spent: Script::new(&format!("{BUDGET_LIB}{SPENT}")),
                resolve: Script::new(RESOLVE),
                close_grant: Script::new(CLOSE_GRANT),
                move_version: Script::new(MOVE_VERSION),
                read_task: Script::new(READ_TASK),
            },
        };
        // `with` checks the eviction policy on connecting: a server that could evict is refused.
        store.with(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(store)
    }

    /// After every change, wait until `replicas` replicas acknowledge it (Redis `WAIT`), or
    /// fail the step (fail closed) after `timeout_ms`.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout_ms: u64) -> Self {
        self.replicas = Some((replicas, timeout_ms));
        self
    }

    fn with<T>(&self, mut f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>) -> Result<T> {
        // `WAIT` counts the writes of its own connection: with replicas to wait for, every step
        // keeps to one connection (taken under the lock for the whole step) so the wait covers
        // the writes before it.
        let mut pinned = match self.replicas {
            Some(_) => Some(self.lock()?),
            None => None,
        };
        let taken = match pinned.as_mut() {
            Some(idle) => idle.pop(),
            None => self.lock()?.pop(),
        };
        let mut live = match taken {
            Some(live) => live,
            None => self.connect()?,
        };
        if live.policy_checked.elapsed() >= POLICY_RECHECK {
            if let Err(e) = check_policy(&mut live.conn) {
                self.drop_idle(pinned.as_mut())?;
                if self.replicas.is_some() {
                    // The step may be the `WAIT` for writes made on this very connection: on
                    // another it would count none of them and return at once.
                    return Err(e);
                }
                // The kept connection may have died with its server (a restart): nothing of the
                // step was sent, so it goes on a fresh connection, which checks the policy
                // itself (and fails the step if the server really refuses).
                live = self.connect()?;
            }
            live.policy_checked = Instant::now();
        }
        // On failure the connection is dropped, not reused: the next step reconnects. A cluster
        // node that does not own the slot ran nothing (`MOVED`, `ASK`): after `MOVED` the step
        // is sent again on a fresh connection, which reads where the slots are now; after `ASK`
        // (the slot is migrating and the step's keys have left) to the node importing them. A
        // node that holds only some of the step's keys mid-migration ran nothing either
        // (`TRYAGAIN`): the step waits for the move, briefly.
        let (mut redirects, mut waits) = (0, 0);
        let value = loop {
            match f(live.conn.like()) {
                Ok(value) => {
                    if self.replicas.is_some() {
                        stepped_on(live.id);
                    }
                    break value;
                }
                Err(e) if redirected(&live.conn, &e) && redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    if e.kind() == redis::ErrorKind::Ask {
                        break self.asked(&e, &mut f)?;
                    }
                    live = self.connect()?;
                }
                Err(e) if migrating(&live.conn, &e) && waits < MAX_MIGRATION_WAITS => {
                    waits += 1;
                    std::thread::sleep(MIGRATION_WAIT);
                }
                Err(e) => {
                    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                        // The server went away or stalled: the other kept connections are as
                        // likely dead, and would each fail a step of their own.
                        self.drop_idle(pinned.as_mut())?;
                    }
                    return Err(store_error(e));
                }
            }
        };
        match pinned.as_mut() {
            Some(idle) => idle.push(live),
            None => {
                let mut idle = self.lock()?;
                if idle.len() < MAX_IDLE {
                    idle.push(live);
                }
            }
        }
        Ok(value)
    }

    /// Runs step `f` on the node an `ASK` redirection names (the one importing the step's slot),
    /// each command preceded by `ASKING`, on a connection kept for that node (the cluster's slot
    /// map still names the node the slot is leaving). Once. The node leaving the slot answers `ASK`
    /// only when none of the step's keys is left there, so a `TRYAGAIN` from the importing node
    /// (some of the keys do not exist at all: a task's first call) would not clear before the
    /// migration ends: the step fails. With replicas to wait for, the step is refused unsent:
    /// the `WAIT` that follows on the kept connection could not count its writes.
    fn asked<T>(
        &self,
        ask: &redis::RedisError,
        f: &mut impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        if self.replicas.is_some() {
            return Err(store_error(format!(
                "{ask}: a step sent to the node importing its slot cannot be acknowledged by replicas"
            )));
        }
        let Client::Cluster(_, template) = &self.client else {
            return Err(store_error(ask));
        };
        let Some((address, _slot)) = ask.redirect_node() else { return Err(store_error(ask)) };
        let (host, port) = address
            .rsplit_once(':')
            // An IPv6 host may come in brackets (`[::1]:6379`).
            .and_then(|(host, port)| {
                Some((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse::<u16>().ok()?))
            })
            .ok_or_else(|| store_error(format!("unexpected `ASK` redirection to `{address}`")))?;
        let addr = match &template.addr {
            redis::ConnectionAddr::Tcp(..) => redis::ConnectionAddr::Tcp(host, port),
            redis::ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                redis::ConnectionAddr::TcpTls { host, port, insecure: *insecure, tls_params: tls_params.clone() }
            }
            redis::ConnectionAddr::Unix(_) => return Err(store_error(ask)),
        };
        let info = redis::ConnectionInfo { addr, redis: template.redis.clone() };
        // (A node may have joined the cluster since the policy was read from every node.)
        let connect = || checked(server_connection(&redis::Client::open(info.clone()).map_err(store_error)?, Duration::ZERO)?);
        // A migration sends every step on its keys here until it ends: the connection is kept
        // (a connection per step would leave thousands in `TIME_WAIT` at a busy host's rate).
        let kept = {
            let mut importing = self.importing.lock().map_err(|_| store_error("redis connection lock poisoned"))?;
            importing.iter().position(|(a, _)| a == address).map(|i| importing.swap_remove(i).1)
        };
        let mut live = match kept {
            Some(mut live) if live.policy_checked.elapsed() >= POLICY_RECHECK => match check_policy(&mut live.conn) {
                Ok(()) => {
                    live.policy_checked = Instant::now();
                    live
                }
                // Gone, or refusing: nothing of the step was sent; a fresh connection checks again.
                Err(_) => connect()?,
            },
            Some(live) => live,
            None => connect()?,
        };
        let Conn::Server(conn) = &mut live.conn else { return Err(store_error(ask)) };
        let value = f(&mut Asking(conn)).map_err(store_error)?;
        // Kept only after a step that succeeded (a failed one may have left it mid-reply).
        let mut importing = self.importing.lock().map_err(|_| store_error("redis connection lock poisoned"))?;
        if importing.len() < MAX_IDLE {
            importing.push((address.to_owned(), live));
        }
        Ok(value)
    }

    /// Closes every kept connection; `pinned` is the pool when the step holds its lock.
    fn drop_idle(&self, pinned: Option<&mut MutexGuard<'_, Vec<Live>>>) -> Result<()> {
        match pinned {
            Some(idle) => idle.clear(),
            None => self.lock()?.clear(),
        }
        Ok(())
    }

    fn connect(&self) -> Result<Live> {
        // A paused or overloaded server fails each step after this long (a pipeline after
        // this long per reply); `WAIT` itself may take its own timeout first.
        let wait = Duration::from_millis(self.replicas.map_or(0, |(_, ms)| ms));
        let conn = match &self.client {
            Client::Server(client) => server_connection(client, wait)?,
            Client::Cluster(client, _) => {
                let conn = client.get_connection().map_err(store_error)?;
                conn.set_read_timeout(Some(READ_TIMEOUT + wait)).map_err(store_error)?;
                conn.set_write_timeout(Some(READ_TIMEOUT)).map_err(store_error)?;
                Conn::Cluster(Box::new(conn))
            }
        };
        checked(conn)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Vec<Live>>> {
        self.idle.lock().map_err(|_| store_error("redis connection lock poisoned"))
    }

    fn replicate(&self) -> Result<()> {
        let Some((replicas, timeout)) = self.replicas else { return Ok(()) };
        let acked: usize = self.with(|c| redis::cmd("WAIT").arg(replicas).arg(timeout).query(c))?;
        if !change_kept_one_connection() {
            return Err(store_error(
                "the change was written on a connection that has since been replaced: its replication is unknown",
            ));
        }
        if acked < replicas {
            return Err(store_error(format!("only {acked} of {replicas} replicas acknowledged the change")));
        }
        Ok(())
    }

    fn task_key(&self, task: &str, suffix: &str) -> String {
        format!("{}:{{{}}}:{suffix}", self.prefix, tag(task))
    }

    fn budget_key(&self, key: &str) -> String {
        format!("{}:{{budget:{}}}:spend", self.prefix, tag(key))
    }

    /// The total and count of a budget's reservations, in their slot.
    fn budget_total_key(&self, key: &str) -> String {
        format!("{}:{{budget:{}}}:sum", self.prefix, tag(key))
    }

    fn used_key(&self, key: &str) -> String {
        format!("{}:{{used:{}}}", self.prefix, tag(key))
    }

    fn approval_key(&self, id: &str) -> String {
        format!("{}:{{approval:{}}}", self.prefix, tag(id))
    }

    fn index_key(&self) -> String {
        format!("{}:{{approvals}}:index", self.prefix)
    }

    fn grants_key(&self) -> String {
        format!("{}:{{grants}}", self.prefix)
    }

    /// A task's version, end and duties, and its revision (empty before its first change by
    /// this version of the store): one transaction, in the task's slot.
    fn read_task(&self, task_id: &str) -> Result<(TaskState, String)> {
        let (task_key, duties_key) = (self.task_key(task_id, "task"), self.task_key(task_id, "duties"));
        let (version, ended, revision, duties): TaskFields =
            self.with(|c| self.scripts.read_task.key(&task_key).key(&duties_key).invoke(c))?;
        let task =
            TaskState { version: version.unwrap_or(0), duties: duties_from(&duties), ended: ended.as_deref() == Some("1") };
        Ok((task, revision.unwrap_or_default()))
    }

    /// Moves `task`'s version and revision: a grant naming it opened or closed.
    fn move_version(&self, task: &str) -> Result<()> {
        let (task_key, revision) = (self.task_key(task, "task"), random_id(&OsRandom, "rev_")?);
        self.with(|c| self.scripts.move_version.key(&task_key).arg(&revision).invoke::<i64>(c))?;
        Ok(())
    }

    /// Gives back the ids a commit that did not apply consumed, each only while it still holds
    /// that commit's decision id (never an id another call consumed since).
    fn unconsume(&self, consumed: &[String], decision_id: &str) {
        for key in consumed {
            // Best effort: an id left consumed refuses a retry of the same call, never allows more.
            let _ = self.with(|c| self.scripts.unconsume.key(key).arg(decision_id).invoke::<i64>(c));
        }
    }

    /// The commit as its separate steps, each in one slot: the budget reservations, then the
    /// single-use ids, each in its own script, then the task's commit; what a refused or failed
    /// step leaves is given back.
    fn commit_in_steps(&self, c: &Commit) -> Result<CommitOutcome> {
        let mut reserved = Vec::new();
        for (n, r) in c.reservations.iter().enumerate() {
            let key = self.budget_key(&r.key);
            let total = self.budget_total_key(&r.key);
            let member = reservation_member(r.amount, &c.entry.decision_id, n);
            let ok: std::result::Result<i64, Error> = self.with(|conn| {
                self.scripts
                    .reserve
                    .key(&key)
                    .key(&total)
                    .arg(r.window_start)
                    .arg(r.amount)
                    .arg(r.limit)
                    .arg(if r.enforce { "1" } else { "0" })
                    .arg(c.now)
                    .arg(&member)
                    .invoke(conn)
            });
            let ok = match ok {
                Ok(ok) => ok,
                Err(e) => {
                    // The call fails: what it reserved before goes back (this one, unknown,
                    // stays: it only holds budget back).
                    self.release(&reserved);
                    return Err(e);
                }
            };
            if ok != 1 {
                self.release(&reserved);
                return Ok(CommitOutcome::BudgetExceeded(r.key.clone()));
            }
            reserved.push((key, total, member));
        }
        let mut consumed = Vec::new();
        for (key, exp) in &c.consume {
            let used_key = self.used_key(key);
            let ttl = expiry_secs(c, *exp);
            let fresh: std::result::Result<i64, Error> =
                self.with(|conn| self.scripts.consume.key(&used_key).arg(&c.entry.decision_id).arg(ttl).invoke(conn));
            match fresh {
                Ok(1) => consumed.push(used_key),
                Ok(_) => {
                    self.unconsume(&consumed, &c.entry.decision_id);
                    self.release(&reserved);
                    return Ok(CommitOutcome::AlreadyUsed(key.clone()));
                }
                Err(e) => {
                    self.unconsume(&consumed, &c.entry.decision_id);
                    self.release(&reserved);
                    return Err(e);
                }
            }
        }
        let mut invocation = self.scripts.commit.prepare_invoke();
        invocation
            .key(self.task_key(&c.task_id, "task"))
            .key(self.task_key(&c.task_id, "ledger"))
            .key(self.task_key(&c.task_id, "duties"));
        let (expected_revision, next_revision) = revisions(c)?;
        invocation.arg(c.expected_version).arg(json(&c.entry)?).arg(c.now).arg(expected_revision).arg(next_revision);
        for holder in c.entry.duty_holders() {
            invocation.arg(duty(&holder, &c.entry.tool));
        }
        let reply: std::result::Result<Vec<String>, Error> = self.with(|conn| invocation.invoke(conn));
        let outcome = match reply {
            Err(e) => {
                // Unknown whether the commit applied: the ids stay consumed and the budget
                // reservations stay reserved (fail closed: a commit that did apply keeps what it
                // spent counted; one that did not holds the amount back until its window ends).
                return Err(e);
            }
            Ok(reply) => match reply.first().map(String::as_str) {
                Some("committed") => CommitOutcome::Committed,
                Some("conflict") => CommitOutcome::Conflict,
                Some("task_ended") => CommitOutcome::TaskEnded,
                _ => {
                    self.release(&reserved);
                    return Err(store_error(format!("unexpected commit reply {reply:?}")));
                }
            },
        };
        if outcome == CommitOutcome::Committed {
            self.replicate()?;
        } else {
            self.unconsume(&consumed, &c.entry.decision_id);
            self.release(&reserved);
        }
        Ok(outcome)
    }

    /// The commit as one script ([`COMMIT_ALL`]); `None` when the server refused it unrun
    /// because its keys are in more than one slot.
    fn commit_in_one_script(&self, c: &Commit) -> Result<Option<CommitOutcome>> {
        let mut invocation = self.scripts.commit_all.prepare_invoke();
        invocation
            .key(self.task_key(&c.task_id, "task"))
            .key(self.task_key(&c.task_id, "ledger"))
            .key(self.task_key(&c.task_id, "duties"));
        for r in &c.reservations {
            invocation.key(self.budget_key(&r.key)).key(self.budget_total_key(&r.key));
        }
        for (key, _) in &c.consume {
            invocation.key(self.used_key(key));
        }
        let (expected_revision, next_revision) = revisions(c)?;
        invocation
            .arg(c.expected_version)
            .arg(json(&c.entry)?)
            .arg(c.now)
            .arg(expected_revision)
            .arg(next_revision)
            .arg(c.reservations.len())
            .arg(c.consume.len())
            .arg(&c.entry.decision_id);
        for (n, r) in c.reservations.iter().enumerate() {
            let member = reservation_member(r.amount, &c.entry.decision_id, n);
            invocation.arg(r.window_start).arg(r.amount).arg(r.limit).arg(if r.enforce { "1" } else { "0" }).arg(member);
        }
        for (_, expires) in &c.consume {
            invocation.arg(expiry_secs(c, *expires));
        }
        for holder in c.entry.duty_holders() {
            invocation.arg(duty(&holder, &c.entry.tool));
        }
        let reply: Option<Vec<String>> = self.with(|conn| match invocation.invoke(conn) {
            Err(e) if e.kind() == redis::ErrorKind::CrossSlot => Ok(None),
            reply => reply.map(Some),
        })?;
        // An error above leaves unknown whether the commit applied: what it consumed and
        // reserved stays (fail closed, as in the separate steps).
        let Some(reply) = reply else { return Ok(None) };
        // Which budget or id refused: its 1-based place in the commit.
        let refused = reply.get(1).and_then(|n| n.parse::<usize>().ok()).and_then(|n| n.checked_sub(1));
        let outcome = match reply.first().map(String::as_str) {
            Some("committed") => CommitOutcome::Committed,
            Some("conflict") => CommitOutcome::Conflict,
            Some("task_ended") => CommitOutcome::TaskEnded,
            Some("budget_exceeded") => match refused.and_then(|i| c.reservations.get(i)) {
                Some(r) => CommitOutcome::BudgetExceeded(r.key.clone()),
                None => return Err(store_error(format!("unexpected commit reply {reply:?}"))),
            },
            Some("already_used") => match refused.and_then(|i| c.consume.get(i)) {
                Some((key, _)) => CommitOutcome::AlreadyUsed(key.clone()),
                None => return Err(store_error(format!("unexpected commit reply {reply:?}"))),
            },
            _ => return Err(store_error(format!("unexpected commit reply {reply:?}"))),
        };
        if outcome == CommitOutcome::Committed {
            self.replicate()?;
        }
        Ok(Some(outcome))
    }

    fn release(&self, reserved: &[(String, String, String)]) {
        for (key, total, member) in reserved {
            // Best effort: a failed release only holds budget back, never hands out extra.
            let _ = self.with(|c| self.scripts.release.key(key).key(total).arg(member).invoke::<i64>(c));
        }
    }
}

/// A user-supplied id inside a hash tag, escaped injectively: braces would change the slot and
/// were once mapped to `_` (so `t{1}` and `t_1_` shared a ledger); now `%`, `{` and `}` are
/// percent-encoded, so distinct ids give distinct keys.
fn tag(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// A decision's reservation `n` as its budget's set member (`<amount>:<decision>:<n>`): both
/// ways of committing write the same member, so they share each budget's total.
fn reservation_member(amount: i64, decision_id: &str, n: usize) -> String {
    format!("{amount}:{decision_id}:{n}")
}

/// A consumed id's time to live, from its expiry: relative, since the commit's `now` is the
/// engine's clock, which need not be Redis's.
fn expiry_secs(c: &Commit, expires: i64) -> i64 {
    expires.saturating_sub(c.now).max(1)
}

/// The revision `c` was decided on (empty: the version alone decides) and the one it writes.
fn revisions(c: &Commit) -> Result<(String, String)> {
    Ok(match &c.revision {
        Some(r) => (r.expected.clone(), r.next.clone()),
        // No revision read (a commit outside a call's decision): the version decides, and the
        // task still gets a revision of its own.
        None => (String::new(), random_id(&OsRandom, "rev_")?),
    })
}

/// A duty as a set member: agent and tool joined by a byte neither can contain in JSON text.
fn duty(agent: &str, tool: &str) -> String {
    format!("{agent}\u{0}{tool}")
}

/// A task hash's `version`, `ended` and `rev`, as `HMGET` reads them.
type TaskFields = (Option<u64>, Option<String>, Option<String>, Vec<String>);

fn duties_from(members: &[String]) -> std::collections::BTreeSet<(String, String)> {
    members.iter().filter_map(|d| d.split_once('\u{0}').map(|(a, t)| (a.to_owned(), t.to_owned()))).collect()
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(store_error)
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(store_error)
}

impl Store for RedisStore {
    fn task_state(&self, task_id: &str) -> Result<TaskState> {
        Ok(self.read_task(task_id)?.0)
    }

    fn decision_state(&self, task_id: &str) -> Result<DecisionState> {
        // The task first, then the grants: a close moves the task's version after closing the
        // grant, so a grant read open below is open at that version or the version is stale.
        let (task, revision) = self.read_task(task_id)?;
        // Every version of Aegis opens and closes grants in their own hash: it decides.
        Ok(DecisionState::new(task, naming(self.open_grants()?, task_id)).with_revision(revision))
    }

    fn versions_cover_decision_state(&self) -> bool {
        true
    }

    fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        let key = self.task_key(task_id, "ledger");
        let entries: Vec<String> = self.with(|c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        entries.iter().map(|e| parse(e)).collect()
    }

    fn commit(&self, c: Commit) -> Result<CommitOutcome> {
        begin_change();
        check_amounts(&c)?;
        if !self.split_steps.load(Ordering::Relaxed) {
            match self.commit_in_one_script(&c)? {
                Some(outcome) => return Ok(outcome),
                // Refused before it ran (`CROSSSLOT`): this server takes one slot a step.
                None => self.split_steps.store(true, Ordering::Relaxed),
            }
        }
        self.commit_in_steps(&c)
    }

    fn budget_spent(&self, key: &str, window_start: i64) -> Result<i64> {
        let (zset, total) = (self.budget_key(key), self.budget_total_key(key));
        let text: String = self.with(|c| self.scripts.spent.key(&zset).key(&total).arg(window_start).invoke(c))?;
        // Past i64 (a sum of huge meter amounts) the total saturates: it exceeds every limit.
        let total: f64 = text.parse().map_err(|_| store_error(format!("unexpected budget total `{text}`")))?;
        #[allow(clippy::cast_possible_truncation)] // `as` saturates
        Ok(total as i64)
    }

    fn end_task(&self, task_id: &str, _now: i64) -> Result<()> {
        begin_change();
        let key = self.task_key(task_id, "task");
        self.with(|c| redis::cmd("HSET").arg(&key).arg("ended").arg("1").query::<i64>(c))?;
        self.replicate()
    }

    fn insert_pending(&self, p: &PendingApproval) -> Result<()> {
        begin_change();
        let (key, body) = (self.approval_key(&p.approval_id), json(p)?);
        let created: bool =
            self.with(|c| redis::cmd("SET").arg(&key).arg(&body).arg("NX").query::<Option<String>>(c).map(|r| r.is_some()))?;
        if !created {
            return Err(store_error(format!("approval `{}` already exists", p.approval_id)));
        }
        let index = self.index_key();
        self.with(|c| redis::cmd("ZADD").arg(&index).arg(p.created_at_ms).arg(&p.approval_id).query::<i64>(c))?;
        self.replicate()
    }

    fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        let key = self.approval_key(approval_id);
        let body: Option<String> = self.with(|c| redis::cmd("GET").arg(&key).query(c))?;
        body.map(|b| parse(&b)).transpose()
    }

    fn list_pending(&self) -> Result<Vec<PendingApproval>> {
        let index = self.index_key();
        let ids: Vec<String> = self.with(|c| redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query(c))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(a) = self.approval(&id)?.filter(|a| a.status == ApprovalStatus::Pending) {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn resolve(&self, resolved: &PendingApproval, prior_votes: usize) -> Result<bool> {
        begin_change();
        let (key, body) = (self.approval_key(&resolved.approval_id), json(resolved)?);
        let changed: i64 = self.with(|c| self.scripts.resolve.key(&key).arg(&body).arg(prior_votes).invoke(c))?;
        if changed == 1 && resolved.status != ApprovalStatus::Pending {
            let index = self.index_key();
            self.with(|c| redis::cmd("ZREM").arg(&index).arg(&resolved.approval_id).query::<i64>(c))?;
            self.replicate()?;
        }
        Ok(changed == 1)
    }

    fn insert_grant(&self, grant: &BreakGlassGrant) -> Result<()> {
        begin_change();
        let (key, body) = (self.grants_key(), json(grant)?);
        // The tasks' versions first (a move alone costs a decision one more read), then the
        // grant: in force only once every version it must move has moved.
        for task in &grant.tasks {
            self.move_version(task)?;
        }
        self.with(|c| redis::cmd("HSET").arg(&key).arg(&grant.id).arg(&body).query::<i64>(c))?;
        if let Err(e) = self.replicate() {
            // Not acknowledged: the caller hears it failed, so it must not stay in force.
            let _ = self.close_grant(&grant.id, "not opened: the store failed while opening it", grant.opened_at);
            return Err(e);
        }
        Ok(())
    }

    fn open_grants(&self) -> Result<Vec<BreakGlassGrant>> {
        let key = self.grants_key();
        let all: Vec<String> = self.with(|c| redis::cmd("HVALS").arg(&key).query(c))?;
        let mut grants: Vec<BreakGlassGrant> = all
            .iter()
            .map(|g| parse(g))
            .collect::<Result<Vec<BreakGlassGrant>>>()?
            .into_iter()
            .filter(|g| g.closed_at.is_none())
            .collect();
        grants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(grants)
    }

    fn close_grant(&self, id: &str, review_ref: &str, now: i64) -> Result<bool> {
        begin_change();
        let key = self.grants_key();
        // The grant first (what every decision reads), then the versions of its tasks, so a
        // decision that read it open before the close does not commit after it.
        let body: Option<String> = self.with(|c| redis::cmd("HGET").arg(&key).arg(id).query(c))?;
        let changed: i64 = self.with(|c| self.scripts.close_grant.key(&key).arg(id).arg(review_ref).arg(now).invoke(c))?;
        if let Some(grant) = body.map(|b| parse::<BreakGlassGrant>(&b)).transpose()? {
            for task in &grant.tasks {
                self.move_version(task)?;
            }
        }
        if changed == 1 {
            self.replicate()?;
        }
        Ok(changed == 1)
    }
}

/// The test processes' private redis-server.
#[cfg(test)]
#[path = "../../tests/common/redis.rs"]
mod test_server;

#[cfg(test)]
mod tests {
    use super::*;

    /// A change whose steps all went on one connection can be counted by a `WAIT` on it; one
    /// whose connection was replaced between its steps (or before its `WAIT`) cannot.
    #[test]
    fn a_change_is_known_replicated_only_on_one_connection() {
        begin_change();
        for _ in 0..3 {
            stepped_on(7);
        }
        assert!(change_kept_one_connection());
        begin_change();
        stepped_on(7);
        stepped_on(8); // the WAIT, on a fresh connection
        assert!(!change_kept_one_connection());
        // Each change is judged on its own steps: a replacement before it began is no concern.
        stepped_on(8);
        begin_change();
        stepped_on(9);
        stepped_on(9);
        assert!(change_kept_one_connection());
        // Another thread's steps are its own.
        begin_change();
        stepped_on(10);
        std::thread::spawn(|| {
            begin_change();
            stepped_on(11);
        })
        .join()
        .unwrap();
        stepped_on(10);
        assert!(change_kept_one_connection());
    }

    /// A store that commits in one script and one that commits in separate steps (on a
    /// cluster, or of an older version) share every budget and single-use id: racing each
    /// other, they never spend past a limit or use an id twice, and each sees the other's
    /// spending.
    #[test]
    fn one_script_and_separate_step_commits_share_budgets_and_ids() {
        use std::sync::{Arc, Barrier};

        use crate::state::{LedgerEntry, Reservation};

        let Some(server) = super::test_server::RedisServer::start() else { return };
        let one = Arc::new(RedisStore::open_with_prefix(&server.url(), "mixed").unwrap());
        let steps = Arc::new(RedisStore::open_with_prefix(&server.url(), "mixed").unwrap());
        steps.split_steps.store(true, Ordering::Relaxed);
        const NOW: i64 = 1_700_000_000;
        let commit = |task: String, id: String, consume: &str, budget: &str| Commit {
            task_id: task,
            expected_version: 0,
            consume: vec![(consume.to_owned(), NOW + 600)],
            entry: LedgerEntry {
                tool: "pay".into(),
                agent_id: "finance-agent".into(),
                lineage: vec!["planner".into()],
                decision_id: id,
                at: NOW,
                key: String::new(),
            },
            reservations: vec![Reservation {
                key: budget.to_owned(),
                amount: 100,
                limit: 1000,
                window_start: NOW - 86_400,
                enforce: true,
            }],
            now: NOW,
            revision: None,
        };
        let race = |commits: Vec<Commit>| -> Vec<CommitOutcome> {
            let barrier = Arc::new(Barrier::new(commits.len()));
            let handles: Vec<_> = commits
                .into_iter()
                .enumerate()
                .map(|(n, c)| {
                    let store = Arc::clone(if n % 2 == 0 { &one } else { &steps });
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.commit(c).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        };
        for round in 0..5 {
            // Sixteen payments of 100 under a limit of 1000, each with an id of its own.
            let budget = format!("pay/task/round-{round}");
            let outcomes = race(
                (0..16)
                    .map(|n| commit(format!("b{round}-{n}"), format!("db{round}-{n}"), &format!("id-{round}-{n}"), &budget))
                    .collect(),
            );
            let committed = outcomes.iter().filter(|o| **o == CommitOutcome::Committed).count();
            assert_eq!(committed, 10, "round {round}: {outcomes:?}");
            assert!(outcomes
                .iter()
                .all(|o| *o == CommitOutcome::Committed || *o == CommitOutcome::BudgetExceeded(budget.clone())));
            for store in [&one, &steps] {
                assert_eq!(store.budget_spent(&budget, NOW - 86_400).unwrap(), 1000, "round {round}");
            }
            // Sixteen commits, each under a fresh budget, presenting one id.
            let shared = format!("proof-{round}");
            let outcomes = race(
                (0..16)
                    .map(|n| commit(format!("u{round}-{n}"), format!("du{round}-{n}"), &shared, &format!("fresh-{round}-{n}")))
                    .collect(),
            );
            let committed = outcomes.iter().filter(|o| **o == CommitOutcome::Committed).count();
            assert_eq!(committed, 1, "round {round}: {outcomes:?}");
            assert!(outcomes.iter().all(|o| *o == CommitOutcome::Committed || *o == CommitOutcome::AlreadyUsed(shared.clone())));
            // What the refused commits reserved under their budgets was given back.
            let spent: i64 = (0..16).map(|n| one.budget_spent(&format!("fresh-{round}-{n}"), NOW - 86_400).unwrap()).sum();
            assert_eq!(spent, 100, "round {round}");
        }
        assert!(!one.split_steps.load(Ordering::Relaxed), "a single server takes the one-script commit");

        // Two budgets and two ids in one commit, each kind refusing at its second: what the
        // first reserved or consumed is given back (and the refusal names the second).
        for store in [&one, &steps] {
            let tag = if Arc::ptr_eq(store, &one) { "one" } else { "steps" };
            let (roomy, full) = (format!("roomy-{tag}"), format!("full-{tag}"));
            let mut c = commit(format!("two-{tag}"), format!("d1-{tag}"), &format!("fresh-{tag}"), &roomy);
            c.reservations.push(Reservation {
                key: full.clone(),
                amount: 100,
                limit: 50,
                window_start: NOW - 86_400,
                enforce: true,
            });
            assert_eq!(store.commit(c).unwrap(), CommitOutcome::BudgetExceeded(full.clone()), "{tag}");
            assert_eq!(store.budget_spent(&roomy, NOW - 86_400).unwrap(), 0, "{tag}");
            let mut c = commit(format!("two-{tag}"), format!("d2-{tag}"), &format!("fresh-{tag}"), &roomy);
            c.consume.push(("proof-0".to_owned(), NOW + 600));
            assert_eq!(store.commit(c).unwrap(), CommitOutcome::AlreadyUsed("proof-0".into()), "{tag}");
            assert_eq!(store.budget_spent(&roomy, NOW - 86_400).unwrap(), 0, "{tag}");
            // Both applied in full once nothing refuses; a consumed id lives until its expiry.
            let mut c = commit(format!("two-{tag}"), format!("d3-{tag}"), &format!("fresh-{tag}"), &roomy);
            c.consume.push((format!("other-{tag}"), NOW + 300));
            c.reservations.push(Reservation {
                key: full.clone(),
                amount: 50,
                limit: 50,
                window_start: NOW - 86_400,
                enforce: true,
            });
            assert_eq!(store.commit(c).unwrap(), CommitOutcome::Committed, "{tag}");
            assert_eq!(store.budget_spent(&roomy, NOW - 86_400).unwrap(), 100, "{tag}");
            assert_eq!(store.budget_spent(&full, NOW - 86_400).unwrap(), 50, "{tag}");
            let mut conn = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
            for (id, ttl) in [(format!("fresh-{tag}"), 600), (format!("other-{tag}"), 300)] {
                let left: i64 = redis::cmd("TTL").arg(store.used_key(&id)).query(&mut conn).unwrap();
                assert!((ttl - 5..=ttl).contains(&left), "{tag}: `{id}` expires in {left} s, not {ttl}");
            }
        }
    }
}
