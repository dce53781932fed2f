//! The durable decision rate: allowed payments per second with the audit log off, on file
//! segments (group commit: one `fdatasync` per batch) and in the SQLite store's own
//! transaction (group commit: concurrent decisions share one transaction), on 1, 2 and 8
//! threads, beside the raw `fdatasync` rate of the same disk measured in the same run; and the
//! Redis store on a private loopback redis-server (when one is installed). Each thread decides
//! in its own task. Prints rates, per-decision latency (p50, p99) and ratios to the same store
//! with the log off, then each durable store against the memory store and two threads against
//! one; nothing is asserted about speed.
//!
//! `cargo bench -p aegis-benches --bench durable` (release). `AEGIS_BENCH_SECS` sets the
//! seconds per configuration (default 3).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_benches::*;
use aegis_sod::audit::{AuditLog, LogKey};
use aegis_sod::{AuthorizationRequest, Bundle, Engine, KeyPair, MemoryStore, Outcome, RedisStore, SqliteStore, Store};
use serde_json::json;

/// Where the files go: under the target directory, on the disk the project builds on (not a
/// tmpfs, where `fdatasync` costs nothing).
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durable-bench").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[derive(Clone, Copy, PartialEq)]
enum StoreKind {
    Memory,
    Sqlite,
    Redis,
}

/// A private redis-server on loopback for the run (no persistence: the figure is the store's
/// protocol and round trips, not Redis's disk), killed when dropped.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    fn start() -> Option<Self> {
        if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
            println!("redis-server is not installed: the Redis store is not measured");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                println!("redis-server did not start: the Redis store is not measured");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, url: format!("redis://127.0.0.1:{port}/0") })
    }
}

/// CPU seconds process `pid` (`self` for this one) has used, from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let per_sec: f64 =
        String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().ok()?.stdout).ok()?.trim().parse().ok()?;
    Some(ticks / per_sec)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Sink {
    Off,
    Files,
    InStore,
}

fn log_key() -> LogKey {
    LogKey::new("aegis.bench/durable", KeyPair::from_seed(&[42; 32]).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build(store: StoreKind, sink: Sink, dir: &Path, redis: Option<&RedisServer>) -> Engine {
    let bundle = Bundle::from_sources(&payments_sources()).unwrap_or_else(|e| panic!("{e}"));
    let mut builder = Engine::builder().bundle(bundle).trust_issuer(ISSUER, key(1).public_key().clone());
    let sqlite =
        (store == StoreKind::Sqlite).then(|| Arc::new(SqliteStore::open(dir.join("state.db")).unwrap_or_else(|e| panic!("{e}"))));
    builder = match (&sqlite, store) {
        (Some(s), _) => builder.store(s.clone() as Arc<dyn Store>),
        (None, StoreKind::Redis) => {
            let url = &redis.unwrap_or_else(|| panic!("the redis configuration needs a server")).url;
            // Each configuration in keys of its own.
            let prefix = dir.file_name().map_or("bench".into(), |n| n.to_string_lossy().into_owned());
            builder.store(Arc::new(RedisStore::open_with_prefix(url, &prefix).unwrap_or_else(|e| panic!("{e}"))))
        }
        (None, _) => builder.store(Arc::new(MemoryStore::new())),
    };
    let log = match sink {
        Sink::Off => None,
        Sink::Files => Some(AuditLog::builder(dir.join("audit"), log_key()).open()),
        Sink::InStore => {
            Some(AuditLog::in_store(sqlite.clone().unwrap_or_else(|| panic!("in-store needs sqlite")), log_key()).open())
        }
    };
    if let Some(log) = log {
        builder = builder.audit_log(Arc::new(log.unwrap_or_else(|e| panic!("{e}"))));
    }
    builder.build().unwrap_or_else(|e| panic!("{e}"))
}

/// What one configuration measured.
struct Measured {
    per_sec: f64,
    /// Per-decision latency, median and 99th percentile, in microseconds.
    p50_us: f64,
    p99_us: f64,
}

/// Allowed decisions per second on `threads` threads for `secs` seconds, and their latency.
fn rate(engine: &Engine, threads: usize, secs: f64, tag: &str) -> Measured {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    let mut latencies: Vec<u32> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, done) = (&stop, &done);
                s.spawn(move || {
                    let chain = chain_in_task(&format!("{tag}-task-{t}"), 2, t);
                    let request = AuthorizationRequest::new(
                        chain,
                        "stripe.create_payment",
                        json!({"amount": 1, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"}),
                    );
                    // Reserved up front, so recording a latency allocates nothing in the loop.
                    let mut took = Vec::with_capacity(1 << 20);
                    while !stop.load(Ordering::Relaxed) {
                        let call = Instant::now();
                        let d = engine.authorize(&request).unwrap_or_else(|e| panic!("{e}"));
                        took.push(u32::try_from(call.elapsed().as_nanos()).unwrap_or(u32::MAX));
                        assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    took
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|_| panic!("a bench thread panicked"))).collect()
    });
    let per_sec = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&n| f64::from(n) / 1e3)
    };
    Measured { per_sec, p50_us: at(0.50), p99_us: at(0.99) }
}

/// The disk's raw rate of small appends each followed by `fdatasync`: what one durable record
/// per decision would cost at best.
fn fsync_rate(dir: &Path, secs: f64) -> f64 {
    let mut file = OpenOptions::new().create(true).append(true).open(dir.join("fsync.bin")).unwrap_or_else(|e| panic!("{e}"));
    let line = [b'x'; 300];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        file.write_all(&line).and_then(|()| file.sync_data()).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::var("AEGIS_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let redis = RedisServer::start();
    let mut configs = vec![
        ("memory store, log off", StoreKind::Memory, Sink::Off),
        ("memory store, file log", StoreKind::Memory, Sink::Files),
        ("sqlite store, log off", StoreKind::Sqlite, Sink::Off),
        ("sqlite store, file log", StoreKind::Sqlite, Sink::Files),
        ("sqlite store, log in store", StoreKind::Sqlite, Sink::InStore),
    ];
    if redis.is_some() {
        configs.push(("redis store, log off", StoreKind::Redis, Sink::Off));
    }
    let fsync_before = fsync_rate(&scratch("fsync"), secs.min(2.0));
    let mut rows = Vec::new();
    // On Redis with 8 threads: CPU seconds per decision of this process and of redis-server.
    let mut cpu_per_decision = None;
    for threads in [1usize, 2, 8] {
        for (n, (name, store, sink)) in configs.iter().enumerate() {
            let dir = scratch(&format!("c{n}-t{threads}"));
            let engine = build(*store, *sink, &dir, redis.as_ref());
            let server_pid = redis.as_ref().map(|r| r.child.id().to_string()).unwrap_or_default();
            let cpu = |pid: &str| cpu_secs(pid).unwrap_or(f64::NAN);
            let (client_before, server_before) = (cpu("self"), cpu(&server_pid));
            let measured = rate(&engine, threads, secs, &format!("c{n}-t{threads}"));
            if *store == StoreKind::Redis && threads == 8 {
                let decisions = measured.per_sec * secs;
                cpu_per_decision =
                    Some(((cpu("self") - client_before) / decisions, (cpu(&server_pid) - server_before) / decisions));
            }
            let records = engine.audit_log().map(|l| (l.size(), l.batches()));
            rows.push((threads, *name, *store, *sink, measured, records));
        }
    }
    let fsync_after = fsync_rate(&scratch("fsync"), secs.min(2.0));
    let fsync = fsync_before.min(fsync_after);
    println!();
    println!("raw fdatasync rate of this disk (300-byte appends): {fsync_before:.0}/s before, {fsync_after:.0}/s after");
    println!();
    println!(
        "{:<28} {:>7} {:>12} {:>10} {:>9} {:>9} {:>14}",
        "configuration", "threads", "decisions/s", "vs log off", "p50 us", "p99 us", "records/write"
    );
    for (threads, name, store, sink, m, records) in &rows {
        let off = rows.iter().find(|r| r.0 == *threads && r.2 == *store && r.3 == Sink::Off).map_or(f64::NAN, |r| r.4.per_sec);
        let per_write = records.map_or("-".to_owned(), |(size, batches)| {
            if *sink == Sink::Files && batches > 0 {
                format!("{:.1}", size as f64 / batches as f64)
            } else {
                "1 (per tx)".to_owned()
            }
        });
        let ratio = if *sink == Sink::Off { "1.00x".to_owned() } else { format!("{:.2}x", m.per_sec / off) };
        println!("{name:<28} {threads:>7} {:>12.0} {ratio:>10} {:>9.1} {:>9.1} {per_write:>14}", m.per_sec, m.p50_us, m.p99_us);
    }
    println!();
    println!("ratio: decisions/s with the log on divided by the same store and threads with the log off.");
    let at = |threads: usize, store: StoreKind, sink: Sink| {
        rows.iter().find(|r| r.0 == threads && r.2 == store && r.3 == sink).map_or(f64::NAN, |r| r.4.per_sec)
    };
    println!();
    let durable: &[(&str, StoreKind)] = if redis.is_some() {
        &[("sqlite", StoreKind::Sqlite), ("redis", StoreKind::Redis)]
    } else {
        &[("sqlite", StoreKind::Sqlite)]
    };
    for (name, store) in durable {
        for threads in [1usize, 8] {
            let (rate, memory) = (at(threads, *store, Sink::Off), at(threads, StoreKind::Memory, Sink::Off));
            println!("{name} store vs memory store, {threads} thread(s), log off: {:.2}x", rate / memory);
        }
    }
    let one = at(1, StoreKind::Sqlite, Sink::Off);
    println!("sqlite store, 1 thread: {one:.0} decisions/s = {:.2}x the disk's raw fdatasync rate ({fsync:.0}/s)", one / fsync);
    // A decision is answered only once its commit is durable, so N threads have at most N
    // decisions waiting for one sync: N times the raw sync rate bounds the durable rate.
    let eight = at(8, StoreKind::Sqlite, Sink::Off);
    println!(
        "sqlite store, 8 threads: {eight:.0} decisions/s; the bound with every decision durable before it is answered, \
         8 x the raw fdatasync rate: {:.0}/s = {:.2}x the memory store's 8-thread rate",
        8.0 * fsync,
        8.0 * fsync / at(8, StoreKind::Memory, Sink::Off)
    );
    if let Some((client, server)) = cpu_per_decision {
        // redis-server runs scripts on one thread, and here shares two cores with the deciding
        // threads: what each decision costs in CPU bounds the rate, whatever the concurrency.
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let bound = (1.0 / server).min(cores / (client + server));
        println!(
            "redis store, 8 threads: CPU per decision {:.1} us in this process + {:.1} us in redis-server; \
             bound with {cores} cores (redis-server on one of them): {bound:.0}/s = {:.2}x the memory store's 8-thread rate",
            client * 1e6,
            server * 1e6,
            bound / at(8, StoreKind::Memory, Sink::Off)
        );
    }
    for (name, store) in [("memory", StoreKind::Memory), ("sqlite", StoreKind::Sqlite)]
        .into_iter()
        .chain(redis.as_ref().map(|_| ("redis", StoreKind::Redis)))
    {
        println!("{name} store, 2 threads vs 1, log off: {:.2}x", at(2, store, Sink::Off) / at(1, store, Sink::Off));
    }
}
