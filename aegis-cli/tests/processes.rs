//! Separate OS processes sharing one SQLite file or one redis-server, racing to redeem one
//! override token, reuse one proof `jti` and overspend one budget; and processes killed with
//! SIGKILL between approval and redemption. Each process is `aegis exec JOB.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../aegis-core/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use aegis_sod::json_api::StoreConfig;
use aegis_sod::{create_proof, Clock, Engine, ErrorCode, SystemClock};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

fn engine_config(store: &StoreConfig, bundle_dir: &std::path::Path) -> Value {
    json!({
        "bundle_dir": bundle_dir.to_string_lossy(),
        "trusted_issuers": [{"issuer": ISSUER, "jwk": key(1).public_key().to_jwk()}],
        "store": store,
        "approval_key": key(7).to_private_jwk(),
    })
}

fn spawn_worker(config: &Value, steps: Vec<Value>, start_at_ms: Option<i64>) -> Child {
    let job = temp_path("job.json");
    std::fs::write(&job, json!({"engine": config, "steps": steps, "start_at_ms": start_at_ms}).to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .arg("exec")
        .arg(&job)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Reads `n` lines from a running worker (e.g. up to its `hang`).
fn read_lines(child: &mut Child, n: usize) -> Vec<Value> {
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    (0..n)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("worker line `{line}`"))
        })
        .collect()
}

fn sigkill(child: &mut Child) {
    // Child::kill sends SIGKILL on Unix: no destructors, no flushes, no clean shutdown.
    child.kill().unwrap();
    child.wait().unwrap();
}

fn outcome(line: &Value) -> String {
    line["ok"]["outcome"].as_str().map_or_else(|| line.to_string(), str::to_owned)
}

fn real_now() -> i64 {
    SystemClock.now_secs()
}

fn in_process_engine(store: &StoreConfig, bundle_dir: &std::path::Path) -> Engine {
    aegis_sod::json_api::engine_from_json(&engine_config(store, bundle_dir).to_string()).unwrap()
}

fn proof_bundle_dir() -> PathBuf {
    let dir = temp_path("proof-bundle");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(payments_dir()).unwrap() {
        let entry = entry.unwrap();
        // The bundle's files; its `tests/` are not part of it.
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.yaml"))
        .unwrap()
        .replace("proof_required: []", "proof_required: [stripe.create_payment]");
    std::fs::write(dir.join("manifest.yaml"), manifest).unwrap();
    dir
}

fn process_races(store: StoreConfig) {
    let bundle = payments_dir();
    let engine = in_process_engine(&store, &bundle);
    let now = real_now();
    let workers = 6;
    let start = || Some(SystemClock.now_millis() + 1500);
    for round in 0..3 {
        // One override token redeemed by six processes at once.
        let chain = chain_in(&format!("proc-token-{round}-{now}"), "finance-agent", &key(3), &[TOOL], now);
        let id = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
        let token = engine.approve(&id, &approver_chain("finance-approver", now), None).unwrap().override_token.unwrap();
        let step = json!({"op": "authorize", "request": req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token))});
        let config = engine_config(&store, &bundle);
        let at = start();
        let children: Vec<Child> = (0..workers).map(|_| spawn_worker(&config, vec![step.clone()], at)).collect();
        let outcomes: Vec<String> = children.into_iter().flat_map(finish).map(|l| outcome(&l)).collect();
        assert_eq!(outcomes.iter().filter(|o| *o == "allow").count(), 1, "token round {round}: {outcomes:?}");
        assert_eq!(outcomes.len(), workers);

        // A 5000 budget; six processes each try two payments of 1000.
        let chain = chain_in(&format!("proc-budget-{round}-{now}"), "finance-agent", &key(3), &[TOOL], now);
        let step = json!({"op": "authorize", "request": req(&chain, pay(1000, GOOD_ACCOUNT), None)});
        let at = start();
        let children: Vec<Child> = (0..workers).map(|_| spawn_worker(&config, vec![step.clone(), step.clone()], at)).collect();
        let outcomes: Vec<String> = children.into_iter().flat_map(finish).map(|l| outcome(&l)).collect();
        assert_eq!(outcomes.iter().filter(|o| *o == "allow").count(), 5, "budget round {round}: {outcomes:?}");
    }
    // One proof jti presented by six processes (a bundle that requires proofs).
    let proof_bundle = proof_bundle_dir();
    let config = engine_config(&store, &proof_bundle);
    for round in 0..2 {
        let chain = chain_in(&format!("proc-proof-{round}-{now}"), "finance-agent", &key(3), &[TOOL], now);
        let mut r = req(&chain, pay(100, GOOD_ACCOUNT), None);
        r.proof = Some(create_proof(&key(3), TOOL, &r.args, &format!("proc-pop-{round}-{now}"), now, 120).unwrap());
        let step = json!({"op": "authorize", "request": r});
        let at = start();
        let children: Vec<Child> = (0..workers).map(|_| spawn_worker(&config, vec![step.clone()], at)).collect();
        let outcomes: Vec<String> = children.into_iter().flat_map(finish).map(|l| outcome(&l)).collect();
        assert_eq!(outcomes.iter().filter(|o| *o == "allow").count(), 1, "proof round {round}: {outcomes:?}");
    }
}

fn sigkill_survival(store: StoreConfig) {
    let bundle = payments_dir();
    let config = engine_config(&store, &bundle);
    let now = real_now();
    let chain = chain_in(&format!("kill-{now}"), "finance-agent", &key(3), &[TOOL], now);
    let big = req(&chain, pay(9000, GOOD_ACCOUNT), None);

    // 1. A process asks for approval and is killed: the pending approval survives.
    let mut asker = spawn_worker(&config, vec![json!({"op": "authorize", "request": big}), json!({"op": "hang"})], None);
    let lines = read_lines(&mut asker, 2);
    sigkill(&mut asker);
    assert_eq!(outcome(&lines[0]), "approval_needed");
    let approval_id = lines[0]["ok"]["approval_id"].as_str().unwrap().to_owned();
    let engine = in_process_engine(&store, &bundle);
    assert!(engine.pending_approvals().unwrap().iter().any(|p| p.approval_id == approval_id));

    // 2. A process approves and is killed before anyone redeems: the token still works, once.
    let approve = json!({"op": "approve", "request": {"approval_id": approval_id, "approver_chain": approver_chain("finance-approver", now)}});
    let mut approver = spawn_worker(&config, vec![approve, json!({"op": "hang"})], None);
    let lines = read_lines(&mut approver, 2);
    sigkill(&mut approver);
    let token = lines[0]["ok"]["override_token"].as_str().unwrap_or_else(|| panic!("{}", lines[0])).to_owned();

    // 3. A process redeems and is killed right after: the consumed token stays consumed.
    let redeem = json!({"op": "authorize", "request": req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token))});
    let mut redeemer = spawn_worker(&config, vec![redeem.clone(), json!({"op": "hang"})], None);
    let lines = read_lines(&mut redeemer, 2);
    sigkill(&mut redeemer);
    assert_eq!(outcome(&lines[0]), "allow");
    let after = finish(spawn_worker(&config, vec![redeem], None));
    assert_eq!(outcome(&after[0]), "deny");
    assert_eq!(after[0]["ok"]["reasons"][0]["code"], "approval_replayed");
    let fresh = in_process_engine(&store, &bundle);
    let d = fresh.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!(d.codes(), vec![ErrorCode::ApprovalReplayed]);
}

#[test]
fn process_races_on_sqlite() {
    process_races(sqlite_config());
}

#[test]
fn process_races_on_redis() {
    let Some(server) = RedisServer::start() else { return };
    process_races(redis_config(&server));
}

#[test]
fn sigkill_loses_nothing_on_sqlite() {
    sigkill_survival(sqlite_config());
}

#[test]
fn sigkill_loses_nothing_on_redis() {
    let Some(server) = RedisServer::start() else { return };
    sigkill_survival(redis_config(&server));
}

#[test]
fn approvals_survive_reopening_the_sqlite_file() {
    let store = sqlite_config();
    let engine = in_process_engine(&store, &payments_dir());
    let now = real_now();
    let chain = chain_in("reopen", "finance-agent", &key(3), &[TOOL], now);
    let id = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
    drop(engine);
    let reopened = in_process_engine(&store, &payments_dir());
    let ids: BTreeSet<String> = reopened.pending_approvals().unwrap().into_iter().map(|p| p.approval_id).collect();
    assert!(ids.contains(&id));
}
