//! The audit log kept in the SQLite store's database: an allowed call's record is written in
//! the transaction that commits it (no state without its record, no record without its state),
//! concurrent writers (threads, and engines on their own connections as processes would be)
//! keep one intact log, and tampering with the rows is detected like tampering with files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_sod::audit::{kind, read_log, AuditLog, LogKey, LogVerifier};
use aegis_sod::{Engine, ErrorCode, KeyPair, Outcome, ReasonCode, SqliteStore, Store};
use common::*;
use rusqlite::Connection;

const ORIGIN: &str = "aegis.example/sqlite-host";

fn log_key(seed: u8) -> LogKey {
    LogKey::new(ORIGIN, KeyPair::from_seed(&[seed; 32]).unwrap()).unwrap()
}

fn fresh_db(name: &str) -> PathBuf {
    let path = temp_path(&format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// An engine whose store also keeps its audit log.
fn engine_in(path: &Path, fx: &Fixture) -> (Engine, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    let log = Arc::new(AuditLog::in_store(store.clone(), log_key(9)).checkpoint_every(0).open().unwrap());
    // No store named: the log's store is the engine's.
    let engine = Engine::builder()
        .bundle(aegis_sod::Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .clock(fx.clock.clone())
        .approval_key(key(7))
        .audit_log(log)
        .build()
        .unwrap();
    (engine, store)
}

fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    conn
}

#[test]
fn the_story_is_recorded_in_the_store_and_each_allow_with_its_commit() {
    let db = fresh_db("audit-story");
    let fx = Fixture::new();
    let (engine, store) = engine_in(&db, &fx);
    let chain = fx.chain();
    assert_eq!(engine.authorize(&req(&chain, pay(120, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.authorize(&req(&chain, pay(120, "acct_attacker"), None)).unwrap().outcome, Outcome::Deny);
    let pending = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    let approval_id = pending.approval_id.clone().unwrap();
    let resolution = engine.approve(&approval_id, &approver_chain("finance-approver", NOW), None).unwrap();
    let token = resolution.override_token.unwrap();
    assert_eq!(engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token))).unwrap().outcome, Outcome::Allow);
    let cp = engine.audit_log().unwrap().checkpoint().unwrap();
    assert_eq!(cp.size, 7);
    let log =
        read_log(&db, Some(&LogVerifier::new(&log_key(9).verifier_key()).unwrap()), std::slice::from_ref(&cp.note)).unwrap();
    assert!(log.report.intact(), "{:?}", log.report);
    let kinds: Vec<&str> = log.records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            kind::BUNDLE_LOADED,
            kind::DECISION,
            kind::DECISION,
            kind::APPROVAL_OPENED,
            kind::DECISION,
            kind::APPROVAL_APPROVED,
            kind::DECISION
        ]
    );
    // The payments in the ledger (committed) are exactly the allows recorded.
    let allowed: Vec<&str> =
        log.records.iter().filter(|r| r.str("outcome") == Some("allow")).filter_map(|r| r.str("decision_id")).collect();
    let ledger: Vec<String> = store.ledger(TASK).unwrap().into_iter().filter(|e| e.tool == TOOL).map(|e| e.decision_id).collect();
    assert_eq!(allowed, ledger);
    // The files-style proofs work over the rows too.
    let proof = log.inclusion_proof(1, cp.size).unwrap();
    aegis_sod::audit::verify_inclusion(&proof, 1, cp.size, log.records[1].leaf_hash, cp.root).unwrap();
}

#[test]
fn a_record_that_cannot_be_written_rolls_its_commit_back() {
    let db = fresh_db("audit-atomic");
    let fx = Fixture::new();
    let (engine, store) = engine_in(&db, &fx);
    // The database refuses audit rows (as a full disk or a broken sink would), nothing else.
    raw(&db)
        .execute_batch("CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit sink down'); END;")
        .unwrap();
    let chain = fx.chain();
    let denied = engine.authorize(&req(&chain, pay(4000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(denied.outcome, Outcome::Deny);
    // The commit's refusal, then the deny's own record (refused too).
    assert!(denied.codes().iter().all(|c| *c == ReasonCode::Error(ErrorCode::AuditUnavailable)), "{denied:?}");
    // Nothing was committed: no ledger entry, no duty, no budget spent.
    assert!(store.ledger(TASK).unwrap().is_empty());
    assert!(store.task_state(TASK).unwrap().duties.is_empty());
    raw(&db).execute_batch("DROP TRIGGER refuse;").unwrap();
    // The same call goes through once the sink is back, and the budget counts it once.
    assert_eq!(engine.authorize(&req(&chain, pay(4000, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    assert_eq!(store.ledger(TASK).unwrap().len(), 1);
    let log = read_log(&db, None, &[]).unwrap();
    let decisions: Vec<&str> = log.records.iter().filter(|r| r.kind == kind::DECISION).filter_map(|r| r.str("outcome")).collect();
    assert_eq!(decisions, ["allow"], "the refused record left no row and the retry one");
}

#[test]
fn threads_and_separate_connections_share_one_intact_log() {
    let db = fresh_db("audit-concurrent");
    let fx = Fixture::new();
    // Two engines, each with its own store connection (as two processes of a host would be).
    let engines: Vec<Arc<Engine>> = (0..2).map(|_| Arc::new(engine_in(&db, &fx).0)).collect();
    let (threads, per_thread) = (8, 15);
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let engine = engines[t % 2].clone();
                s.spawn(move || {
                    let chain = chain_in(&format!("sqlite-task-{t}"), "finance-agent", &key(3), &[TOOL], NOW);
                    (0..per_thread)
                        .map(|_| {
                            let d = engine.authorize(&req(&chain, pay(1, GOOD_ACCOUNT), None)).unwrap();
                            assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
                            d.decision_id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let cp = engines[0].audit_log().unwrap().checkpoint().unwrap();
    assert_eq!(cp.size as usize, 2 + threads * per_thread, "two bundle loads and every decision");
    let log = read_log(&db, None, &[cp.note]).unwrap();
    assert!(log.report.intact(), "{:?}", log.report);
    let logged: std::collections::HashSet<&str> = log.records.iter().filter_map(|r| r.str("decision_id")).collect();
    assert!(ids.iter().all(|id| logged.contains(id.as_str())));
    assert_eq!(engines[1].audit_log().unwrap().size(), cp.size, "the other engine sees the records it did not write");
}

#[test]
fn tampering_with_the_rows_is_detected() {
    let db = fresh_db("audit-tamper");
    let fx = Fixture::new();
    let (engine, _) = engine_in(&db, &fx);
    for amount in [10, 20, 30] {
        engine.authorize(&req(&fx.chain(), pay(amount, GOOD_ACCOUNT), None)).unwrap();
    }
    let cp = engine.audit_log().unwrap().checkpoint().unwrap();
    drop(engine);
    let pinned = LogVerifier::new(&log_key(9).verifier_key()).unwrap();
    let first_bad = |why: &str| {
        let report = read_log(&db, Some(&pinned), std::slice::from_ref(&cp.note)).unwrap().report;
        report.first_bad.clone().unwrap_or_else(|| panic!("{why}: not detected: {report:?}")).seq
    };
    let conn = raw(&db);
    let original: String = conn.query_row("SELECT line FROM audit WHERE seq = 2", [], |r| r.get(0)).unwrap();
    // An edited amount.
    conn.execute("UPDATE audit SET line = ?1 WHERE seq = 2", [original.replace("\"amount\":20", "\"amount\":2")]).unwrap();
    assert_eq!(first_bad("edit"), 2);
    conn.execute("UPDATE audit SET line = ?1 WHERE seq = 2", [&original]).unwrap();
    assert!(read_log(&db, Some(&pinned), std::slice::from_ref(&cp.note)).unwrap().report.intact());
    // The last record deleted: the checkpoint commits to more.
    let last: (i64, String, Vec<u8>) = conn
        .query_row("SELECT seq, line, leaf FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    conn.execute("DELETE FROM audit WHERE seq = ?1", [last.0]).unwrap();
    assert_eq!(first_bad("truncation"), 3);
    conn.execute("INSERT INTO audit (seq, line, leaf) VALUES (?1, ?2, ?3)", rusqlite::params![last.0, last.1, last.2]).unwrap();
    // A middle record deleted.
    conn.execute("DELETE FROM audit WHERE seq = 1", []).unwrap();
    assert_eq!(first_bad("deletion"), 1);
    // A log rewritten under another key does not verify under the pinned one, and an engine
    // refuses to write into a log signed by another key.
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let err = AuditLog::in_store(store, log_key(8)).open().unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuditInvalid);
}

#[test]
fn the_json_config_keeps_the_log_in_the_store() {
    let db = fresh_db("audit-json");
    let fx = Fixture::new();
    let config = serde_json::json!({
        "bundle_dir": payments_dir(),
        "trusted_issuers": [{"issuer": ISSUER, "jwk": fx.issuer.public_key().to_jwk()}],
        "store": format!("sqlite:{}", db.display()),
        "fixed_time": NOW,
        "audit": {"in_store": true, "signing_key": log_key(9).to_signer_key().as_str()},
    });
    let engine = aegis_sod::json_api::engine_from_json(&config.to_string()).unwrap();
    assert_eq!(engine.authorize(&req(&fx.chain(), pay(10, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    assert!(engine.audit_log().unwrap().store().is_some());
    drop(engine);
    let log = read_log(&db, None, &[]).unwrap();
    assert!(log.report.intact(), "{:?}", log.report);
    assert_eq!(log.records.len(), 2);
    // `in_store` needs an SQLite store; `dir` and `in_store` together are refused.
    let memory = serde_json::json!({
        "bundle_dir": payments_dir(),
        "trusted_issuers": [{"issuer": ISSUER, "jwk": fx.issuer.public_key().to_jwk()}],
        "audit": {"in_store": true, "signing_key": log_key(9).to_signer_key().as_str()},
    });
    let err = aegis_sod::json_api::engine_from_json(&memory.to_string()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedRequest);
    let both = serde_json::json!({
        "bundle_dir": payments_dir(),
        "trusted_issuers": [{"issuer": ISSUER, "jwk": fx.issuer.public_key().to_jwk()}],
        "store": format!("sqlite:{}", db.display()),
        "audit": {"in_store": true, "dir": "/tmp/x", "signing_key": log_key(9).to_signer_key().as_str()},
    });
    assert_eq!(aegis_sod::json_api::engine_from_json(&both.to_string()).unwrap_err().code(), ErrorCode::MalformedRequest);
}
