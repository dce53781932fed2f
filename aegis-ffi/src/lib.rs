//! The C ABI of Aegis: the core's one JSON operation table behind two functions.
//!
//! - `aegis_engine_new` builds an engine from a JSON `EngineConfig`; `aegis_engine_free`
//!   releases it. Handles are opaque numbers, never dereferenced: the registry maps each live
//!   handle to an `Arc` of its engine, and a call clones that `Arc` under the registry lock, so
//!   a thread freeing an engine while another decides on it only ends the handle; the engine
//!   goes away when the last call in flight returns. A freed, foreign or NULL handle is refused
//!   with `AEGIS_STATUS_INVALID_HANDLE` (handles are never reused).
//! - `aegis_engine_call(engine, op, input, &out)` runs an engine operation of the table
//!   (`authorize`, `approve`, ...); `aegis_call(op, input, &out)` runs a free one (`issue`,
//!   `call_digest`, `json_pointer`, ...). Input and output are UTF-8 JSON.
//! - Every function returns an `AegisStatus`; on failure `aegis_last_error_json()` holds the
//!   core's one error encoding (`{"code", "message", ...}`) and `aegis_last_error_code()` the
//!   stable code (per thread, until the next call).
//! - Every string returned through a `char **out` is owned by the caller and must be released
//!   with `aegis_string_free`.
//! - No panic crosses the boundary: each function catches it and returns `AEGIS_STATUS_PANIC`.

pub mod uniffi_api;

uniffi::setup_scaffolding!("aegis");

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aegis_sod::json_api::{call, engine_from_json, error_json, json_pointer};
use aegis_sod::{Engine, Error, ErrorCode};

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

/// An Aegis engine (opaque: a handle, never dereferenced).
pub struct AegisEngine {
    _private: [u8; 0],
}

struct LastError {
    code: CString,
    json: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

/// Live engines by handle.
fn registry() -> &'static Mutex<HashMap<usize, Arc<Engine>>> {
    static LIVE: OnceLock<Mutex<HashMap<usize, Arc<Engine>>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The next handle: starts above any small integer a caller might pass by mistake, and never
/// repeats, so a stale handle can never name a newer engine.
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x1000);

fn set_error(error: &Error) {
    let clean = |s: &str| CString::new(s.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR
        .with(|e| *e.borrow_mut() = Some(LastError { code: clean(error.code().as_str()), json: clean(&error_json(error)) }));
}

fn status_of(e: &Error) -> AegisStatus {
    set_error(e);
    match e.code() {
        ErrorCode::MalformedRequest => AegisStatus::MalformedRequest,
        ErrorCode::InvalidKey => AegisStatus::InvalidKey,
        ErrorCode::InvalidBundle => AegisStatus::InvalidBundle,
        ErrorCode::StoreUnavailable => AegisStatus::StoreUnavailable,
        _ => AegisStatus::Error,
    }
}

/// A failure of the C boundary itself, recorded in the same JSON shape as a core error, with
/// the status's own code: `null_pointer`, `invalid_utf8`, `invalid_handle` or `panic`.
fn boundary(status: AegisStatus, message: &str) -> AegisStatus {
    let code = match status {
        AegisStatus::NullPointer => "null_pointer",
        AegisStatus::InvalidUtf8 => "invalid_utf8",
        AegisStatus::InvalidHandle => "invalid_handle",
        AegisStatus::Panic => "panic",
        _ => "internal",
    };
    // The messages are this file's own literals: no character needs escaping but `"`.
    let json = format!(r#"{{"code":"{code}","message":"{}"}}"#, message.replace('"', "'"));
    let clean = |s: &str| CString::new(s).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(LastError { code: clean(code), json: clean(&json) }));
    status
}

/// Runs `body`, turning panics and errors into statuses.
fn guarded(body: impl FnOnce() -> Result<(), AegisStatus>) -> AegisStatus {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => AegisStatus::Ok,
        Ok(Err(status)) => status,
        Err(_) => boundary(AegisStatus::Panic, "aegis panicked; the call failed"),
    }
}

/// Reads a C string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for the call.
unsafe fn arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, AegisStatus> {
    if ptr.is_null() {
        return Err(boundary(AegisStatus::NullPointer, &format!("`{name}` is NULL")));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string valid for the call.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|_| boundary(AegisStatus::InvalidUtf8, &format!("`{name}` is not valid UTF-8")))
}

/// Stores `value` in `*out` as a caller-owned string.
///
/// # Safety
/// `out` must be NULL or valid for a write of one pointer.
unsafe fn put(out: *mut *mut c_char, value: String) -> Result<(), AegisStatus> {
    if out.is_null() {
        return Err(boundary(AegisStatus::NullPointer, "`out` is NULL"));
    }
    let s = CString::new(value).map_err(|_| boundary(AegisStatus::Error, "result holds a NUL byte"))?;
    // SAFETY: `out` is non-null and the caller promises it is valid for one pointer write.
    unsafe { *out = s.into_raw() };
    Ok(())
}

/// The engine behind a live handle, held for the duration of the call.
fn engine(handle: *const AegisEngine) -> Result<Arc<Engine>, AegisStatus> {
    if handle.is_null() {
        return Err(boundary(AegisStatus::NullPointer, "`engine` is NULL"));
    }
    let live = registry().lock().map_err(|_| AegisStatus::Panic)?.get(&(handle as usize)).cloned();
    live.ok_or_else(|| boundary(AegisStatus::InvalidHandle, "`engine` is not a live engine handle (freed or never created)"))
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
            return Err(boundary(AegisStatus::NullPointer, "`out` is NULL"));
        }
        let engine = engine_from_json(config).map_err(|e| status_of(&e))?;
        let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        registry().lock().map_err(|_| AegisStatus::Panic)?.insert(handle, Arc::new(engine));
        // SAFETY: `out` is non-null and valid for one pointer write by contract. The handle is
        // a number dressed as a pointer; nothing ever dereferences it.
        unsafe { *out = handle as *mut AegisEngine };
        Ok(())
    })
}

/// Frees an engine. NULL is accepted and ignored; a handle that is not live (double free) is
/// refused with `AEGIS_STATUS_INVALID_HANDLE`. Calls in flight on other threads finish first.
///
/// # Safety
/// None beyond passing a value: the handle is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_free(engine: *mut AegisEngine) -> AegisStatus {
    guarded(|| {
        if engine.is_null() {
            return Ok(());
        }
        let removed = registry().lock().map_err(|_| AegisStatus::Panic)?.remove(&(engine as usize));
        match removed {
            // Dropped outside the lock: the last reference may be a call in flight elsewhere.
            Some(engine) => {
                drop(engine);
                Ok(())
            }
            None => Err(boundary(AegisStatus::InvalidHandle, "`engine` is not a live engine handle (double free?)")),
        }
    })
}

/// Runs engine operation `op` of the core's operation table (`authorize`, `approve`,
/// `reject`, `pending_approvals`, `ledger`, `end_task`, `break_glass`, ...) on `input_json`;
/// `*out` receives the result's JSON.
///
/// # Safety
/// `op` and `input_json` must be NUL-terminated strings; `out` must be valid for one pointer
/// write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_engine_call(
    engine: *const AegisEngine,
    op: *const c_char,
    input_json: *const c_char,
    out: *mut *mut c_char,
) -> AegisStatus {
    guarded(|| {
        let engine = self::engine(engine)?;
        // SAFETY: forwarded from this function's contract.
        let (op, input) = unsafe { (arg(op, "op")?, arg(input_json, "input_json")?) };
        let result = call(Some(&engine), op, input).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from this function's contract.
        unsafe { put(out, result) }
    })
}

/// Runs an operation of the table that needs no engine (`issue`, `create_proof`,
/// `call_digest`, `generate_key`, `json_pointer`, `enforce`, `operations`, ...).
///
/// # Safety
/// `op` and `input_json` must be NUL-terminated strings; `out` must be valid for one pointer
/// write. Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_call(op: *const c_char, input_json: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let (op, input) = unsafe { (arg(op, "op")?, arg(input_json, "input_json")?) };
        let result = call(None, op, input).map_err(|e| status_of(&e))?;
        // SAFETY: forwarded from this function's contract.
        unsafe { put(out, result) }
    })
}

/// The value at an RFC 6901 JSON pointer (e.g. `/outcome`) in `json`, as JSON text: C programs
/// read decisions with it without a JSON library (the `json_pointer` operation, without having
/// to quote the JSON into another JSON).
///
/// # Safety
/// `json` and `pointer` must be NUL-terminated; `out` must be valid for one pointer write.
/// Free `*out` with `aegis_string_free`.
#[no_mangle]
pub unsafe extern "C" fn aegis_json_get(json: *const c_char, pointer: *const c_char, out: *mut *mut c_char) -> AegisStatus {
    guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let (json, pointer) = unsafe { (arg(json, "json")?, arg(pointer, "pointer")?) };
        let value = json_pointer(json, pointer).map_err(|e| status_of(&e))?;
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

/// This thread's last error as JSON (`{"code", "message", "link"?, ...}`, the encoding every
/// binding carries), or `""`. Valid until the next Aegis call on this thread; do not free.
#[no_mangle]
pub extern "C" fn aegis_last_error_json() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(c"".as_ptr(), |e| e.json.as_ptr()))
}
