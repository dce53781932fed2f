//! Properties that must hold under any input (proptest): delegation only narrows, the call
//! digest is RFC 8785's (equal values, equal digests; different values, different digests),
//! budgets never grow, an override token is redeemed at most once under any interleaving, and
//! the chain cache never changes a decision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::{call_digest, delegate, issue_root, AuthorizationRequest, Bundle, Engine, ErrorCode, Outcome};
use common::*;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const TOOLS: [&str; 6] =
    ["stripe.create_payment", "stripe.refund", "invoice.create", "payroll.run", "aegis.approve", "mail.send"];

fn scope_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..TOOLS.len()).prop_map(|i| TOOLS[i].to_owned()),
        Just("*".to_owned()),
        Just("stripe.*".to_owned()),
        Just("aegis.*".to_owned()),
    ]
}

/// JSON values without floats (whose RFC 8785 form is tested by the canonicalization tests)
/// and with integers inside ±2^53, where the digest is defined.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|n| json!(n)),
        "[a-z\\u{e9}\\u{1f600}\"\\\\]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The same value with every object's members inserted in reverse order.
fn reordered(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reordered(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reordered).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn delegation_only_narrows(parent in prop::collection::vec(scope_entry(), 1..4), child in prop::collection::vec(scope_entry(), 1..4), ttl in 1i64..5000) {
        let fx = Fixture::new();
        let engine = fx.engine();
        let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
        let child: Vec<&str> = child.iter().map(String::as_str).collect();
        let root = issue_root(ISSUER, &key(1), spec_in("task-narrow", "planner", &key(2), &parent, NOW - 60, 3000)).unwrap();
        if let Ok(link) = delegate(&root, &key(2), spec_in("task-narrow", "child", &key(3), &child, NOW - 30, ttl)) {
            let (p, c) = (engine.verify_chain(std::slice::from_ref(&root)), engine.verify_chain(&[root, link]));
            let (p, c) = (p.unwrap(), c.unwrap());
            for tool in TOOLS {
                prop_assert!(!c.grants(tool) || p.grants(tool), "child grants `{}`, parent does not", tool);
            }
            prop_assert!(c.expires_at <= p.expires_at);
            prop_assert!(c.roles.is_empty());
        }
    }

    #[test]
    fn the_call_digest_is_a_function_of_the_json_value(a in json_value(), b in json_value()) {
        let (args_a, args_b) = (json!({"v": a}), json!({"v": b}));
        let digest_a = call_digest("t", &args_a).unwrap();
        prop_assert_eq!(&digest_a, &call_digest("t", &reordered(&args_a)).unwrap());
        prop_assert_eq!(args_a == args_b, digest_a == call_digest("t", &args_b).unwrap());
        prop_assert_ne!(&digest_a, &call_digest("u", &args_a).unwrap());
    }

    #[test]
    fn budgets_never_grow(amounts in prop::collection::vec(-3000i64..3000, 1..12)) {
        let fx = Fixture::new();
        let mut sources = engine_sources();
        sources.manifest = sources.manifest.replace("on_exceed: approval", "on_exceed: deny");
        let engine = fx.engine_with(Bundle::from_sources(&sources).unwrap());
        let chain = chain_in("task-budget", "finance-agent", &key(3), &[TOOL], NOW);
        let mut spent = 0i64;
        for amount in amounts {
            let d = engine.authorize(&req(&chain, pay(amount, GOOD_ACCOUNT), None)).unwrap();
            if d.outcome.permits_call() {
                prop_assert!(amount >= 0, "a negative amount was allowed");
                spent += amount;
            } else if amount < 0 {
                prop_assert_eq!(d.codes(), vec![ErrorCode::BudgetAmountInvalid]);
            }
            prop_assert!(spent <= 5000, "the task spent {} of a 5000 budget", spent);
        }
    }

    #[test]
    fn the_chain_cache_never_changes_a_decision(picks in prop::collection::vec(0usize..6, 1..10)) {
        let fx = Fixture::new();
        let cached = fx.engine();
        let cases: Vec<Vec<String>> = vec![
            fx.chain(),
            chain_in("task-cache", "finance-agent", &key(3), &[TOOL], NOW),
            vec![fx.planner_cred()],
            vec![fx.chain()[0].clone(), tamper_signature(&fx.chain()[1])],
            chain_in("task-cache", "finance-agent", &key(3), &["invoice.create"], NOW),
            vec![fx.chain()[1].clone()],
        ];
        for pick in picks {
            let request = AuthorizationRequest::new(cases[pick].clone(), TOOL, pay(100, GOOD_ACCOUNT));
            let fresh = fx.engine();
            let (a, b) = (cached.authorize(&request).unwrap(), fresh.authorize(&request).unwrap());
            prop_assert_eq!((a.outcome, a.codes()), (b.outcome, b.codes()), "case {}", pick);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn an_override_token_is_redeemed_at_most_once(threads in 2usize..8, sqlite in any::<bool>()) {
        let fx = Fixture::new();
        let store = if sqlite { sqlite_config().open().unwrap() } else { aegis_sod::json_api::StoreConfig::Memory.open().unwrap() };
        let engine = Arc::new(
            Engine::builder()
                .bundle(Bundle::from_dir(payments_dir()).unwrap())
                .trust_issuer(ISSUER, fx.issuer.public_key().clone())
                .clock(fx.clock.clone())
                .store(store)
                .build()
                .unwrap(),
        );
        let chain = chain_in("task-once", "finance-agent", &key(3), &[TOOL], NOW);
        let id = engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap();
        let token = engine.approve(&id, &approver_chain("finance-approver", NOW), None).unwrap().override_token.unwrap();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (engine, r) = (Arc::clone(&engine), req(&chain, pay(9000, GOOD_ACCOUNT), Some(&token)));
                std::thread::spawn(move || engine.authorize(&r).unwrap().outcome)
            })
            .collect();
        let allowed = handles.into_iter().map(|h| h.join().unwrap()).filter(|o| *o == Outcome::Allow).count();
        prop_assert_eq!(allowed, 1);
    }
}

/// Integers too large for 64 bits arrive as doubles; neighbours would share a digest (an
/// approval of one would redeem the other), so every whole number beyond ±2^53 is refused,
/// however it was written; fractions and whole numbers within ±2^53 are digested.
#[test]
fn whole_numbers_beyond_2_to_the_53_are_refused_however_written() {
    for text in [
        "18446744073709551616",
        "18446744073709551617",
        "-18446744073709551617",
        "1e20",
        "9007199254740994.0",
        "9007199254740993.0",
    ] {
        let args = serde_json::from_str::<Value>(&format!(r#"{{"amount": {text}}}"#)).unwrap();
        let err = call_digest("t", &args).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MalformedRequest, "{text}");
    }
    for text in ["9007199254740992", "-9007199254740992", "9007199254740991.0", "0.5", "1e-7", "123456.75"] {
        let args = serde_json::from_str::<Value>(&format!(r#"{{"amount": {text}}}"#)).unwrap();
        assert!(call_digest("t", &args).is_ok(), "{text}");
    }
    let big = |n: &str| aegis_sod::json_api::call(None, "call_digest", &format!(r#"{{"tool":"t","args":{{"a":{n}}}}}"#));
    assert!(big("18446744073709551616").is_err() && big("18446744073709551617").is_err());
}
