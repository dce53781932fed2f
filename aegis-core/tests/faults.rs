//! The fault battery: each fault held for 10,000 decisions, every one of them a `deny` with
//! `store_unavailable`, nothing committed while it lasts, nothing lost, and normal service once
//! it clears (the pending approval still there, approvable and redeemable once, a token used
//! before the fault still refused).
//!
//! SQLite: the database locked by another process (also with the audit log kept in it, and
//! under the audit log alone), the disk full (a small tmpfs), the file deleted underneath. Redis: the server killed (and restarted from its append-only file),
//! paused (SIGSTOP), reconfigured to evict keys, replicas that never acknowledge (`WAIT`), and a
//! failover to a replica (two local servers).
//!
//! Mounting a tmpfs needs root: without it the disk-full case says so and returns, unless
//! `AEGIS_REQUIRE_FAULTS` is set (CI sets it, and runs as root). The Redis cases need
//! redis-server, as the store tests do (`AEGIS_REQUIRE_REDIS`). Each case prints its figures
//! (`cargo test --test faults -- --nocapture`); SECURITY.md has the table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_sod::{Engine, ErrorCode, Outcome, RedisStore, SqliteStore, Store};
use common::redis::RedisServer;
use common::*;

/// Decisions each fault is held for.
const DECISIONS: usize = 10_000;

/// What was in the store before the fault: two payments in the task the fault's decisions
/// are made in, a payment approved and redeemed in a second task, and one waiting for a human
/// in a third (the task budget is 5000 a day: bigger payments stay out of the first task).
struct Before {
    chain: Vec<String>,
    task: String,
    ledger: usize,
    pending_chain: Vec<String>,
    pending: String,
    redeemed_chain: Vec<String>,
    redeemed: String,
}

fn before(engine: &Engine, fx: &Fixture, task: &str) -> Before {
    let chain = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
    for _ in 0..2 {
        assert_eq!(engine.authorize(&req(&chain, pay(100, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    }
    let redeemed_chain = chain_in(&format!("{task}-redeemed"), "finance-agent", &fx.finance, &[TOOL], NOW);
    let first = engine.authorize(&req(&redeemed_chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
    let token = engine.approve(&first, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
    assert_eq!(engine.authorize(&req(&redeemed_chain, pay(9000, GOOD_ACCOUNT), Some(&token))).unwrap().outcome, Outcome::Allow);
    let pending_chain = chain_in(&format!("{task}-pending"), "finance-agent", &fx.finance, &[TOOL], NOW);
    let pending = engine.authorize(&req(&pending_chain, pay(9100, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
    let ledger = engine.ledger(task).unwrap().len();
    Before { chain, task: task.into(), ledger, pending_chain, pending, redeemed_chain, redeemed: token }
}

/// Holds the fault for `DECISIONS` decisions: each a deny with `store_unavailable`.
fn during(engine: &Engine, b: &Before, fault: &str) -> Duration {
    during_denied(engine, b, fault, |d| {
        assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::StoreUnavailable.into()]), "{fault}");
    })
}

/// Holds the fault for `DECISIONS` decisions, each checked by `denied`.
fn during_denied(engine: &Engine, b: &Before, fault: &str, denied: impl Fn(&aegis_sod::Decision)) -> Duration {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..DECISIONS {
        let at = Instant::now();
        let d = engine.authorize(&req(&b.chain, pay(100 + (i % 7) as i64, GOOD_ACCOUNT), None)).unwrap();
        slowest = slowest.max(at.elapsed());
        denied(&d);
    }
    let took = started.elapsed();
    println!(
        "fault {fault}: {DECISIONS} decisions, every one denied, in {:.2} s (slowest {} ms)",
        took.as_secs_f64(),
        slowest.as_millis()
    );
    // Liveness, not speed: a store that fails slowly is not waited on by every decision (the
    // breaker); 10,000 waits of seconds each would take hours.
    assert!(took < Duration::from_secs(300), "{fault}: the fault held decisions for {took:?}");
    took
}

/// Service once the fault clears: the first decision that is not refused for the store is an
/// allow; the ledger holds what it held plus `committed_during` (calls a store committed but
/// could not confirm, e.g. unacknowledged by replicas: denied, still counted) plus that one; the
/// waiting approval is approved and redeemed once; the token redeemed before is still refused.
fn after(engine: &Engine, b: &Before, fault: &str, committed_during: std::ops::RangeInclusive<usize>) {
    let cleared = Instant::now();
    loop {
        let d = engine.authorize(&req(&b.chain, pay(100, GOOD_ACCOUNT), None)).unwrap();
        if d.outcome == Outcome::Allow {
            break;
        }
        // (A log kept in the database may still be behind its own breaker for a moment.)
        let unavailable = |c: &aegis_sod::ReasonCode| *c == ErrorCode::StoreUnavailable || *c == ErrorCode::AuditUnavailable;
        assert!(d.codes().iter().all(unavailable), "{fault}: after the fault: {d:?}");
        assert!(cleared.elapsed() < Duration::from_secs(30), "{fault}: no service 30 s after the fault cleared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ledger = engine.ledger(&b.task).unwrap().len();
    let extra = ledger - b.ledger - 1;
    assert!(committed_during.contains(&extra), "{fault}: {extra} entries committed during the fault (ledger {ledger})");
    let pending = engine.approval(&b.pending).unwrap().expect("the pending approval survived");
    assert_eq!(pending.status, aegis_sod::ApprovalStatus::Pending, "{fault}");
    let token = engine.approve(&b.pending, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
    let redeem = |t: &str| engine.authorize(&req(&b.pending_chain, pay(9100, GOOD_ACCOUNT), Some(t))).unwrap();
    assert_eq!(redeem(&token).outcome, Outcome::Allow, "{fault}");
    assert_eq!(redeem(&token).codes(), vec![ErrorCode::ApprovalReplayed], "{fault}");
    let old = engine.authorize(&req(&b.redeemed_chain, pay(9000, GOOD_ACCOUNT), Some(&b.redeemed))).unwrap();
    assert_eq!(old.codes(), vec![ErrorCode::ApprovalReplayed], "{fault}: a token used before the fault");
    println!("fault {fault}: service back {} ms after it cleared; ledger kept ({ledger} entries)", cleared.elapsed().as_millis());
}

fn engine_on(fx: &Fixture, store: Arc<dyn Store>) -> Engine {
    fx.builder_on(store).build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// Another process that holds the database's write lock until released (in WAL mode readers
/// go on: each call's commit waits for the lock, then fails).
struct LockHolder(std::process::Child);

fn lock_holder(path: &Path) -> LockHolder {
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             c.execute('CREATE TABLE IF NOT EXISTS lock_holder (x)')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n",
        )
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the lock holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    LockHolder(holder)
}

impl LockHolder {
    fn release(&mut self) {
        self.0.stdin.take().unwrap().write_all(b"").unwrap(); // closing stdin ends the holder
        assert!(self.0.wait().unwrap().success());
    }
}

#[test]
fn sqlite_locked_by_another_process() {
    let fx = Fixture::new();
    let path = temp_path("locked.db");
    let engine = engine_on(&fx, Arc::new(SqliteStore::open(&path).unwrap()));
    let b = before(&engine, &fx, "fault-sqlite-locked");
    let mut holder = lock_holder(&path);
    during(&engine, &b, "sqlite locked by another process");
    holder.release();
    after(&engine, &b, "sqlite locked by another process", 0..=0);
}

/// An audit log kept in `db` (a fresh database: `temp_path` names are new in each run).
fn log_in(db: Arc<SqliteStore>) -> Arc<aegis_sod::audit::AuditLog> {
    let key = aegis_sod::audit::LogKey::new("aegis.example/faults", aegis_sod::KeyPair::from_seed(&[9; 32]).unwrap()).unwrap();
    Arc::new(aegis_sod::audit::AuditLog::in_store(db, key).checkpoint_every(0).open().unwrap())
}

/// The same lock with the audit log kept in the database: a denied call's record is appended
/// on its own, outside the store's steps, and that append has a breaker of its own; without one
/// each of the 10,000 decisions waited the busy timeout (5 s) for its record.
#[test]
fn sqlite_locked_with_the_audit_log_in_the_database() {
    let fx = Fixture::new();
    let path = temp_path("locked-audited.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let engine = fx.builder_on(store.clone()).audit_log(log_in(store)).build().unwrap();
    let b = before(&engine, &fx, "fault-sqlite-locked-audited");
    let mut holder = lock_holder(&path);
    // A denied call whose record cannot be written says so too: never an allow, never another
    // reason.
    let took = during_denied(&engine, &b, "sqlite locked, audit log in the database", |d| {
        assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
        let codes = d.codes();
        assert!(codes.contains(&ErrorCode::StoreUnavailable.into()), "{d:?}");
        assert!(codes.iter().all(|c| *c == ErrorCode::StoreUnavailable || *c == ErrorCode::AuditUnavailable), "{d:?}");
    });
    // A breaker opens after the first slow failure, for a second; in those 10,000 decisions
    // each breaker's probe waits the busy timeout once or twice. Without the audit log's
    // breaker this took 10,000 busy timeouts (14 hours).
    assert!(took < Duration::from_secs(60), "took {took:?}");
    holder.release();
    // Once the store's cool-down has ended, a record that touches no store step (a bundle put in
    // force) is written, though no decision has probed the store yet.
    std::thread::sleep(Duration::from_millis(1100));
    engine.swap_bundle(aegis_sod::Bundle::from_dir(payments_dir()).unwrap()).unwrap();
    after(&engine, &b, "sqlite locked, audit log in the database", 0..=0);
    drop(engine);
    let read = aegis_sod::audit::read_log(&path, None, &[]).unwrap();
    assert!(read.report.intact(), "{:?}", read.report);
}

/// The log alone in a locked database (the engine's store elsewhere): each call's record fails
/// and the call is denied `audit_unavailable`, with the log's own breaker keeping each decision
/// from waiting the busy timeout.
#[test]
fn sqlite_locked_under_the_audit_log_alone() {
    let fx = Fixture::new();
    let path = temp_path("locked-log-only.db");
    let log = log_in(Arc::new(SqliteStore::open(&path).unwrap()));
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).audit_log(log).build().unwrap();
    let b = before(&engine, &fx, "fault-sqlite-locked-log-only");
    let mut holder = lock_holder(&path);
    let took = during_denied(&engine, &b, "sqlite locked under the audit log alone", |d| {
        assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
        assert!(!d.codes().is_empty() && d.codes().iter().all(|c| *c == ErrorCode::AuditUnavailable), "{d:?}");
    });
    assert!(took < Duration::from_secs(60), "took {took:?}");
    holder.release();
    // Calls the memory store committed before their records failed stay committed (state only
    // tightens): the task's budget is spent, so service is checked in a task of its own, and the
    // log holds every record it acknowledged, intact.
    let fresh = chain_in("fault-sqlite-locked-log-only-after", "finance-agent", &fx.finance, &[TOOL], NOW);
    let cleared = Instant::now();
    while engine.authorize(&req(&fresh, pay(100, GOOD_ACCOUNT), None)).unwrap().outcome != Outcome::Allow {
        assert!(cleared.elapsed() < Duration::from_secs(30), "no service 30 s after the fault cleared");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(engine.approval(&b.pending).unwrap().unwrap().status, aegis_sod::ApprovalStatus::Pending);
    drop(engine);
    let read = aegis_sod::audit::read_log(&path, None, &[]).unwrap();
    assert!(read.report.intact(), "{:?}", read.report);
    println!("fault sqlite locked under the audit log alone: service back {} ms after it cleared", cleared.elapsed().as_millis());
}

#[test]
fn sqlite_file_deleted_underneath() {
    let fx = Fixture::new();
    let path = temp_path("deleted.db");
    let engine = engine_on(&fx, Arc::new(SqliteStore::open(&path).unwrap()));
    let b = before(&engine, &fx, "fault-sqlite-deleted");
    // Unlinked from its path (moved away, so that it can be put back: the fault clearing).
    let away = path.with_extension("away");
    std::fs::rename(&path, &away).unwrap();
    during(&engine, &b, "sqlite file deleted underneath");
    std::fs::rename(&away, &path).unwrap();
    after(&engine, &b, "sqlite file deleted underneath", 0..=0);
}

/// Mounts a tmpfs of `size` at `dir`; false (with a message) when this process may not mount.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
    match out {
        Ok(o) if o.status.success() => true,
        other => {
            assert!(
                std::env::var_os("AEGIS_REQUIRE_FAULTS").is_none(),
                "AEGIS_REQUIRE_FAULTS is set but a tmpfs cannot be mounted here: {other:?}"
            );
            eprintln!("SKIPPED: mounting a tmpfs needs root (the disk-full fault); CI runs it");
            false
        }
    }
}

#[test]
fn sqlite_disk_full() {
    let dir = temp_path("full-mnt");
    if !mount_tmpfs(&dir, "4m") {
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&dir);
    let fx = Fixture::new();
    let path = dir.join("store.db");
    let engine = engine_on(&fx, Arc::new(SqliteStore::open(&path).unwrap()));
    let b = before(&engine, &fx, "fault-sqlite-full");
    // Fill the file system to its last byte.
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        if file.write_all(&block).is_err() || file.sync_all().is_err() {
            break;
        }
    }
    let byte = [0u8; 1];
    while file.write_all(&byte).and_then(|()| file.sync_all()).is_ok() {}
    during(&engine, &b, "sqlite disk full");
    drop(file);
    std::fs::remove_file(&filler).unwrap();
    after(&engine, &b, "sqlite disk full", 0..=0);
}

// ---------------------------------------------------------------------------------------------
// Redis

fn redis_engine(fx: &Fixture, server: &RedisServer, prefix: &str) -> Engine {
    engine_on(fx, Arc::new(RedisStore::open_with_prefix(&server.url(), prefix).unwrap()))
}

#[test]
fn redis_killed_and_restarted() {
    let dir = temp_path("redis-aof");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_string_lossy().into_owned();
    // Durable as a deployment that must lose nothing is: every write in the append-only file.
    let Some(mut server) = RedisServer::start_with(&["--dir", &dir, "--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let fx = Fixture::new();
    let engine = redis_engine(&fx, &server, "killed");
    let b = before(&engine, &fx, "fault-redis-killed");
    server.stop(); // SIGKILL
    during(&engine, &b, "redis killed");
    server.restart();
    after(&engine, &b, "redis killed", 0..=0);
}

#[test]
fn redis_paused() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let engine = redis_engine(&fx, &server, "paused");
    let b = before(&engine, &fx, "fault-redis-paused");
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, &server.pid().to_string()]).status().unwrap().success());
    signal("-STOP");
    during(&engine, &b, "redis paused (SIGSTOP)");
    signal("-CONT");
    // The call that met the pause sent its commit (one script, its reservation and id with it)
    // and timed out: resumed, the server runs it. That call was denied; its entry is counted.
    after(&engine, &b, "redis paused (SIGSTOP)", 0..=1);
}

fn redis_command(server: &RedisServer, args: &[&str]) -> ::redis::Value {
    let mut conn = ::redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let mut cmd = ::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn).unwrap()
}

#[test]
fn redis_reconfigured_to_evict() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let engine = redis_engine(&fx, &server, "evict");
    let b = before(&engine, &fx, "fault-redis-evict");
    redis_command(&server, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    // The store checks the policy again within a second of each check.
    std::thread::sleep(Duration::from_millis(1100));
    during(&engine, &b, "redis evicting keys");
    redis_command(&server, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    after(&engine, &b, "redis evicting keys", 0..=0);
}

#[test]
fn redis_replicas_do_not_acknowledge() {
    let Some(primary) = RedisServer::start() else { return };
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]).unwrap();
    wait_for_sync(&primary);
    let fx = Fixture::new();
    let store = RedisStore::open_with_prefix(&primary.url(), "wait").unwrap().wait_for_replicas(1, 100);
    let engine = engine_on(&fx, Arc::new(store));
    let b = before(&engine, &fx, "fault-redis-wait");
    // The replica stops acknowledging (paused): every change waits for it, then fails closed.
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, &replica.pid().to_string()]).status().unwrap().success());
    signal("-STOP");
    let took = during(&engine, &b, "redis replicas not acknowledging (WAIT)");
    signal("-CONT");
    // A change the primary applied but no replica acknowledged is denied and still counted:
    // at most one per breaker probe (one a second).
    let probes = usize::try_from(took.as_secs()).unwrap() + 2;
    after(&engine, &b, "redis replicas not acknowledging (WAIT)", 0..=probes);
}

fn wait_for_sync(primary: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = ::redis::FromRedisValue::from_redis_value(&redis_command(primary, &["INFO", "replication"])).unwrap();
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not sync: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn redis_failover_to_a_replica() {
    let Some(mut primary) = RedisServer::start() else { return };
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]).unwrap();
    wait_for_sync(&primary);
    let fx = Fixture::new();
    // Every change acknowledged by the replica before the call is allowed.
    let store = RedisStore::open_with_prefix(&primary.url(), "failover").unwrap().wait_for_replicas(1, 2000);
    let engine = engine_on(&fx, Arc::new(store));
    let b = before(&engine, &fx, "fault-redis-failover");
    primary.stop();
    during(&engine, &b, "redis primary lost (before failover)");
    // The failover: the replica is promoted, and the deployment points its engines at it.
    redis_command(&replica, &["REPLICAOF", "NO", "ONE"]);
    let promoted = engine_on(&fx, Arc::new(RedisStore::open_with_prefix(&replica.url(), "failover").unwrap()));
    after(&promoted, &b, "redis failover to a replica", 0..=0);
}
