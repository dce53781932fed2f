//! Temporal rules over the task's ledger: counts and sums within a window, "done before",
//! "at most once per task", computed by the engine and handed to Cedar as numbers and booleans.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::{AuthorizationRequest, Bundle, BundleSources, Engine, ErrorCode, Outcome};
use common::*;
use serde_json::json;

const MANIFEST: &str = r#"
name: temporal
version: 1.0.0
temporal:
  pays_last_hour: {count_within: {tools: [pay], secs: 3600, per: agent}}
  paid_today: {sum_within: {tools: [pay], arg: amount, secs: 86400, per: task}}
  reviewed: {formerly: {tools: [review], by: task}}
  refunds_in_task: {count_within: {tools: [refund], secs: 315360000, per: task}}
"#;

const SCHEMA: &str = r#"
entity Role;
entity Agent in [Role];
entity Tool;
action "pay" appliesTo { principal: [Agent], resource: [Tool], context: { args: { amount: Long } } };
action "review" appliesTo { principal: [Agent], resource: [Tool], context: { args: {} } };
action "refund" appliesTo { principal: [Agent], resource: [Tool], context: { args: {} } };
"#;

const POLICIES: &str = r#"
permit (principal, action, resource);
@id("at-most-two-an-hour")
forbid (principal, action == Action::"pay", resource) when { context.temporal.pays_last_hour >= 2 };
@id("daily-total")
forbid (principal, action == Action::"pay", resource) when { context.temporal.paid_today + context.args.amount > 1000 };
@id("reviewed-before-paid")
forbid (principal, action == Action::"pay", resource) unless { context.temporal.reviewed };
@id("one-refund-per-task")
forbid (principal, action == Action::"refund", resource) when { context.temporal.refunds_in_task >= 1 };
"#;

fn engine(fx: &Fixture) -> Engine {
    let sources = BundleSources {
        manifest: MANIFEST.into(),
        schema: SCHEMA.into(),
        schema_file: "t.cedarschema".into(),
        policies: vec![("t.cedar".into(), POLICIES.into())],
    };
    fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).bundle(Bundle::from_sources(&sources).unwrap()).build().unwrap()
}

#[test]
fn counts_sums_and_past_duties_decide() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let scope = ["pay", "review", "refund"];
    let chain = chain_in("t", "payer", &key(20), &scope, NOW);
    let other = chain_in("t", "reviewer", &key(21), &scope, NOW);
    let call = |chain: &[String], tool: &str, args: serde_json::Value| {
        engine.authorize(&AuthorizationRequest::new(chain.to_vec(), tool, args)).unwrap()
    };
    let why = |d: &aegis_sod::Decision| d.reasons.iter().filter_map(|r| r.policy_id.clone()).collect::<Vec<_>>();

    // Approved (reviewed) before executed: nobody in the task reviewed yet.
    let d = call(&chain, "pay", json!({"amount": 100}));
    assert_eq!((d.outcome, why(&d)), (Outcome::Deny, vec!["reviewed-before-paid".to_owned()]));
    assert_eq!(call(&other, "review", json!({})).outcome, Outcome::Allow);
    // Two payments an hour per agent; the third waits for the window to move.
    assert_eq!(call(&chain, "pay", json!({"amount": 100})).outcome, Outcome::Allow);
    assert_eq!(call(&chain, "pay", json!({"amount": 100})).outcome, Outcome::Allow);
    let d = call(&chain, "pay", json!({"amount": 100}));
    assert_eq!(why(&d), vec!["at-most-two-an-hour".to_owned()]);
    fx.clock.advance_secs(3601);
    // Fresh credentials for the same identities an hour later.
    let later = NOW + 3601;
    let (chain, other) = (chain_in("t", "payer", &key(20), &scope, later), chain_in("t", "reviewer", &key(21), &scope, later));
    // The daily sum per task still counts the first two: 200 + 900 > 1000.
    let d = call(&chain, "pay", json!({"amount": 900}));
    assert_eq!(why(&d), vec!["daily-total".to_owned()]);
    assert_eq!(call(&chain, "pay", json!({"amount": 800})).outcome, Outcome::Allow);
    // A refused call spends nothing: 1000 spent, another 1 is over.
    let d = call(&chain, "pay", json!({"amount": 1}));
    assert_eq!(why(&d), vec!["daily-total".to_owned()], "{d:?}");
    // At most once per task, whoever asks.
    assert_eq!(call(&chain, "refund", json!({})).outcome, Outcome::Allow);
    assert_eq!(why(&call(&other, "refund", json!({}))), vec!["one-refund-per-task".to_owned()]);
    // Another task starts from nothing (but the agent's hourly count follows the agent).
    let elsewhere = chain_in("t2", "reviewer", &key(21), &scope, later);
    assert_eq!(call(&elsewhere, "refund", json!({})).outcome, Outcome::Allow);
    // Sums only consume: a negative amount is refused with its own code.
    let d = call(&chain, "pay", json!({"amount": -5000}));
    assert_eq!(d.codes(), vec![aegis_sod::ReasonCode::Error(ErrorCode::BudgetAmountInvalid)]);
}

#[test]
fn temporal_facts_are_declared_and_checked() {
    // A fact the policies read but the manifest does not declare fails validation.
    let sources = BundleSources {
        manifest: "name: t\nversion: 1.0.0\n".into(),
        schema: SCHEMA.into(),
        schema_file: "t.cedarschema".into(),
        policies: vec![("t.cedar".into(), POLICIES.into())],
    };
    assert_eq!(Bundle::from_sources(&sources).unwrap_err().code(), ErrorCode::InvalidBundle);
    let bad_window = MANIFEST.replace("secs: 3600", "secs: 0");
    let err = Bundle::from_sources(&BundleSources { manifest: bad_window, ..sources.clone() }).unwrap_err();
    assert!(err.to_string().contains("temporal fact `pays_last_hour`"), "{err}");
    let unknown = MANIFEST.replace("count_within: {tools: [pay]", "count_within: {tool: [pay]");
    assert_eq!(
        Bundle::from_sources(&BundleSources { manifest: unknown, ..sources }).unwrap_err().code(),
        ErrorCode::InvalidBundle
    );
}
