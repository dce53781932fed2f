//! The native half of the Node package: the core's one operation table as JavaScript
//! functions. Errors carry the core's error JSON as their message (sync and async alike);
//! `aegis.js` turns it into an `AegisError` with `err.code`, and JSON into typed objects.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use aegis_sod::json_api::{self, error_json};
use aegis_sod::{AuthorizationRequest, Decision, OsRandom, Reason, ResourceRef, SecureRandom};
use napi::bindgen_prelude::{AsyncTask, Either, Float64ArraySlice, Function, Task};
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi::{Env, Error, Status};
use napi_derive::napi;
use serde_json::Value;

mod tape;

fn to_js(e: aegis_sod::Error) -> Error {
    Error::new(Status::GenericFailure, error_json(&e))
}

/// One Aegis engine; share it freely, it is thread-safe.
#[napi]
pub struct Engine {
    inner: Arc<aegis_sod::Engine>,
    /// The handle other worker threads attach with, once `shareHandle` made one.
    shared: OnceLock<String>,
}

/// The engine as `authorize` and `authorizeEnforced` reach it, held on its JavaScript thread
/// under a number (see [`Held`]): N-API's checks on a class instance (`this`), and on an
/// external value, cost more per call than the rest of the binding did, and napi-rs checks an
/// external against a registry behind one process-wide lock, which worker threads would share.
pub struct Decider {
    engine: Arc<aegis_sod::Engine>,
    /// What this JavaScript engine object was sent.
    told: RefCell<Told>,
}

/// What a JavaScript engine object was sent, which a packed decision refers to.
#[derive(Default)]
struct Told {
    /// Reason lists, by the id `aegis.js` keeps them under: a warm call gives the same reasons
    /// call after call, sent as text once.
    reasons: Vec<Vec<Reason>>,
    /// The last policy version sent (with [`DecisionParts`]).
    policy_version: Option<String>,
}

/// How many distinct reason lists an engine object keeps ids for (all are dropped when full).
const REASONS_KEPT: usize = 64;

/// What the calls of one JavaScript thread run on, by number: the engine objects' deciders and
/// the chains `aegis.js` made handles for. A number is handed out once in the process and never
/// again, so a released number, one made up, or one of another thread (whose table is its own)
/// finds nothing here, and the call is refused. Nothing here is locked.
#[derive(Default)]
struct Held {
    deciders: hashbrown::HashMap<u64, Rc<Decider>>,
    chains: hashbrown::HashMap<u64, Rc<Chain>>,
    /// Whether this thread's environment clears the table when it is torn down.
    cleared_at_teardown: bool,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::default();
}

/// The last number handed out, by any thread.
static LAST_HELD: AtomicU64 = AtomicU64::new(0);

/// A new number to hold a decider or a chain under. `aegis.js` keeps it as a JavaScript number,
/// exact up to 2^53: past that (never reached in practice) no number is handed out, rather than
/// one that could round onto another.
fn next_number() -> napi::Result<u64> {
    let id = LAST_HELD.fetch_add(1, Ordering::Relaxed) + 1;
    if id > MAX_NUMBER {
        return Err(to_js(aegis_sod::Error::new(aegis_sod::ErrorCode::Internal, "no more handle numbers in this process")));
    }
    Ok(id)
}

/// The largest whole number a JavaScript number holds exactly.
const MAX_NUMBER: u64 = 1 << 53;

/// The number `aegis.js` sent as `id`, when it is one this binding could have handed out.
fn number(id: f64) -> Option<u64> {
    ((1.0..=MAX_NUMBER as f64).contains(&id) && id.fract() == 0.0).then_some(id as u64)
}

/// The decider and the chain a call names, cloned out of this thread's table (which is not
/// borrowed while the call runs). Either one gone: `malformed_request`.
fn held(decider: f64, chain: f64) -> napi::Result<(Rc<Decider>, Rc<Chain>)> {
    let found = HELD.with_borrow(|held| {
        let decider = held.deciders.get(&number(decider)?)?;
        let chain = held.chains.get(&number(chain)?)?;
        Some((Rc::clone(decider), Rc::clone(chain)))
    });
    found.ok_or_else(|| {
        to_js(aegis_sod::Error::new(
            aegis_sod::ErrorCode::MalformedRequest,
            "the call names an engine or a chain this thread does not hold (released, or from another thread)",
        ))
    })
}

/// Holds `value` in this thread's table `table` (its deciders or its chains) under a new number.
fn hold<T>(env: &Env, table: fn(&mut Held) -> &mut hashbrown::HashMap<u64, Rc<T>>, value: Rc<T>) -> napi::Result<f64> {
    HELD.with_borrow_mut(|held| {
        clear_at_teardown(env, held)?;
        let id = next_number()?;
        table(held).insert(id, value);
        Ok(id as f64)
    })
}

/// Lets what this thread's table `table` holds under `id` go, if anything (dropped outside the
/// borrow).
fn release<T>(table: fn(&mut Held) -> &mut hashbrown::HashMap<u64, Rc<T>>, id: f64) {
    let released = HELD.with_borrow_mut(|held| number(id).and_then(|id| table(held).remove(&id)));
    drop(released);
}

/// Clears this thread's table when its environment is torn down (the thread's last engine
/// objects are dropped then, as the external values they replaced were), once per thread.
fn clear_at_teardown(env: &Env, held: &mut Held) -> napi::Result<()> {
    if !held.cleared_at_teardown {
        env.add_env_cleanup_hook((), |()| {
            // Taken out first: engines drop (flushing their logs) outside the borrow.
            let taken = HELD.with_borrow_mut(std::mem::take);
            drop(taken);
        })?;
        held.cleared_at_teardown = true;
    }
    Ok(())
}

/// A credential chain held natively: `aegis.js` makes one per chain it is given (a number, from
/// [`chain`]) and sends it with every call that presents that chain, so the tokens cross into
/// Rust once. It keeps a request with its tokens, which each call fills in (the tokens are not
/// copied per call).
pub struct Chain {
    /// The request calls with this chain are made with; between calls its other parts are empty
    /// (no arguments, proof or token of an earlier call are kept).
    request: RefCell<AuthorizationRequest>,
}

/// Holds `tokens` (each a well-formed string; `aegis.js` checks) for [`authorize`], under the
/// number returned, on this thread; [`release_chain`] lets it go.
#[napi]
pub fn chain(env: Env, tokens: Vec<String>) -> napi::Result<f64> {
    let chain = Rc::new(Chain { request: RefCell::new(AuthorizationRequest::new(tokens, String::new(), Value::Null)) });
    hold(&env, |held| &mut held.chains, chain)
}

/// Lets the chain held under `id` go (`aegis.js` calls it once the chain's array is collected).
#[napi]
pub fn release_chain(id: f64) {
    release(|held| &mut held.chains, id);
}

/// Lets the engine object's decider held under `id` go (once the engine object is collected).
#[napi]
pub fn release_decider(id: f64) {
    release(|held| &mut held.deciders, id);
}

/// How many engine objects and chains this thread holds for `aegis.js` (for leak checks).
#[napi(object)]
pub struct HeldCounts {
    pub deciders: u32,
    pub chains: u32,
}

/// What this thread holds now: each engine object and chain array still alive, and those
/// collected but not yet released (their release runs as a job after collection).
#[napi]
pub fn held_counts() -> HeldCounts {
    HELD.with_borrow(|held| HeldCounts {
        deciders: u32::try_from(held.deciders.len()).unwrap_or(u32::MAX),
        chains: u32::try_from(held.chains.len()).unwrap_or(u32::MAX),
    })
}

impl Chain {
    /// Runs `decide` on the request of this chain's call read from `tape` and `text` (the tool
    /// and the arguments, see `tape.rs`), with `extras`.
    fn decide<T>(
        &self,
        tape: &[f64],
        text: &str,
        extras: Option<Extras>,
        decide: impl FnOnce(&AuthorizationRequest) -> napi::Result<T>,
    ) -> napi::Result<T> {
        // Held only for this call: no JavaScript runs while the core decides, so the request is
        // never busy; were it ever, the call is refused rather than decided on anything shared.
        let Ok(mut request) = self.request.try_borrow_mut() else {
            return Err(to_js(aegis_sod::Error::new(
                aegis_sod::ErrorCode::Internal,
                "the chain's request is in use by another call on this thread",
            )));
        };
        // The arguments into the last call's (scrubbed) ones, the tool into its string: a call
        // like the last costs no allocation for either.
        let tool = match tape::call_into(tape, text, &mut request.args) {
            Ok(tool) => tool,
            Err(why) => {
                request.args = Value::Null;
                return Err(malformed(why));
            }
        };
        let extras = extras.unwrap_or_default();
        request.set_call(
            tool,
            extras.resource_type.zip(extras.resource_id).map(|(t, id)| ResourceRef::new(t, id)),
            extras.proof,
            extras.approval_token,
            extras.traceparent,
            extras.tool_call_id,
        );
        let out = decide(&request);
        // Nothing of this call stays behind: the arguments keep their shape, empty (or go, when
        // large), the rest goes.
        request.clear_call();
        out
    }
}

/// The parts of a call that are rarely set, sent only when one is.
#[napi(object)]
#[derive(Default)]
pub struct Extras {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub proof: Option<String>,
    pub approval_token: Option<String>,
    pub traceparent: Option<String>,
    pub tool_call_id: Option<String>,
}

/// A decision as JavaScript values: the common fields as they are, the reasons by id (with
/// their JSON when the id is new to this engine object), and the rarely set fields, and the
/// enforcement of `authorizeEnforced`, as JSON text.
#[napi(object)]
pub struct DecisionParts {
    pub outcome: String,
    pub decision_id: String,
    pub policy_version: String,
    pub would_block: bool,
    pub reasons_id: u32,
    /// The reasons as JSON, when `reasons_id` is new (or reassigned).
    pub reasons: Option<String>,
    /// `approval_id`, `sanitized_args`, `break_glass_id`, `receipt` and `candidate`, as the
    /// core's JSON, when any is set.
    pub rest: Option<String>,
    /// The core's enforcement as JSON (`authorizeEnforced` only).
    pub enforcement: Option<String>,
}

/// The rarely set fields of a decision.
#[derive(serde::Serialize)]
struct Rest<'a> {
    approval_id: &'a Option<String>,
    sanitized_args: &'a Option<Value>,
    break_glass_id: &'a Option<String>,
    receipt: &'a Option<String>,
    candidate: &'a Option<aegis_sod::CandidateVerdict>,
}

/// Engines shared with worker threads, by handle. A handle is removed when the engine that
/// made it is collected; engines attached with it keep the engine alive on their own.
static SHARED: LazyLock<Mutex<HashMap<String, Arc<aegis_sod::Engine>>>> = LazyLock::new(Default::default);

fn shared() -> std::sync::MutexGuard<'static, HashMap<String, Arc<aegis_sod::Engine>>> {
    SHARED.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(handle) = self.shared.get() {
            shared().remove(handle);
        }
    }
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
        Ok(Self::new_object(Arc::new(inner)))
    }

    /// A handle a worker thread attaches to this engine with (`Engine.attach`): the same
    /// engine, its stores, caches and ledgers, from another JavaScript thread. The handle is an
    /// unguessable capability, valid while this engine object lives.
    #[napi]
    pub fn share_handle(&self) -> napi::Result<String> {
        if let Some(handle) = self.shared.get() {
            return Ok(handle.clone());
        }
        let mut bytes = [0u8; 16];
        OsRandom.fill(&mut bytes).map_err(to_js)?;
        let handle = format!("aegis-engine-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let handle = self.shared.get_or_init(|| handle).clone();
        shared().insert(handle.clone(), Arc::clone(&self.inner));
        Ok(handle)
    }

    /// The engine another thread shared with `shareHandle`.
    #[napi(factory)]
    pub fn attach(handle: String) -> napi::Result<Self> {
        let inner = shared().get(&handle).cloned().ok_or_else(|| {
            to_js(aegis_sod::Error::new(
                aegis_sod::ErrorCode::MalformedRequest,
                "no shared engine has this handle (the engine that made it is gone)",
            ))
        })?;
        Ok(Self::new_object(inner))
    }

    /// Runs engine operation `op` of the core's table on `input` (JSON), returning JSON.
    #[napi]
    pub fn call(&self, op: String, input: String) -> napi::Result<String> {
        json_api::call(Some(&self.inner), &op, &input).map_err(to_js)
    }

    /// What `authorize` and `authorizeEnforced` are called with, for one JavaScript engine
    /// object on this thread: a number, until [`release_decider`].
    #[napi]
    pub fn decider(&self, env: Env) -> napi::Result<f64> {
        let decider = Rc::new(Decider { engine: Arc::clone(&self.inner), told: RefCell::default() });
        hold(&env, |held| &mut held.deciders, decider)
    }

    /// `call` off the JS thread, on the libuv pool (for stores that do I/O).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn call_async(&self, op: String, input: String) -> AsyncTask<EngineTask> {
        AsyncTask::new(EngineTask { engine: Arc::clone(&self.inner), op, input })
    }
}

/// The `authorize` operation without JSON text for what a call repeats: the engine object and
/// the chain by their numbers, the tool and the arguments on a tape (`aegis.js` sends only
/// plain JSON-shaped arguments this way; see `tape.rs`), the rarely set parts in `extras`. The
/// decision comes back as one string when everything but its id is already known to this
/// engine object (see [`Decider::packed`]): two characters of its small parts, then its id;
/// otherwise as [`DecisionParts`].
#[napi]
pub fn authorize(
    decider: f64,
    chain: f64,
    tape: Float64ArraySlice<'_>,
    text: String,
    extras: Option<Extras>,
) -> napi::Result<Either<String, DecisionParts>> {
    let (decider, chain) = held(decider, chain)?;
    let decision = chain.decide(&tape, &text, extras, |request| decider.engine.authorize(request).map_err(to_js))?;
    match decider.packed(&decision) {
        Some(packed) => {
            // Two characters of six bits each, from `0` (48) up: plain ASCII, read back with
            // `charCodeAt` and no parsing.
            let mut out = String::with_capacity(decision.decision_id.len() + 2);
            out.push(char::from(b'0' + (packed & 63) as u8));
            out.push(char::from(b'0' + (packed >> 6) as u8));
            out.push_str(&decision.decision_id);
            Ok(Either::A(out))
        }
        None => decider.parts(&decision, None).map(Either::B),
    }
}

/// The `authorize_enforced` operation, as [`authorize`], with the enforcement.
#[napi]
pub fn authorize_enforced(
    decider: f64,
    chain: f64,
    tape: Float64ArraySlice<'_>,
    text: String,
    extras: Option<Extras>,
) -> napi::Result<DecisionParts> {
    let (decider, chain) = held(decider, chain)?;
    let (decision, enforcement) = chain.decide(&tape, &text, extras, |request| {
        let decision = decider.engine.authorize(request).map_err(to_js)?;
        let enforcement = decision.enforce(&request.args);
        Ok((decision, enforcement))
    })?;
    decider.parts(&decision, Some(json(&enforcement)?))
}

impl Decider {
    /// A decision as one number, when this object was already sent its reasons (by id) and its
    /// policy version, and it has none of the rare fields: the outcome in bits 0-1 (allow,
    /// deny, sanitize, approval needed), `would_block` in bit 2, the reasons' id from bit 3.
    fn packed(&self, d: &Decision) -> Option<u32> {
        use aegis_sod::Outcome;
        let outcome = match d.outcome {
            Outcome::Allow => 0,
            Outcome::Deny => 1,
            Outcome::Sanitize => 2,
            Outcome::ApprovalNeeded => 3,
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        if d.has_rare_fields() {
            return None;
        }
        let told = self.told.borrow();
        if told.policy_version.as_deref() != Some(&d.policy_version) {
            return None;
        }
        let reasons_id = u32::try_from(told.reasons.iter().position(|r| r == &d.reasons)?).ok()?;
        let packed = outcome | (u32::from(d.would_block) << 2) | (reasons_id << 3);
        // Two characters of six bits carry it.
        (packed < 1 << 12).then_some(packed)
    }

    fn parts(&self, d: &Decision, enforcement: Option<String>) -> napi::Result<DecisionParts> {
        let rest = Rest {
            approval_id: &d.approval_id,
            sanitized_args: &d.sanitized_args,
            break_glass_id: &d.break_glass_id,
            receipt: &d.receipt,
            candidate: &d.candidate,
        };
        let rest = if d.has_rare_fields() { Some(json(&rest)?) } else { None };
        // What this object is told changes last, once nothing here can fail: `packed` refers to
        // it from the next call on.
        let (reasons_id, reasons) = {
            let mut told = self.told.borrow_mut();
            let found = told.reasons.iter().position(|r| r == &d.reasons);
            let (id, text) = match found {
                Some(id) => (id, None),
                None => {
                    // Text first: an id is handed out only with the reasons it names.
                    let text = json(&d.reasons)?;
                    if told.reasons.len() >= REASONS_KEPT {
                        told.reasons.clear();
                    }
                    told.reasons.push(d.reasons.clone());
                    (told.reasons.len() - 1, Some(text))
                }
            };
            told.policy_version = Some(d.policy_version.clone());
            (id, text)
        };
        Ok(DecisionParts {
            outcome: d.outcome.as_str().to_owned(),
            decision_id: d.decision_id.clone(),
            policy_version: d.policy_version.clone(),
            would_block: d.would_block,
            reasons_id: u32::try_from(reasons_id).unwrap_or(u32::MAX),
            reasons,
            rest,
            enforcement,
        })
    }
}

impl Engine {
    fn new_object(inner: Arc<aegis_sod::Engine>) -> Self {
        Self { inner, shared: OnceLock::new() }
    }
}

/// Runs an operation of the core's table that needs no engine.
#[napi]
pub fn call(op: String, input: String) -> napi::Result<String> {
    json_api::call(None, &op, &input).map_err(to_js)
}

/// `value` as JSON text.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> napi::Result<String> {
    serde_json::to_string(value)
        .map_err(|e| to_js(aegis_sod::Error::new(aegis_sod::ErrorCode::Internal, format!("json encoding failed: {e}"))))
}

/// A tape `aegis.js` should never have written.
fn malformed(why: &str) -> Error {
    to_js(aegis_sod::Error::new(aegis_sod::ErrorCode::MalformedRequest, format!("the arguments could not be read: {why}")))
}
