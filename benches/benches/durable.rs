//! The durable decision rate: allowed payments per second with the audit log off, on file
//! segments (group commit: one `fdatasync` per batch) and in the SQLite store's own
//! transaction (group commit: concurrent decisions share one transaction), on 1, 2 and 8
//! threads, beside the raw `fdatasync` rate of the same disk measured in the same run. Each
//! thread decides in its own task. Prints rates and ratios to the same store with the log off,
//! then the durable store against the memory store and two threads against one; nothing is
//! asserted about speed.
//!
//! `cargo bench -p aegis-benches --bench durable` (release). `AEGIS_BENCH_SECS` sets the
//! seconds per configuration (default 3).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_benches::*;
use aegis_sod::audit::{AuditLog, LogKey};
use aegis_sod::{AuthorizationRequest, Bundle, Engine, KeyPair, MemoryStore, Outcome, SqliteStore, Store};
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

fn build(store: StoreKind, sink: Sink, dir: &Path) -> Engine {
    let bundle = Bundle::from_sources(&payments_sources()).unwrap_or_else(|e| panic!("{e}"));
    let mut builder = Engine::builder().bundle(bundle).trust_issuer(ISSUER, key(1).public_key().clone());
    let sqlite =
        (store == StoreKind::Sqlite).then(|| Arc::new(SqliteStore::open(dir.join("state.db")).unwrap_or_else(|e| panic!("{e}"))));
    builder = match &sqlite {
        Some(s) => builder.store(s.clone() as Arc<dyn Store>),
        None => builder.store(Arc::new(MemoryStore::new())),
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

/// Allowed decisions per second on `threads` threads for `secs` seconds.
fn rate(engine: &Engine, threads: usize, secs: f64, tag: &str) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, done) = (&stop, &done);
            s.spawn(move || {
                let chain = chain_in_task(&format!("{tag}-task-{t}"), 2, t);
                let request = AuthorizationRequest::new(
                    chain,
                    "stripe.create_payment",
                    json!({"amount": 1, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"}),
                );
                while !stop.load(Ordering::Relaxed) {
                    let d = engine.authorize(&request).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
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
    let configs = [
        ("memory store, log off", StoreKind::Memory, Sink::Off),
        ("memory store, file log", StoreKind::Memory, Sink::Files),
        ("sqlite store, log off", StoreKind::Sqlite, Sink::Off),
        ("sqlite store, file log", StoreKind::Sqlite, Sink::Files),
        ("sqlite store, log in store", StoreKind::Sqlite, Sink::InStore),
    ];
    let fsync_before = fsync_rate(&scratch("fsync"), secs.min(2.0));
    let mut rows = Vec::new();
    for threads in [1usize, 2, 8] {
        for (n, (name, store, sink)) in configs.iter().enumerate() {
            let dir = scratch(&format!("c{n}-t{threads}"));
            let engine = build(*store, *sink, &dir);
            let per_sec = rate(&engine, threads, secs, &format!("c{n}-t{threads}"));
            let records = engine.audit_log().map(|l| (l.size(), l.batches()));
            rows.push((threads, *name, *store, *sink, per_sec, records));
        }
    }
    let fsync_after = fsync_rate(&scratch("fsync"), secs.min(2.0));
    println!();
    println!("raw fdatasync rate of this disk (300-byte appends): {fsync_before:.0}/s before, {fsync_after:.0}/s after");
    println!();
    println!("{:<30} {:>7} {:>12} {:>10} {:>16}", "configuration", "threads", "decisions/s", "vs log off", "records/write");
    for (threads, name, store, sink, per_sec, records) in &rows {
        let off = rows.iter().find(|r| r.0 == *threads && r.2 == *store && r.3 == Sink::Off).map_or(f64::NAN, |r| r.4);
        let per_write = records.map_or("-".to_owned(), |(size, batches)| {
            if *sink == Sink::Files && batches > 0 {
                format!("{:.1}", size as f64 / batches as f64)
            } else {
                "1 (per tx)".to_owned()
            }
        });
        let ratio = if *sink == Sink::Off { "1.00x".to_owned() } else { format!("{:.2}x", per_sec / off) };
        println!("{name:<30} {threads:>7} {per_sec:>12.0} {ratio:>10} {per_write:>16}");
    }
    println!();
    println!("ratio: decisions/s with the log on divided by the same store and threads with the log off.");
    let at = |threads: usize, store: StoreKind, sink: Sink| {
        rows.iter().find(|r| r.0 == threads && r.2 == store && r.3 == sink).map_or(f64::NAN, |r| r.4)
    };
    println!();
    for threads in [1usize, 8] {
        let (sqlite, memory) = (at(threads, StoreKind::Sqlite, Sink::Off), at(threads, StoreKind::Memory, Sink::Off));
        println!("sqlite store vs memory store, {threads} thread(s), log off: {:.2}x", sqlite / memory);
    }
    let one = at(1, StoreKind::Sqlite, Sink::Off);
    println!(
        "sqlite store, 1 thread: {one:.0} decisions/s = {:.2}x the disk's raw fdatasync rate ({:.0}/s)",
        one / fsync_before.min(fsync_after),
        fsync_before.min(fsync_after)
    );
    for store in [StoreKind::Memory, StoreKind::Sqlite] {
        let name = if store == StoreKind::Memory { "memory" } else { "sqlite" };
        println!("{name} store, 2 threads vs 1, log off: {:.2}x", at(2, store, Sink::Off) / at(1, store, Sink::Off));
    }
}
