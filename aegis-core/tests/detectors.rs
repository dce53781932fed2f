//! `@detect`: a card number in a payment's free-text memo is redacted before the tool sees it,
//! in what an approver is shown, and in the audit record, which counts the matches and never
//! holds the matched text; a bundle naming an unknown detector does not load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_sod::audit::{kind, read_log, AuditLog, AuditRecord, LogKey};
use aegis_sod::{Bundle, Enforcement, Engine, ErrorCode, KeyPair, MemoryStore, Outcome, ReasonCode};
use common::*;
use serde_json::{json, Value};

const CARD_MEMO: &str = "pay 4242 4242 4242 4242 ref 77";
const REDACTED_MEMO: &str = "pay [REDACTED:payment_card] ref 77";

fn log_dir(name: &str) -> PathBuf {
    let dir = temp_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// An engine on the payments bundle that records into `dir`.
fn engine_logging_to(fx: &Fixture, dir: &Path) -> Engine {
    let key = LogKey::new("aegis.example/detectors", KeyPair::from_seed(&[9; 32]).unwrap()).unwrap();
    let log = Arc::new(AuditLog::builder(dir, key).open().unwrap());
    fx.builder_on(Arc::new(MemoryStore::new())).audit_log(log).build().unwrap()
}

fn with_memo(amount: i64, memo: &str) -> Value {
    let mut args = pay(amount, GOOD_ACCOUNT);
    args["memo"] = json!(memo);
    args
}

/// The log's records of one kind, after a checkpoint (so the whole log verifies).
fn records(engine: &Engine, dir: &Path, of_kind: &str) -> Vec<AuditRecord> {
    engine.audit_log().unwrap().checkpoint().unwrap();
    let log = read_log(dir, None, &[]).unwrap();
    assert!(log.report.intact(), "{:?}", log.report);
    log.records.into_iter().filter(|r| r.kind == of_kind).collect()
}

/// No run of the card's digits, however grouped, anywhere in `value`.
fn assert_no_card(value: &Value) {
    let text = value.to_string();
    for run in ["4242 4242 4242 4242", "4242-4242-4242-4242", "4242424242424242"] {
        assert!(!text.contains(run), "{run} in {text}");
    }
}

#[test]
fn a_card_number_in_the_memo_is_redacted_and_only_counted_in_the_record() {
    let fx = Fixture::new();
    let dir = log_dir("detect-card");
    let engine = engine_logging_to(&fx, &dir);
    let chain = fx.chain();
    let args = with_memo(100, CARD_MEMO);

    let d = engine.authorize(&req(&chain, args.clone(), None)).unwrap();
    assert_eq!(d.outcome, Outcome::Sanitize, "{d:?}");
    let ids: Vec<&str> = d.reasons.iter().filter_map(|r| r.policy_id.as_deref()).collect();
    assert!(ids.contains(&"detect-card-numbers-in-memo"), "{ids:?}");
    let sent = with_memo(100, REDACTED_MEMO);
    assert_eq!(d.sanitized_args.as_ref(), Some(&sent));
    assert_eq!(d.enforce(&args), Enforcement::Run { args: sent.clone() });

    let decided = records(&engine, &dir, kind::DECISION);
    let record = &decided.last().unwrap().fields;
    assert_eq!(record["outcome"], "sanitize");
    assert_eq!(record["args"], sent);
    assert_eq!(record["detections"], json!({"payment_card": 1}));
    assert_no_card(&Value::Object(record.clone()));
}

#[test]
fn a_luhn_failing_order_number_stays_allowed_and_unredacted() {
    let fx = Fixture::new();
    let dir = log_dir("detect-order");
    let engine = engine_logging_to(&fx, &dir);
    let args = with_memo(100, "order 4242424242424241, thanks");

    let d = engine.authorize(&req(&fx.chain(), args.clone(), None)).unwrap();
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(d.sanitized_args, None);
    assert_eq!(d.enforce(&args), Enforcement::Run { args: args.clone() });

    let record = records(&engine, &dir, kind::DECISION).pop().unwrap().fields;
    assert_eq!(record["args"], args);
    assert_eq!(record["detections"], json!({}));
}

#[test]
fn every_decision_record_carries_detections() {
    let fx = Fixture::new();
    let dir = log_dir("detect-none");
    let engine = engine_logging_to(&fx, &dir);
    // No memo: the detecting permit does not hold, and nothing is found.
    assert_eq!(engine.authorize(&req(&fx.chain(), pay(100, GOOD_ACCOUNT), None)).unwrap().outcome, Outcome::Allow);
    let record = records(&engine, &dir, kind::DECISION).pop().unwrap().fields;
    assert_eq!(record["detections"], json!({}));
}

#[test]
fn a_bundle_naming_an_unknown_detector_does_not_load() {
    let mut sources = engine_sources();
    sources.policies.push((
        "extra.cedar".into(),
        "@id(\"detect-cards\")\n@detect(\"payment_card, credit_card\")\npermit (principal, action, resource);\n".into(),
    ));
    let err = Bundle::from_sources(&sources).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidBundle);
    assert_eq!(err.code().as_str(), "invalid_bundle");
    let message = err.message();
    assert!(message.contains("`detect-cards`") && message.contains("unknown detector `credit_card`"), "{message}");
    assert!(message.contains("payment_card, iban, email, secret"), "{message}");

    let mut sources = engine_sources();
    sources.policies.push(("extra.cedar".into(), "@detect(\"email\")\nforbid (principal, action, resource);\n".into()));
    let err = Bundle::from_sources(&sources).unwrap_err();
    assert!(err.message().contains("`@detect` belongs on a permit"), "{}", err.message());
}

#[test]
fn an_approved_call_still_has_its_memo_redacted() {
    let fx = Fixture::new();
    let dir = log_dir("detect-approval");
    let engine = engine_logging_to(&fx, &dir);
    let chain = fx.chain();
    let args = with_memo(9000, CARD_MEMO);

    let asked = engine.authorize(&req(&chain, args.clone(), None)).unwrap();
    assert_eq!(asked.outcome, Outcome::ApprovalNeeded, "{asked:?}");
    let id = asked.approval_id.unwrap();
    // The approver is shown the memo redacted, here and in the approval's records.
    let pending = engine.approval(&id).unwrap().unwrap();
    assert_eq!(pending.args["memo"], REDACTED_MEMO);
    assert_no_card(&aegis_sod::slack_message(&pending));

    let resolution = engine.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap();
    assert!(resolution.accepted, "{resolution:?}");
    let token = resolution.override_token.unwrap();
    let d = engine.authorize(&req(&chain, args.clone(), Some(&token))).unwrap();
    assert_eq!(d.outcome, Outcome::Sanitize, "{d:?}");
    assert_eq!(d.codes(), vec![ReasonCode::APPROVAL_GRANTED]);
    let sent = with_memo(9000, REDACTED_MEMO);
    assert_eq!(d.enforce(&args), Enforcement::Run { args: sent.clone() });

    let redeemed = records(&engine, &dir, kind::DECISION).pop().unwrap().fields;
    assert_eq!(redeemed["approval_redeemed"], true);
    assert_eq!(redeemed["args"], sent);
    assert_eq!(redeemed["detections"], json!({"payment_card": 1}));
    for k in [kind::DECISION, kind::APPROVAL_OPENED, kind::APPROVAL_APPROVED] {
        for record in records(&engine, &dir, k) {
            assert_no_card(&Value::Object(record.fields));
        }
    }
}
