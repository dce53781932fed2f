//! The control plane: changes to what is enforced need two distinct administrators, each
//! signing the change; every way one identity could make such a change alone is refused.
//! Signed bundles, the bundle history and rollback, log-only mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use aegis_sod::{
    admin_proof, delegate, issue_root, sign_bundle, AdminAction, AdminRequest, AdminSignature, Bundle, Engine, ErrorCode,
    KeyPair, Mode, Outcome, ADMIN_SCOPE,
};
use common::*;

const ADMINS_TASK: &str = "admins";

/// A person's root credential holding `scope`, in the administrators' task.
fn person(name: &str, agent_key: &KeyPair, scope: &[&str], jti: &str) -> Vec<String> {
    let mut spec = spec_in(ADMINS_TASK, name, agent_key, scope, NOW - 60, 3000);
    spec.jti = jti.into();
    vec![issue_root(ISSUER, &key(1), spec).unwrap()]
}

fn admin(name: &str) -> (Vec<String>, KeyPair) {
    let k = person_key(name);
    (person(name, &k, &[ADMIN_SCOPE], &format!("cred-{name}")), k)
}

static JTI: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// The bundle version the next requests are signed for (each test sets it).
    static VERSION: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn signing_for(engine: &Engine) {
    VERSION.with(|v| *v.borrow_mut() = engine.policy_version());
}

fn sign(who: &(Vec<String>, KeyPair), action: &AdminAction) -> AdminSignature {
    let n = JTI.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let version = VERSION.with(|v| v.borrow().clone());
    AdminSignature {
        chain: who.0.clone(),
        proof: admin_proof(&who.1, action, &version, &format!("admin-{n}"), NOW, 120).unwrap(),
    }
}

fn request(action: AdminAction, asker: &(Vec<String>, KeyPair), second: &(Vec<String>, KeyPair)) -> AdminRequest {
    AdminRequest {
        requested_by: sign(asker, &action),
        approved_by: sign(second, &action),
        policy_version: VERSION.with(|v| v.borrow().clone()),
        action,
    }
}

fn engine(fx: &Fixture) -> Engine {
    fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).build().unwrap()
}

fn refused(engine: &Engine, request: &AdminRequest, code: ErrorCode) {
    let err = engine.admin(request).unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(engine.mode(), Mode::Enforce, "nothing changed");
}

#[test]
fn one_identity_cannot_switch_aegis_to_log_only() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    signing_for(&engine);
    let (alice, bob) = (admin("alice"), admin("bob"));
    let shadow = AdminAction::SetMode { mode: aegis_sod::Mode::Shadow };

    // Alice twice; Alice with a second credential for the same key; Alice's own delegate.
    refused(&engine, &request(shadow.clone(), &alice, &alice), ErrorCode::AdminConflict);
    let alice_again = (person("alice", &alice.1, &[ADMIN_SCOPE], "cred-alice-2"), person_key("alice"));
    refused(&engine, &request(shadow.clone(), &alice, &alice_again), ErrorCode::AdminConflict);
    let renamed = (person("alice-ops", &alice.1, &[ADMIN_SCOPE], "cred-alice-ops"), person_key("alice"));
    refused(&engine, &request(shadow.clone(), &alice, &renamed), ErrorCode::AdminConflict);
    let helper_key = key(40);
    let helper =
        delegate(&alice.0[0], &alice.1, spec_in(ADMINS_TASK, "helper", &helper_key, &[ADMIN_SCOPE], NOW - 30, 600)).unwrap();
    let delegated = (vec![alice.0[0].clone(), helper], helper_key);
    refused(&engine, &request(shadow.clone(), &alice, &delegated), ErrorCode::AdminUnauthorized);
    // Not administrators: no `aegis.admin`, or only a wildcard (which never covers `aegis.*`).
    let clerk = (person("clerk", &person_key("clerk"), &[TOOL], "cred-clerk"), person_key("clerk"));
    refused(&engine, &request(shadow.clone(), &alice, &clerk), ErrorCode::AdminUnauthorized);
    let star = (person("root-ish", &person_key("root-ish"), &["*", "aegis.*"], "cred-star"), person_key("root-ish"));
    refused(&engine, &request(shadow.clone(), &star, &alice), ErrorCode::AdminUnauthorized);
    // Bob's signature over another change does not approve this one.
    let mut swapped = request(shadow.clone(), &alice, &bob);
    swapped.approved_by = sign(&bob, &AdminAction::ClearCandidate);
    refused(&engine, &swapped, ErrorCode::AdminUnauthorized);
    // A signature by a key other than the one the credential binds.
    let mut forged = request(shadow.clone(), &alice, &bob);
    forged.approved_by.proof = admin_proof(&key(41), &shadow, &engine.policy_version(), "forged", NOW, 120).unwrap();
    refused(&engine, &forged, ErrorCode::AdminUnauthorized);

    // Two administrators: log-only. The initiator paying itself is now allowed, marked.
    let accepted = request(shadow.clone(), &alice, &bob);
    let outcome = engine.admin(&accepted).unwrap();
    assert_eq!((outcome.mode, outcome.requested_by.as_str(), outcome.approved_by.as_str()), (Mode::Shadow, "alice", "bob"));
    let planner_alone = vec![fx.planner_cred()];
    let d = engine.authorize(&req(&planner_alone, pay(50, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.would_block), (Outcome::Allow, true), "{d:?}");
    assert_eq!(d.reasons.last().unwrap().code.as_str(), "shadow_mode");
    // The call log-only let through counts: it is in the task's ledger, and nobody was asked
    // to approve anything.
    assert!(engine.ledger(TASK).unwrap().iter().any(|e| e.decision_id == d.decision_id));
    let big = engine.authorize(&req(&fx.chain(), pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((big.outcome, big.approval_id.as_ref()), (Outcome::Allow, None));
    assert!(engine.pending_approvals().unwrap().is_empty());
    // A negative amount still cannot make room in a budget.
    let d_neg = engine.authorize(&req(&planner_alone, pay(-5000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(d_neg.outcome, Outcome::Deny);
    // Log-only keeps the obligations: a card number still never reaches the tool.
    let with_card =
        serde_json::json!({"amount": 50, "currency": "eur", "destination": GOOD_ACCOUNT, "card_number": "4242424242424242"});
    let d = engine.authorize(&req(&planner_alone, with_card.clone(), None)).unwrap();
    assert_eq!((d.outcome, d.would_block), (Outcome::Sanitize, true), "{d:?}");
    match d.enforce(&with_card) {
        aegis_sod::Enforcement::Run { args } => assert_eq!(args["card_number"], "[REDACTED]"),
        other => panic!("{other:?}"),
    }
    // Log-only never lets a bad credential through.
    let forged_chain = vec![tamper_signature(&fx.planner_cred())];
    assert_eq!(engine.authorize(&req(&forged_chain, pay(50, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Deny);
    // The same signatures again: refused (each is accepted once).
    assert_eq!(engine.admin(&accepted).unwrap_err().code(), ErrorCode::AdminUnauthorized);
    // Back to enforcing, by Bob asking and Alice approving.
    engine.admin(&request(AdminAction::SetMode { mode: Mode::Enforce }, &bob, &alice)).unwrap();
    assert_eq!(engine.authorize(&req(&planner_alone, pay(50, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Deny);
    // An administrator whose credentials were revoked (task ended) no longer counts.
    engine.end_task(ADMINS_TASK).unwrap();
    let err = engine.admin(&request(shadow, &alice, &bob)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AdminUnauthorized);
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn a_signature_is_accepted_once_across_threads() {
    let fx = Fixture::new();
    let engine = Arc::new(engine(&fx));
    signing_for(&engine);
    let (alice, bob) = (admin("alice"), admin("bob"));
    let one = request(AdminAction::ClearCandidate, &alice, &bob);
    let accepted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| engine.admin(&one).is_ok())).collect();
        handles.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
    });
    assert_eq!(accepted, 1);
}

fn add_forbid(dir: &Path, id: &str, condition: &str) {
    std::fs::write(
        dir.join(format!("{id}.cedar")),
        format!("@id(\"{id}\")\nforbid (principal, action == Action::\"{TOOL}\", resource)\nwhen {{ {condition} }};\n"),
    )
    .unwrap();
}

#[test]
fn two_admin_engines_refuse_direct_changes_and_roll_back() {
    let fx = Fixture::new();
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).require_two_admins().build().unwrap();
    signing_for(&engine);
    let (alice, bob) = (admin("alice"), admin("bob"));
    let stricter = payments_copy("control-stricter");
    add_forbid(&stricter, "over-1000", "context.args.amount > 1000");
    for err in [
        engine.reload_bundle(&stricter).unwrap_err(),
        engine.swap_bundle(Bundle::from_dir(&stricter).unwrap()).unwrap_err(),
        engine.update_jwks("https://idp.example", "{\"keys\":[]}").unwrap_err(),
        engine.close_break_glass("bg_x", "INC-1").unwrap_err(),
    ] {
        assert_eq!(err.code(), ErrorCode::AdminApprovalRequired, "{err}");
    }
    let chain = fx.chain();
    assert_eq!(engine.authorize(&req(&chain, pay(1200, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let original = engine.policy_version();
    let err = engine.admin(&request(AdminAction::Rollback, &alice, &bob)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoPreviousBundle);

    let digest = Bundle::from_dir(&stricter).unwrap().digest().to_owned();
    // A request for other content than the directory holds is refused: what is signed is the
    // content, not the path.
    let wrong = AdminAction::LoadBundle { bundle_dir: stricter.display().to_string(), digest: "00".repeat(32) };
    assert_eq!(engine.admin(&request(wrong, &alice, &bob)).unwrap_err().code(), ErrorCode::InvalidBundle);
    assert_eq!(engine.policy_version(), original);
    let load = AdminAction::LoadBundle { bundle_dir: stricter.display().to_string(), digest };
    let outcome = engine.admin(&request(load.clone(), &alice, &bob)).unwrap();
    // Requests signed for the old version are refused now: a signature does not outlive the
    // state it was given for.
    assert_eq!(engine.admin(&request(load, &alice, &bob)).unwrap_err().code(), ErrorCode::AdminUnauthorized);
    signing_for(&engine);
    assert_ne!(outcome.policy_version, original);
    assert_eq!(engine.bundle_history(), vec![original.clone()]);
    assert_eq!(engine.authorize(&req(&chain, pay(1200, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Deny);
    let back = engine.admin(&request(AdminAction::Rollback, &bob, &alice)).unwrap();
    signing_for(&engine);
    assert_eq!(back.policy_version, original);
    assert!(engine.bundle_history().is_empty());
    assert_eq!(engine.authorize(&req(&chain, pay(1100, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
}

#[test]
fn signed_bundles_only() {
    let fx = Fixture::new();
    let signer = key(50);
    let dir = payments_copy("control-signed");
    // Unsigned: refused at build.
    let unsigned = Bundle::from_dir(&dir).unwrap();
    let err = fx
        .builder_on(Arc::new(aegis_sod::MemoryStore::new()))
        .require_signed_bundles(vec![signer.public_key().clone()])
        .bundle(unsigned)
        .build()
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BundleSignatureInvalid);
    // Signed by a trusted key: loads, marked with the signer.
    sign_bundle(&dir, &signer, NOW).unwrap();
    let signed = Bundle::from_dir_signed(&dir, &[signer.public_key().clone()]).unwrap();
    assert_eq!(signed.signed_by(), Some(signer.kid()));
    let engine = fx
        .builder_on(Arc::new(aegis_sod::MemoryStore::new()))
        .require_signed_bundles(vec![signer.public_key().clone()])
        .bundle(signed)
        .build()
        .unwrap();
    // Signed by another key, or a file changed after signing: refused, the old one stays.
    let other = payments_copy("control-other-signer");
    sign_bundle(&other, &key(51), NOW).unwrap();
    assert_eq!(engine.reload_bundle(&other).unwrap_err().code(), ErrorCode::BundleSignatureInvalid);
    add_forbid(&dir, "late-edit", "context.args.amount > 1");
    let err = engine.reload_bundle(&dir).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BundleSignatureInvalid);
    assert!(err.to_string().contains("a file changed after signing"), "{err}");
    std::fs::remove_file(dir.join("bundle.sig")).unwrap();
    assert_eq!(engine.reload_bundle(&dir).unwrap_err().code(), ErrorCode::BundleSignatureInvalid);
    // A bundle swapped in directly must carry a verified signature too.
    assert_eq!(engine.swap_bundle(Bundle::from_dir(&other).unwrap()).unwrap_err().code(), ErrorCode::BundleSignatureInvalid);
    let chain = fx.chain();
    assert_eq!(engine.authorize(&req(&chain, pay(1200, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
}

#[test]
fn a_candidate_decides_beside_the_enforced_bundle_and_is_promoted_in_one_call() {
    let fx = Fixture::new();
    let dir = temp_path("control-candidate-log");
    let _ = std::fs::remove_dir_all(&dir);
    let log_key = aegis_sod::audit::LogKey::new("aegis.example/candidate", KeyPair::from_seed(&[9; 32]).unwrap()).unwrap();
    let log = Arc::new(aegis_sod::audit::AuditLog::builder(&dir, log_key).open().unwrap());
    let engine = fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).audit_log(log).build().unwrap();
    signing_for(&engine);
    let (alice, bob) = (admin("alice"), admin("bob"));
    let stricter = payments_copy("control-candidate");
    add_forbid(&stricter, "candidate-over-1000", "context.args.amount > 1000");
    let digest = Bundle::from_dir(&stricter).unwrap().digest().to_owned();
    let set = AdminAction::SetCandidate { bundle_dir: stricter.display().to_string(), digest };
    let outcome = engine.admin(&request(set, &alice, &bob)).unwrap();
    let candidate_version = outcome.candidate_version.clone().unwrap();
    assert_ne!(candidate_version, outcome.policy_version);

    let chain = fx.chain();
    let big = engine.authorize(&req(&chain, pay(1200, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(big.outcome, Outcome::Allow, "the candidate never decides");
    let c = big.candidate.as_ref().unwrap();
    assert_eq!((c.outcome, c.would_block, c.policy_version.as_str()), (Outcome::Deny, true, candidate_version.as_str()));
    assert_eq!(c.policy_ids, vec!["candidate-over-1000".to_owned()]);
    let small = engine.authorize(&req(&chain, pay(300, GOOD_ACCOUNT), None)).unwrap();
    assert!(!small.candidate.as_ref().unwrap().would_block);
    // Past the task's budget (5000 a day) under the candidate's cap, in a task of its own: both
    // bundles ask for an approval. The candidate never commits, so it reads the budget first.
    let spender = chain_in("task-candidate-budget", "finance-agent", &fx.finance, &[TOOL], NOW);
    for _ in 0..5 {
        let within = engine.authorize(&req(&spender, pay(1000, GOOD_ACCOUNT), None)).unwrap();
        assert_eq!((within.outcome, within.candidate.as_ref().unwrap().outcome), (Outcome::Allow, Outcome::Allow));
    }
    let over = engine.authorize(&req(&spender, pay(1000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(over.outcome, Outcome::ApprovalNeeded, "{over:?}");
    assert_eq!(over.candidate.as_ref().unwrap().outcome, Outcome::ApprovalNeeded, "{over:?}");
    // The log carries the candidate's verdict; the report counts it per candidate rule.
    engine.audit_log().unwrap().checkpoint().unwrap();
    let read = aegis_sod::audit::read_log(&dir, None, &[]).unwrap();
    let report = aegis_sod::audit::Report::from_logs(&[(dir.display().to_string(), read)]);
    assert_eq!(report.candidate_divergences, 1);
    assert_eq!(report.candidate_would_block.len(), 1);
    assert_eq!(
        (report.candidate_would_block[0].name.as_str(), report.candidate_would_block[0].count),
        ("candidate-over-1000", 1)
    );
    assert!(report.to_html().contains("data-figure=\"candidate-would-block-candidate-over-1000\">1<"));

    // Promotion is one call (of two administrators): the candidate is in force, none beside it.
    let promoted = engine.admin(&request(AdminAction::PromoteCandidate, &bob, &alice)).unwrap();
    signing_for(&engine);
    assert_eq!((promoted.policy_version.as_str(), promoted.candidate_version.as_deref()), (candidate_version.as_str(), None));
    assert_eq!(engine.authorize(&req(&chain, pay(1300, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Deny);
    // And rollback is one call back.
    engine.admin(&request(AdminAction::Rollback, &alice, &bob)).unwrap();
    assert_eq!(engine.authorize(&req(&chain, pay(1400, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
}

#[test]
fn no_tool_call_can_spend_an_administrators_signature_or_end_the_control_plane() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    signing_for(&engine);
    let (alice, bob) = (admin("alice"), admin("bob"));
    let action = AdminAction::ClearCandidate;
    let asked = request(action.clone(), &alice, &bob);
    // The administrator's proof presented with a tool call named `aegis.admin`: refused before
    // anything is consumed, so the change still goes through afterwards.
    let mut call = aegis_sod::AuthorizationRequest::new(
        alice.0.clone(),
        ADMIN_SCOPE,
        action.signed_payload(&engine.policy_version()).unwrap(),
    );
    call = call.with_proof(asked.requested_by.proof.clone());
    let d = engine.authorize(&call).unwrap();
    assert_eq!((d.outcome, d.reasons[0].code.as_str()), (Outcome::Deny, "unknown_tool"));
    engine.admin(&asked).unwrap();
    assert_eq!(engine.end_task("aegis:control-plane").unwrap_err().code(), ErrorCode::MalformedRequest);
}
