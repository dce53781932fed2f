//! CCTV's Ed25519 edge cases through the C ABI (`aegis_call("verify_signature", ...)`): the
//! same 43 of 914 accepted as in the Rust, Python and Node runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, unsafe_code)]

use std::ffi::{c_char, CStr, CString};

use aegis_ffi::{aegis_call, aegis_string_free, AegisStatus};

fn verify(key: &str, msg: &str, sig: &str) -> bool {
    let input = serde_json::json!({"public_key_hex": key, "message_hex": hex(msg.as_bytes()), "signature_hex": sig});
    let (op, input) = (CString::new("verify_signature").unwrap(), CString::new(input.to_string()).unwrap());
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid C strings and out pointer; the returned string is copied, then freed once.
    unsafe {
        assert_eq!(aegis_call(op.as_ptr(), input.as_ptr(), &mut out), AegisStatus::Ok);
        let verdict: serde_json::Value = serde_json::from_str(CStr::from_ptr(out).to_str().unwrap()).unwrap();
        aegis_string_free(out);
        verdict["valid"] == true
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cctv_ed25519_through_the_c_abi() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/external/cctv/ed25519vectors.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 914);
    let accepted = cases
        .iter()
        .filter(|c| verify(c["key"].as_str().unwrap(), c["msg"].as_str().unwrap(), c["sig"].as_str().unwrap()))
        .count();
    assert_eq!(accepted, 43);
}
