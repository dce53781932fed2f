//! `aegis policy dry-run`: logged calls re-decided under a candidate bundle. The shipped bundle
//! changes nothing; a removed SoD forbid flips exactly the call it refused (DENY→ALLOW, listed
//! first); a stricter candidate turns allows into denies; sealed raw arguments make redacted
//! calls re-evaluable, and without the key they are reported, never guessed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_sod::audit::{dry_run, read_log, AuditLog, LogKey, SealKey};
use aegis_sod::{AuthorizationRequest, Bundle, KeyPair, Outcome};
use common::*;
use serde_json::json;

const SEAL: [u8; 32] = [42; 32];

fn fresh_dir(name: &str) -> PathBuf {
    let dir = temp_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A story on an engine that seals raw arguments; returns the decision ids by step name.
fn story(dir: &Path) -> std::collections::BTreeMap<&'static str, String> {
    let fx = Fixture::new();
    let log_key = LogKey::new("aegis.example/replay", KeyPair::from_seed(&[9; 32]).unwrap()).unwrap();
    let log = Arc::new(AuditLog::builder(dir, log_key).seal_raw_args(SealKey::new(&SEAL).unwrap()).open().unwrap());
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).audit_log(log).build().unwrap();
    let chain = fx.chain();
    let clerk = chain_in(TASK, "clerk", &key(12), &["invoice.create", TOOL], NOW);
    let mut ids = std::collections::BTreeMap::new();
    let mut step = |name: &'static str, request: AuthorizationRequest, want: Outcome| {
        let d = engine.authorize(&request).unwrap();
        assert_eq!(d.outcome, want, "{name}: {d:?}");
        ids.insert(name, d.decision_id.clone());
        d
    };
    step("pay", req(&chain, pay(1200, GOOD_ACCOUNT), None), Outcome::Allow);
    let card = json!({"amount": 100, "currency": "eur", "destination": GOOD_ACCOUNT, "card_number": "4242424242424242"});
    step("card", req(&chain, card, None), Outcome::Sanitize);
    step(
        "draft",
        AuthorizationRequest::new(clerk.clone(), "invoice.create", json!({"customer": "acme", "amount": 5})),
        Outcome::Allow,
    );
    step("clerk-pays", req(&clerk, pay(300, GOOD_ACCOUNT), None), Outcome::Deny);
    let big = step("big", req(&chain, pay(9000, GOOD_ACCOUNT), None), Outcome::ApprovalNeeded);
    let resolution = engine.approve(big.approval_id.as_deref().unwrap(), &approver_chain("finance-approver", NOW), None).unwrap();
    let token = resolution.override_token.unwrap();
    step("approved", req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token)), Outcome::Allow);
    step("replayed-token", req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token)), Outcome::Deny);
    ids
}

fn candidate(edit: impl FnOnce(&mut aegis_sod::BundleSources)) -> Bundle {
    let mut sources = engine_sources();
    edit(&mut sources);
    Bundle::from_sources(&sources).unwrap()
}

#[test]
fn replay_under_candidates() {
    let dir = fresh_dir("replay-log");
    let ids = story(&dir);
    let logs = vec![(dir.display().to_string(), read_log(&dir, None, &[]).unwrap())];
    let seal = SealKey::new(&SEAL).unwrap();

    // The shipped bundle: nothing changes; the redeemed approval stands; the token replay was
    // decided before policies ran.
    let same = dry_run(Bundle::from_dir(payments_dir()).unwrap(), &logs, Some(&seal)).unwrap();
    assert_eq!(same.changes, vec![], "{same:#?}");
    assert_eq!((same.decisions, same.replayed, same.not_policy_decisions), (7, 6, 1), "{same:#?}");
    assert!(same.not_reevaluable.is_empty());

    // Without the seal key the redacted call is reported, never guessed.
    let unsealed = dry_run(Bundle::from_dir(payments_dir()).unwrap(), &logs, None).unwrap();
    assert_eq!(unsealed.not_reevaluable, vec![ids["card"].clone()]);
    assert_eq!(unsealed.replayed, 5);

    // One SoD forbid removed: exactly the call it refused would now run.
    let flipped = dry_run(candidate(|s| remove_policy(s, "drafter-does-not-pay")), &logs, Some(&seal)).unwrap();
    assert_eq!(flipped.changes.len(), 1, "{flipped:#?}");
    let c = &flipped.changes[0];
    assert_eq!(
        (c.decision_id.as_str(), c.from.as_str(), c.to.as_str(), c.opens),
        (ids["clerk-pays"].as_str(), "deny", "allow", true)
    );
    assert!(c.policies.contains(&"drafter-does-not-pay".to_owned()));
    assert_eq!(flipped.by_agent.get("planner/clerk"), Some(&1));

    // A stricter candidate (payments over 1000 forbidden) and a looser one at once: the call
    // that would now run is listed before the ones that would now be refused.
    let stricter = candidate(|s| {
        remove_policy(s, "drafter-does-not-pay");
        s.policies.push((
            "extra.cedar".into(),
            "@id(\"over-1000\")\nforbid (principal, action == Action::\"stripe.create_payment\", resource)\nwhen { context.args.amount > 1000 };\n".into(),
        ));
    });
    let mixed = dry_run(stricter, &logs, Some(&seal)).unwrap();
    let flips: Vec<(&str, &str, &str)> =
        mixed.changes.iter().map(|c| (c.decision_id.as_str(), c.from.as_str(), c.to.as_str())).collect();
    assert_eq!(flips[0], (ids["clerk-pays"].as_str(), "deny", "allow"), "{flips:?}");
    assert!(flips.contains(&(ids["pay"].as_str(), "allow", "deny")), "{flips:?}");
    assert!(flips.contains(&(ids["big"].as_str(), "approval_needed", "deny")), "{flips:?}");
    assert!(flips.contains(&(ids["approved"].as_str(), "allow", "deny")), "the approval does not lift a new forbid: {flips:?}");
    assert_eq!(mixed.by_policy.get("over-1000"), Some(&3));
}
