//! The native half of the Node package: the core's JSON boundary as JavaScript functions.
//! Errors carry the core's stable code as `err.code`; `aegis.js` turns JSON into typed objects.

use std::sync::Arc;

use aegis_sod::ffi;
use napi::bindgen_prelude::{AsyncTask, Task};
use napi::{Env, Error};
use napi_derive::napi;

/// The JS error `code` is the core's stable `ErrorCode`.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

type Result<T> = std::result::Result<T, Error<Code>>;

fn to_js(e: aegis_sod::Error) -> Error<Code> {
    Error::new(Code(e.code().as_str()), e.message().to_owned())
}

/// One Aegis engine; share it freely, it is thread-safe.
#[napi]
pub struct Engine {
    inner: Arc<aegis_sod::Engine>,
}

/// Which engine operation an async task runs off the JS thread.
enum Op {
    Authorize,
    Approve,
    Reject,
    Pending,
    ReloadBundle,
}

/// An engine operation run on the libuv thread pool.
pub struct EngineTask {
    engine: Arc<aegis_sod::Engine>,
    op: Op,
    input: String,
}

impl Task for EngineTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        let out = match self.op {
            Op::Authorize => ffi::authorize_json(&self.engine, &self.input),
            Op::Approve => ffi::approve_json(&self.engine, &self.input),
            Op::Reject => ffi::reject_json(&self.engine, &self.input),
            Op::Pending => ffi::pending_approvals_json(&self.engine),
            Op::ReloadBundle => self.engine.reload_bundle(&self.input),
        };
        // Async errors travel as `[code] message` and are split back in `aegis.js`.
        out.map_err(|e| napi::Error::from_reason(format!("[{}] {}", e.code(), e.message())))
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}

#[napi]
impl Engine {
    /// Builds an engine from a JSON `EngineConfig` (bundle, trusted issuers, store, ...).
    #[napi(constructor)]
    pub fn new(config: String) -> Result<Self> {
        Ok(Self { inner: Arc::new(ffi::engine_from_json(&config).map_err(to_js)?) })
    }

    fn task(&self, op: Op, input: String) -> AsyncTask<EngineTask> {
        AsyncTask::new(EngineTask { engine: Arc::clone(&self.inner), op, input })
    }

    /// Decides on a JSON request; returns the decision as JSON.
    #[napi]
    pub fn authorize(&self, request: String) -> Result<String> {
        ffi::authorize_json(&self.inner, &request).map_err(to_js)
    }

    /// `authorize` off the JS thread (for stores that do I/O).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn authorize_async(&self, request: String) -> AsyncTask<EngineTask> {
        self.task(Op::Authorize, request)
    }

    /// Approves; returns the resolution (with the override token) as JSON.
    #[napi]
    pub fn approve(&self, request: String) -> Result<String> {
        ffi::approve_json(&self.inner, &request).map_err(to_js)
    }

    /// `approve` off the JS thread.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn approve_async(&self, request: String) -> AsyncTask<EngineTask> {
        self.task(Op::Approve, request)
    }

    /// Rejects; returns the resolution as JSON.
    #[napi]
    pub fn reject(&self, request: String) -> Result<String> {
        ffi::reject_json(&self.inner, &request).map_err(to_js)
    }

    /// `reject` off the JS thread.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn reject_async(&self, request: String) -> AsyncTask<EngineTask> {
        self.task(Op::Reject, request)
    }

    /// Pending approvals as a JSON array.
    #[napi]
    pub fn pending_approvals(&self) -> Result<String> {
        ffi::pending_approvals_json(&self.inner).map_err(to_js)
    }

    /// `pendingApprovals` off the JS thread.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn pending_approvals_async(&self) -> AsyncTask<EngineTask> {
        self.task(Op::Pending, String::new())
    }

    /// One approval as JSON (or `null`).
    #[napi]
    pub fn approval(&self, approval_id: String) -> Result<String> {
        ffi::approval_json(&self.inner, &approval_id).map_err(to_js)
    }

    /// The task ledger as a JSON array.
    #[napi]
    pub fn ledger(&self, task_id: String) -> Result<String> {
        ffi::ledger_json(&self.inner, &task_id).map_err(to_js)
    }

    /// Ends a task.
    #[napi]
    pub fn end_task(&self, task_id: String) -> Result<()> {
        self.inner.end_task(&task_id).map_err(to_js)
    }

    /// Opens a break-glass grant; returns it as JSON.
    #[napi]
    pub fn break_glass(&self, request: String) -> Result<String> {
        ffi::break_glass_json(&self.inner, &request).map_err(to_js)
    }

    /// Open break-glass grants as a JSON array.
    #[napi]
    pub fn open_break_glass(&self) -> Result<String> {
        ffi::open_break_glass_json(&self.inner).map_err(to_js)
    }

    /// Closes a break-glass grant with its review reference.
    #[napi]
    pub fn close_break_glass(&self, grant_id: String, review_ref: String) -> Result<()> {
        ffi::close_break_glass(&self.inner, &grant_id, &review_ref).map_err(to_js)
    }

    /// Loads a bundle directory and swaps it in; returns the new policy version.
    #[napi]
    pub fn reload_bundle(&self, bundle_dir: String) -> Result<String> {
        self.inner.reload_bundle(&bundle_dir).map_err(to_js)
    }

    /// `reloadBundle` off the JS thread.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn reload_bundle_async(&self, bundle_dir: String) -> AsyncTask<EngineTask> {
        self.task(Op::ReloadBundle, bundle_dir)
    }

    /// The version of the bundle in force.
    #[napi]
    pub fn policy_version(&self) -> String {
        self.inner.policy_version()
    }

    /// Mean seconds per `authorize` of this JSON request, measured in Rust (benchmarks).
    #[napi]
    pub fn time_authorize(&self, request: String, iterations: u32) -> Result<f64> {
        ffi::time_authorize(&self.inner, &request, iterations).map_err(to_js)
    }
}

/// A private JWK, fresh or from a 64-hex-digit seed.
#[napi]
pub fn generate_key(seed_hex: Option<String>) -> Result<String> {
    ffi::generate_key_json(seed_hex.as_deref()).map_err(to_js)
}

/// The public JWK of a JWK.
#[napi]
pub fn public_jwk(jwk: String) -> Result<String> {
    ffi::public_jwk_json(&jwk).map_err(to_js)
}

/// Issues a root credential or delegates one (JSON `IssueRequest`).
#[napi]
pub fn issue(request: String) -> Result<String> {
    ffi::issue_json(&request).map_err(to_js)
}

/// Decodes a credential without verifying it.
#[napi]
pub fn inspect(token: String) -> Result<String> {
    ffi::inspect_json(&token).map_err(to_js)
}

/// A proof of possession for one call (JSON `ProofRequest`).
#[napi]
pub fn create_proof(request: String) -> Result<String> {
    ffi::create_proof_json(&request).map_err(to_js)
}

/// The Slack Block Kit message for a pending approval (JSON).
#[napi]
pub fn slack_message(pending: String) -> Result<String> {
    ffi::slack_message_json(&pending).map_err(to_js)
}

/// The call digest approvals and proofs bind to.
#[napi]
pub fn call_digest(tool: String, args: String) -> Result<String> {
    ffi::call_digest_json(&tool, &args).map_err(to_js)
}

/// Every stable error code, as a JSON array.
#[napi]
pub fn error_codes() -> String {
    ffi::error_codes_json()
}
