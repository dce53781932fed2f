//! SIGKILL during a stream of decisions, many times: no acknowledged allow is ever missing
//! from the audit log, and the log reopens intact after every kill.
//!
//! The test binary re-runs itself as the child (`AEGIS_CRASH_CHILD`): two threads decide
//! allowed payments on an engine that records into the log, and print each decision id only
//! once `authorize` has returned it. The parent kills the child at a random moment, reads
//! everything it printed, reopens the log and looks every printed id up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aegis_sod::audit::{kind, read_log, AuditLog, LogKey};
use aegis_sod::{KeyPair, Outcome};
use common::*;

fn log_key() -> LogKey {
    LogKey::new("aegis.example/crash", KeyPair::from_seed(&[21; 32]).unwrap()).unwrap()
}

/// The child: decide until killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("AEGIS_CRASH_CHILD") else { return };
    let round: u64 = std::env::var("AEGIS_CRASH_ROUND").unwrap().parse().unwrap();
    let log = Arc::new(AuditLog::builder(&dir, log_key()).checkpoint_every(64).open().unwrap());
    let fx = Fixture::new();
    let engine = Arc::new(fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).audit_log(log).build().unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    println!("ready");
    std::thread::scope(|s| {
        for t in 0..2 {
            let (engine, out) = (engine.clone(), out.clone());
            s.spawn(move || {
                let chain = chain_in(&format!("crash-{round}-{t}"), "finance-agent", &key(3), &[TOOL], NOW);
                loop {
                    let d = engine.authorize(&req(&chain, pay(1, GOOD_ACCOUNT), None)).unwrap();
                    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
                    let mut out = out.lock().unwrap();
                    writeln!(out, "{}", d.decision_id).unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

fn rounds() -> u64 {
    std::env::var("AEGIS_CRASH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

#[test]
fn sigkill_never_loses_an_acknowledged_allow() {
    // Two workers (the machines have two cores), each killing its own children.
    let total = rounds();
    let (acknowledged, torn) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64).map(|w| s.spawn(move || kill_rounds(w, (w..total).step_by(2)))).collect();
        workers.into_iter().map(|w| w.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    eprintln!("{total} kills, {acknowledged} acknowledged allows, all in the log; {torn} torn tails repaired");
    assert!(acknowledged > 0, "no child ever decided");
}

/// Runs and kills one child per round; returns the acknowledged allows and torn tails seen.
fn kill_rounds(worker: u64, rounds: impl Iterator<Item = u64>) -> (usize, usize) {
    let exe = std::env::current_exe().unwrap();
    let base = temp_path(&format!("crash-{worker}"));
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ worker;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut acknowledged, mut torn_repairs) = (0usize, 0usize);
    for round in rounds {
        // A fresh log every 40 rounds keeps reopening cheap; within a run the same log is
        // killed, repaired and reopened again and again.
        let dir = base.join(format!("log-{}", round / 40));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env("AEGIS_CRASH_CHILD", &dir)
            .env("AEGIS_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut printed = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print `test crash_child ... ` before the child's own first line.
                if line.ends_with("ready") {
                    let _ = ready_tx.send(());
                } else if let Some(at) = line.find("dec_") {
                    printed.push(line[at..].to_owned());
                }
            }
            printed
        });
        // Wait until it decides, then let it run a random while (0 to 15 ms) before the kill.
        let ready = ready_rx.recv_timeout(Duration::from_secs(60));

        if ready.is_ok() {
            std::thread::sleep(Duration::from_micros(next() % 15_000));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let printed = reader.join().unwrap();
        assert!(ready.is_ok(), "round {round}: the child never started deciding");
        acknowledged += printed.len();
        torn_repairs += usize::from(check_log(&dir, &printed));
    }
    (acknowledged, torn_repairs)
}

/// Every printed id is an allow in the log, and the log verifies after reopening. Returns
/// whether the reopen repaired a torn tail.
fn check_log(dir: &Path, printed: &[String]) -> bool {
    // Opening refuses a damaged log (anything but a torn tail) and signs a checkpoint when it
    // closes.
    let size = AuditLog::builder(dir, log_key()).open().unwrap().size();
    let after = read_log(dir, None, &[]).unwrap();
    assert!(after.report.intact(), "{:?}", after.report);
    assert_eq!(after.records.len() as u64, size);
    let torn = after.records.iter().rev().take(1).any(|r| r.kind == kind::AUDIT_REPAIRED);
    let allowed: HashSet<&str> = after
        .records
        .iter()
        .filter(|r| r.kind == kind::DECISION && r.str("outcome") == Some("allow"))
        .filter_map(|r| r.str("decision_id"))
        .collect();
    for id in printed {
        assert!(allowed.contains(id.as_str()), "acknowledged allow `{id}` is missing from the log");
    }
    torn
}
