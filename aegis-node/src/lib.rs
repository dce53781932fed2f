//! The native half of the Node package: the core's one operation table as JavaScript
//! functions. Errors carry the core's error JSON as their message (sync and async alike);
//! `aegis.js` turns it into an `AegisError` with `err.code`, and JSON into typed objects.

use std::sync::Arc;

use aegis_sod::json_api::{self, error_json};
use napi::bindgen_prelude::{AsyncTask, Function, Task};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{Env, Error, Status};
use napi_derive::napi;

fn to_js(e: aegis_sod::Error) -> Error {
    Error::new(Status::GenericFailure, error_json(&e))
}

/// One Aegis engine; share it freely, it is thread-safe.
#[napi]
pub struct Engine {
    inner: Arc<aegis_sod::Engine>,
}

/// An engine operation run on the libuv thread pool.
pub struct EngineTask {
    engine: Arc<aegis_sod::Engine>,
    op: String,
    input: String,
}

impl Task for EngineTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        json_api::call(Some(&self.engine), &self.op, &self.input).map_err(to_js)
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}

#[napi]
impl Engine {
    /// Builds an engine from a JSON `EngineConfig`. `notifier`, when given, is called (on the
    /// JS thread, through a threadsafe function) with every new pending approval's JSON, after
    /// the approval is stored.
    #[napi(constructor)]
    pub fn new(config: String, notifier: Option<Function<String, ()>>) -> napi::Result<Self> {
        let notify = match notifier {
            None => None,
            Some(f) => {
                // Weak: a notifier must not keep the process alive.
                let tsfn = f.build_threadsafe_function::<String>().weak::<true>().callee_handled::<false>().build()?;
                let notify: Arc<dyn Fn(String) + Send + Sync> = Arc::new(move |pending: String| {
                    let _ = tsfn.call(pending, ThreadsafeFunctionCallMode::NonBlocking);
                });
                Some(notify)
            }
        };
        let config = aegis_sod::from_str_strict(&config).map_err(to_js)?;
        let inner = json_api::engine_with_notifier(config, notify).map_err(to_js)?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Runs engine operation `op` of the core's table on `input` (JSON), returning JSON.
    #[napi]
    pub fn call(&self, op: String, input: String) -> napi::Result<String> {
        json_api::call(Some(&self.inner), &op, &input).map_err(to_js)
    }

    /// `call` off the JS thread, on the libuv pool (for stores that do I/O).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn call_async(&self, op: String, input: String) -> AsyncTask<EngineTask> {
        AsyncTask::new(EngineTask { engine: Arc::clone(&self.inner), op, input })
    }
}

/// Runs an operation of the core's table that needs no engine.
#[napi]
pub fn call(op: String, input: String) -> napi::Result<String> {
    json_api::call(None, &op, &input).map_err(to_js)
}
