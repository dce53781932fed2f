//! Resident memory with many cached chains and many tasks: `memory [chains] [tasks]` (release:
//! `cargo run --release -p aegis-benches --bin memory`). Prints the process's resident set
//! (`VmRSS`) after building the engine, after deciding on `chains` distinct chains, each in a
//! task of its own (the verified-chain, key and per-task context caches fill to their bounds;
//! the memory store keeps every task), and after `tasks` more. Nothing is asserted: the caches'
//! bounds are in the code (`CHAIN_CACHE_CAPACITY`, `KEY_CACHE_CAPACITY`,
//! `BASE_CONTEXT_CACHE_CAPACITY`), and the store keeps what it must (a task's duties and ledger,
//! until it ends), so memory grows with tasks and stays flat in chains once the caches are full.

use std::time::Instant;

use aegis_benches::*;
use aegis_sod::{AuthorizationRequest, Bundle, Outcome};
use serde_json::json;

/// The resident set in KiB, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let arg = |n: usize, default: usize| std::env::args().nth(n).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (chains, tasks) = (arg(1, 100_000), arg(2, 100_000));
    let args = json!({"amount": 1, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"});
    let start = rss_kib();
    let engine = engine(Bundle::from_sources(&payments_sources()).unwrap_or_else(|e| panic!("{e}")));
    let built = rss_kib();
    println!("{:<46} {:>10} {:>10}", "phase", "rss KiB", "delta KiB");
    println!("{:<46} {:>10} {:>10}", "process start", start, 0);
    println!("{:<46} {:>10} {:>10}", "engine built (payments bundle)", built, built - start);

    // Distinct chains, each in its own task: every cache sees a new key each time.
    let clock = Instant::now();
    for n in 0..chains {
        let chain = chain_in_task(&format!("mem-chain-{n}"), 2, n);
        let d = engine.authorize(&AuthorizationRequest::new(chain, "stripe.create_payment", args.clone()));
        assert_eq!(d.map(|d| d.outcome).unwrap_or_else(|e| panic!("{e}")), Outcome::Allow);
    }
    let after_chains = rss_kib();
    println!(
        "{:<46} {:>10} {:>10}   ({:.1} s)",
        format!("{chains} distinct chains, one task each"),
        after_chains,
        after_chains - built,
        clock.elapsed().as_secs_f64()
    );

    // More tasks under chains that differ only in their task (a new chain for each task).
    let clock = Instant::now();
    for n in 0..tasks {
        let chain = chain_in_task(&format!("mem-task-{n}"), 2, chains + n);
        let d = engine.authorize(&AuthorizationRequest::new(chain, "stripe.create_payment", args.clone()));
        assert_eq!(d.map(|d| d.outcome).unwrap_or_else(|e| panic!("{e}")), Outcome::Allow);
    }
    let after_tasks = rss_kib();
    println!(
        "{:<46} {:>10} {:>10}   ({:.1} s)",
        format!("{tasks} more tasks"),
        after_tasks,
        after_tasks - after_chains,
        clock.elapsed().as_secs_f64()
    );
    let per_task = (after_tasks - built) as f64 * 1024.0 / (chains + tasks) as f64;
    println!();
    println!("per task kept by the memory store (duties, ledger entry, version), caches full: {per_task:.0} bytes");
}
