//! Handles under concurrency: a thread that frees an engine while others decide on it only ends
//! the handle. Calls in flight finish on their own reference; later calls get
//! `AEGIS_STATUS_INVALID_HANDLE`; nothing is used after it is freed (the heap corruption this
//! replaced was seen as an abort).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, unsafe_code)]

use std::ffi::{c_char, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use aegis_ffi::{
    aegis_call, aegis_engine_call, aegis_engine_free, aegis_engine_new, aegis_string_free, AegisEngine, AegisStatus,
};

fn call_free(op: &str, input: &str) -> String {
    let (op, input) = (CString::new(op).unwrap(), CString::new(input).unwrap());
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid C strings and an out pointer; the result is copied, then freed once.
    unsafe {
        assert_eq!(aegis_call(op.as_ptr(), input.as_ptr(), &mut out), AegisStatus::Ok);
        let text = CStr::from_ptr(out).to_str().unwrap().to_owned();
        aegis_string_free(out);
        text
    }
}

fn config() -> CString {
    let issuer = call_free("generate_key", &format!(r#"{{"seed_hex":"{}"}}"#, "01".repeat(32)));
    let public = call_free("public_jwk", &issuer);
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/payments");
    CString::new(format!(r#"{{"bundle_dir":"{root}","trusted_issuers":[{{"issuer":"i","jwk":{public}}}]}}"#)).unwrap()
}

#[test]
fn freeing_while_other_threads_authorize_is_safe() {
    let config = config();
    let request = CString::new(r#"{"chain":[],"tool":"stripe.create_payment","args":{}}"#).unwrap();
    let op = CString::new("authorize").unwrap();
    let (decided, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    for _ in 0..200 {
        let mut engine: *mut AegisEngine = std::ptr::null_mut();
        // SAFETY: valid config string and out pointer.
        assert_eq!(unsafe { aegis_engine_new(config.as_ptr(), &mut engine) }, AegisStatus::Ok);
        let handle = engine as usize;
        let freed = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (request, op, freed) = (request.clone(), op.clone(), Arc::clone(&freed));
                let (decided, refused, running) = (Arc::clone(&decided), Arc::clone(&refused), Arc::clone(&running));
                let mut first = true;
                std::thread::spawn(move || loop {
                    let was_freed = freed.load(Ordering::SeqCst);
                    let mut out: *mut c_char = std::ptr::null_mut();
                    // SAFETY: the handle is only a value to the library; strings are valid.
                    let status =
                        unsafe { aegis_engine_call(handle as *const AegisEngine, op.as_ptr(), request.as_ptr(), &mut out) };
                    match status {
                        AegisStatus::Ok => {
                            decided.fetch_add(1, Ordering::SeqCst);
                            if std::mem::take(&mut first) {
                                running.fetch_add(1, Ordering::SeqCst);
                            }
                            // SAFETY: returned by the library, freed once.
                            unsafe { aegis_string_free(out) };
                            assert!(!was_freed, "a call that started after the free must not decide");
                        }
                        AegisStatus::InvalidHandle => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        other => panic!("unexpected status {other:?}"),
                    }
                })
            })
            .collect();
        // Free only once each worker has finished a call on the live handle, so every round races
        // the free against calls that are certainly in their loop (a bare yield let a busy
        // machine free before any worker had started, and no call ever overlapped the free).
        while running.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        // SAFETY: a live handle, freed once here.
        assert_eq!(unsafe { aegis_engine_free(engine) }, AegisStatus::Ok);
        freed.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        // SAFETY: a stale handle is refused, not dereferenced.
        assert_eq!(unsafe { aegis_engine_free(engine) }, AegisStatus::InvalidHandle);
    }
    assert_eq!(refused.load(Ordering::Relaxed), 400, "every worker ends on the freed handle");
}
