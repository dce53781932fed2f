//! Every attack the identity issue names, tried against the shipped payments bundle on every
//! store: each must now fail to get an allow. (The C ABI's free-while-authorizing race is in
//! aegis-ffi/tests/handles.rs; the bindings try the main ones again from Python and Node.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::json_api::StoreConfig;
use aegis_sod::{
    delegate, issue_root, AuthorizationRequest, BreakGlassRequest, Bundle, Clock, Engine, ErrorCode, KeyPair, Outcome,
    ReasonCode, ResourceRef, Store, REDACTED,
};
use common::redis::RedisServer;
use common::*;
use serde_json::json;

/// Runs `attack` once per store: memory, SQLite and (when a server can start) Redis.
fn on_every_store(attack: impl Fn(&Fixture, Engine)) {
    let server = RedisServer::start();
    let mut stores: Vec<Arc<dyn Store>> = vec![StoreConfig::Memory.open().unwrap(), sqlite_config().open().unwrap()];
    if let Some(server) = &server {
        stores.push(redis_config(server).open().unwrap());
    }
    for store in stores {
        let fx = Fixture::new();
        let engine = fx.builder_on(store).build().unwrap();
        attack(&fx, engine);
    }
}

fn planner_root(task: &str, scope: &[&str]) -> String {
    issue_root(ISSUER, &key(1), spec_in(task, "planner", &key(2), scope, NOW - 60, 3000)).unwrap()
}

fn ask(engine: &Engine, chain: &[String], args: serde_json::Value) -> aegis_sod::Decision {
    engine.authorize(&req(chain, args, None)).unwrap()
}

#[test]
fn a_planner_cannot_approve_through_a_sibling_it_names_finance_approver() {
    on_every_store(|_, engine| {
        let task = "task-named-sibling";
        let root = planner_root(task, &["*", "aegis.approve"]);
        let finance = vec![
            root.clone(),
            delegate(&root, &key(2), spec_in(task, "finance-agent", &key(3), &[TOOL], NOW - 30, 600)).unwrap(),
        ];
        let waiting = ask(&engine, &finance, pay(9000, GOOD_ACCOUNT));
        assert_eq!(waiting.outcome, Outcome::ApprovalNeeded);
        let id = waiting.approval_id.unwrap();
        // A sibling with a fresh key, and one on the planner's own key.
        let fresh =
            delegate(&root, &key(2), spec_in(task, "finance-approver", &key(11), &["aegis.approve"], NOW - 30, 600)).unwrap();
        let own_key = aegis_sod::testing::sign(
            &{
                let mut c = serde_json::to_value(aegis_sod::inspect(&fresh).unwrap().claims).unwrap();
                c["cnf"]["jwk"] = serde_json::to_value(key(2).public_key().to_jwk()).unwrap();
                c
            },
            TYP,
            &key(2),
        )
        .unwrap();
        for sibling in [fresh, own_key] {
            let r = engine.approve(&id, &[root.clone(), sibling], None).unwrap();
            assert!(!r.accepted && r.override_token.is_none(), "{r:?}");
        }
        // The planner itself is above the requester (and `*` never covered `aegis.approve`).
        assert!(!engine.approve(&id, std::slice::from_ref(&root), None).unwrap().accepted);
        assert_eq!(ask(&engine, &finance, pay(9000, GOOD_ACCOUNT)).outcome, Outcome::ApprovalNeeded);
        assert!(engine.ledger(task).unwrap().iter().all(|e| e.tool != TOOL), "the payment never ran");
    });
}

#[test]
fn a_delegate_named_finance_approver_neither_approves_nor_locks_the_real_approver_out() {
    on_every_store(|_, engine| {
        let task = "task-lockout";
        let finance = chain_in(task, "finance-agent", &key(3), &[TOOL], NOW);
        let id = ask(&engine, &finance, pay(9000, GOOD_ACCOUNT)).approval_id.unwrap();
        // Someone holding `aegis.approve` delegates a child it names after the approver.
        let desk = issue_root(ISSUER, &key(1), spec_in("desk", "intern", &key(12), &["aegis.approve"], NOW - 60, 3000)).unwrap();
        let named =
            delegate(&desk, &key(12), spec_in("desk", "finance-approver", &key(13), &["aegis.approve"], NOW - 30, 600)).unwrap();
        let r = engine.approve(&id, &[desk, named], None).unwrap();
        assert_eq!(r.reasons[0].code, ErrorCode::ApproverConflict, "{r:?}");
        // A task agent named `finance-approver` performs a duty in the task: it is
        // `planner/finance-approver`, and the real approver is not locked out.
        let drafter = chain_in(task, "finance-approver", &key(14), &["invoice.create"], NOW);
        let invoice = AuthorizationRequest::new(drafter, "invoice.create", json!({"customer": "acme", "amount": 900}));
        assert_eq!(engine.authorize(&invoice).unwrap().outcome, Outcome::Allow);
        let r = engine.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap();
        assert!(r.accepted, "{r:?}");
    });
}

#[test]
fn break_glass_needs_two_people_and_reaches_only_its_own_task() {
    on_every_store(|_, engine| {
        let person = approver_chain("finance-approver", NOW);
        let bg = |approvers: Vec<Vec<String>>, tasks: &[&str]| {
            let tasks = tasks.iter().map(|t| (*t).to_owned()).collect();
            BreakGlassRequest::new(vec!["planner/finance-agent".into()], vec![TOOL.into()], tasks, "outage", approvers, 600)
        };
        // One person and its own delegate.
        let own_delegate = delegate(
            &person[0],
            &approver_key(),
            spec_in("approvals-desk", "deputy", &key(15), &["aegis.break_glass"], NOW - 30, 600),
        )
        .unwrap();
        let refused = engine.break_glass(&bg(vec![person.clone(), vec![person[0].clone(), own_delegate]], &["task-bg"]));
        assert_eq!(refused.unwrap_err().code(), ErrorCode::BreakGlassRefused);
        // One person under two names on one key.
        let mut alias = spec_in("approvals-desk", "cfo", &approver_key(), &["aegis.break_glass"], NOW - 60, 3000);
        alias.roles = vec!["cfo".into()];
        let alias = vec![issue_root(ISSUER, &key(1), alias).unwrap()];
        assert_eq!(
            engine.break_glass(&bg(vec![person.clone(), alias], &["task-bg"])).unwrap_err().code(),
            ErrorCode::BreakGlassRefused
        );
        // Two people: the grant lifts the breakable forbid in its task only.
        let grant = engine.break_glass(&bg(vec![person, approver_chain("cfo", NOW)], &["task-bg"])).unwrap();
        let inside = chain_in("task-bg", "finance-agent", &key(3), &[TOOL], NOW);
        let d = ask(&engine, &inside, pay(4000, GOOD_ACCOUNT));
        assert_eq!(d.break_glass_id.as_deref(), Some(grant.id.as_str()));
        let unrelated = chain_in("task-unrelated", "finance-agent", &key(3), &[TOOL], NOW);
        let d = ask(&engine, &unrelated, pay(4000, GOOD_ACCOUNT));
        assert_eq!(d.break_glass_id, None, "a grant never reaches another task");
    });
}

#[test]
fn a_negative_amount_adds_no_room_to_a_budget() {
    on_every_store(|_, engine| {
        let chain = chain_in("task-negative", "finance-agent", &key(3), &[TOOL], NOW);
        assert_eq!(ask(&engine, &chain, pay(5000, GOOD_ACCOUNT)).outcome, Outcome::Allow);
        let d = ask(&engine, &chain, pay(-1_000_000, GOOD_ACCOUNT));
        assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::BudgetAmountInvalid.into()]));
        for _ in 0..50 {
            assert!(!ask(&engine, &chain, pay(5000, GOOD_ACCOUNT)).outcome.permits_call(), "fifty payments of 5000");
        }
    });
}

#[test]
fn overflowing_numbers_deny_and_never_take_down_other_tasks() {
    on_every_store(|fx, engine| {
        let mut roomy = engine_sources();
        roomy.manifest =
            roomy.manifest.replace("limit: 5000", "limit: 9223372036854775807").replace("on_exceed: approval", "on_exceed: deny");
        roomy.policies.retain(|(f, _)| f != "limits.cedar");
        remove_policy(&mut roomy, "large-payment-needs-approval");
        engine.swap_bundle(Bundle::from_sources(&roomy).unwrap()).unwrap();
        let chain = chain_in("task-overflow", "finance-agent", &key(3), &[TOOL], NOW);
        for amount in [-5_000_000_000_000_000_000_i64, -5_000_000_000_000_000_000] {
            assert_eq!(ask(&engine, &chain, pay(amount, GOOD_ACCOUNT)).codes(), vec![ErrorCode::BudgetAmountInvalid]);
        }
        // Two huge payments: the second would overflow the sum, which counts as exceeded.
        assert_eq!(ask(&engine, &chain, pay(i64::MAX - 10, GOOD_ACCOUNT)).outcome, Outcome::Allow);
        let d = ask(&engine, &chain, pay(i64::MAX - 10, GOOD_ACCOUNT));
        assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::BudgetExceeded.into()]));
        // A delegated link with `nbf = iat = i64::MIN`.
        let root = planner_root("task-min", &[TOOL]);
        let mut claims = serde_json::to_value(aegis_sod::inspect(&chain[1]).unwrap().claims).unwrap();
        claims["task"] = json!("task-min");
        claims["par"] = json!(aegis_sod::digest(&root));
        (claims["nbf"], claims["iat"]) = (json!(i64::MIN), json!(i64::MIN));
        let link = aegis_sod::testing::sign(&claims, TYP, &key(2)).unwrap();
        let d = ask(&engine, &[root, link], pay(10, GOOD_ACCOUNT));
        assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
        // Every other task still decides normally.
        let other = chain_in("task-after", "finance-agent", &key(3), &[TOOL], fx.clock.now_secs());
        assert_eq!(ask(&engine, &other, pay(10, GOOD_ACCOUNT)).outcome, Outcome::Allow);
    });
}

#[test]
fn an_approval_keeps_the_redactions_and_shows_only_sanitized_arguments() {
    on_every_store(|_, engine| {
        let chain = chain_in("task-card", "finance-agent", &key(3), &[TOOL], NOW);
        let mut args = pay(4000, GOOD_ACCOUNT);
        args["amount"] = json!(9000);
        args["card_number"] = json!("4242424242424242");
        let id = ask(&engine, &chain, args.clone()).approval_id.unwrap();
        let pending = engine.approval(&id).unwrap().unwrap();
        assert_eq!(pending.args["card_number"], REDACTED);
        assert!(!aegis_sod::slack_message(&pending).to_string().contains("4242424242424242"));
        let token = engine.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
        let d = engine.authorize(&req(&chain, args, Some(&token))).unwrap();
        assert_eq!(d.outcome, Outcome::Sanitize);
        assert_eq!(d.codes(), vec![ReasonCode::APPROVAL_GRANTED]);
        assert_eq!(d.sanitized_args.unwrap()["card_number"], REDACTED);
    });
}

#[test]
fn revoked_and_unscoped_approvers_neither_approve_nor_reject() {
    on_every_store(|_, engine| {
        let chain = chain_in("task-revoked", "finance-agent", &key(3), &[TOOL], NOW);
        let id = ask(&engine, &chain, pay(9000, GOOD_ACCOUNT)).approval_id.unwrap();
        // Rejecting needs what approving needs: an agent of the task cannot silence a request.
        let r = engine.reject(&id, &chain, None).unwrap();
        assert!(!r.accepted);
        let no_scope =
            vec![
                issue_root(ISSUER, &key(1), spec_in("desk", "bystander", &key(16), &["invoice.create"], NOW - 60, 3000)).unwrap()
            ];
        assert_eq!(engine.reject(&id, &no_scope, None).unwrap().reasons[0].code, ErrorCode::ToolNotInScope);
        // The approver's own task ended: its credential is revoked for approving and rejecting.
        engine.end_task("approvals-desk").unwrap();
        let approver = approver_chain("finance-approver", NOW);
        for r in [engine.approve(&id, &approver, None).unwrap(), engine.reject(&id, &approver, None).unwrap()] {
            assert_eq!((r.accepted, r.reasons[0].code), (false, ErrorCode::TaskEnded.into()));
        }
        let bg = BreakGlassRequest::new(
            vec!["x".into()],
            vec![TOOL.into()],
            vec!["t".into()],
            "r",
            vec![approver, approver_chain("cfo", NOW)],
            60,
        );
        assert_eq!(engine.break_glass(&bg).unwrap_err().code(), ErrorCode::BreakGlassRefused);
        assert_eq!(engine.approval(&id).unwrap().unwrap().status, aegis_sod::ApprovalStatus::Pending);
    });
}

#[test]
fn a_proof_is_accepted_once_across_tasks_and_brace_ids_do_not_share_a_ledger() {
    on_every_store(|fx, engine| {
        let mut sources = engine_sources();
        sources.manifest = sources.manifest.replace("proof_required: []", "proof_required: [stripe.create_payment]");
        engine.swap_bundle(Bundle::from_sources(&sources).unwrap()).unwrap();
        let args = pay(100, GOOD_ACCOUNT);
        let proof = aegis_sod::create_proof(&fx.finance, TOOL, &args, "pop-once", NOW, 60).unwrap();
        let mut outcomes = Vec::new();
        for task in ["task-proof-a", "task-proof-b"] {
            let chain = chain_in(task, "finance-agent", &fx.finance, &[TOOL], NOW);
            outcomes.push(
                engine.authorize(&AuthorizationRequest::new(chain, TOOL, args.clone()).with_proof(&proof)).unwrap().codes(),
            );
        }
        assert_eq!(outcomes[1], vec![ErrorCode::ProofReplayed], "{outcomes:?}");
        engine.swap_bundle(Bundle::from_dir(payments_dir()).unwrap()).unwrap();
        let a = chain_in("t{1}", "finance-agent", &fx.finance, &[TOOL], NOW);
        assert_eq!(ask(&engine, &a, pay(100, GOOD_ACCOUNT)).outcome, Outcome::Allow);
        assert!(engine.ledger("t_1_").unwrap().is_empty(), "`t{{1}}` and `t_1_` are two tasks");
        assert_eq!(engine.ledger("t{1}").unwrap().len(), 1);
    });
}

#[test]
fn an_approval_is_bound_to_the_resource_and_lifts_no_denying_budget() {
    on_every_store(|_, engine| {
        let chain = chain_in("task-resource", "finance-agent", &key(3), &[TOOL], NOW);
        let on = |r: &str| {
            AuthorizationRequest::new(chain.clone(), TOOL, pay(9000, GOOD_ACCOUNT)).with_resource(ResourceRef::new("Tool", r))
        };
        let id = engine.authorize(&on("vendor-a")).unwrap().approval_id.unwrap();
        let token = engine.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
        let d = engine.authorize(&on("vendor-b").with_approval_token(&token)).unwrap();
        assert_eq!(d.codes(), vec![ErrorCode::ApprovalArgsMismatch]);
        // With a budget that denies, an approval of the payment's forbid lifts no budget.
        let mut hard = engine_sources();
        hard.manifest = hard.manifest.replace("on_exceed: approval", "on_exceed: deny");
        engine.swap_bundle(Bundle::from_sources(&hard).unwrap()).unwrap();
        let fresh = chain_in("task-hard-budget", "finance-agent", &key(3), &[TOOL], NOW);
        let d = ask(&engine, &fresh, pay(9000, GOOD_ACCOUNT));
        assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::BudgetExceeded.into()]));
    });
}

#[test]
fn an_argument_of_the_wrong_type_denies_instead_of_slipping_past_a_negative_test() {
    // A forbid written as a negative test, over an argument a caller controls.
    let fx = Fixture::new();
    let mut sources = engine_sources();
    sources.policies.push((
        "negative.cedar".into(),
        r#"@id("small-payments-only") forbid (principal, action == Action::"stripe.create_payment", resource) unless { context.args.amount < 5000 };"#.into(),
    ));
    let engine = fx.engine_with(Bundle::from_sources(&sources).unwrap());
    let chain = fx.chain();
    let mut args = pay(9000, GOOD_ACCOUNT);
    args["amount"] = json!("9000");
    let d = engine.authorize(&AuthorizationRequest::new(chain.clone(), TOOL, args)).unwrap();
    assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::ArgsInvalid.into()]));
    let mut extra = pay(100, GOOD_ACCOUNT);
    extra["amount_override"] = json!(1);
    assert_eq!(engine.authorize(&AuthorizationRequest::new(chain, TOOL, extra)).unwrap().codes(), vec![ErrorCode::ArgsInvalid]);
}

#[test]
fn the_approver_check_and_its_duty_commit_are_one_step() {
    // The approver drafts an invoice in the task while it approves: whichever lands first, the
    // ledger never shows the approval after the approver's other duty.
    on_every_store(|_, engine| {
        let engine = Arc::new(engine);
        for round in 0..20 {
            let task = format!("task-atomic-{round}");
            let chain = chain_in(&task, "finance-agent", &key(3), &[TOOL], NOW);
            let id = ask(&engine, &chain, pay(9000, GOOD_ACCOUNT)).approval_id.unwrap();
            let mut drafter = spec_in(&task, "finance-approver", &approver_key(), &["invoice.create"], NOW - 60, 3000);
            drafter.roles = vec!["finance-approver".into()];
            let drafter = vec![issue_root(ISSUER, &key(1), drafter).unwrap()];
            let (e1, e2) = (Arc::clone(&engine), Arc::clone(&engine));
            let draft = std::thread::spawn(move || {
                let r = AuthorizationRequest::new(drafter, "invoice.create", json!({"customer": "acme", "amount": 900}));
                e1.authorize(&r).unwrap().outcome
            });
            let approve =
                std::thread::spawn(move || e2.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap().accepted);
            let (drafted, approved) = (draft.join().unwrap(), approve.join().unwrap());
            let ledger = engine.ledger(&task).unwrap();
            let position = |tool: &str| ledger.iter().position(|e| e.tool == tool);
            if let (Some(invoice), Some(approval)) = (position("invoice.create"), position("aegis.approve")) {
                assert!(approval < invoice, "round {round}: approved after drafting ({drafted:?}, {approved})");
            }
        }
    });
}

#[test]
fn wildcards_never_cover_aegis_actions() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let everything =
        vec![issue_root(ISSUER, &key(1), spec_in("desk", "ops", &key(17), &["*", "aegis.*"], NOW - 60, 3000)).unwrap()];
    let chain = chain_in("task-wild", "finance-agent", &key(3), &[TOOL], NOW);
    let id = ask(&engine, &chain, pay(9000, GOOD_ACCOUNT)).approval_id.unwrap();
    let r = engine.approve(&id, &everything, None).unwrap();
    assert_eq!(r.reasons[0].code, ErrorCode::ToolNotInScope);
    // Nor can a `*` holder delegate `aegis.approve`.
    let root = planner_root("task-wild", &["*"]);
    let err =
        delegate(&root, &key(2), spec_in("task-wild", "x", &KeyPair::from_seed(&[18; 32]).unwrap(), &["aegis.approve"], NOW, 60))
            .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ScopeWidened);
}

#[test]
fn a_hand_signed_link_cannot_spell_another_id() {
    // Issuing refuses these; a delegator signing them by hand gets nothing either.
    let fx = Fixture::new();
    let engine = fx.engine();
    let root = planner_root("task-spelling", &[TOOL]);
    let honest = delegate(&root, &key(2), spec_in("task-spelling", "finance-agent", &key(3), &[TOOL], NOW - 30, 600)).unwrap();
    let mut claims = serde_json::to_value(aegis_sod::inspect(&honest).unwrap().claims).unwrap();
    claims["sub"] = json!("finance-approver/x");
    let slash = aegis_sod::testing::sign(&claims, TYP, &key(2)).unwrap();
    assert_eq!(ask(&engine, &[root.clone(), slash], pay(10, GOOD_ACCOUNT)).codes(), vec![ErrorCode::MalformedToken]);
    claims["sub"] = json!("finance-agent");
    claims["roles"] = json!(["finance-approver"]);
    let with_roles = aegis_sod::testing::sign(&claims, TYP, &key(2)).unwrap();
    assert_eq!(ask(&engine, &[root, with_roles], pay(10, GOOD_ACCOUNT)).codes(), vec![ErrorCode::MalformedToken]);
}
