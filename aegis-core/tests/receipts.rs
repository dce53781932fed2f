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
