//! The C ABI of Aegis.
//!
//! - Handles are opaque: `AegisEngine` is created by `aegis_engine_new` and released by
//!   `aegis_engine_free`. Live handles are registered, so a freed or foreign pointer passed back
//!   is refused with `AEGIS_STATUS_INVALID_HANDLE` instead of being dereferenced.
//! - Requests and results cross as UTF-8 JSON strings, the same JSON the core's `ffi` module
//!   and every other binding use.
//! - Every function returns an `AegisStatus`; on failure `aegis_last_error_code()` and
//!   `aegis_last_error_message()` describe it (per thread, until the next call).
//! - Every string returned through a `char **out` is owned by the caller and must be released
//!   with `aegis_string_free`.
//! - No panic crosses the boundary: each function catches it and returns `AEGIS_STATUS_PANIC`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use aegis_sod::{ffi, Engine, Error, ErrorCode};

/// The result of every Aegis C function.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AegisStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// The engine handle is not live (freed, never created, or not an engine).
    InvalidHandle = 3,
    /// Aegis panicked; the call had no effect that can be relied on.
    Panic = 4,
    /// The request was malformed (JSON, shape, values).
    MalformedRequest = 5,
    /// A key was invalid.
    InvalidKey = 6,
    /// A policy bundle failed to load.
    InvalidBundle = 7,
    /// The store is unavailable.
    StoreUnavailable = 8,
    /// Another error: `aegis_last_error_code()` names it.
    Error = 9,
}

/// An Aegis engine (opaque).
pub struct AegisEngine {
    inner: Engine,
}

struct LastError {
    code: CString,
    message: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

fn live_engines() -> &'static Mutex<HashSet<usize>> {
    static LIVE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

fn set_error(code: &str, message: &str) {
    let clean = |s: &str| CString::new(s.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(LastError { code: clean(code), message: clean(message) }));
}

fn status_of(e: &Error) -> AegisStatus {
    set_error(e.code().as_str(), e.message());
    match e.code() {
        ErrorCode::MalformedRequest => AegisStatus::MalformedRequest,
        ErrorCode::InvalidKey => AegisStatus::InvalidKey,
        ErrorCode::InvalidBundle => AegisStatus::InvalidBundle,
        ErrorCode::StoreUnavailable => AegisStatus::StoreUnavailable,
        _ => AegisStatus::Error,
    }
}

/// Runs `body`, turning panics and errors into statuses.
fn guarded(body: impl FnOnce() -> Result<(), AegisStatus>) -> AegisStatus {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => AegisStatus::Ok,
        Ok(Err(status)) => status,
        Err(_) => {
            set_error("panic", "aegis panicked; the call failed");
            AegisStatus::Panic
        }
    }
}

/// Reads a C string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for the call.
unsafe fn arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, AegisStatus> {
    if ptr.is_null() {
        set_error("null_pointer", &format!("`{name}` is NULL"));
        return Err(AegisStatus::NullPointer);
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string valid for the call.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|_| {
        set_error("invalid_utf8", &format!("`{name}` is not valid UTF-8"));
        AegisStatus::InvalidUtf8
    })
}

/// Stores `value` in `*out` as a caller-owned string.
///
/// # Safety
/// `out` must be NULL or valid for a write of one pointer.
unsafe fn put(out: *mut *mut c_char, value: String) -> Result<(), AegisStatus> {
    if out.is_null() {
        set_error("null_pointer", "`out` is NULL");
        return Err(AegisStatus::NullPointer);
    }
    let s = CString::new(value).map_err(|_| {
        set_error("internal", "result holds a NUL byte");
        AegisStatus::Error
    })?;
    // SAFETY: `out` is non-null and the caller promises it is valid for one pointer write.
    unsafe { *out = s.into_raw() };
    Ok(())
}

/// Borrows a live engine.
///
/// # Safety
/// `engine` must be NULL or a pointer; it is only dereferenced if it is a live handle.
unsafe fn engine<'a>(engine: *const AegisEngine) -> Result<&'a AegisEngine, AegisStatus> {
    if engine.is_null() {
        set_error("null_pointer", "`engine` is NULL");
        return Err(AegisStatus::NullPointer);
    }
    let live = live_engines().lock().map(|l| l.contains(&(engine as usize))).unwrap_or(false);
    if !live {
        set_error("invalid_handle", "`engine` is not a live engine handle (freed or never created)");
        return Err(AegisStatus::InvalidHandle);
    }
    // SAFETY: the pointer is registered as live: it came from `Box::into_raw` in
    // `aegis_engine_new` and `aegis_engine_free` has not removed it.
    Ok(unsafe { &*engine })
}

/// Creates an engine from a JSON `EngineConfig`; on success `*out` holds the handle.
///
/// # Safety
/// `config_json` must be a NUL-terminated string; `out` must be valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_new(config_json: *const c_char, out: *mut *mut AegisEngine) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let config = unsafe { arg(config_json, "config_json") }?;
        if out.is_null() {
            set_error("null_pointer", "`out` is NULL");
            return Err(AegisStatus::NullPointer);
        }
        let inner = ffi::engine_from_json(config).map_err(|e| status_of(&e))?;
        let handle = Box::into_raw(Box::new(AegisEngine { inner }));
        live_engines().lock().map_err(|_| AegisStatus::Panic)?.insert(handle as usize);
        // SAFETY: `out` is non-null and valid for one pointer write by contract.
        unsafe { *out = handle };
        Ok(())
    })
}

/// Frees an engine. NULL is accepted and ignored; a pointer that is not a live handle (double
/// free) is refused with `AEGIS_STATUS_INVALID_HANDLE`.
///
/// # Safety
/// `engine` must be NULL or a pointer value; it is freed only if it is a live handle.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_free(engine: *mut AegisEngine) -> AegisStatus {
    guarded(|| {
        if engine.is_null() {
            return Ok(());
        }
        let removed = live_engines().lock().map_err(|_| AegisStatus::Panic)?.remove(&(engine as usize));
        if !removed {
            set_error("invalid_handle", "`engine` is not a live engine handle (double free?)");
            return Err(AegisStatus::InvalidHandle);
        }
        // SAFETY: the handle was live, so it came from `Box::into_raw` and is freed only here.
        drop(unsafe { Box::from_raw(engine) });
        Ok(())
    })
}

/// Runs a core operation on a live engine and a string argument, storing the result in `*out`.
///
/// # Safety
/// As for the `aegis_engine_*` functions that call it.
unsafe fn engine_op(
    engine: *const AegisEngine,
    input: *const c_char,
    input_name: &str,
    out: *mut *mut c_char,
    op: fn(&Engine, &str) -> aegis_sod::Result<String>,
) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from the caller's contract.
        let engine = unsafe { self::engine(engine) }?;
        // SAFETY: forwarded from the caller's contract.
        let input = unsafe { arg(input, input_name) }?;
        let result = op(&engine.inner, input).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { put(out, result) }
    })
}

/// Decides on a JSON `AuthorizationRequest`; `*out` receives the decision JSON.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `request_json` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_authorize(engine: *const AegisEngine, request_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, request_json, "request_json", out, ffi::authorize_json) }
}

/// Approves (JSON `{approval_id, approver_chain, note}`); `*out` receives the resolution JSON.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `request_json` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_approve(engine: *const AegisEngine, request_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, request_json, "request_json", out, ffi::approve_json) }
}

/// Rejects (JSON `{approval_id, approver_chain, note}`); `*out` receives the resolution JSON.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `request_json` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_reject(engine: *const AegisEngine, request_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, request_json, "request_json", out, ffi::reject_json) }
}

/// One approval by id; `*out` receives its JSON (or `null`).
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `approval_id` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_approval(engine: *const AegisEngine, approval_id: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, approval_id, "approval_id", out, ffi::approval_json) }
}

/// A task's ledger; `*out` receives a JSON array.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `task_id` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_ledger(engine: *const AegisEngine, task_id: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, task_id, "task_id", out, ffi::ledger_json) }
}

/// Opens a break-glass grant (JSON request); `*out` receives the grant JSON.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `request_json` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_break_glass(engine: *const AegisEngine, request_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, request_json, "request_json", out, ffi::break_glass_json) }
}

/// Loads a bundle directory and swaps it in; `*out` receives the new policy version.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `bundle_dir` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_reload_bundle(engine: *const AegisEngine, bundle_dir: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, bundle_dir, "bundle_dir", out, |e, dir| e.reload_bundle(dir)) }
}

/// Ends a task (its credentials are refused from now on); `*out` receives `null`.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `task_id` must be NUL-terminated;
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_end_task(engine: *const AegisEngine, task_id: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `engine_op`'s.
    unsafe { engine_op(engine, task_id, "task_id", out, |e, task| e.end_task(task).map(|()| "null".to_owned())) }
}

/// Pending approvals; `*out` receives a JSON array.
///
/// # Safety
/// `engine` must be a handle from `aegis_engine_new` (checked); `out` must be valid for one
/// pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_pending_approvals(engine: *const AegisEngine, out: *mut *mut c_char) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let engine = unsafe { self::engine(engine) }?;
        let result = ffi::pending_approvals_json(&engine.inner).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from this function's contract.
        unsafe { put(out, result) }
    })
}

/// The policy version in force; `*out` receives it.
///
/// # Safety
/// As for `aegis_engine_pending_approvals`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_policy_version(engine: *const AegisEngine, out: *mut *mut c_char) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let engine = unsafe { self::engine(engine) }?;
        // SAFETY: forwarded from this function's contract.
        unsafe { put(out, engine.inner.policy_version()) }
    })
}

/// Runs an engine-less core operation on a string argument, storing the result in `*out`.
///
/// # Safety
/// As for the functions that call it.
unsafe fn string_op(
    input: *const c_char,
    input_name: &str,
    out: *mut *mut c_char,
    op: fn(&str) -> aegis_sod::Result<String>,
) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from the caller's contract.
        let input = unsafe { arg(input, input_name) }?;
        let result = op(input).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { put(out, result) }
    })
}

/// A private JWK derived from a 64-hex-digit seed (`aegis_generate_key` makes a random one).
///
/// # Safety
/// `seed_hex` must be NUL-terminated; `out` must be valid for one pointer write. Free `*out` with
/// `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_key_from_seed(seed_hex: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `string_op`'s.
    unsafe { string_op(seed_hex, "seed_hex", out, |seed| ffi::generate_key_json(Some(seed))) }
}

/// The public JWK of a JWK.
///
/// # Safety
/// `jwk_json` must be NUL-terminated; `out` must be valid for one pointer write. Free `*out` with
/// `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_public_jwk(jwk_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `string_op`'s.
    unsafe { string_op(jwk_json, "jwk_json", out, ffi::public_jwk_json) }
}

/// Issues a root credential or delegates one (JSON `IssueRequest`); `*out` receives the token.
///
/// # Safety
/// `request_json` must be NUL-terminated; `out` must be valid for one pointer write. Free `*out` with
/// `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_issue(request_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `string_op`'s.
    unsafe { string_op(request_json, "request_json", out, ffi::issue_json) }
}

/// Decodes a credential without verifying it; `*out` receives header, claims and digest.
///
/// # Safety
/// `token` must be NUL-terminated; `out` must be valid for one pointer write. Free `*out` with
/// `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_inspect(token: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `string_op`'s.
    unsafe { string_op(token, "token", out, ffi::inspect_json) }
}

/// A proof of possession for one call (JSON `ProofRequest`); `*out` receives the proof.
///
/// # Safety
/// `request_json` must be NUL-terminated; `out` must be valid for one pointer write. Free `*out` with
/// `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_create_proof(request_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `string_op`'s.
    unsafe { string_op(request_json, "request_json", out, ffi::create_proof_json) }
}

/// The Slack Block Kit message for a pending approval (JSON); `*out` receives the body.
///
/// # Safety
/// `pending_json` must be NUL-terminated; `out` must be valid for one pointer write. Free `*out` with
/// `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_slack_message(pending_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    // SAFETY: this function's contract is `string_op`'s.
    unsafe { string_op(pending_json, "pending_json", out, ffi::slack_message_json) }
}

/// A fresh private JWK from the operating system's randomness.
///
/// # Safety
/// `out` must be valid for one pointer write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_generate_key(out: *mut *mut c_char) -> AegisStatus {
    guarded(|| {
        let key = ffi::generate_key_json(None).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from this function's contract.
        unsafe { put(out, key) }
    })
}

/// The value at an RFC 6901 JSON pointer (e.g. `/outcome`) in `json`, as JSON text: C programs
/// read decisions with it without a JSON library.
///
/// # Safety
/// `json` and `pointer` must be NUL-terminated; `out` must be valid for one pointer write.
/// Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_json_get(json: *const c_char, pointer: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let (json, pointer) = unsafe { (arg(json, "json")?, arg(pointer, "pointer")?) };
        let value = ffi::json_pointer(json, pointer).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from this function's contract.
        unsafe { put(out, value) }
    })
}

/// Releases a string returned by Aegis. NULL is ignored.
///
/// # Safety
/// `s` must be NULL or a string returned through an `out` parameter of an Aegis function, not
/// yet freed.
#[no_mangle]
pub unsafe extern "C" fn aegis_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: by contract `s` came from `CString::into_raw` in `put` and is freed once.
        drop(unsafe { CString::from_raw(s) });
    }));
}

/// The stable code of this thread's last error (e.g. `approval_not_found`), or `""`.
/// Valid until the next Aegis call on this thread; do not free.
#[no_mangle]
pub extern "C" fn aegis_last_error_code() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(c"".as_ptr(), |e| e.code.as_ptr()))
}

/// The message of this thread's last error, or `""`. Valid until the next Aegis call on this
/// thread; do not free.
#[no_mangle]
pub extern "C" fn aegis_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(c"".as_ptr(), |e| e.message.as_ptr()))
}
