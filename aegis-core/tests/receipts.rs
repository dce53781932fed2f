//! Decision receipts: a permitting decision carries a JWS the tool verifies offline against the
//! engine's JWK Set; a receipt for other arguments, another tool, another audience or issuer,
//! signed by another key, tampered or expired is refused; denials carry none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aegis_sod::{verify_receipt, Bundle, Engine, ErrorCode, Outcome, ReceiptCheck};
use common::*;
use serde_json::{json, Value};

fn engine(fx: &Fixture) -> Engine {
    Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .clock(fx.clock.clone())
        .receipts("aegis.example", "payments-api", key(11), 60)
        .build()
        .unwrap()
}

fn check(args: Value) -> ReceiptCheck {
    ReceiptCheck { issuer: "aegis.example".into(), audience: "payments-api".into(), tool: TOOL.into(), args }
}

#[test]
fn a_tool_verifies_the_receipt_of_exactly_the_allowed_call() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let jwks = engine.receipt_jwks().unwrap();
    let args = pay(1200, GOOD_ACCOUNT);
    let d = engine.authorize(&req(&fx.chain(), args.clone(), None)).unwrap();
    assert_eq!(d.outcome, Outcome::Allow);
    let receipt = d.receipt.clone().expect("an allow carries a receipt");
    let claims = verify_receipt(&receipt, &jwks, &check(args.clone()), NOW, 0).unwrap();
    assert_eq!(
        (claims.jti.as_str(), claims.sub.as_str(), claims.task.as_str()),
        (d.decision_id.as_str(), "planner/finance-agent", TASK)
    );

    let code = |token: &str, jwks: &Value, c: ReceiptCheck, now: i64| verify_receipt(token, jwks, &c, now, 0).unwrap_err().code();
    assert_eq!(code(&receipt, &jwks, check(pay(1201, GOOD_ACCOUNT)), NOW), ErrorCode::ReceiptMismatch);
    let mut other_tool = check(args.clone());
    other_tool.tool = "invoice.create".into();
    assert_eq!(code(&receipt, &jwks, other_tool, NOW), ErrorCode::ReceiptMismatch);
    let mut other_aud = check(args.clone());
    other_aud.audience = "another-api".into();
    assert_eq!(code(&receipt, &jwks, other_aud, NOW), ErrorCode::ReceiptInvalid);
    let mut other_iss = check(args.clone());
    other_iss.issuer = "someone".into();
    assert_eq!(code(&receipt, &jwks, other_iss, NOW), ErrorCode::ReceiptInvalid);
    assert_eq!(code(&receipt, &jwks, check(args.clone()), NOW + 61), ErrorCode::ReceiptInvalid, "expired");
    assert_eq!(code("", &jwks, check(args.clone()), NOW), ErrorCode::ReceiptInvalid, "none");
    assert_eq!(code(&tamper_signature(&receipt), &jwks, check(args.clone()), NOW), ErrorCode::ReceiptInvalid);
    let attacker = json!({"keys": [key(5).public_key().to_jwk()]});
    assert_eq!(code(&receipt, &attacker, check(args.clone()), NOW), ErrorCode::ReceiptInvalid);
    // A receipt re-signed by an attacker's key with the engine's `kid` does not verify either.
    let claims_json = serde_json::to_value(&claims).unwrap();
    let forged = aegis_sod::testing::sign(&claims_json, aegis_sod::RECEIPT_TYP, &key(5)).unwrap();
    assert_eq!(code(&forged, &jwks, check(args), NOW), ErrorCode::ReceiptInvalid);
}

#[test]
fn denials_carry_no_receipt_and_a_sanitized_call_binds_the_redacted_arguments() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let denied = engine.authorize(&req(&[fx.planner_cred()], pay(100, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((denied.outcome, denied.receipt.is_none()), (Outcome::Deny, true));
    let asked = engine.authorize(&req(&fx.chain(), pay(9000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((asked.outcome, asked.receipt.is_none()), (Outcome::ApprovalNeeded, true));

    let mut args = pay(300, GOOD_ACCOUNT);
    args["card_number"] = json!("4111111111111111");
    let d = engine.authorize(&req(&fx.chain(), args.clone(), None)).unwrap();
    assert_eq!(d.outcome, Outcome::Sanitize, "{d:?}");
    let jwks = engine.receipt_jwks().unwrap();
    let receipt = d.receipt.unwrap();
    let redacted = d.sanitized_args.unwrap();
    verify_receipt(&receipt, &jwks, &check(redacted), NOW, 0).unwrap();
    assert_eq!(verify_receipt(&receipt, &jwks, &check(args), NOW, 0).unwrap_err().code(), ErrorCode::ReceiptMismatch);
}

#[test]
fn an_engine_without_receipts_issues_none() {
    let fx = Fixture::new();
    let engine = fx.engine();
    assert!(engine.receipt_jwks().is_none());
    let d = engine.authorize(&req(&fx.chain(), pay(1200, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!((d.outcome, d.receipt), (Outcome::Allow, None));
}

#[test]
fn a_consumed_receipt_runs_once_even_when_raced_and_private_keys_are_refused() {
    let fx = Fixture::new();
    let engine = engine(&fx);
    let jwks = engine.receipt_jwks().unwrap();
    let args = pay(700, GOOD_ACCOUNT);
    let receipt = engine.authorize(&req(&fx.chain(), args.clone(), None)).unwrap().receipt.unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (receipt, jwks, c) = (receipt.clone(), jwks.clone(), check(args.clone()));
            std::thread::spawn(move || aegis_sod::verify_receipt_once(&receipt, &jwks, &c, NOW, 0).is_ok())
        })
        .collect();
    assert_eq!(handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count(), 1);
    // A key set that leaks the signing key is refused outright.
    let leaked = json!({"keys": [key(11).to_private_jwk()]});
    assert_eq!(verify_receipt(&receipt, &leaked, &check(args), NOW, 0).unwrap_err().code(), ErrorCode::ReceiptInvalid);
}

#[test]
fn log_only_mode_issues_no_receipt_for_a_call_the_policies_refused() {
    let fx = Fixture::new();
    let engine = Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .clock(fx.clock.clone())
        .receipts("aegis.example", "payments-api", key(11), 60)
        .build()
        .unwrap();
    // Two administrators switch the engine to log-only.
    let admin = |name: &str| {
        let k = person_key(name);
        let mut spec = spec_in("admins", name, &k, &[aegis_sod::ADMIN_SCOPE], NOW - 60, 3000);
        spec.jti = format!("cred-{name}");
        (vec![aegis_sod::issue_root(ISSUER, &key(1), spec).unwrap()], k)
    };
    let action = aegis_sod::AdminAction::SetMode { mode: aegis_sod::Mode::Shadow };
    let version = engine.policy_version();
    let sign = |who: &(Vec<String>, aegis_sod::KeyPair), jti: &str| aegis_sod::AdminSignature {
        chain: who.0.clone(),
        proof: aegis_sod::admin_proof(&who.1, &action, &version, jti, NOW, 120).unwrap(),
    };
    let (alice, bob) = (admin("alice"), admin("bob"));
    let request = aegis_sod::AdminRequest {
        requested_by: sign(&alice, "adm-1"),
        approved_by: sign(&bob, "adm-2"),
        policy_version: version.clone(),
        action: action.clone(),
    };
    engine.admin(&request).unwrap();
    let d = engine.authorize(&req(&[fx.planner_cred()], pay(100, GOOD_ACCOUNT), None)).unwrap();
    assert!(d.would_block && d.outcome.permits_call(), "{d:?}");
    assert!(d.receipt.is_none());
}
