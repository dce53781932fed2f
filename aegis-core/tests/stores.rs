//! The three stores: one conformance suite, the payments story on each, and races that try
//! to break single use and budgets across threads, across processes, and across SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;

use std::sync::{Arc, Mutex};

use aegis_sod::{
    create_proof, ApprovalStatus, AuthorizationRequest, BreakGlassGrant, BreakGlassRequest, Bundle, Clock, Commit, CommitOutcome,
    Engine, ErrorCode, LedgerEntry, MemoryStore, Outcome, PendingApproval, ReasonCode, RedisStore, Reservation, SqliteStore,
    Store,
};
use common::redis::RedisServer;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Stores under test

// ---------------------------------------------------------------------------------------------
// Conformance

fn entry(agent: &str, tool: &str, id: &str) -> LedgerEntry {
    LedgerEntry {
        tool: tool.into(),
        agent_id: agent.into(),
        lineage: vec!["planner".into()],
        decision_id: id.into(),
        at: NOW,
        key: String::new(),
    }
}

fn commit(task: &str, version: u64, consume: &[&str], reservations: Vec<Reservation>, id: &str) -> Commit {
    Commit {
        task_id: task.into(),
        expected_version: version,
        consume: consume.iter().map(|k| ((*k).to_owned(), NOW + 600)).collect(),
        entry: entry("finance-agent", TOOL, id),
        reservations,
        now: NOW,
        revision: None,
    }
}

fn budget(amount: i64, enforce: bool) -> Reservation {
    Reservation { key: "payments/task/t1".into(), amount, limit: 5000, window_start: NOW - 86_400, enforce }
}

fn pending(id: &str, created: i64) -> PendingApproval {
    PendingApproval {
        approval_id: id.into(),
        call_digest: "digest".into(),
        tool: TOOL.into(),
        args: json!({"amount": 9000}),
        resource: None,
        requester_kids: vec!["kid-planner".into()],
        lifts: vec!["large-payment-needs-approval".into()],
        agent_id: "finance-agent".into(),
        lineage: vec!["planner".into()],
        initiator: "planner".into(),
        task_id: "t1".into(),
        intent: "pay".into(),
        policy_ids: vec!["large-payment-needs-approval".into()],
        reasons: vec!["payments over 5000 need a finance approver".into()],
        roles: vec!["finance-approver".into()],
        policy_version: "payments@1".into(),
        created_at_ms: created,
        status: aegis_sod::ApprovalStatus::Pending,
        resolved_by: None,
        resolved_at_ms: None,
        note: None,
        quorum: 2,
        stages: Vec::new(),
        votes: Vec::new(),
        batch: None,
    }
}

fn conformance(store: &dyn Store) {
    assert_eq!(store.task_state("t1").unwrap(), Default::default());
    assert_eq!(store.commit(commit("t1", 0, &["proof:a"], vec![budget(3000, true)], "d1")).unwrap(), CommitOutcome::Committed);
    let state = store.task_state("t1").unwrap();
    assert_eq!(state.version, 1);
    assert!(state.duties.contains(&("finance-agent".to_owned(), TOOL.to_owned())));
    assert_eq!(store.ledger("t1").unwrap(), vec![entry("finance-agent", TOOL, "d1")]);

    // Stale version, reused id, exceeded budget: each refused, and nothing of the commit applies.
    assert_eq!(store.commit(commit("t1", 0, &[], vec![], "d2")).unwrap(), CommitOutcome::Conflict);
    assert_eq!(
        store.commit(commit("t1", 1, &["fresh", "proof:a"], vec![], "d3")).unwrap(),
        CommitOutcome::AlreadyUsed("proof:a".into())
    );
    assert_eq!(
        store.commit(commit("t1", 1, &["fresh2"], vec![budget(2001, true)], "d4")).unwrap(),
        CommitOutcome::BudgetExceeded("payments/task/t1".into())
    );
    assert_eq!(store.task_state("t1").unwrap().version, 1);
    assert_eq!(store.ledger("t1").unwrap().len(), 1);
    assert_eq!(store.budget_spent("payments/task/t1", NOW - 86_400).unwrap(), 3000);
    // `fresh` was not consumed by the refused commit.
    assert_eq!(store.commit(commit("t1", 1, &["fresh"], vec![budget(2000, true)], "d5")).unwrap(), CommitOutcome::Committed);
    assert_eq!(store.budget_spent("payments/task/t1", NOW - 86_400).unwrap(), 5000);
    // An approved override records spending without enforcing the limit; the window forgets.
    assert_eq!(store.commit(commit("t1", 2, &[], vec![budget(9000, false)], "d6")).unwrap(), CommitOutcome::Committed);
    assert_eq!(store.budget_spent("payments/task/t1", NOW - 86_400).unwrap(), 14_000);
    assert_eq!(store.budget_spent("payments/task/t1", NOW + 1).unwrap(), 0);
    // Tasks are independent.
    assert_eq!(store.commit(commit("t2", 0, &[], vec![], "d7")).unwrap(), CommitOutcome::Committed);

    store.end_task("t1", NOW).unwrap();
    assert!(store.task_state("t1").unwrap().ended);
    assert_eq!(store.commit(commit("t1", 3, &[], vec![], "d8")).unwrap(), CommitOutcome::TaskEnded);
    assert!(!store.task_state("t2").unwrap().ended);

    // Approvals.
    store.insert_pending(&pending("apr_b", 20)).unwrap();
    store.insert_pending(&pending("apr_a", 10)).unwrap();
    let ids: Vec<String> = store.list_pending().unwrap().into_iter().map(|p| p.approval_id).collect();
    assert_eq!(ids, vec!["apr_a", "apr_b"]);
    let mut resolved = pending("apr_a", 10);
    resolved.status = aegis_sod::ApprovalStatus::Approved;
    resolved.resolved_by = Some("finance-approver".into());
    resolved.resolved_at_ms = Some(1010);
    assert!(store.resolve(&resolved, 0).unwrap());
    assert!(!store.resolve(&resolved, 0).unwrap(), "an approval resolves once");
    assert_eq!(store.approval("apr_a").unwrap().unwrap().latency_ms(), Some(1000));
    assert_eq!(store.list_pending().unwrap().len(), 1);
    assert!(store.approval("apr_missing").unwrap().is_none());
    // A vote keeps the approval pending and listed; a vote or resolution made on a stale count
    // of votes (someone answered in between) does not take effect.
    let mut voted = pending("apr_b", 20);
    voted.votes.push(aegis_sod::Vote { approver: "a1".into(), key: "k1".into(), stage: None, at_ms: 1020, note: None });
    assert!(store.resolve(&voted, 0).unwrap());
    assert!(!store.resolve(&voted, 0).unwrap(), "a second vote on the same count loses");
    assert_eq!(store.approval("apr_b").unwrap().unwrap().votes.len(), 1);
    assert_eq!(store.list_pending().unwrap().len(), 1, "still pending after one vote of two");
    let mut done = voted.clone();
    done.votes.push(aegis_sod::Vote { approver: "a2".into(), key: "k2".into(), stage: None, at_ms: 1030, note: None });
    done.status = aegis_sod::ApprovalStatus::Approved;
    assert!(!store.resolve(&done, 0).unwrap());
    assert!(store.resolve(&done, 1).unwrap());
    assert!(store.list_pending().unwrap().is_empty());
    store.insert_pending(&pending("apr_c", 30)).unwrap();

    // Break-glass grants.
    let grant = BreakGlassGrant {
        id: "bg_1".into(),
        agents: vec!["finance-agent".into()],
        tools: vec![TOOL.into()],
        tasks: vec!["t1".into()],
        reason: "incident".into(),
        approvers: vec!["a".into(), "b".into()],
        opened_at: NOW,
        expires_at: NOW + 60,
        closed_at: None,
        review_ref: None,
    };
    store.insert_grant(&grant).unwrap();
    assert_eq!(store.open_grants().unwrap(), vec![grant]);
    assert!(store.close_grant("bg_1", "PIR-1", NOW + 100).unwrap());
    assert!(!store.close_grant("bg_1", "PIR-1", NOW + 100).unwrap());
    assert!(store.open_grants().unwrap().is_empty());
}

#[test]
fn memory_store_conforms() {
    conformance(&MemoryStore::new());
}

#[test]
fn sqlite_store_conforms_and_persists() {
    let path = temp_path("conformance.db");
    conformance(&SqliteStore::open(&path).unwrap());
    let reopened = SqliteStore::open(&path).unwrap();
    assert!(reopened.task_state("t1").unwrap().ended);
    assert_eq!(reopened.list_pending().unwrap().len(), 1);
}

#[test]
fn redis_store_conforms() {
    let Some(server) = RedisServer::start() else { return };
    conformance(&RedisStore::open_with_prefix(&server.url(), "conformance").unwrap());
}

#[test]
fn redis_store_refuses_an_evicting_server() {
    let Some(server) = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]) else { return };
    let err = RedisStore::open(&server.url()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreUnavailable);
    assert!(err.message().contains("allkeys-lru"), "{}", err.message());
}

// ---------------------------------------------------------------------------------------------
// The payments story on every store

struct Story {
    fx: Fixture,
    engine: Engine,
    notified: Arc<Mutex<Vec<PendingApproval>>>,
}

fn story(store: Arc<dyn Store>) -> Story {
    let fx = Fixture::new();
    let notified = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notified);
    let engine =
        fx.builder_on(store).notifier(Arc::new(move |p: &PendingApproval| sink.lock().unwrap().push(p.clone()))).build().unwrap();
    Story { fx, engine, notified }
}

fn codes(engine: &Engine, r: &AuthorizationRequest) -> (Outcome, Vec<ReasonCode>) {
    let d = engine.authorize(r).unwrap();
    (d.outcome, d.codes())
}

fn run_story(store: Arc<dyn Store>) {
    let Story { fx, engine, notified } = story(store);
    let task = "task-story";
    let finance = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
    let planner_only = vec![finance[0].clone()];

    // The 9000 payment needs approval; the notifier sees it, with a Slack message to send.
    let big = pay(9000, GOOD_ACCOUNT);
    let d = engine.authorize(&req(&finance, big.clone(), None)).unwrap();
    assert_eq!(d.outcome, Outcome::ApprovalNeeded);
    let approval_id = d.approval_id.clone().unwrap();
    let pending = notified.lock().unwrap().last().cloned().unwrap();
    assert_eq!(pending.approval_id, approval_id);
    // The payment's forbid and the task budget it would exceed are approved together.
    assert_eq!(pending.roles, vec!["budget-approver", "finance-approver"]);
    assert_eq!(pending.lifts, vec!["budget:task_payments", "large-payment-needs-approval"]);
    let slack = aegis_sod::slack_message(&pending);
    assert!(slack["blocks"].as_array().unwrap().iter().any(|b| b["type"] == "actions"));
    assert!(slack.to_string().contains(&approval_id));
    assert_eq!(engine.pending_approvals().unwrap().len(), 1);

    // Who may not approve: the requester, the planner above it, an approver without a permit.
    let refused = |chain: &[String], code: ReasonCode| {
        let r = engine.approve(&approval_id, chain, None).unwrap();
        assert!(!r.accepted && r.override_token.is_none());
        assert_eq!(r.reasons[0].code, code, "{:?}", r.reasons);
    };
    refused(&finance, ErrorCode::ApproverConflict.into());
    // `*` never covers Aegis's own actions.
    refused(&planner_only, ErrorCode::ToolNotInScope.into());
    refused(&approver_chain("random-approver", NOW), ReasonCode::NO_MATCHING_PERMIT);
    let forged_approver = {
        let mut c = approver_chain("finance-approver", NOW);
        let at = c[0].len() - 10;
        let flipped = if &c[0][at..=at] == "A" { "B" } else { "A" };
        c[0].replace_range(at..=at, flipped);
        c
    };
    refused(&forged_approver, ErrorCode::SignatureInvalid.into());

    // The finance approver approves: a single-use token bound to the exact call.
    fx.clock.advance_secs(2);
    let resolution = engine.approve(&approval_id, &approver_chain("finance-approver", NOW), Some("invoice checked")).unwrap();
    assert!(resolution.accepted);
    assert_eq!(resolution.approval.latency_ms(), Some(2000));
    let token = resolution.override_token.unwrap();
    assert_eq!(
        engine.approve(&approval_id, &approver_chain("finance-approver", NOW), None).unwrap_err().code(),
        ErrorCode::ApprovalNotPending
    );
    assert!(engine.pending_approvals().unwrap().is_empty());

    // Every misuse is denied with its own code, and none of them burns the token.
    let mut changed = big.clone();
    changed["amount"] = json!(9001);
    assert_eq!(
        codes(&engine, &req(&finance, changed, Some(&token))),
        (Outcome::Deny, vec![ErrorCode::ApprovalArgsMismatch.into()])
    );
    let other_agent = chain_in(task, "finance-agent-2", &key(8), &[TOOL], NOW);
    assert_eq!(
        codes(&engine, &req(&other_agent, big.clone(), Some(&token))),
        (Outcome::Deny, vec![ErrorCode::ApprovalWrongAgent.into()])
    );
    let other_task = chain_in("another-task", "finance-agent", &fx.finance, &[TOOL], NOW);
    assert_eq!(
        codes(&engine, &req(&other_task, big.clone(), Some(&token))),
        (Outcome::Deny, vec![ErrorCode::ApprovalWrongTask.into()])
    );
    let mut tampered = token.clone();
    tampered.insert(tampered.len() - 2, 'x');
    assert_eq!(codes(&engine, &req(&finance, big.clone(), Some(&tampered))).1, vec![ErrorCode::ApprovalTokenInvalid]);

    // A graph that re-runs its interrupted step asks again before presenting the token: a
    // duplicate request for the same call, which the redemption closes. A request for another
    // call stays pending.
    let duplicate = engine.authorize(&req(&finance, big.clone(), None)).unwrap();
    assert_eq!(duplicate.outcome, Outcome::ApprovalNeeded);
    let duplicate = duplicate.approval_id.unwrap();
    let other = engine.authorize(&req(&finance, pay(8000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
    assert_eq!(engine.pending_approvals().unwrap().len(), 2);

    // The real redemption, once.
    assert_eq!(codes(&engine, &req(&finance, big.clone(), Some(&token))), (Outcome::Allow, vec![ReasonCode::APPROVAL_GRANTED]));
    let still_pending: Vec<String> = engine.pending_approvals().unwrap().into_iter().map(|p| p.approval_id).collect();
    assert_eq!(still_pending, vec![other.clone()]);
    let closed = engine.approval(&duplicate).unwrap().unwrap();
    assert_eq!(closed.status, ApprovalStatus::Superseded);
    assert!(closed.note.unwrap().contains(&approval_id));
    assert_eq!(
        engine.approve(&duplicate, &approver_chain("finance-approver", NOW), None).unwrap_err().code(),
        ErrorCode::ApprovalNotPending
    );
    assert_eq!(
        engine.reject(&other, &approver_chain("finance-approver", NOW), None).unwrap().approval.status,
        ApprovalStatus::Rejected
    );
    assert_eq!(
        codes(&engine, &req(&finance, big.clone(), Some(&token))),
        (Outcome::Deny, vec![ErrorCode::ApprovalReplayed.into()])
    );
    let ledger = engine.ledger(task).unwrap();
    let duties: Vec<(&str, &str)> = ledger.iter().map(|e| (e.agent_id.as_str(), e.tool.as_str())).collect();
    assert_eq!(duties, vec![("finance-approver", "aegis.approve"), ("planner/finance-agent", TOOL)]);

    // Expired token, and a token from another policy version.
    let second = engine.authorize(&req(&finance, pay(7000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
    let token2 = engine.approve(&second, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
    fx.clock.advance_secs(300 + 31);
    assert_eq!(
        codes(&engine, &req(&finance, pay(7000, GOOD_ACCOUNT), Some(&token2))),
        (Outcome::Deny, vec![ErrorCode::ApprovalExpired.into()])
    );
    let third = engine.authorize(&req(&finance, pay(6000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
    let token3 = engine.approve(&third, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
    let original = engine.policy_version();
    let mut sources = engine_sources();
    sources.manifest.push_str("\n# a new version\n");
    engine.swap_bundle(Bundle::from_sources(&sources).unwrap()).unwrap();
    assert_eq!(
        codes(&engine, &req(&finance, pay(6000, GOOD_ACCOUNT), Some(&token3))),
        (Outcome::Deny, vec![ErrorCode::ApprovalPolicyChanged.into()])
    );
    engine.swap_bundle(Bundle::from_dir(payments_dir()).unwrap()).unwrap();
    assert_eq!(engine.policy_version(), original);

    // The approver may not now execute a payment in this task (it performed a duty here).
    let approver_as_executor = chain_in(task, "finance-approver", &approver_key(), &[TOOL], NOW);
    let d = engine.authorize(&req(&approver_as_executor, pay(100, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(d.reasons.iter().any(|r| r.policy_id.as_deref() == Some("approver-does-not-pay")));

    // Draft then pay in one task: refused for the drafter.
    let drafter = chain_in("task-draft", "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);
    let invoice = AuthorizationRequest::new(drafter.clone(), "invoice.create", json!({"customer": "acme", "amount": 900}));
    assert_eq!(engine.authorize(&invoice).unwrap().outcome, Outcome::Allow);
    let d = engine.authorize(&req(&drafter, pay(900, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.reasons[0].policy_id.as_deref()), (Outcome::Deny, Some("drafter-does-not-pay")));

    // Splitting 9000 into 3 x 3000 against the 5000 task budget.
    let splitter = chain_in("task-split", "finance-agent", &fx.finance, &[TOOL], NOW);
    let outcomes: Vec<(Outcome, Vec<ReasonCode>)> =
        (0..3).map(|_| codes(&engine, &req(&splitter, pay(3000, GOOD_ACCOUNT), None))).collect();
    assert_eq!(outcomes[0].0, Outcome::Allow);
    assert_eq!(outcomes[1], (Outcome::ApprovalNeeded, vec![ErrorCode::BudgetExceeded.into()]));
    assert_eq!(outcomes[2], (Outcome::ApprovalNeeded, vec![ErrorCode::BudgetExceeded.into()]));

    // Break-glass: two distinct approvers, lifts only breakable forbids, marks decisions, expires.
    // (It does not lift budgets: this part runs on a bundle with a larger one.)
    let mut roomy = engine_sources();
    roomy.manifest = roomy.manifest.replace("limit: 5000", "limit: 50000");
    engine.swap_bundle(Bundle::from_sources(&roomy).unwrap()).unwrap();
    let now = fx.clock.now_secs();
    let bg = |approvers: Vec<Vec<String>>, reason: &str| {
        let tasks = ["task-emergency", "task-emergency-2", "task-emergency-3"].map(String::from).to_vec();
        BreakGlassRequest::new(vec!["planner/finance-agent".into()], vec![TOOL.into()], tasks, reason, approvers, 600)
    };
    let one = bg(vec![approver_chain("finance-approver", now)], "payroll outage");
    assert_eq!(engine.break_glass(&one).unwrap_err().code(), ErrorCode::BreakGlassRefused);
    let same_twice = bg(vec![approver_chain("finance-approver", now), approver_chain("finance-approver", now)], "payroll outage");
    assert_eq!(engine.break_glass(&same_twice).unwrap_err().code(), ErrorCode::BreakGlassRefused);
    let two = bg(vec![approver_chain("finance-approver", now), approver_chain("cfo", now)], "payroll outage");
    assert_eq!(engine.break_glass(&bg(two.approvers.clone(), " ")).unwrap_err().code(), ErrorCode::BreakGlassRefused);
    let grant = engine.break_glass(&two).unwrap();
    let emergency = chain_in("task-emergency", "finance-agent", &fx.finance, &[TOOL], now);
    let d = engine.authorize(&req(&emergency, pay(4000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.break_glass_id.as_deref()), (Outcome::Allow, Some(grant.id.as_str())));
    let d = engine.authorize(&req(&emergency, pay(900, "not-an-account"), None)).unwrap();
    assert_eq!((d.outcome, d.break_glass_id.as_deref()), (Outcome::Deny, Some(grant.id.as_str())));
    let emergency2 = chain_in("task-emergency-2", "finance-agent", &fx.finance, &[TOOL], now);
    let d = engine.authorize(&req(&emergency2, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.codes()), (Outcome::Allow, vec![ReasonCode::BREAK_GLASS_APPLIED]));
    fx.clock.advance_secs(601);
    let emergency3 = chain_in("task-emergency-3", "finance-agent", &fx.finance, &[TOOL], fx.clock.now_secs());
    let d = engine.authorize(&req(&emergency3, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.break_glass_id), (Outcome::ApprovalNeeded, None));
    assert_eq!(engine.open_break_glass().unwrap().len(), 1, "an expired grant stays listed until reviewed");
    assert_eq!(engine.close_break_glass(&grant.id, "").unwrap_err().code(), ErrorCode::BreakGlassRefused);
    engine.close_break_glass(&grant.id, "PIR-2026-014").unwrap();
    assert!(engine.open_break_glass().unwrap().is_empty());

    // Ending the task revokes its credentials.
    engine.end_task(task).unwrap();
    assert_eq!(codes(&engine, &req(&finance, pay(10, GOOD_ACCOUNT), None)), (Outcome::Deny, vec![ErrorCode::TaskEnded.into()]));
}

#[test]
fn payments_story_on_memory() {
    run_story(Arc::new(MemoryStore::new()));
}

#[test]
fn payments_story_on_sqlite() {
    run_story(sqlite_config().open().unwrap());
}

#[test]
fn payments_story_on_redis() {
    let Some(server) = RedisServer::start() else { return };
    run_story(redis_config(&server).open().unwrap());
}

#[test]
fn a_store_that_goes_down_denies() {
    let Some(mut server) = RedisServer::start() else { return };
    let Story { fx, engine, .. } = story(redis_config(&server).open().unwrap());
    let chain = chain_in("task-down", "finance-agent", &fx.finance, &[TOOL], NOW);
    assert_eq!(engine.authorize(&req(&chain, pay(100, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    server.stop();
    let d = engine.authorize(&req(&chain, pay(100, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::StoreUnavailable.into()]));
}

/// A server restarted under kept connections costs one refused call, not one per connection:
/// the first step that finds its connection dead closes the others.
#[test]
fn a_restarted_redis_server_refuses_one_call_not_one_per_kept_connection() {
    let Some(mut server) = RedisServer::start() else { return };
    let Story { fx, engine, .. } = story(redis_config(&server).open().unwrap());
    // Eight threads deciding at once leave several connections kept.
    std::thread::scope(|s| {
        for t in 0..8 {
            let (engine, fx) = (&engine, &fx);
            s.spawn(move || {
                let chain = chain_in(&format!("task-kept-{t}"), "finance-agent", &fx.finance, &[TOOL], NOW);
                for _ in 0..20 {
                    assert_eq!(engine.authorize(&req(&chain, pay(10, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
                }
            });
        }
    });
    server.restart();
    let chain = chain_in("task-after-restart", "finance-agent", &fx.finance, &[TOOL], NOW);
    let mut refused = 0;
    loop {
        let d = engine.authorize(&req(&chain, pay(10, GOOD_ACCOUNT), None)).unwrap();
        if d.outcome == Outcome::Allow {
            break;
        }
        assert_eq!(d.codes(), vec![ReasonCode::Error(ErrorCode::StoreUnavailable)], "{d:?}");
        refused += 1;
        assert!(refused < 20, "no service after the restart");
    }
    assert!(refused <= 1, "{refused} calls refused after the restart: each kept connection failed a call of its own");
}

// ---------------------------------------------------------------------------------------------
// Races between threads

fn thread_races(store: Arc<dyn Store>) {
    let Story { fx, engine, .. } = story(store);
    let engine = Arc::new(engine);
    let race = |requests: Vec<AuthorizationRequest>| -> usize {
        let handles: Vec<_> = requests
            .into_iter()
            .map(|r| {
                let engine = Arc::clone(&engine);
                std::thread::spawn(move || engine.authorize(&r).unwrap().outcome)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).filter(|o| o.permits_call()).count()
    };
    for round in 0..5 {
        // One override token, eight redeemers.
        let chain = chain_in(&format!("race-token-{round}"), "finance-agent", &fx.finance, &[TOOL], NOW);
        let id = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
        let token = engine.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
        assert_eq!(race(vec![req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token)); 8]), 1, "token round {round}");

        // One proof jti, eight presenters.
        let chain = chain_in(&format!("race-proof-{round}"), "finance-agent", &fx.finance, &[TOOL], NOW);
        let mut r = req(&chain, pay(100, GOOD_ACCOUNT), None);
        r.proof = Some(create_proof(&fx.finance, TOOL, &r.args, &format!("pop-{round}"), NOW, 60).unwrap());
        assert_eq!(race(vec![r; 8]), 1, "proof round {round}");

        // A 5000 budget, sixteen payments of 1000.
        let chain = chain_in(&format!("race-budget-{round}"), "finance-agent", &fx.finance, &[TOOL], NOW);
        assert_eq!(race(vec![req(&chain, pay(1000, GOOD_ACCOUNT), None); 16]), 5, "budget round {round}");
    }
}

#[test]
fn thread_races_on_memory() {
    thread_races(Arc::new(MemoryStore::new()));
}

#[test]
fn thread_races_on_sqlite() {
    thread_races(sqlite_config().open().unwrap());
}

#[test]
fn thread_races_on_redis() {
    let Some(server) = RedisServer::start() else { return };
    thread_races(redis_config(&server).open().unwrap());
}

#[test]
fn redis_replica_acknowledgement_fails_closed_when_no_replica_answers() {
    let Some(server) = RedisServer::start() else { return };
    // A lone server has no replica to acknowledge a commit: the step fails, the call is denied.
    let store = RedisStore::open_with_prefix(&server.url(), "wait").unwrap().wait_for_replicas(1, 50);
    let Story { fx, engine, .. } = story(Arc::new(store));
    let chain = chain_in("task-wait", "finance-agent", &fx.finance, &[TOOL], NOW);
    let d = engine.authorize(&req(&chain, pay(100, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::StoreUnavailable.into()]));
}

#[test]
fn a_budget_can_ask_for_approval_instead_of_denying() {
    let fx = Fixture::new();
    let mut sources = aegis_sod::BundleSources {
        // The manifest as loaded: the matrix's budget merged in.
        manifest: engine_sources().manifest.replace("on_exceed: deny", "on_exceed: approval"),
        ..engine_sources()
    };
    sources.manifest.push('\n');
    let engine = Engine::builder()
        .bundle(Bundle::from_sources(&sources).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .clock(fx.clock.clone())
        .build()
        .unwrap();
    let chain = chain_in("task-budget-approval", "finance-agent", &fx.finance, &[TOOL], NOW);
    assert_eq!(engine.authorize(&req(&chain, pay(3000, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let d = engine.authorize(&req(&chain, pay(3000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.codes()), (Outcome::ApprovalNeeded, vec![ErrorCode::BudgetExceeded.into()]));
    let pending = engine.approval(d.approval_id.as_deref().unwrap()).unwrap().unwrap();
    assert_eq!(pending.roles, vec!["budget-approver"]);
    let token = engine.approve(&pending.approval_id, &approver_chain("finance-approver", NOW), None).unwrap();
    // The bundle's approval policy only lets the finance approver answer payment approvals.
    let token = token.override_token.unwrap();
    assert_eq!(engine.authorize(&req(&chain, pay(3000, GOOD_ACCOUNT), Some(&token))).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.authorize(&req(&chain, pay(3000, GOOD_ACCOUNT), None)).unwrap().codes(), vec![ErrorCode::BudgetExceeded]);
}

/// A database made before budgets kept running totals: opening it fills them from the rows,
/// so nothing already spent is forgotten; then windows slide as on a new one.
#[test]
fn sqlite_budget_totals_are_filled_for_an_older_database() {
    let path = temp_path("older.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE spend (key TEXT NOT NULL, at INTEGER NOT NULL, amount INTEGER NOT NULL);
             INSERT INTO spend VALUES ('payments/task/t1', 1767225000, 1000), ('payments/task/t1', 1767225500, 2500),
                                      ('payments/task/t2', 1767225500, 7);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.budget_spent("payments/task/t1", NOW - 86_400).unwrap(), 3500);
    assert_eq!(store.budget_spent("payments/task/t1", 1_767_225_400).unwrap(), 2500);
    assert_eq!(store.budget_spent("payments/task/t2", NOW - 86_400).unwrap(), 7);
    // A commit whose window starts after the first row drops it; the total follows.
    let mut c = commit("t1", 0, &[], vec![budget(100, true)], "d1");
    c.reservations[0].window_start = 1_767_225_400;
    assert_eq!(store.commit(c).unwrap(), CommitOutcome::Committed);
    assert_eq!(store.budget_spent("payments/task/t1", 1_767_225_400).unwrap(), 2600);
    assert_eq!(store.budget_spent("payments/task/t1", NOW - 86_400).unwrap(), 2600, "the dropped row is gone for good");
    drop(store);
    // Opened again, nothing is counted twice.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.budget_spent("payments/task/t1", 1_767_225_400).unwrap(), 2600);
}

/// Budget totals stay exact when a process of another version (which knows nothing of them)
/// writes the same store: on SQLite triggers keep them, on Redis a count that disagrees with
/// the reservations recomputes them.
#[test]
fn budget_totals_hold_when_another_version_writes() {
    const KEY: &str = "payments/task/t1";
    let path = temp_path("mixed.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.commit(commit("t1", 0, &[], vec![budget(100, true)], "d1")).unwrap(), CommitOutcome::Committed);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute("INSERT INTO spend (key, at, amount) VALUES (?1, ?2, 250)", rusqlite::params![KEY, NOW]).unwrap();
    assert_eq!(store.budget_spent(KEY, NOW - 86_400).unwrap(), 350);
    other.execute("DELETE FROM spend WHERE key = ?1 AND amount = 100", [KEY]).unwrap();
    assert_eq!(store.budget_spent(KEY, NOW - 86_400).unwrap(), 250);

    let Some(server) = RedisServer::start() else { return };
    let store = RedisStore::open_with_prefix(&server.url(), "mixed").unwrap();
    assert_eq!(store.commit(commit("t1", 0, &[], vec![budget(100, true)], "d1")).unwrap(), CommitOutcome::Committed);
    assert_eq!(store.budget_spent(KEY, NOW - 86_400).unwrap(), 100);
    let mut conn = ::redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let zset = format!("mixed:{{budget:{KEY}}}:spend");
    let _: i64 = ::redis::cmd("ZADD").arg(&zset).arg(NOW).arg("250:legacy:0").query(&mut conn).unwrap();
    assert_eq!(store.budget_spent(KEY, NOW - 86_400).unwrap(), 350);
    let members: Vec<String> = ::redis::cmd("ZRANGE").arg(&zset).arg(0).arg(-1).query(&mut conn).unwrap();
    let mine = members.iter().find(|m| m.starts_with("100:")).unwrap();
    let _: i64 = ::redis::cmd("ZREM").arg(&zset).arg(mine).query(&mut conn).unwrap();
    assert_eq!(store.budget_spent(KEY, NOW - 86_400).unwrap(), 250);
    // Totals past i64 saturate instead of wrapping.
    let _: i64 = ::redis::cmd("ZADD").arg(&zset).arg(NOW).arg("9223372036854775807:huge:0").query(&mut conn).unwrap();
    let _: i64 = ::redis::cmd("ZADD").arg(&zset).arg(NOW).arg("9223372036854775807:huge:1").query(&mut conn).unwrap();
    assert_eq!(store.budget_spent(KEY, NOW - 86_400).unwrap(), i64::MAX);
}

// ---------------------------------------------------------------------------------------------
// Redis: decisions on this process's view of a task, one round trip in steady state

/// Two hosts (two stores on one Redis server, or two processes' stores on one SQLite file)
/// deciding in the same tasks: each engine decides on what it last read of a task, and whatever
/// the other changed (a commit, the task's end, a break-glass grant opened or closed) is never
/// missed: a stale allow does not commit, a stale deny or approval is decided again.
fn hosts_deciding_on_their_views_never_act_on_a_stale_one(config: aegis_sod::json_api::StoreConfig) {
    let fx = Fixture::new();
    let mut roomy = engine_sources();
    roomy.manifest = roomy.manifest.replace("limit: 5000", "limit: 50000");
    let host = || fx.builder_on(config.open().unwrap()).bundle(Bundle::from_sources(&roomy).unwrap()).build().unwrap();
    let (a, b) = (host(), host());

    // Commits on the other host: host A's next commit conflicts, and it decides again.
    let task = "task-two-hosts";
    let finance = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
    let second = chain_in(task, "finance-agent-2", &key(8), &[TOOL], NOW);
    assert_eq!(codes(&a, &req(&finance, pay(10, GOOD_ACCOUNT), None)).0, Outcome::Allow);
    assert_eq!(codes(&b, &req(&second, pay(10, GOOD_ACCOUNT), None)).0, Outcome::Allow);
    assert_eq!(codes(&b, &req(&second, pay(10, GOOD_ACCOUNT), None)).0, Outcome::Allow);
    assert_eq!(codes(&a, &req(&finance, pay(10, GOOD_ACCOUNT), None)).0, Outcome::Allow);
    assert_eq!(a.ledger(task).unwrap().len(), 4);
    assert_eq!(b.ledger(task).unwrap().len(), 4);

    // The task ended on the other host: no allow, and no approval asked for.
    // (The call that would need an approval first, while A's view still has the task open.)
    b.end_task(task).unwrap();
    assert_eq!(codes(&a, &req(&finance, pay(9000, GOOD_ACCOUNT), None)), (Outcome::Deny, vec![ErrorCode::TaskEnded.into()]));
    assert!(a.pending_approvals().unwrap().is_empty());
    assert_eq!(codes(&a, &req(&finance, pay(10, GOOD_ACCOUNT), None)), (Outcome::Deny, vec![ErrorCode::TaskEnded.into()]));

    // A grant opened on the other host lifts host A's next call, though A last saw the task
    // without it; closed there, it lifts nothing more on A, though A last saw it open.
    let emergency = "task-two-hosts-emergency";
    let agent = chain_in(emergency, "finance-agent", &fx.finance, &[TOOL], NOW);
    assert_eq!(codes(&a, &req(&agent, pay(10, GOOD_ACCOUNT), None)).0, Outcome::Allow);
    let approvers = vec![approver_chain("finance-approver", NOW), approver_chain("cfo", NOW)];
    let grant = b
        .break_glass(&BreakGlassRequest::new(
            vec!["planner/finance-agent".into()],
            vec![TOOL.into()],
            vec![emergency.into()],
            "payroll outage",
            approvers,
            600,
        ))
        .unwrap();
    let d = a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.break_glass_id.as_deref()), (Outcome::Allow, Some(grant.id.as_str())));
    b.close_break_glass(&grant.id, "PIR-2026-015").unwrap();
    let d = a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.break_glass_id), (Outcome::ApprovalNeeded, None));
    assert_eq!(a.ledger(emergency).unwrap().len(), 2, "the call after the close did not commit");
}

#[test]
fn redis_hosts_deciding_on_their_views_never_act_on_a_stale_one() {
    let Some(server) = RedisServer::start() else { return };
    hosts_deciding_on_their_views_never_act_on_a_stale_one(redis_config(&server));
}

#[test]
fn sqlite_processes_deciding_on_their_views_never_act_on_a_stale_one() {
    hosts_deciding_on_their_views_never_act_on_a_stale_one(sqlite_config());
}

/// Counts the commands clients send to `server` while `work` runs (`MONITOR`; the commands a
/// script runs are shown as `lua` and not counted, nor the stores' periodic `CONFIG GET`).
fn commands_sent(server: &RedisServer, work: impl FnOnce()) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut monitor = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let mut reader = BufReader::new(monitor.try_clone().unwrap());
    let mut ok = String::new();
    reader.read_line(&mut ok).unwrap();
    assert_eq!(ok.trim(), "+OK");
    work();
    // A marker, sent last, ends the capture.
    let mut marker = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    marker.write_all(b"ECHO end-of-capture\r\n").unwrap();
    let mut sent = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if line.contains("end-of-capture") {
            break;
        }
        if !line.contains(" lua]") && !line.contains("\"CONFIG\"") {
            sent.push(line);
        }
    }
    sent
}

/// In steady state a decision costs one round trip: the commit script. A bundle's budgets add
/// their own (each lives in its own slot: a read of what it has spent and a reservation).
#[test]
fn redis_steady_state_decision_is_one_round_trip() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let (_, sent) = warm_calls_sent(&server, &fx, &["budgets", "batches"], "task-round-trips");
    assert_eq!(sent.len(), 50, "{sent:#?}");
    assert!(sent.iter().all(|c| c.contains("\"EVALSHA\"")), "{sent:#?}");
}

/// An engine on `server` with the payments bundle less its manifest sections `without`, and
/// the commands 50 warm allowed calls in `task` sent.
fn warm_calls_sent(server: &RedisServer, fx: &Fixture, without: &[&str], task: &str) -> (Engine, Vec<String>) {
    let mut sources = engine_sources();
    for section in without {
        sources.manifest = without_section(&sources.manifest, section);
    }
    let engine =
        fx.builder_on(redis_config(server).open().unwrap()).bundle(Bundle::from_sources(&sources).unwrap()).build().unwrap();
    let finance = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
    let call = req(&finance, pay(1, GOOD_ACCOUNT), None);
    assert_eq!(codes(&engine, &call).0, Outcome::Allow);
    let sent = commands_sent(server, || {
        for _ in 0..50 {
            assert_eq!(codes(&engine, &call).0, Outcome::Allow);
        }
    });
    (engine, sent)
}

/// Under a budget (the payments bundle's task budget), a call within it is still one round
/// trip: the commit script reserves the budget (checking the limit, so nothing is read first)
/// and commits the task. A call over it is decided again with the budget read, and asks for an
/// approval.
#[test]
fn redis_decision_under_a_budget_is_one_round_trip() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let (engine, sent) = warm_calls_sent(&server, &fx, &["batches"], "task-budget-round-trips");
    assert_eq!(sent.len(), 50, "{sent:#?}");
    assert!(sent.iter().all(|c| c.contains("\"EVALSHA\"")), "{sent:#?}");
    let finance = chain_in("task-budget-round-trips", "finance-agent", &fx.finance, &[TOOL], NOW);
    // Over the budget (5000 a day): an approval is asked for, naming the budget.
    let over = engine.authorize(&req(&finance, pay(4990, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(over.outcome, Outcome::ApprovalNeeded, "{over:?}");
    assert_eq!(over.codes(), vec![ReasonCode::Error(ErrorCode::BudgetExceeded)], "{over:?}");
    assert_eq!(engine.ledger("task-budget-round-trips").unwrap().len(), 51, "the refused reservation committed nothing");
}

// ---------------------------------------------------------------------------------------------
// Redis: attacks on deciding from a view of the task (from an independent review)
//
// Each test is named for the attack it tries. A host is an engine on its own `RedisStore` under
// a shared prefix on one server (its own connections and its own views of tasks); `review_raw`
// is a plain connection for what another program does to the keys (a process of an older
// version, a failover).

/// A host on `server` under `prefix`: the payments bundle with its task budget set to `limit`.
fn review_host(fx: &Fixture, server: &RedisServer, prefix: &str, limit: i64) -> Engine {
    review_builder(fx, server, prefix, limit).build().unwrap()
}

fn review_builder(fx: &Fixture, server: &RedisServer, prefix: &str, limit: i64) -> aegis_sod::EngineBuilder {
    let mut sources = engine_sources();
    sources.manifest = sources.manifest.replace("limit: 5000", &format!("limit: {limit}"));
    let store = Arc::new(RedisStore::open_with_prefix(&server.url(), prefix).unwrap());
    fx.builder_on(store).bundle(Bundle::from_sources(&sources).unwrap())
}

fn review_raw(server: &RedisServer) -> ::redis::Connection {
    ::redis::Client::open(server.url()).unwrap().get_connection().unwrap()
}

/// Break-glass for `planner/finance-agent` paying in `tasks`, opened by two approvers.
fn review_grant_request(tasks: &[&str], now: i64) -> BreakGlassRequest {
    BreakGlassRequest::new(
        vec!["planner/finance-agent".into()],
        vec![TOOL.into()],
        tasks.iter().map(|t| (*t).to_owned()).collect(),
        "payroll outage",
        vec![approver_chain("finance-approver", now), approver_chain("cfo", now)],
        600,
    )
}

fn review_draft(chain: &[String]) -> AuthorizationRequest {
    AuthorizationRequest::new(chain.to_vec(), "invoice.create", json!({"customer": "acme", "amount": 900}))
}

/// Runs each request on its own thread, on the host beside it, all released together; returns
/// the decisions.
fn review_race(requests: Vec<(Arc<Engine>, AuthorizationRequest)>) -> Vec<aegis_sod::Decision> {
    let barrier = Arc::new(std::sync::Barrier::new(requests.len()));
    let handles: Vec<_> = requests
        .into_iter()
        .map(|(engine, r)| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                engine.authorize(&r).unwrap()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Attack: close a break-glass grant from a process of the previous version (a host not yet
/// upgraded in a rolling upgrade, or an older `aegis` CLI pointed at the same Redis). That
/// version closes the grant in the `{grants}` hash only, with its CLOSE_GRANT script (verbatim
/// below, from f4284d3), and does not move the task's version. Held: decisions read grants from
/// that hash, and a view that holds a grant is never kept, so a call under a grant reads afresh.
/// (A first version of the views read per-task copies of grants and failed this.)
#[test]
fn redis_grant_closed_by_an_older_version_stops_lifting_forbids() {
    const OLD_CLOSE_GRANT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local grant = cjson.decode(current)
if grant['closed_at'] ~= nil and grant['closed_at'] ~= cjson.null then return 0 end
grant['closed_at'] = tonumber(ARGV[3])
grant['review_ref'] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(grant))
return 1
";
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-old-close";
    let a = review_host(&fx, &server, prefix, 1_000_000);
    let task = "task-old-close";
    let agent = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
    let grant = a.break_glass(&review_grant_request(&[task], NOW)).unwrap();
    let d = a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.break_glass_id.as_deref()), (Outcome::Allow, Some(grant.id.as_str())));

    // The older process closes the grant, as it always did.
    let closed: i64 = ::redis::Script::new(OLD_CLOSE_GRANT)
        .key(format!("{prefix}:{{grants}}"))
        .arg(&grant.id)
        .arg("PIR-2026-016")
        .arg(NOW + 5)
        .invoke(&mut review_raw(&server))
        .unwrap();
    assert_eq!(closed, 1);
    assert!(a.open_break_glass().unwrap().is_empty(), "the grant is listed as closed");

    // Neither the host that decided under it nor a host that reads the task afresh lifts
    // anything with it any more.
    let fresh = review_host(&fx, &server, prefix, 1_000_000);
    let decided: Vec<(&str, Outcome, Option<String>)> = [(&a, "the host holding a view"), (&fresh, "a host reading afresh")]
        .into_iter()
        .map(|(host, name)| {
            let d = host.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
            (name, d.outcome, d.break_glass_id)
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            ("the host holding a view", Outcome::ApprovalNeeded, None),
            ("a host reading afresh", Outcome::ApprovalNeeded, None)
        ],
        "a closed grant still lifts forbids"
    );
    assert_eq!(a.ledger(task).unwrap().len(), 1);
}

/// Attack: a failover that loses a task's last write (the promoted replica never received it:
/// an asynchronous replica, or a write `WAIT` did not see acknowledged), simulated by putting
/// the task's keys back as they were before that write (here: none). The task's version then
/// counts up again from the older state, so one version number names two different states: a
/// host still holding its view of the lost one finds its version equal to the store's and
/// commits on duties it never saw. Reading the task on every decision, this took a failover
/// inside one decision's read-to-commit window; a view lives until this process sees the task
/// change or evicts it. Held: every change writes a random revision beside the version, and a
/// commit names the revision its decision read. (A first version of the views checked the
/// version alone and let the drafter pay.)
#[test]
fn redis_write_lost_in_a_failover_lets_a_stale_view_break_segregation_of_duties() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-failover";
    let (a, b) = (review_host(&fx, &server, prefix, 1_000_000), review_host(&fx, &server, prefix, 1_000_000));
    let task = "task-failover";
    let agent = chain_in(task, "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);

    // Host A pays: its view of the task is version 1, where the agent has only paid.
    assert_eq!(a.authorize(&req(&agent, pay(10, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    // The failover: the promoted replica never received that commit.
    let mut raw = review_raw(&server);
    for suffix in ["task", "ledger", "duties"] {
        let _: i64 = ::redis::cmd("DEL").arg(format!("{prefix}:{{{task}}}:{suffix}")).query(&mut raw).unwrap();
    }
    // Host B: the same agent drafts the invoice; the task is at version 1 again.
    assert_eq!(b.authorize(&review_draft(&agent)).unwrap().outcome, Outcome::Allow);

    // A host reading the task afresh refuses the payment: the drafter does not pay.
    let fresh = review_host(&fx, &server, prefix, 1_000_000);
    let d = fresh.authorize(&req(&agent, pay(10, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.reasons[0].policy_id.as_deref()), (Outcome::Deny, Some("drafter-does-not-pay")));
    // Host A, holding its view of the lost version 1, must refuse it too.
    let d = a.authorize(&req(&agent, pay(10, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(
        (d.outcome, d.reasons.first().and_then(|r| r.policy_id.as_deref())),
        (Outcome::Deny, Some("drafter-does-not-pay")),
        "a stale view committed: {:?}",
        b.ledger(task).unwrap()
    );
    assert_eq!(b.ledger(task).unwrap().len(), 1);
}

/// The other side of a lost write: a view that holds a duty the store lost would deny the
/// agent's payment forever (the version matches again once another write lands). A deny is
/// confirmed against the store's revision too, so the stale view is dropped and the call decided
/// on what the store holds.
#[test]
fn redis_write_lost_in_a_failover_does_not_leave_a_stale_view_denying() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-failover-deny";
    let (a, b) = (review_host(&fx, &server, prefix, 1_000_000), review_host(&fx, &server, prefix, 1_000_000));
    let task = "task-failover-deny";
    let agent = chain_in(task, "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);
    let other = chain_in(task, "finance-agent-2", &key(8), &[TOOL], NOW);

    // Host A: the agent drafts the invoice; A's view holds that duty.
    assert_eq!(a.authorize(&review_draft(&agent)).unwrap().outcome, Outcome::Allow);
    // The failover loses the draft; another agent's payment brings the task to version 1 again.
    let mut raw = review_raw(&server);
    for suffix in ["task", "ledger", "duties"] {
        let _: i64 = ::redis::cmd("DEL").arg(format!("{prefix}:{{{task}}}:{suffix}")).query(&mut raw).unwrap();
    }
    assert_eq!(b.authorize(&req(&other, pay(10, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    // In the store the agent drafted nothing: its payment runs, on host A too.
    let d = a.authorize(&req(&agent, pay(10, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(d.outcome, Outcome::Allow, "{:?}", d.reasons);
    assert_eq!(b.ledger(task).unwrap().len(), 2);
}

/// Attack: slow the store down (a paused server) so the breaker opens, then rely on the probe
/// after the cool-down being answered from a view without a round trip, closing the breaker so
/// that every call in flight waits out the store's timeout again. The probe must reach the
/// store; while it does, the other calls are refused at once. (The views live in the engine,
/// above the breaker; a first version kept them in the store, behind it, and a hit closed it.)
#[test]
fn redis_breaker_probe_is_not_answered_by_a_view_of_the_task() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let engine = Arc::new(review_host(&fx, &server, "review-breaker", 1_000_000));
    let chains: Vec<Vec<String>> =
        (0..3).map(|i| chain_in(&format!("task-breaker-{i}"), "finance-agent", &fx.finance, &[TOOL], NOW)).collect();
    for chain in &chains {
        assert_eq!(engine.authorize(&req(chain, pay(1, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    }
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill").args([sig, &server.pid().to_string()]).status().unwrap().success())
    };
    let unavailable = (Outcome::Deny, vec![ReasonCode::Error(ErrorCode::StoreUnavailable)]);
    signal("-STOP");
    // A slow failure opens the breaker.
    assert_eq!(codes(&engine, &req(&chains[0], pay(1, GOOD_ACCOUNT), None)), unavailable);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // The cool-down is over: one call probes the store (and waits out its timeout)...
    let probe = {
        let (engine, chain) = (Arc::clone(&engine), chains[1].clone());
        std::thread::spawn(move || codes(&engine, &req(&chain, pay(1, GOOD_ACCOUNT), None)))
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    // ...and meanwhile the others are refused without waiting.
    let started = std::time::Instant::now();
    let during = codes(&engine, &req(&chains[2], pay(1, GOOD_ACCOUNT), None));
    let took = started.elapsed();
    // The probe fails once the store's timeout passes (the server resumed sooner would answer it).
    let probed = probe.join().unwrap();
    signal("-CONT");
    assert_eq!(probed, unavailable);
    assert_eq!(during, unavailable);
    assert!(took < std::time::Duration::from_millis(500), "a call made during the probe waited {took:?}");
}

/// Attack: race a host's own threads (a decision filling its view while another thread's commit
/// moves it) and another host, to pay with an agent that drafted the invoice. Threads of host A
/// pay and draft for one agent while a second agent's payments keep moving the task, and host B
/// drafts for the agent too. Whatever the interleaving, the ledger never shows the agent paying
/// after it drafted (`drafter-does-not-pay`).
#[test]
fn redis_view_fills_racing_commits_never_let_a_drafter_pay() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-sod-race";
    let (a, b) = (Arc::new(review_host(&fx, &server, prefix, 1_000_000)), Arc::new(review_host(&fx, &server, prefix, 1_000_000)));
    let mut drafts = 0;
    for round in 0..10 {
        let task = format!("task-sod-race-{round}");
        let agent = chain_in(&task, "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);
        let other = chain_in(&task, "finance-agent-2", &key(8), &[TOOL], NOW);
        // Both hosts hold a view of the task.
        for host in [&a, &b] {
            assert_eq!(host.authorize(&req(&other, pay(1, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
        }
        let mut requests = Vec::new();
        for i in 0..4 {
            requests.push((Arc::clone(&a), req(&agent, pay(1 + i, GOOD_ACCOUNT), None)));
            requests.push((Arc::clone(&a), req(&other, pay(1 + i, GOOD_ACCOUNT), None)));
        }
        for host in [&a, &a, &b, &b] {
            requests.push((Arc::clone(host), review_draft(&agent)));
        }
        let decisions = review_race(requests);
        assert!(decisions.iter().all(|d| d.outcome != Outcome::ApprovalNeeded), "{decisions:?}");
        let mut drafted = false;
        for e in a.ledger(&task).unwrap() {
            if e.agent_id == "planner/finance-agent" {
                assert!(!(drafted && e.tool == TOOL), "round {round}: the drafter paid: {:?}", a.ledger(&task).unwrap());
                drafted |= e.tool == "invoice.create";
                drafts += usize::from(e.tool == "invoice.create");
            }
        }
        assert!(drafted, "round {round}: no draft committed");
    }
    assert!(drafts >= 10);
}

/// Attack: redeem one approval token, and overspend the task budget, from two hosts whose views
/// of the task are stale (the approver's commit, and the other host's commits, moved it since).
/// The token allows one call of eight; sixteen payments of 1000 against the 5000 budget allow
/// five, in every round.
#[test]
fn redis_stale_views_on_two_hosts_never_double_spend_a_token_or_a_budget() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-spend";
    let (a, b) = (Arc::new(review_host(&fx, &server, prefix, 5000)), Arc::new(review_host(&fx, &server, prefix, 5000)));
    let allowed = |decisions: Vec<aegis_sod::Decision>| decisions.iter().filter(|d| d.outcome.permits_call()).count();
    for round in 0..3 {
        // Each host holds a view; A's is stale once B has drafted too.
        let warm = |task: &str| {
            let drafter = chain_in(task, "finance-agent-2", &key(8), &["invoice.create"], NOW);
            for host in [&a, &b] {
                assert_eq!(host.authorize(&review_draft(&drafter)).unwrap().outcome, Outcome::Allow);
            }
        };
        let task = format!("task-spend-token-{round}");
        let chain = chain_in(&task, "finance-agent", &fx.finance, &[TOOL], NOW);
        warm(&task);
        let id = a.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
        let token = b.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
        let redeemers =
            (0..8).map(|i| (Arc::clone(if i % 2 == 0 { &a } else { &b }), req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token))));
        assert_eq!(allowed(review_race(redeemers.collect())), 1, "token round {round}");

        let task = format!("task-spend-budget-{round}");
        let chain = chain_in(&task, "finance-agent", &fx.finance, &[TOOL], NOW);
        warm(&task);
        let payers = (0..16).map(|i| (Arc::clone(if i % 2 == 0 { &a } else { &b }), req(&chain, pay(1000, GOOD_ACCOUNT), None)));
        assert_eq!(allowed(review_race(payers.collect())), 5, "budget round {round}");
    }
}

/// Attack: keep calling under a break-glass grant on host A (its threads deciding on views that
/// still hold the grant) while host B closes it. Once the close returns nothing more commits in
/// the task (every call asked for needs the grant), and what was allowed before was allowed
/// under that grant.
#[test]
fn redis_grant_closed_on_another_host_lifts_nothing_once_the_close_returns() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-close-race";
    let (a, b) = (Arc::new(review_host(&fx, &server, prefix, 1_000_000_000)), review_host(&fx, &server, prefix, 1_000_000_000));
    for round in 0..3 {
        let task = format!("task-close-race-{round}");
        let agent = chain_in(&task, "finance-agent", &fx.finance, &[TOOL], NOW);
        let grant = b.break_glass(&review_grant_request(&[task.as_str()], NOW)).unwrap();
        let d = a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
        assert_eq!((d.outcome, d.break_glass_id.as_deref()), (Outcome::Allow, Some(grant.id.as_str())));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (a, agent, stop) = (Arc::clone(&a), agent.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut decisions = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        decisions.push(a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap());
                    }
                    decisions
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        b.close_break_glass(&grant.id, "PIR-2026-017").unwrap();
        let at_close = b.ledger(&task).unwrap().len();
        std::thread::sleep(std::time::Duration::from_millis(150));
        stop.store(true, Ordering::SeqCst);
        let decisions: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_eq!(b.ledger(&task).unwrap().len(), at_close, "round {round}: a call committed after the close returned");
        for d in decisions.iter().filter(|d| d.outcome.permits_call()) {
            assert_eq!(d.break_glass_id.as_deref(), Some(grant.id.as_str()));
        }
        let d = a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
        assert_eq!((d.outcome, d.break_glass_id), (Outcome::ApprovalNeeded, None));
    }
}

/// Attack: take the server away from a host holding views of its tasks, hoping a view answers
/// without a round trip. No call is allowed (an allow needs its commit) and no human is asked
/// (a deny or an approval needs the task's version): a plain payment, one that needs an
/// approval, one a grant lifts, and one a duty forbids are all denied `store_unavailable`.
#[test]
fn redis_views_with_the_server_down_allow_nothing_and_ask_no_one() {
    let Some(mut server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let asked = Arc::new(Mutex::new(Vec::<PendingApproval>::new()));
    let sink = Arc::clone(&asked);
    let engine = review_builder(&fx, &server, "review-down", 1_000_000)
        .notifier(Arc::new(move |p: &PendingApproval| sink.lock().unwrap().push(p.clone())))
        .build()
        .unwrap();
    let chain = |task: &str| chain_in(task, "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);
    let (plain, big, lifted, drafter) = (chain("task-down-1"), chain("task-down-2"), chain("task-down-3"), chain("task-down-4"));
    engine.break_glass(&review_grant_request(&["task-down-3"], NOW)).unwrap();
    for c in [&plain, &big, &lifted] {
        assert_eq!(engine.authorize(&req(c, pay(10, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    }
    assert_eq!(engine.authorize(&review_draft(&drafter)).unwrap().outcome, Outcome::Allow);
    // What each would get with the server up, from its view.
    assert_eq!(engine.authorize(&req(&big, pay(9000, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::ApprovalNeeded);
    assert_eq!(engine.authorize(&req(&drafter, pay(10, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Deny);
    let asked_before = asked.lock().unwrap().len();
    server.stop();
    let unavailable = (Outcome::Deny, vec![ReasonCode::Error(ErrorCode::StoreUnavailable)]);
    for (c, amount) in [(&plain, 10), (&big, 9000), (&lifted, 9000), (&drafter, 10)] {
        assert_eq!(codes(&engine, &req(c, pay(amount, GOOD_ACCOUNT), None)), unavailable, "a payment of {amount}");
    }
    assert_eq!(asked.lock().unwrap().len(), asked_before, "no approval was asked for");
}

/// Attack: in log-only mode (every call the policies refuse runs, and commits), call on a view
/// that still has the task open after another host ended it. The commit checks the end: denied
/// `task_ended`, nothing committed.
#[test]
fn redis_log_only_mode_on_a_stale_view_never_runs_a_call_in_an_ended_task() {
    let Some(server) = RedisServer::start() else { return };
    let fx = Fixture::new();
    let prefix = "review-log-only";
    let (a, b) = (review_host(&fx, &server, prefix, 1_000_000), review_host(&fx, &server, prefix, 1_000_000));
    // Two administrators switch host A to log-only.
    let admin = |name: &str| {
        let k = person_key(name);
        let mut spec = spec_in("admins", name, &k, &[aegis_sod::ADMIN_SCOPE], NOW - 60, 3000);
        spec.jti = format!("cred-{name}");
        (vec![aegis_sod::issue_root(ISSUER, &key(1), spec).unwrap()], k)
    };
    let action = aegis_sod::AdminAction::SetMode { mode: aegis_sod::Mode::Shadow };
    let version = a.policy_version();
    let sign = |who: &(Vec<String>, aegis_sod::KeyPair), jti: &str| aegis_sod::AdminSignature {
        chain: who.0.clone(),
        proof: aegis_sod::admin_proof(&who.1, &action, &version, jti, NOW, 120).unwrap(),
    };
    let (alice, bob) = (admin("alice"), admin("bob"));
    a.admin(&aegis_sod::AdminRequest {
        requested_by: sign(&alice, "adm-1"),
        approved_by: sign(&bob, "adm-2"),
        policy_version: version.clone(),
        action: action.clone(),
    })
    .unwrap();

    let task = "task-log-only";
    let agent = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
    let d = a.authorize(&req(&agent, pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert!(d.would_block && d.outcome.permits_call(), "log-only lets the refused call run: {d:?}");
    b.end_task(task).unwrap();
    for amount in [9000, 10] {
        assert_eq!(
            codes(&a, &req(&agent, pay(amount, GOOD_ACCOUNT), None)),
            (Outcome::Deny, vec![ErrorCode::TaskEnded.into()]),
            "a payment of {amount}"
        );
    }
    assert_eq!(a.ledger(task).unwrap().len(), 1);
}

/// Every step the Redis store takes keeps to one hash slot (each script's keys, each
/// transaction's), as a Redis Cluster requires: the payments story, the thread races and the
/// views of tasks run against a server in cluster mode that owns every slot, reached as a
/// single server, which refuses any script or transaction spanning two slots (`CROSSSLOT`).
/// The one-script commit (a single server's) is refused there unrun, and the store falls back
/// to its separate steps without failing the call.
#[test]
fn redis_store_keeps_every_step_in_one_cluster_slot() {
    let config_file = temp_path("nodes.conf");
    let Some(server) =
        RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-config-file", config_file.to_str().unwrap()])
    else {
        return;
    };
    let mut conn = ::redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let _: String = ::redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383).query(&mut conn).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info: String = ::redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the one-node cluster did not come up: {info}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The server refuses what a cluster refuses: a script whose keys span two slots.
    let crossing: ::redis::RedisResult<Option<String>> =
        ::redis::Script::new("return redis.call('GET', KEYS[1])").key("a{1}").key("a{2}").invoke(&mut conn);
    let refused = crossing.unwrap_err().to_string();
    assert!(refused.contains("CrossSlot") || refused.contains("CROSSSLOT"), "{refused}");

    run_story(redis_config(&server).open().unwrap());
    thread_races(redis_config(&server).open().unwrap());
    hosts_deciding_on_their_views_never_act_on_a_stale_one(redis_config(&server));
    // The one-script commit spans the task's slot and the budget's: the node refuses it unrun,
    // and the store commits in separate steps from then on (the reservation, then the commit).
    // `MONITOR` does not show a refused command; the server's error counts do: one refusal,
    // the new store's first commit, and none after it.
    let cross_slot_refusals = |conn: &mut ::redis::Connection| -> u64 {
        let info: String = ::redis::cmd("INFO").arg("errorstats").query(conn).unwrap();
        info.lines().find_map(|l| l.strip_prefix("errorstat_CROSSSLOT:count=")).map_or(0, |n| n.trim().parse().unwrap())
    };
    let refused_before = cross_slot_refusals(&mut conn);
    let fx = Fixture::new();
    let (_, sent) = warm_calls_sent(&server, &fx, &["batches"], "split-steps");
    assert_eq!(sent.len(), 100, "{sent:#?}");
    assert!(sent.iter().all(|c| c.contains("\"EVALSHA\"")), "{sent:#?}");
    assert_eq!(cross_slot_refusals(&mut conn), refused_before + 1);
}

/// The Redis store on a Redis Cluster of three nodes: the conformance suite, the payments story,
/// the thread races and the hosts deciding on their views, with tasks spread over the nodes.
/// Then a task's slot moves to another node mid-task (a resharding): the cluster client follows
/// the redirections, and the task's state moved with it: the drafter still may not pay, the
/// used proof stays used, and the task's version still refuses a stale commit.
#[test]
fn redis_cluster_of_three_nodes_decides_and_follows_a_resharding() {
    let Some(mut cluster) = redis_cluster::RedisCluster::start(3) else { return };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let config = || aegis_sod::json_api::StoreConfig::RedisCluster {
        nodes: cluster.urls(),
        prefix: Some(format!("c{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))),
    };
    conformance(&*config().open().unwrap());
    run_story(config().open().unwrap());
    thread_races(config().open().unwrap());
    hosts_deciding_on_their_views_never_act_on_a_stale_one(config());
    let holding: Vec<i64> = (0..3).map(|i| ::redis::cmd("DBSIZE").query(&mut cluster.connection(i)).unwrap()).collect();
    assert!(holding.iter().filter(|&&keys| keys > 0).count() >= 2, "the tasks' keys all landed on one node: {holding:?}");

    // The URL form opens the same store.
    let url = format!(
        "redis+cluster://{}",
        cluster.urls().iter().map(|u| u.trim_start_matches("redis://")).collect::<Vec<_>>().join(",")
    );
    let store = aegis_sod::json_api::StoreConfig::from_url(&url).unwrap().open().unwrap();
    // So does the object form the bindings build for a key prefix, and a bad list is refused.
    let prefixed = aegis_sod::json_api::StoreConfig::Redis { url: url.clone(), prefix: Some("c-object".into()) };
    conformance(&*prefixed.open().unwrap());
    let bad = aegis_sod::json_api::StoreConfig::from_url("redis+cluster://127.0.0.1:1,,127.0.0.1:2").unwrap_err();
    assert_eq!(bad.code(), ErrorCode::MalformedRequest);
    assert!(bad.message().contains("empty node"), "{}", bad.message());
    let fx = Fixture::new();
    let engine = fx.builder_on(store).build().unwrap();
    let task = "task-resharded";
    let drafter = chain_in(task, "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);
    let other = chain_in(task, "finance-agent-2", &key(8), &[TOOL], NOW);
    assert_eq!(engine.authorize(&review_draft(&drafter)).unwrap().outcome, Outcome::Allow);
    let mut proved = req(&other, pay(10, GOOD_ACCOUNT), None);
    proved.proof = Some(create_proof(&key(8), TOOL, &proved.args, "pop-resharded", NOW, 60).unwrap());
    assert_eq!(engine.authorize(&proved).unwrap().outcome, Outcome::Allow);

    // A slot mid-migration. The task's keys split between the two nodes: the node leaving the
    // slot runs nothing of a step over them (`TRYAGAIN`), and the step waits for the move.
    // All of them moved, the slot still owned by the node leaving it: that node redirects
    // (`ASK`), and the step goes to the node importing the slot, with `ASKING`. Before, each
    // such call was denied for as long as the migration lasted.
    let moving = "task-migrating";
    let drafter2 = chain_in(moving, "finance-agent", &fx.finance, &["invoice.create", TOOL], NOW);
    let other2 = chain_in(moving, "finance-agent-2", &key(8), &[TOOL], NOW);
    assert_eq!(engine.authorize(&review_draft(&drafter2)).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.authorize(&req(&other2, pay(20, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let (from2, slot2) = cluster.owner(&format!("aegis:{{{moving}}}:task"));
    assert_ne!(slot2, cluster.owner(&format!("aegis:{{{task}}}:task")).1);
    let to2 = (from2 + 2) % 3;
    cluster.begin_move(slot2, from2, to2);
    cluster.migrate_keys(slot2, from2, to2, Some(&[format!("aegis:{{{moving}}}:ledger")]));
    // Keys that stay split: the wait is bounded, then the call is denied.
    let started = std::time::Instant::now();
    let stuck = engine.authorize(&req(&other2, pay(21, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(stuck.codes(), vec![ReasonCode::Error(ErrorCode::StoreUnavailable)], "{stuck:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    // (That slow failure opened the engine's breaker for a second.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let errors = |node: usize, code: &str| -> u64 {
        let info: String = ::redis::cmd("INFO").arg("errorstats").query(&mut cluster.connection(node)).unwrap();
        info.lines().find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count="))).map_or(0, |n| n.trim().parse().unwrap())
    };
    let (try_again, ask) = (errors(from2, "TRYAGAIN"), errors(from2, "ASK"));
    // The rest of the keys move once the call has met the split (and waits).
    let split = std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while errors(from2, "TRYAGAIN") == try_again {
                assert!(std::time::Instant::now() < deadline, "the call never met the split keys");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            cluster.migrate_keys(slot2, from2, to2, None);
        });
        engine.authorize(&req(&other2, pay(22, GOOD_ACCOUNT), None)).unwrap()
    });
    assert_eq!(split.outcome, Outcome::Allow, "{split:?}");
    assert!(errors(from2, "TRYAGAIN") > try_again && errors(from2, "ASK") > ask, "the call met both answers");
    let in_slot = |node: usize| -> i64 {
        ::redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot2).query(&mut cluster.connection(node)).unwrap()
    };
    assert_eq!((in_slot(from2), cluster.owner(&format!("aegis:{{{moving}}}:task")).0), (0, from2), "mid-migration");
    assert!(in_slot(to2) >= 3);
    // Every step on the moved keys goes to the importing node, on one kept connection.
    let connections = || -> u64 {
        let info: String = ::redis::cmd("INFO").arg("stats").query(&mut cluster.connection(to2)).unwrap();
        info.lines().find_map(|l| l.strip_prefix("total_connections_received:")).unwrap().trim().parse().unwrap()
    };
    let opened = connections();
    for n in 0..10 {
        assert_eq!(engine.authorize(&req(&other2, pay(30 + n, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    }
    assert_eq!(connections() - opened, 1, "ten calls by way of `ASK` (the 1 is this count's own connection)");
    assert_eq!(engine.authorize(&req(&other2, pay(22, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let refused = engine.authorize(&req(&drafter2, pay(23, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(refused.codes(), vec![ReasonCode::POLICY_FORBID], "{refused:?}");
    assert_eq!(engine.ledger(moving).unwrap().len(), 14);
    cluster.finish_move(slot2, to2);
    assert_eq!(engine.authorize(&req(&other2, pay(24, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.ledger(moving).unwrap().len(), 15);

    let (from, slot) = cluster.owner(&format!("aegis:{{{task}}}:task"));
    let to = (from + 1) % 3;
    cluster.move_slot(slot, from, to);
    assert_eq!(cluster.owner(&format!("aegis:{{{task}}}:task")).0, to);
    let keys: i64 = ::redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query(&mut cluster.connection(to)).unwrap();
    assert!(keys >= 3, "the task's keys did not move: {keys}");

    // Near miss first: another agent of the task still pays, on the moved state.
    assert_eq!(engine.authorize(&req(&other, pay(11, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let refused = engine.authorize(&req(&drafter, pay(12, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(refused.outcome, Outcome::Deny);
    assert_eq!(refused.codes(), vec![ReasonCode::POLICY_FORBID], "{refused:?}");
    assert!(refused.reasons.iter().any(|r| r.policy_id.as_deref() == Some("drafter-does-not-pay")), "{refused:?}");
    assert_eq!(engine.authorize(&proved).unwrap().codes(), vec![ErrorCode::ProofReplayed]);
    assert_eq!(engine.ledger(task).unwrap().len(), 3);

    // The node holding the task pauses (SIGSTOP) under a call that presents a fresh proof: the
    // call denies in bounded time, and the commit it sent runs at most once whenever the node
    // resumes (a client that sent it again would read `conflict` for a commit that applied, and
    // give the proof back): after the resume, the proof allows at most once more in total.
    let mut fresh = req(&other, pay(14, GOOD_ACCOUNT), None);
    fresh.proof = Some(create_proof(&key(8), TOOL, &fresh.args, "pop-paused", NOW, 60).unwrap());
    let before = engine.ledger(task).unwrap().len();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill").args([sig, &cluster.nodes[to].pid().to_string()]).status().unwrap().success())
    };
    // Scripts the node has run (`EVALSHA`, and `EVAL` for a script it had not loaded).
    let scripts_run = || {
        let stats: String = ::redis::cmd("INFO").arg("commandstats").query(&mut cluster.connection(to)).unwrap();
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let scripts_before = scripts_run();
    signal("-STOP");
    let started = std::time::Instant::now();
    let paused = engine.authorize(&fresh).unwrap();
    let waited = started.elapsed();
    signal("-CONT");
    assert_eq!(paused.outcome, Outcome::Deny, "{paused:?}");
    assert_eq!(paused.codes(), vec![ReasonCode::Error(ErrorCode::StoreUnavailable)], "{paused:?}");
    // The step fails after its reply timeout (one second), as on a single server: the cluster
    // client sends nothing again. With its default 16 retries this took 17.4 s, and the
    // resumed node then ran the same commit 17 times.
    assert!(waited < std::time::Duration::from_secs(5), "took {waited:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = scripts_run() - scripts_before;
    assert!(sent <= 2, "the paused node ran {sent} scripts for one call: a step was sent again");
    // The breaker keeps the store out of the decisions for its cool-down after the slow failure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while engine.ledger(task).is_err() {
        assert!(std::time::Instant::now() < deadline, "the store did not come back");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (again, third) = (engine.authorize(&fresh).unwrap(), engine.authorize(&fresh).unwrap());
    let committed = engine.ledger(task).unwrap().len() - before;
    assert_eq!(committed, 1, "the proof's call committed {committed} times: {again:?} {third:?}");
    assert_eq!(third.codes(), vec![ErrorCode::ProofReplayed], "{third:?}");
    assert!(again.outcome != Outcome::Allow || again.codes() != vec![ErrorCode::ProofReplayed]);

    // The node holding the task goes down: its calls deny, `store_unavailable`, in bounded time.
    cluster.nodes[to].stop();
    let started = std::time::Instant::now();
    let down = engine.authorize(&req(&other, pay(13, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(down.outcome, Outcome::Deny, "{down:?}");
    assert_eq!(down.codes(), vec![ReasonCode::Error(ErrorCode::StoreUnavailable)], "{down:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
}
