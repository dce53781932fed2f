//! The public Ed25519 suites through the key loader and the verifier every token goes through,
//! by way of the operation table the bindings call: Wycheproof's 151 cases and CCTV's 914 edge
//! cases. The expected CCTV acceptances are ed25519-dalek 2.2's `verify_strict` on keys
//! `VerifyingKey::from_bytes` accepts (43 of 914); the loader also refuses small-order keys,
//! which only removes acceptances, and the test counts them apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aegis_sod::json_api::call;
use serde_json::{json, Value};

fn verify(key: &str, msg: &str, sig: &str) -> Value {
    let input = json!({"public_key_hex": key, "message_hex": msg, "signature_hex": sig});
    serde_json::from_str(&call(None, "verify_signature", &input.to_string()).unwrap()).unwrap()
}

fn suite(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::repo_root().join(path)).unwrap()).unwrap()
}

#[test]
fn wycheproof_ed25519_through_the_operation_table() {
    let suite = suite("tests/vectors/external/wycheproof/ed25519_test.json");
    let (mut total, mut disagree) = (0, Vec::new());
    for group in suite["testGroups"].as_array().unwrap() {
        let key = group["publicKey"]["pk"].as_str().unwrap();
        for t in group["tests"].as_array().unwrap() {
            total += 1;
            let valid = verify(key, t["msg"].as_str().unwrap(), t["sig"].as_str().unwrap())["valid"] == true;
            if valid != (t["result"] == "valid") {
                disagree.push(t["tcId"].clone());
            }
        }
    }
    assert_eq!(total, 151);
    assert!(disagree.is_empty(), "disagreeing cases: {disagree:?}");
}

#[test]
fn cctv_edge_cases_match_ed25519_dalek() {
    use ed25519_dalek::{Signature, VerifyingKey};
    let cases = suite("tests/vectors/external/cctv/ed25519vectors.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 914);
    let (mut accepted, mut dalek_accepted, mut weak_keys_refused) = (0, 0, 0);
    for case in cases {
        let (key, sig) = (case["key"].as_str().unwrap(), case["sig"].as_str().unwrap());
        let msg = hex::encode(case["msg"].as_str().unwrap());
        let ours = verify(key, &msg, sig);
        let dalek = VerifyingKey::from_bytes(&hex::decode(key).unwrap().try_into().unwrap())
            .map(|k| {
                k.verify_strict(
                    case["msg"].as_str().unwrap().as_bytes(),
                    &Signature::from_slice(&hex::decode(sig).unwrap()).unwrap(),
                )
                .is_ok()
            })
            .unwrap_or(false);
        dalek_accepted += usize::from(dalek);
        accepted += usize::from(ours["valid"] == true);
        if dalek && ours["valid"] != true {
            // Only a key the loader refuses (small order) may turn an acceptance into a refusal.
            assert_eq!(ours["key_error"], "invalid_key", "case {}", case["number"]);
            weak_keys_refused += 1;
        }
        assert!(ours["valid"] != true || dalek, "case {} accepted where dalek refuses", case["number"]);
    }
    assert_eq!(dalek_accepted, 43, "the vendored suite's known answer");
    assert_eq!(accepted + weak_keys_refused, 43);
    println!("cctv: {accepted} accepted, {weak_keys_refused} refused for a small-order key, of 914");
}
