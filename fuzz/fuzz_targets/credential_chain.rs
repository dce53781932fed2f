//! Credential chains: a real root and delegation, then the fuzzer's bytes spliced in as
//! further links, replacing links, or as the whole chain. A spliced chain never allows, and
//! nothing panics.
#![no_main]

use std::sync::OnceLock;

use aegis_sod::{delegate, issue_root, AuthorizationRequest, Bundle, CredentialSpec, Engine, KeyPair, ManualClock};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const NOW: i64 = 1_767_225_600;

struct Setup {
    engine: Engine,
    chain: Vec<String>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let key = |n: u8| KeyPair::from_seed(&[n; 32]).unwrap_or_else(|e| panic!("{e}"));
        let bundle = Bundle::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/payments")).unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::builder()
            .bundle(bundle)
            .trust_issuer("https://issuer.fuzz", key(1).public_key().clone())
            .clock(std::sync::Arc::new(ManualClock::at_secs(NOW)))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = |agent: &str, k: &KeyPair| CredentialSpec {
            agent_id: agent.into(),
            agent_key: k.public_key().clone(),
            audience: aegis_sod::DEFAULT_AUDIENCE.into(),
            task_id: "fuzz".into(),
            intent: "fuzz".into(),
            scope: vec!["stripe.create_payment".into()],
            issued_at: NOW - 10,
            expires_at: NOW + 600,
            jti: format!("cred-{agent}"),
            roles: Vec::new(),
        };
        let root = issue_root("https://issuer.fuzz", &key(1), spec("planner", &key(2))).unwrap_or_else(|e| panic!("{e}"));
        let leaf = delegate(&root, &key(2), spec("finance-agent", &key(3))).unwrap_or_else(|e| panic!("{e}"));
        Setup { engine, chain: vec![root, leaf] }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let s = setup();
    let args = json!({"amount": 100, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"});
    let fuzzed = text.to_owned();
    for chain in [
        vec![fuzzed.clone()],
        vec![s.chain[0].clone(), fuzzed.clone()],
        vec![s.chain[0].clone(), s.chain[1].clone(), fuzzed.clone()],
        vec![fuzzed, s.chain[1].clone()],
    ] {
        if let Ok(d) = s.engine.authorize(&AuthorizationRequest::new(chain, "stripe.create_payment", args.clone())) {
            assert!(!d.outcome.permits_call(), "a spliced chain allowed: {d:?}");
        }
    }
});
