//! The JSON operation table every binding forwards: the first line of the input names the
//! operation, the rest is its JSON. Any error comes back as a value, never a panic.
#![no_main]

use std::sync::OnceLock;

use aegis_sod::json_api::{call, engine_from_json, error_json, OPERATIONS};
use aegis_sod::Engine;
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let issuer = call(None, "generate_key", r#"{"seed_hex":"0101010101010101010101010101010101010101010101010101010101010101"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let public = call(None, "public_jwk", &issuer).unwrap_or_else(|e| panic!("{e}"));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/payments");
        engine_from_json(&format!(r#"{{"bundle_dir":"{dir}","trusted_issuers":[{{"issuer":"i","jwk":{public}}}]}}"#))
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (op, input) = text.split_once('\n').unwrap_or((text, ""));
    // A known operation most of the time, so the fuzzer reaches the parsers behind them.
    let op = OPERATIONS.iter().find(|o| o.name == op).map_or(op, |o| o.name);
    if op == "time_authorize" || op == "reload_bundle" {
        return;
    }
    if let Err(e) = call(Some(engine()), op, input) {
        assert!(error_json(&e).starts_with("{\"code\":"));
    }
});
