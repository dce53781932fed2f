//! The C ABI entry points with arbitrary bytes: operation names and inputs that need not be
//! UTF-8, NUL-terminated at the first zero. Every call returns a status; strings are freed.
#![no_main]

use std::ffi::{c_char, CString};

use aegis_ffi::{aegis_call, aegis_engine_call, aegis_engine_free, aegis_json_get, aegis_string_free, AegisEngine};
use libfuzzer_sys::fuzz_target;

fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (op, input) = (c_string(&data[..split]), c_string(data.get(split + 1..).unwrap_or_default()));
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings and an out pointer; a returned string is freed once.
    unsafe {
        let _ = aegis_call(op.as_ptr(), input.as_ptr(), &mut out);
        aegis_string_free(out);
        out = std::ptr::null_mut();
        let _ = aegis_json_get(input.as_ptr(), op.as_ptr(), &mut out);
        aegis_string_free(out);
        out = std::ptr::null_mut();
        // A handle that was never created (or long freed): refused, never dereferenced.
        let bogus = (data.len() + 1) as *mut AegisEngine;
        let _ = aegis_engine_call(bogus, op.as_ptr(), input.as_ptr(), &mut out);
        aegis_string_free(out);
        let _ = aegis_engine_free(bogus);
    }
});
