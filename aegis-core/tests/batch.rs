//! Batched approvals: one approval covers up to N calls of one tool within an envelope. Each
//! call is still decided, recorded and single-use; the envelope's limits (count, per call,
//! total, destinations, window) hold atomically; a batch lifts only what the bundle lets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::{BatchEnvelope, BatchRequest, ErrorCode, Outcome};
use common::*;

const OTHER_ACCOUNT: &str = "acct_9999999999999999";

fn envelope(max_calls: u32, per_call: i64, total: i64) -> BatchEnvelope {
    BatchEnvelope {
        tool: TOOL.into(),
        max_calls,
        per_call_limit: Some(per_call),
        total_limit: Some(total),
        destinations: vec![GOOD_ACCOUNT.into()],
        window_secs: 600,
    }
}

fn ask(fx: &Fixture, envelope: BatchEnvelope) -> BatchRequest {
    BatchRequest { chain: fx.chain(), envelope, resource: None, reason: Some("Q3 vendor payouts".into()) }
}

#[test]
fn a_batch_is_asked_only_within_what_the_bundle_allows() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let code = |r: BatchRequest| engine.request_batch(&r).unwrap_err().code();
    assert_eq!(code(ask(&fx, envelope(21, 100, 100))), ErrorCode::BatchRefused, "over the bundle's max_calls");
    let mut long = envelope(3, 100, 100);
    long.window_secs = 7200;
    assert_eq!(code(ask(&fx, long)), ErrorCode::BatchRefused, "over the bundle's window");
    let mut unbounded = envelope(3, 100, 100);
    unbounded.total_limit = None;
    assert_eq!(code(ask(&fx, unbounded)), ErrorCode::BatchRefused, "amounts must be bounded");
    let mut anywhere = envelope(3, 100, 100);
    anywhere.destinations.clear();
    assert_eq!(code(ask(&fx, anywhere)), ErrorCode::BatchRefused, "destinations must be listed");
    let mut invoices = envelope(3, 100, 100);
    invoices.tool = "invoice.create".into();
    assert_eq!(code(ask(&fx, invoices)), ErrorCode::BatchRefused, "the bundle does not batch invoices");
    let mut outsider = ask(&fx, envelope(3, 100, 100));
    outsider.chain = chain_in(TASK, "clerk", &key(6), &["invoice.create"], NOW);
    assert_eq!(code(outsider), ErrorCode::ToolNotInScope);
}

#[test]
fn each_call_of_an_approved_batch_fits_its_envelope_and_runs_once() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let call = |amount: i64, destination: &str, token: Option<&str>| {
        engine.authorize(&req(&fx.chain(), pay(amount, destination), token)).unwrap()
    };
    // The task's daily budget (5000) is nearly spent: the next payment would need an approval.
    assert_eq!(call(4000, GOOD_ACCOUNT, None).outcome, Outcome::Allow);
    assert_eq!(call(2000, GOOD_ACCOUNT, None).outcome, Outcome::ApprovalNeeded);

    let pending = engine.request_batch(&ask(&fx, envelope(3, 2000, 5000))).unwrap();
    assert_eq!(pending.lifts, ["budget:task_payments"]);
    assert!(pending.batch.is_some());
    // The requester cannot answer its own batch; a finance approver does.
    let own = engine.approve(&pending.approval_id, &fx.chain(), None).unwrap();
    assert!(!own.accepted);
    let approved = engine.approve(&pending.approval_id, &approver_chain("finance-approver", NOW), None).unwrap();
    assert!(approved.accepted, "{approved:?}");
    let token = approved.override_token.unwrap();

    let first = call(2000, GOOD_ACCOUNT, Some(&token));
    assert_eq!(first.outcome, Outcome::Allow, "{first:?}");
    let replay = call(2000, GOOD_ACCOUNT, Some(&token));
    assert_eq!((replay.outcome, replay.reasons[0].code.to_string()), (Outcome::Deny, "approval_replayed".into()));
    let over = call(2500, GOOD_ACCOUNT, Some(&token));
    assert_eq!(over.reasons[0].code.to_string(), "batch_refused", "over the per-call limit");
    let elsewhere = call(100, OTHER_ACCOUNT, Some(&token));
    assert_eq!(elsewhere.reasons[0].code.to_string(), "batch_refused", "not an allowed destination");
    assert_eq!(call(1500, GOOD_ACCOUNT, Some(&token)).outcome, Outcome::Allow);
    assert_eq!(call(1400, GOOD_ACCOUNT, Some(&token)).outcome, Outcome::Allow);
    // Three calls used: a fourth is refused, whatever its amount.
    let fourth = call(10, GOOD_ACCOUNT, Some(&token));
    assert_eq!((fourth.outcome, fourth.reasons[0].code.to_string()), (Outcome::Deny, "budget_exceeded".into()));
    let ledger = engine.ledger(TASK).unwrap();
    assert_eq!(ledger.iter().filter(|e| e.tool == TOOL).count(), 4, "every batched call is its own ledger entry");
}

#[test]
fn a_batch_keeps_its_total_its_window_its_agent_and_lifts_nothing_else() {
    let fx = Fixture::new();
    let engine = Arc::new(fx.engine());
    let approve = |envelope: BatchEnvelope| {
        let pending = engine.request_batch(&ask(&fx, envelope)).unwrap();
        engine.approve(&pending.approval_id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap()
    };
    let call = |amount: i64, token: &str| engine.authorize(&req(&fx.chain(), pay(amount, GOOD_ACCOUNT), Some(token))).unwrap();

    // The total binds across calls, also when they race from threads.
    let token = approve(envelope(10, 3000, 5000));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (engine, chain, token) = (Arc::clone(&engine), fx.chain(), token.clone());
            std::thread::spawn(move || engine.authorize(&req(&chain, pay(2000 + i, GOOD_ACCOUNT), Some(&token))).unwrap())
        })
        .collect();
    let allowed = handles.into_iter().map(|h| h.join().unwrap()).filter(|d| d.outcome == Outcome::Allow).count();
    assert_eq!(allowed, 2, "2000 + 2001 fit in 5000; a third would not");

    // A payment over 5000 still needs its own approval: a batch lifts the budget only.
    let big = approve(envelope(2, 9000, 9000));
    assert_ne!(call(6000, &big).outcome, Outcome::Allow);

    // Another agent cannot use the batch.
    let token = approve(envelope(5, 1000, 5000));
    let stranger = chain_in(TASK, "payer-2", &key(6), &[TOOL], NOW);
    let d = engine.authorize(&req(&stranger, pay(10, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!(d.reasons[0].code.to_string(), "approval_wrong_agent");
    // After its window, nothing (a chain that outlives the window shows it is the batch that ended).
    let lasting = chain_in(TASK, "finance-agent", &key(3), &[TOOL], NOW);
    let pending = engine.request_batch(&BatchRequest { chain: lasting.clone(), ..ask(&fx, envelope(5, 1000, 5000)) }).unwrap();
    let token =
        engine.approve(&pending.approval_id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
    fx.clock.advance_secs(600 + 31); // the window and the engine's clock-skew leeway
    let late = engine.authorize(&req(&lasting, pay(10, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!((late.outcome, late.reasons[0].code.to_string()), (Outcome::Deny, "approval_expired".into()));
}

#[test]
fn a_batch_lifts_a_summed_budget_only_when_it_bounds_that_sum() {
    let mut sources = engine_sources();
    sources.manifest = sources.manifest.replace("    amount_arg: amount\n", "");
    let err = aegis_sod::Bundle::from_sources(&sources).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidBundle);
    assert!(err.message().contains("amount_arg"), "{}", err.message());
}

#[test]
fn a_call_that_needs_its_own_approval_does_not_carry_the_batch_into_it() {
    let fx = Fixture::new();
    let engine = fx.engine();
    assert_eq!(engine.authorize(&req(&fx.chain(), pay(4000, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let pending = engine.request_batch(&ask(&fx, envelope(5, 9000, 20_000))).unwrap();
    let token =
        engine.approve(&pending.approval_id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
    // Over 5000: the payment's own forbid asks for an approval; the batch's budget lift does
    // not travel into it (the new request lifts only what it asks for).
    let d = engine.authorize(&req(&fx.chain(), pay(6000, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!(d.outcome, Outcome::ApprovalNeeded, "{d:?}");
    let single = engine.approval(&d.approval_id.unwrap()).unwrap().unwrap();
    assert!(single.batch.is_none());
    assert!(!single.lifts.iter().any(|l| l == "budget:task_payments"), "{:?}", single.lifts);
}
