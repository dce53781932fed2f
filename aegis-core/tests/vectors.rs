//! The language-neutral vectors in `tests/vectors/`: generated from fixed seeds and a fixed
//! clock, committed, checked for drift, and run through the JSON boundary every binding uses.
//!
//! Regenerate after an intended change with `AEGIS_UPDATE_VECTORS=1 cargo test --test vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aegis_sod::json_api::{self, call};
use common::*;
use serde_json::{json, Value};

fn generate() -> Value {
    let fx = Fixture::new();
    let cases: Vec<Value> = cases(&fx)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "request": {"chain": c.chain, "tool": c.tool, "args": c.args},
                "expect": {"outcome": c.outcome, "codes": c.codes, "policy_ids": c.policy_ids, "would_block": c.would_block},
            })
        })
        .collect();
    let keys: Vec<Value> = (1u8..=5)
        .map(|n| {
            let k = key(n);
            json!({"seed_hex": hex(&[n; 32]), "x": k.public_key().to_jwk().x, "kid": k.kid()})
        })
        .collect();
    json!({
        "description": "Aegis decision vectors: for each case build a fresh engine from `engine` (bundle_dir is relative to the repository root), authorize the request, and compare outcome, reason codes (in order), policy ids (sorted) and would_block.",
        "engine": {
            "bundle_dir": "policies/payments",
            "trusted_issuers": [{"issuer": ISSUER, "jwk": fx.issuer.public_key().to_jwk()}],
            "fixed_time": NOW,
        },
        "keys": keys,
        "cases": cases,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn vectors_match_committed_file() {
    let path = repo_root().join("tests/vectors/decisions.json");
    let fresh = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("AEGIS_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed =
        std::fs::read_to_string(&path).expect("tests/vectors/decisions.json is missing: run with AEGIS_UPDATE_VECTORS=1");
    assert!(
        committed == fresh,
        "tests/vectors/decisions.json drifted from the generator; rerun with AEGIS_UPDATE_VECTORS=1 if intended"
    );
}

#[test]
fn vectors_decide_as_expected_through_the_json_boundary() {
    let vectors = generate();
    let mut engine_config = vectors["engine"].clone();
    engine_config["bundle_dir"] = json!(repo_root().join("policies/payments").to_string_lossy());
    let mut failures = Vec::new();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        // Each case on a fresh engine: cases are independent of each other's ledger and budgets.
        let engine = json_api::engine_from_json(&engine_config.to_string()).unwrap();
        let decision: Value =
            serde_json::from_str(&call(Some(&engine), "authorize", &case["request"].to_string()).unwrap()).unwrap();
        let codes: Vec<Value> = decision["reasons"].as_array().unwrap().iter().map(|r| r["code"].clone()).collect();
        let mut ids: Vec<Value> =
            decision["reasons"].as_array().unwrap().iter().filter_map(|r| r.get("policy_id").cloned()).collect();
        ids.sort_by_key(|v| v.as_str().unwrap_or_default().to_owned());
        let expect = &case["expect"];
        let got =
            json!({"outcome": decision["outcome"], "codes": codes, "policy_ids": ids, "would_block": decision["would_block"]});
        if &got != expect {
            failures.push(format!("{}: expected {expect}, got {got}", case["name"]));
        }
        assert_eq!(decision["approval_id"].is_string(), expect["outcome"] == "approval_needed");
        assert_eq!(decision["sanitized_args"].is_object(), expect["outcome"] == "sanitize");
    }
    assert!(failures.is_empty(), "{} vector(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn keys_in_vectors_derive_from_their_seeds() {
    for k in generate()["keys"].as_array().unwrap() {
        let jwk: Value =
            serde_json::from_str(&call(None, "generate_key", &json!({"seed_hex": k["seed_hex"]}).to_string()).unwrap()).unwrap();
        assert_eq!(jwk["x"], k["x"]);
        assert_eq!(jwk["kid"], k["kid"]);
    }
}
