//! Quorum and staged approvals: `@quorum("k")` asks k distinct approvers, `@stages("a,b")`
//! asks one approver per role in order. Every vote is bound to the same call digest; a partial
//! approval lifts nothing, the same person or key never counts twice, a stage is filled only by
//! its role, racing last votes mint one token, and an expired token never allows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::{issue_root, ApprovalStatus, Bundle, Engine, ErrorCode, KeyPair, Outcome};
use common::*;

const EXTRA: &str = r#"
@id("huge-payment-needs-two")
@approval("finance-approver")
@quorum("2")
@message("payments over 20000 need two finance approvers")
forbid (principal, action == Action::"stripe.create_payment", resource)
when { context.args.amount > 20000 };

@id("giant-payment-is-staged")
@approval("finance-approver")
@stages("team-lead,finance-approver")
@message("payments over 50000 need a team lead, then a finance approver")
forbid (principal, action == Action::"stripe.create_payment", resource)
when { context.args.amount > 50000 };

@id("team-lead-approves-payments")
permit (principal in Role::"team-lead", action == Action::"aegis.approve", resource)
when { context.approval.tool == "stripe.create_payment" };
"#;

fn engine(fx: &Fixture) -> Engine {
    let mut sources = engine_sources();
    sources.policies.push(("quorum.cedar".into(), EXTRA.into()));
    fx.engine_with(Bundle::from_sources(&sources).unwrap())
}

/// A person `name` holding `role`, with its own key (or `key`).
fn person(name: &str, role: &str, key: Option<&KeyPair>) -> Vec<String> {
    let own = person_key(name);
    let k = key.unwrap_or(&own);
    let mut spec = spec_in("approvals-desk", name, k, &["aegis.approve"], NOW - 60, 3000);
    spec.roles = vec![role.to_owned()];
    spec.jti = format!("cred-{name}-{}", k.kid());
    vec![issue_root(ISSUER, &common::key(1), spec).unwrap()]
}

fn ask(engine: &Engine, fx: &Fixture, amount: i64) -> String {
    let d = engine.authorize(&req(&fx.chain(), pay(amount, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(d.outcome, Outcome::ApprovalNeeded, "{d:?}");
    d.approval_id.unwrap()
}

#[test]
fn a_quorum_needs_distinct_approvers_and_a_partial_approval_lifts_nothing() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let id = ask(&engine, &fx, 25_000);
    let pending = engine.approval(&id).unwrap().unwrap();
    assert_eq!(pending.votes_needed(), 2);

    let first = engine.approve(&id, &person("ann", "finance-approver", None), None).unwrap();
    assert!(first.accepted && first.override_token.is_none(), "{first:?}");
    assert_eq!(first.approval.status, ApprovalStatus::Pending);
    assert_eq!(first.approval.votes.len(), 1);
    assert_eq!(engine.pending_approvals().unwrap().len(), 1, "still waiting");
    // One vote allows nothing.
    let again = engine.authorize(&req(&fx.chain(), pay(25_000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(again.outcome, Outcome::ApprovalNeeded);

    // The same person again, and another name on the same key: not a second approver.
    let twice = engine.approve(&id, &person("ann", "finance-approver", None), None).unwrap();
    assert!(!twice.accepted);
    assert_eq!(twice.reasons[0].code.to_string(), "approver_conflict");
    let alias = engine.approve(&id, &person("ann-alias", "finance-approver", Some(&person_key("ann"))), None).unwrap();
    assert!(!alias.accepted, "{alias:?}");
    // Someone without the role: refused by the bundle's approver policies.
    let clerk = engine.approve(&id, &person("carl", "clerk", None), None).unwrap();
    assert!(!clerk.accepted);

    let second = engine.approve(&id, &person("bob", "finance-approver", None), None).unwrap();
    assert!(second.accepted, "{second:?}");
    assert_eq!(second.approval.status, ApprovalStatus::Approved);
    let voters: Vec<&str> = second.approval.votes.iter().map(|v| v.approver.as_str()).collect();
    assert_eq!(voters, ["ann", "bob"]);
    let token = second.override_token.unwrap();
    // Bound to the call: other arguments are refused, the call runs once.
    let other = engine.authorize(&req(&fx.chain(), pay(25_001, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_ne!(other.outcome, Outcome::Allow);
    let ran = engine.authorize(&req(&fx.chain(), pay(25_000, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!(ran.outcome, Outcome::Allow, "{ran:?}");
    let replay = engine.authorize(&req(&fx.chain(), pay(25_000, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!(replay.outcome, Outcome::Deny);
}

#[test]
fn stages_are_filled_in_order_by_their_roles() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let id = ask(&engine, &fx, 60_000);
    let pending = engine.approval(&id).unwrap().unwrap();
    assert_eq!(pending.stages, ["team-lead", "finance-approver"]);

    // Finance first: the first stage is the team lead's.
    let early = engine.approve(&id, &person("fay", "finance-approver", None), None).unwrap();
    assert!(!early.accepted);
    assert!(early.reasons[0].message.contains("team-lead"), "{early:?}");
    let lead = engine.approve(&id, &person("tess", "team-lead", None), None).unwrap();
    assert!(lead.accepted && lead.override_token.is_none());
    assert_eq!(lead.approval.votes[0].stage.as_deref(), Some("team-lead"));
    // A second team lead cannot fill the finance stage.
    let other_lead = engine.approve(&id, &person("tom", "team-lead", None), None).unwrap();
    assert!(!other_lead.accepted);
    let finance = engine.approve(&id, &person("fay", "finance-approver", None), None).unwrap();
    assert!(finance.accepted);
    let token = finance.override_token.expect("the last stage mints the token");
    let ran = engine.authorize(&req(&fx.chain(), pay(60_000, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_eq!(ran.outcome, Outcome::Allow, "{ran:?}");
}

#[test]
fn one_rejection_closes_a_quorum_and_an_expired_token_never_allows() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let id = ask(&engine, &fx, 30_000);
    assert!(engine.approve(&id, &person("ann", "finance-approver", None), None).unwrap().accepted);
    let no = engine.reject(&id, &person("bob", "finance-approver", None), Some("not this vendor")).unwrap();
    assert!(no.accepted);
    assert_eq!(no.approval.status, ApprovalStatus::Rejected);
    let late = engine.approve(&id, &person("cy", "finance-approver", None), None).unwrap_err();
    assert_eq!(late.code(), ErrorCode::ApprovalNotPending);

    let id = ask(&engine, &fx, 30_000);
    engine.approve(&id, &person("ann", "finance-approver", None), None).unwrap();
    let token = engine.approve(&id, &person("bob", "finance-approver", None), None).unwrap().override_token.unwrap();
    fx.clock.advance_secs(3600);
    let expired = engine.authorize(&req(&fx.chain(), pay(30_000, GOOD_ACCOUNT), Some(&token))).unwrap();
    assert_ne!(expired.outcome, Outcome::Allow);
}

#[test]
fn racing_last_votes_mint_one_token() {
    for _ in 0..20 {
        let fx = Fixture::new();
        let engine = Arc::new(engine(&fx));
        let id = ask(&engine, &fx, 40_000);
        assert!(engine.approve(&id, &person("ann", "finance-approver", None), None).unwrap().accepted);
        let voters = ["bob", "cy", "dee", "eve"];
        let handles: Vec<_> = voters
            .iter()
            .map(|name| {
                let (engine, id, chain) = (Arc::clone(&engine), id.clone(), person(name, "finance-approver", None));
                std::thread::spawn(move || engine.approve(&id, &chain, None))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let tokens = results.iter().filter(|r| matches!(r, Ok(res) if res.override_token.is_some())).count();
        assert_eq!(tokens, 1, "{results:?}");
        let approval = engine.approval(&id).unwrap().unwrap();
        assert_eq!(approval.status, ApprovalStatus::Approved);
        assert_eq!(approval.votes.len(), 2, "exactly the quorum: {approval:?}");
    }
}
