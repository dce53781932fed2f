//! The strict JWS and JWK parsers: any bytes as a token to inspect, as a JWK to load, as a
//! signature to verify. Nothing may panic; nothing malformed may verify.
#![no_main]

use aegis_sod::json_api::call;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = call(None, "inspect", &json!({ "token": text }).to_string());
    let _ = call(None, "public_jwk", text);
    let _ = aegis_sod::PublicKey::from_jwk_json(text);
    if let Ok(key) = aegis_sod::KeyPair::from_seed(&[7; 32]) {
        assert!(!key.public_key().verify_strict(b"message", data), "random bytes verified");
    }
});
