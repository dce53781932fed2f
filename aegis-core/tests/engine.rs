//! Engine behaviour beyond the shared vectors: caching, proofs, bundles, swaps, Wycheproof.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use aegis_sod::{create_proof, AuthorizationRequest, Bundle, BundleSources, ErrorCode, Outcome};
use common::*;
use serde_json::{json, Value};

fn request(chain: Vec<String>, args: Value) -> AuthorizationRequest {
    AuthorizationRequest::new(chain, TOOL, args)
}

fn payments_sources() -> BundleSources {
    BundleSources::read_dir(payments_dir()).unwrap()
}

#[test]
fn cached_chain_still_expires() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let chain = fx.chain();
    let req = request(chain, pay(1200, GOOD_ACCOUNT));
    assert_eq!(engine.authorize(&req).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.authorize(&req).unwrap().outcome, Outcome::Allow);
    fx.clock.advance_secs(600 + 30);
    let d = engine.authorize(&req).unwrap();
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.codes(), vec![ErrorCode::CredentialExpired]);
}

#[test]
fn forged_token_reusing_a_cached_signature_is_not_served_from_cache() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let chain = fx.chain();
    assert_eq!(engine.authorize(&request(chain.clone(), pay(1200, GOOD_ACCOUNT))).unwrap().outcome, Outcome::Allow);
    // Same signature segment (the cache key), different payload.
    let parts: Vec<&str> = chain[1].split('.').collect();
    let mut claims: Value = serde_json::from_slice(&aegis_sod::testing::b64_decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!(["*"]);
    let forged = format!("{}.{}.{}", parts[0], aegis_sod::testing::b64_encode(claims.to_string().as_bytes()), parts[2]);
    let d = engine.authorize(&request(vec![chain[0].clone(), forged], pay(1200, GOOD_ACCOUNT))).unwrap();
    assert_eq!(d.codes(), vec![ErrorCode::SignatureInvalid]);
    // And a cached leaf under a different root is verified afresh.
    let d = engine.authorize(&request(vec![chain[1].clone()], pay(1200, GOOD_ACCOUNT))).unwrap();
    assert_eq!(d.outcome, Outcome::Deny);
}

fn proof_engine(fx: &Fixture) -> aegis_sod::Engine {
    let mut sources = payments_sources();
    sources.manifest.push_str("\n# test\n");
    sources.manifest = sources.manifest.replace("proof_required: []", "proof_required: [stripe.create_payment]");
    fx.engine_with(Bundle::from_sources(&sources).unwrap())
}

#[test]
fn proof_of_possession_is_required_bound_to_the_call_and_single_use() {
    let fx = Fixture::new();
    let engine = proof_engine(&fx);
    let args = pay(1200, GOOD_ACCOUNT);
    let mut req = request(fx.chain(), args.clone());
    assert_eq!(engine.authorize(&req).unwrap().codes(), vec![ErrorCode::ProofRequired]);

    req.proof = Some(create_proof(&fx.finance, TOOL, &args, "pop-1", NOW, 60).unwrap());
    assert_eq!(engine.authorize(&req).unwrap().outcome, Outcome::Allow);
    assert_eq!(engine.authorize(&req).unwrap().codes(), vec![ErrorCode::ProofReplayed]);

    // Bound to the exact arguments: one changed field breaks it.
    let mut other = args.clone();
    other["amount"] = json!(1201);
    req.proof = Some(create_proof(&fx.finance, TOOL, &args, "pop-2", NOW, 60).unwrap());
    req.args = other;
    assert_eq!(engine.authorize(&req).unwrap().codes(), vec![ErrorCode::ProofInvalid]);

    // Signed by someone other than the leaf (the planner holds the parent key).
    req.args = args.clone();
    req.proof = Some(create_proof(&fx.planner, TOOL, &args, "pop-3", NOW, 60).unwrap());
    assert_eq!(engine.authorize(&req).unwrap().codes(), vec![ErrorCode::ProofInvalid]);

    // Stale, and too long-lived.
    req.proof = Some(create_proof(&fx.finance, TOOL, &args, "pop-4", NOW - 400, 60).unwrap());
    assert_eq!(engine.authorize(&req).unwrap().codes(), vec![ErrorCode::ProofInvalid]);
    req.proof = Some(create_proof(&fx.finance, TOOL, &args, "pop-5", NOW, 3600).unwrap());
    assert_eq!(engine.authorize(&req).unwrap().codes(), vec![ErrorCode::ProofInvalid]);
}

#[test]
fn proof_jti_is_single_use_across_threads() {
    let fx = Fixture::new();
    let engine = Arc::new(proof_engine(&fx));
    // Small amounts: twenty rounds stay inside the task's payment budget.
    let args = pay(100, GOOD_ACCOUNT);
    for round in 0..20 {
        let mut req = request(fx.chain(), args.clone());
        req.proof = Some(create_proof(&fx.finance, TOOL, &args, &format!("race-{round}"), NOW, 60).unwrap());
        let req = Arc::new(req);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (engine, req) = (Arc::clone(&engine), Arc::clone(&req));
                std::thread::spawn(move || engine.authorize(&req).unwrap().outcome)
            })
            .collect();
        let allowed = handles.into_iter().map(|h| h.join().unwrap()).filter(|o| *o == Outcome::Allow).count();
        assert_eq!(allowed, 1, "round {round}");
    }
}

#[test]
fn invalid_policy_names_file_line_and_policy() {
    let mut sources = payments_sources();
    sources.policies.push((
        "broken.cedar".into(),
        "// first line\n\n@id(\"typo-policy\")\nforbid (principal, action == Action::\"stripe.create_payment\", resource)\nwhen { context.args.amout > 5 };\n".into(),
    ));
    let err = Bundle::from_sources(&sources).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidBundle);
    let msg = err.message();
    assert!(msg.contains("`broken.cedar`") && msg.contains("typo-policy") && msg.contains("line 5"), "{msg}");

    let mut sources = payments_sources();
    sources
        .policies
        .push(("syntax.cedar".into(), "permit (principal, action, resource);\n\nforbid (principal action, resource);\n".into()));
    let err = Bundle::from_sources(&sources).unwrap_err();
    assert!(err.message().contains("`syntax.cedar`") && err.message().contains("line 3"), "{}", err.message());
}

#[test]
fn annotations_are_checked_at_load() {
    let mut sources = payments_sources();
    sources.policies.push(("bad.cedar".into(), "@approval(\"x\")\npermit (principal, action, resource);\n".into()));
    assert!(Bundle::from_sources(&sources).unwrap_err().message().contains("`@approval` belongs on a forbid"));
    let mut sources = payments_sources();
    sources.policies.push(("bad.cedar".into(), "@sanitize(\"card\")\npermit (principal, action, resource);\n".into()));
    assert!(Bundle::from_sources(&sources).unwrap_err().message().contains("must start with `args.`"));
}

#[test]
fn failed_reload_keeps_the_old_bundle_and_a_good_one_swaps_atomically() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let before = engine.policy_version();
    let broken = tempdir("broken-bundle");
    copy_dir(&payments_dir(), &broken);
    std::fs::write(broken.join("extra.cedar"), "forbid (principal, action, resource) when { context.nope };").unwrap();
    assert_eq!(engine.reload_bundle(&broken).unwrap_err().code(), ErrorCode::InvalidBundle);
    assert_eq!(engine.policy_version(), before);
    assert_eq!(engine.authorize(&request(fx.chain(), pay(1200, GOOD_ACCOUNT))).unwrap().outcome, Outcome::Allow);

    // A valid change: payments now need approval above 1000.
    let matrix = std::fs::read_to_string(broken.join("sod.yaml")).unwrap().replace("above: 5000", "above: 1000");
    std::fs::write(broken.join("sod.yaml"), matrix).unwrap();
    std::fs::remove_file(broken.join("extra.cedar")).unwrap();
    let after = engine.reload_bundle(&broken).unwrap();
    assert_ne!(after, before);
    assert!(after.starts_with("payments@1.0.0+"));
    let d = engine.authorize(&request(fx.chain(), pay(1200, GOOD_ACCOUNT))).unwrap();
    assert_eq!((d.outcome, d.policy_version.as_str()), (Outcome::ApprovalNeeded, after.as_str()));
}

#[test]
fn malformed_requests_are_errors_not_decisions() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let err = engine.authorize(&request(fx.chain(), json!([1, 2]))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedRequest);
    // A number the schema's `Long` cannot hold is refused before any policy sees it.
    let d =
        engine.authorize(&request(fx.chain(), json!({"amount": 1e300, "currency": "eur", "destination": GOOD_ACCOUNT}))).unwrap();
    assert_eq!((d.outcome, d.codes()), (Outcome::Deny, vec![ErrorCode::ArgsInvalid.into()]));
    let err =
        aegis_sod::json_api::call(Some(&engine), "authorize", r#"{"chain":[],"tool":"t","args":{"a":1,"a":2}}"#).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedRequest);
    assert!(err.message().contains("duplicate key `a`"));
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aegis-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // The bundle's files; its `tests/` are not part of it.
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn decimal_arguments_decide_like_integers_do() {
    // A decimal is a Cedar extension value: the context takes its slower construction path.
    let fx = Fixture::new();
    let mut sources = engine_sources();
    sources.schema =
        sources.schema.replace("memo?: String,", "memo?: String,\n      fee?: decimal,\n      fees?: Set<{ b: decimal }>,");
    let engine = fx.engine_with(Bundle::from_sources(&sources).unwrap());
    let mut args = pay(1200, GOOD_ACCOUNT);
    args["fee"] = json!(12.5);
    args["fees"] = json!([{"b": 1.25}]);
    let d = engine.authorize(&request(fx.chain(), args.clone())).unwrap();
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    args["amount"] = json!(9000);
    assert_eq!(engine.authorize(&request(fx.chain(), args)).unwrap().outcome, Outcome::ApprovalNeeded);
}

#[test]
fn a_panicking_notifier_does_not_change_the_decision() {
    let fx = Fixture::new();
    let engine = aegis_sod::Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .clock(fx.clock.clone())
        .notifier(Arc::new(|_: &aegis_sod::PendingApproval| panic!("pager down")))
        .build()
        .unwrap();
    let d = engine.authorize(&request(fx.chain(), pay(9000, GOOD_ACCOUNT))).unwrap();
    assert_eq!(d.outcome, Outcome::ApprovalNeeded);
    assert_eq!(engine.pending_approvals().unwrap().len(), 1);
}

/// A chain whose prefix is already verified (cached) decides exactly as on an engine that has
/// seen nothing: every shared case, hostile ones included, with each of its proper prefixes
/// verified first.
#[test]
fn chains_under_a_cached_prefix_decide_as_fresh_ones() {
    let fx = Fixture::new();
    let mut primed_cases = 0;
    for case in common::cases(&fx) {
        let decide = |engine: &aegis_sod::Engine| {
            let d = engine
                .authorize(&AuthorizationRequest::new(case.chain.clone(), case.tool, case.args.clone()))
                .map(|d| (d.outcome, d.codes()));
            (d.map_err(|e| e.code()), engine.verify_chain(&case.chain).map_err(|e| (e.code(), e.message().to_owned())))
        };
        let expected = decide(&fx.engine());
        for len in 1..case.chain.len() {
            let primed = fx.engine();
            if primed.verify_chain(&case.chain[..len]).is_err() {
                continue;
            }
            primed_cases += 1;
            assert_eq!(decide(&primed), expected, "{} with {len} link(s) cached", case.name);
        }
    }
    assert!(primed_cases >= 10, "only {primed_cases} cases had a verifiable prefix");
}

#[test]
fn a_cached_prefix_serves_only_its_exact_bytes() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let chain = fx.chain();
    let root_only = engine.verify_chain(&chain[..1]).unwrap();
    assert_eq!(root_only.agent_id, "planner");
    // The delegation verifies on top of the cached root and yields what a fresh engine yields.
    let delegated = engine.verify_chain(&chain).unwrap();
    assert_eq!(*delegated, *fx.engine().verify_chain(&chain).unwrap());
    assert_eq!(delegated.lineage, vec!["planner".to_owned()]);
    assert_eq!(delegated.credential_ids.len(), 2);

    // A root with the cached root's signature segment (the cache key) but another payload is
    // not the cached root: it is verified, and fails.
    let fresh = fx.engine();
    fresh.verify_chain(&chain[..1]).unwrap();
    let parts: Vec<&str> = chain[0].split('.').collect();
    let mut claims: Value = serde_json::from_slice(&aegis_sod::testing::b64_decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!(["*"]);
    let forged_root = format!("{}.{}.{}", parts[0], aegis_sod::testing::b64_encode(claims.to_string().as_bytes()), parts[2]);
    let err = fresh.verify_chain(&[forged_root, chain[1].clone()]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SignatureInvalid);

    // An expired prefix does not carry a new delegation, even though it is cached.
    fx.clock.advance_secs(900);
    let err = fresh.verify_chain(&chain).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CredentialExpired);
}

/// `issue` with `narrow`: a sub-agent's delegation keeps only the tools its delegator holds and
/// ends with it; without `narrow` the same request is refused; the narrowed chain decides.
#[test]
fn a_narrowed_delegation_keeps_what_the_parent_holds() {
    use aegis_sod::json_api::call;
    let fx = Fixture::new();
    let planner = fx.planner_cred(); // scope: invoice.create, stripe.create_payment; expires NOW + 840
    let issue_request = |narrow: bool, ttl: i64| {
        serde_json::json!({
            "parent": planner, "signing_key": fx.planner.to_private_jwk(), "agent_id": "finance-agent",
            "agent_key": fx.finance.public_key().to_jwk(), "scope": [TOOL, "invoice.delete", TOOL, "aegis.approve"],
            "ttl_secs": ttl, "issued_at": NOW, "narrow": narrow,
        })
        .to_string()
    };
    let refused = call(None, "issue", &issue_request(false, 600)).unwrap_err();
    assert_eq!(refused.code().as_str(), "scope_widened");

    let token: String = serde_json::from_str(&call(None, "issue", &issue_request(true, 3600)).unwrap()).unwrap();
    let claims = Fixture::claims(&token);
    assert_eq!(claims.scope, vec![TOOL.to_string()], "only what the planner holds, once");
    assert_eq!(claims.exp, Fixture::claims(&planner).exp, "no longer than the parent");

    let engine = fx.engine();
    let chain = vec![planner.clone(), token];
    let paid = engine.authorize(&request(chain.clone(), pay(100, GOOD_ACCOUNT))).unwrap();
    assert_eq!(paid.outcome, Outcome::Allow, "{paid:?}");
    let outside = engine.authorize(&AuthorizationRequest::new(chain, "invoice.create", json!({}))).unwrap();
    assert_eq!(outside.reasons[0].code.to_string(), "tool_not_in_scope", "{outside:?}");

    let root = serde_json::json!({
        "issuer": ISSUER, "signing_key": fx.issuer.to_private_jwk(), "agent_id": "planner",
        "agent_key": fx.planner.public_key().to_jwk(), "task_id": "t", "intent": "i", "scope": [TOOL],
        "ttl_secs": 60, "narrow": true,
    });
    assert_eq!(call(None, "issue", &root.to_string()).unwrap_err().code().as_str(), "malformed_request");
    let expired = serde_json::json!({
        "parent": planner, "signing_key": fx.planner.to_private_jwk(), "agent_id": "late",
        "agent_key": fx.finance.public_key().to_jwk(), "scope": [TOOL], "ttl_secs": 60,
        "issued_at": NOW + 10_000, "narrow": true,
    });
    assert_eq!(call(None, "issue", &expired.to_string()).unwrap_err().code().as_str(), "credential_expired");
    let no_life = serde_json::json!({
        "parent": planner, "signing_key": fx.planner.to_private_jwk(), "agent_id": "none",
        "agent_key": fx.finance.public_key().to_jwk(), "scope": [TOOL], "ttl_secs": 0, "issued_at": NOW, "narrow": true,
    });
    assert_eq!(call(None, "issue", &no_life.to_string()).unwrap_err().code().as_str(), "malformed_request");
}

/// `inspect_chain` names a chain's agent exactly as verification attests it (the one naming
/// rule, for the bindings' guards and delegators), at every depth; it reads, it does not verify.
#[test]
fn inspect_chain_names_the_agent_as_verification_does() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let two = chain_in(TASK, "finance-agent", &fx.finance, &[TOOL], NOW);
    let mut three = two.clone();
    three.push(aegis_sod::delegate(&two[1], &fx.finance, spec_in(TASK, "payer", &key(9), &[TOOL], NOW - 20, 600)).unwrap());
    for chain in [vec![two[0].clone()], two.clone(), three] {
        let verified = engine.verify_chain(&chain).unwrap();
        let inspected = aegis_sod::inspect_chain(&chain).unwrap();
        assert_eq!(
            (&inspected.agent_id, &inspected.lineage, &inspected.task_id, &inspected.scope),
            (&verified.agent_id, &verified.lineage, &verified.task_id, &verified.scope)
        );
    }
    assert_eq!(aegis_sod::inspect_chain(&two).unwrap().agent_id, "planner/finance-agent");
    // Not verified: a tampered signature still reads; nothing at all, or a token that is not an
    // Aegis credential, is an error.
    let tampered = vec![two[0].clone(), tamper_signature(&two[1])];
    assert_eq!(aegis_sod::inspect_chain(&tampered).unwrap().agent_id, "planner/finance-agent");
    assert_eq!(aegis_sod::inspect_chain(&[]).unwrap_err().code(), ErrorCode::MalformedRequest);
    assert!(aegis_sod::inspect_chain(&["not.a.token".to_owned()]).is_err());
}

/// A forbid scoped to an action group (`action in [Action::"money_out"]`) applies to every
/// member action the schema puts in the group, as Cedar decides with the schema's action
/// entities: the index that routes it to the member must not then evaluate it as if the
/// action belonged to no group.
#[test]
fn forbid_on_an_action_group_applies_to_its_members() {
    let fx = Fixture::new();
    let mut sources = payments_sources();
    sources.schema = sources.schema.replace(
        "action \"stripe.create_payment\" appliesTo",
        "action \"money_out\";\naction \"stripe.create_payment\" in [\"money_out\"] appliesTo",
    );
    sources.policies.push((
        "group.cedar".into(),
        "@id(\"money-out-capped\")\nforbid (principal, action in [Action::\"money_out\"], resource)\nwhen { context.args.amount > 1000 };\n\
         @id(\"money-out-group-itself\")\nforbid (principal, action == Action::\"money_out\", resource);\n\
         @id(\"money-out-in-body\")\nforbid (principal, action, resource)\nwhen { action in Action::\"money_out\" && context.args.amount == 777 };\n\
         @id(\"treasury-money-out\")\nforbid (principal in Role::\"treasury\", action in [Action::\"money_out\"], resource)\nwhen { context.args.amount == 555 };\n"
            .into(),
    ));
    let engine = fx.engine_with(Bundle::from_sources(&sources).unwrap());
    let denied = engine.authorize(&request(fx.chain(), pay(1200, GOOD_ACCOUNT))).unwrap();
    assert_eq!(denied.outcome, Outcome::Deny, "{denied:?}");
    assert_eq!(denied.reasons[0].policy_id.as_deref(), Some("money-out-capped"), "{denied:?}");
    // Near miss: under the cap the group's forbid does not hold, and the forbid naming the
    // group itself never applies to a member.
    assert_eq!(engine.authorize(&request(fx.chain(), pay(900, GOOD_ACCOUNT))).unwrap().outcome, Outcome::Allow);
    // Group membership written in a policy's body holds too.
    let in_body = engine.authorize(&request(fx.chain(), pay(777, GOOD_ACCOUNT))).unwrap();
    assert_eq!(in_body.outcome, Outcome::Deny, "{in_body:?}");
    assert_eq!(in_body.reasons[0].policy_id.as_deref(), Some("money-out-in-body"), "{in_body:?}");

    // An agent with an attested role: the principal and its roles join the schema's action
    // entities, and a policy needs both memberships at once.
    let mut spec = fx.spec("treasury-bot", &fx.finance, &[TOOL], NOW - 60, 900);
    spec.roles = vec!["treasury".into()];
    let with_role = vec![aegis_sod::issue_root(ISSUER, &fx.issuer, spec).unwrap()];
    let held = |d: &aegis_sod::Decision| d.reasons.iter().any(|r| r.policy_id.as_deref() == Some("treasury-money-out"));
    let by_role = engine.authorize(&request(with_role.clone(), pay(555, GOOD_ACCOUNT))).unwrap();
    assert_eq!(by_role.outcome, Outcome::Deny, "{by_role:?}");
    assert!(held(&by_role), "{by_role:?}");
    // Near misses: the role without the amount, the amount without the role.
    assert!(!held(&engine.authorize(&request(with_role, pay(556, GOOD_ACCOUNT))).unwrap()));
    assert!(!held(&engine.authorize(&request(fx.chain(), pay(555, GOOD_ACCOUNT))).unwrap()));
}
