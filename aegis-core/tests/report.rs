//! The operator's report: every figure computed from a log whose story is known, across two
//! hosts' logs, and a log that fails verification reported as such.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_sod::audit::{read_log, AuditLog, LogKey, Report};
use aegis_sod::{BreakGlassRequest, KeyPair, Outcome};
use common::*;
use serde_json::json;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = temp_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn log_in(dir: &Path, host: &str, seed: u8) -> Arc<AuditLog> {
    let key = LogKey::new(&format!("aegis.example/{host}"), KeyPair::from_seed(&[seed; 32]).unwrap()).unwrap();
    Arc::new(AuditLog::builder(dir, key).open().unwrap())
}

/// Host 1: two allows, a shadow would-block, two SoD refusals, an approval resolved after 40 s
/// and one rejected after 100 s, a break-glass grant used once and reviewed, one left open.
fn host_one(dir: &Path) {
    let fx = Fixture::new();
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).audit_log(log_in(dir, "host-1", 9)).build().unwrap();
    let chain = fx.chain();
    let planner_alone = vec![fx.planner_cred()];
    let ok = |r: aegis_sod::Decision, want: Outcome| assert_eq!(r.outcome, want, "{r:?}");
    ok(engine.authorize(&req(&chain, pay(100, GOOD_ACCOUNT), None)).unwrap(), Outcome::Allow);
    ok(
        engine.authorize(&req(&chain, json!({"amount": 2600, "currency": "usd", "destination": GOOD_ACCOUNT}), None)).unwrap(),
        Outcome::Allow,
    );
    // The initiator pays itself: refused by the segregation policies, twice.
    ok(engine.authorize(&req(&planner_alone, pay(50, GOOD_ACCOUNT), None)).unwrap(), Outcome::Deny);
    ok(engine.authorize(&req(&planner_alone, pay(60, GOOD_ACCOUNT), None)).unwrap(), Outcome::Deny);
    // A destination refused by a limit, not by SoD: not counted as an SoD violation.
    ok(engine.authorize(&req(&chain, pay(10, "acct_attacker"), None)).unwrap(), Outcome::Deny);
    let first = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    fx.clock.advance_secs(40);
    assert!(
        engine.approve(first.approval_id.as_deref().unwrap(), &approver_chain("finance-approver", NOW), None).unwrap().accepted
    );
    let second = engine.authorize(&req(&chain, pay(9100, GOOD_ACCOUNT), None)).unwrap();
    fx.clock.advance_secs(100);
    let rejected = engine.reject(second.approval_id.as_deref().unwrap(), &approver_chain("finance-approver", NOW), None).unwrap();
    assert!(rejected.accepted, "{rejected:?}");
    let grant = |reason: &str| {
        engine
            .break_glass(&BreakGlassRequest::new(
                vec!["planner/finance-agent".into()],
                vec![TOOL.into()],
                vec![TASK.into()],
                reason,
                vec![approver_chain("cfo", NOW), approver_chain("ciso", NOW)],
                600,
            ))
            .unwrap()
    };
    let reviewed = grant("payments outage");
    engine.close_break_glass(&reviewed.id, "INC-7").unwrap();
    let _open = grant("second outage");
}

/// Host 2: one allow by another agent's chain in another task, one SoD refusal.
fn host_two(dir: &Path) {
    let fx = Fixture::new();
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).audit_log(log_in(dir, "host-2", 10)).build().unwrap();
    let chain = chain_in("task-2", "payer", &key(12), &[TOOL], NOW);
    assert_eq!(engine.authorize(&req(&chain, pay(700, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let planner_alone = vec![fx.planner_cred()];
    assert_eq!(engine.authorize(&req(&planner_alone, pay(5, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Deny);
}

#[test]
fn every_figure_of_the_report_comes_from_the_logs() {
    let (one, two) = (fresh_dir("report-host-1"), fresh_dir("report-host-2"));
    host_one(&one);
    host_two(&two);
    let logs: Vec<(String, aegis_sod::audit::ReadLog)> =
        [&one, &two].iter().map(|d| (d.display().to_string(), read_log(d, None, &[]).unwrap())).collect();
    let report = Report::from_logs(&logs);

    assert!(report.intact());
    assert_eq!(
        report.logs.iter().map(|l| l.origin.as_str()).collect::<Vec<_>>(),
        ["aegis.example/host-1", "aegis.example/host-2"]
    );
    assert_eq!(report.decisions.get("allow"), Some(&3));
    assert_eq!(report.decisions.get("deny"), Some(&4));
    assert_eq!(report.decisions.get("approval_needed"), Some(&2));
    assert_eq!(report.sod_prevented, 3, "the three refusals of the initiator paying, on both hosts");
    // NOW is 2026-01-01 (a Thursday): the week of Monday 2025-12-29.
    assert_eq!(report.sod_prevented_by_week.len(), 1);
    assert_eq!((report.sod_prevented_by_week[0].name.as_str(), report.sod_prevented_by_week[0].count), ("2025-12-29", 3));
    let l = &report.approval_latency;
    assert_eq!((l.count, l.avg_ms, l.p50_ms, l.p95_ms), (2, Some(70_000.0), Some(40_000), Some(100_000)));
    let coverage = report.coverage.as_ref().unwrap();
    assert!(coverage.critical_tools.contains(&TOOL.to_owned()));
    assert!(coverage.covered.contains(&TOOL.to_owned()));
    assert!((coverage.share - coverage.covered.len() as f64 / coverage.critical_tools.len() as f64).abs() < 1e-12);
    assert_eq!(report.would_block_by_agent.len(), 1);
    assert_eq!(
        (report.would_block_by_agent[0].name.as_str(), report.would_block_by_agent[0].count),
        ("planner/finance-agent", 1)
    );
    assert_eq!(report.would_block_by_policy[0].name, "shadow-foreign-currency-over-2500");
    let spend: Vec<(&str, i64)> = report.budget_by_agent.iter().map(|s| (s.agent_id.as_str(), s.amount)).collect();
    assert_eq!(spend, [("planner/finance-agent", 2700), ("planner/payer", 700)]);
    let states: Vec<(&str, &str)> = report.break_glass.iter().map(|g| (g.reason.as_str(), g.state.as_str())).collect();
    assert_eq!(states, [("payments outage", "reviewed"), ("second outage", "open")]);
    assert_eq!(report.break_glass[0].review_ref.as_deref(), Some("INC-7"));

    // The page shows the same figures.
    let html = report.to_html();
    for (figure, value) in [
        ("sod-prevented", "3"),
        ("sod-week-2025-12-29", "3"),
        ("approval-latency-p50", "40.000 s"),
        ("approval-latency-p95", "100.000 s"),
        ("would-block-agent-planner/finance-agent", "1"),
        ("spend-planner/payer-task_payments", "700"),
        ("logs-intact", "every log verified"),
    ] {
        assert!(html.contains(&format!("data-figure=\"{figure}\">{value}<")), "{figure} = {value} not in the page");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no network at view time");
}

#[test]
fn a_log_that_fails_verification_is_reported_as_such() {
    let dir = fresh_dir("report-tampered");
    host_two(&dir);
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a segment file");
    let text = std::fs::read_to_string(&segment).unwrap().replacen("\"outcome\":\"deny\"", "\"outcome\":\"allow\"", 1);
    std::fs::write(&segment, text).unwrap();
    let report = Report::from_logs(&[(dir.display().to_string(), read_log(&dir, None, &[]).unwrap())]);
    assert!(!report.intact());
    assert!(report.logs[0].first_bad.is_some());
    assert!(report.to_html().contains("a log failed verification"));
}
