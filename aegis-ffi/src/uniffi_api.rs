//! The Kotlin and Swift API of Aegis, through uniffi: typed records, a sealed outcome, and one
//! error type carrying the stable code, over the core's one JSON operation table.
//!
//! Every method builds the operation's JSON input, runs [`call`] (exactly what the C ABI, Python
//! and Node run) and reads the output into records; nothing is decided here. Arguments cross as
//! JSON text (`args_json`): a JVM or Swift program holds them as it likes, and the digest the
//! approval binds is taken by the core over the parsed value, as for every binding.

use std::collections::HashMap;
use std::sync::Arc;

use aegis_sod::from_str_strict;
use aegis_sod::json_api::{call, engine_from_json, error_json};
use aegis_sod::{Engine as CoreEngine, Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// An Aegis failure: the stable `code` (see `docs/ERRORS.md`), a message, and the core's whole
/// error encoding as JSON (`detail_json`). Decisions are never errors: a refused call is a
/// `Decision` with outcome `Deny`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum AegisError {
    /// The operation failed.
    #[error("{code}: {reason}")]
    Failed {
        /// The stable error code (`malformed_request`, `invalid_key`, `store_unavailable`, ...).
        code: String,
        /// What went wrong, for people.
        reason: String,
        /// The core's error encoding (`{"code", "message", ...}`).
        detail_json: String,
    },
}

impl From<Error> for AegisError {
    fn from(error: Error) -> Self {
        AegisError::Failed {
            code: error.code().as_str().to_string(),
            reason: error.message().to_string(),
            detail_json: error_json(&error),
        }
    }
}

fn malformed(message: String) -> AegisError {
    Error::new(ErrorCode::MalformedRequest, message).into()
}

/// Runs `op` and reads its output as `T`.
fn run<T: DeserializeOwned>(engine: Option<&CoreEngine>, op: &str, input: &Value) -> Result<T, AegisError> {
    let output = call(engine, op, &input.to_string())?;
    serde_json::from_str(&output).map_err(|e| malformed(format!("the output of `{op}` did not read back: {e}")))
}

/// `args_json` parsed as the core parses every input: a JSON object, duplicate keys refused
/// (a tool that read the first of two `amount`s while the core digested the last would run
/// what nobody authorized).
fn args_value(args_json: &str) -> Result<Value, AegisError> {
    match from_str_strict::<Value>(args_json)? {
        value @ Value::Object(_) => Ok(value),
        _ => Err(malformed("`args_json` must be a JSON object".into())),
    }
}

fn json_text(value: &Value) -> String {
    value.to_string()
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, uniffi::Record)]
pub struct Reason {
    /// The stable reason code (`tool_not_in_scope`, `policy_forbid`, `sod_violation`, ...).
    pub code: String,
    /// What it means, for people.
    pub message: String,
    /// The policy behind it, if any.
    #[serde(default)]
    pub policy_id: Option<String>,
    /// The chain link behind it, if a credential is the reason.
    #[serde(default)]
    pub link: Option<u32>,
}

/// What was decided about one call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Outcome {
    /// The tool may run with the arguments it was called with.
    Allow,
    /// The tool must not run.
    Deny,
    /// The tool may run only with these arguments (the bundle redacted or rewrote some).
    Sanitize {
        /// The arguments to run with, as JSON.
        args_json: String,
    },
    /// A human must approve first; the approval is bound to these exact arguments.
    ApprovalNeeded {
        /// The approval to resolve with `Engine.approve` or `Engine.reject`.
        approval_id: String,
    },
}

/// The decision on one tool call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Decision {
    /// What was decided.
    pub outcome: Outcome,
    /// Why, in order.
    pub reasons: Vec<Reason>,
    /// The decision's id (in the audit log and the ledger).
    pub decision_id: String,
    /// The policy bundle version it was decided under.
    pub policy_version: String,
    /// In log-only mode: whether enforcing would have blocked the call.
    pub would_block: bool,
    /// The break-glass grant that admitted the call, if one did.
    pub break_glass_id: Option<String>,
    /// For a permitting decision of an engine that issues receipts: what the tool checks.
    pub receipt: Option<String>,
    /// The decision in the core's JSON form.
    pub json: String,
}

#[derive(Deserialize)]
struct DecisionJson {
    outcome: String,
    reasons: Vec<Reason>,
    decision_id: String,
    policy_version: String,
    #[serde(default)]
    would_block: bool,
    #[serde(default)]
    approval_id: Option<String>,
    #[serde(default)]
    sanitized_args: Option<Value>,
    #[serde(default)]
    break_glass_id: Option<String>,
    #[serde(default)]
    receipt: Option<String>,
}

impl Decision {
    fn read(value: Value) -> Result<Self, AegisError> {
        let json = json_text(&value);
        let d: DecisionJson =
            serde_json::from_value(value).map_err(|e| malformed(format!("a decision did not read back: {e}")))?;
        let outcome = match (d.outcome.as_str(), d.approval_id, d.sanitized_args) {
            ("allow", _, _) => Outcome::Allow,
            ("deny", _, _) => Outcome::Deny,
            ("sanitize", _, Some(args)) => Outcome::Sanitize { args_json: json_text(&args) },
            ("approval_needed", Some(approval_id), _) => Outcome::ApprovalNeeded { approval_id },
            (other, _, _) => return Err(malformed(format!("unknown decision outcome `{other}`"))),
        };
        Ok(Decision {
            outcome,
            reasons: d.reasons,
            decision_id: d.decision_id,
            policy_version: d.policy_version,
            would_block: d.would_block,
            break_glass_id: d.break_glass_id,
            receipt: d.receipt,
            json,
        })
    }
}

/// What a guard does with a decision, as the core rules it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Enforcement {
    /// Run the tool with exactly these arguments (JSON).
    Run {
        /// The arguments to run with.
        args_json: String,
    },
    /// Wait for a human to approve `approval_id`, then call again with the override token.
    AwaitApproval {
        /// The approval to resolve.
        approval_id: String,
    },
    /// Do not run the tool.
    Refuse {
        /// The stable reason code.
        code: String,
        /// Why, for people.
        message: String,
    },
}

#[derive(Deserialize)]
struct EnforcementJson {
    action: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    approval_id: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Enforcement {
    /// Anything the core names that is not a complete `run` or `await_approval` is a refusal:
    /// a guard never runs a tool on an answer it does not understand.
    fn read(e: EnforcementJson) -> Self {
        match (e.action.as_str(), e.args, e.approval_id) {
            ("run", Some(args), _) => Enforcement::Run { args_json: json_text(&args) },
            ("await_approval", _, Some(approval_id)) => Enforcement::AwaitApproval { approval_id },
            _ => Enforcement::Refuse {
                code: e.code.unwrap_or_else(|| "enforcement_unknown".into()),
                message: e.message.unwrap_or_else(|| format!("the core's enforcement `{}` is not one to run on", e.action)),
            },
        }
    }
}

/// A decision with the core's enforcement of it: what guards act on.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Enforced {
    /// The decision.
    pub decision: Decision,
    /// What to do.
    pub enforcement: Enforcement,
}

/// A call waiting for a human (or resolved): who asked, for what, and why.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingApproval {
    /// The approval's id.
    pub approval_id: String,
    /// The digest of the tool and arguments the approval binds.
    pub call_digest: String,
    /// The tool.
    pub tool: String,
    /// The arguments as shown to the approver (the bundle's redactions applied), JSON.
    pub args_json: String,
    /// The requester's attested id (`planner/finance-agent`).
    pub agent_id: String,
    /// The attested ids of the requester's chain, root first.
    pub lineage: Vec<String>,
    /// The task's initiator.
    pub initiator: String,
    /// The task.
    pub task_id: String,
    /// The task's stated intent.
    pub intent: String,
    /// Why approval is needed.
    pub reasons: Vec<String>,
    /// `pending`, `approved`, `rejected`, `used`, ...
    pub status: String,
    /// Who resolved it, if anyone has.
    pub resolved_by: Option<String>,
    /// The policy version it was asked under.
    pub policy_version: String,
    /// When it was asked, in milliseconds since the epoch.
    pub created_at_ms: i64,
    /// The whole approval in the core's JSON form.
    pub json: String,
}

#[derive(Deserialize)]
struct PendingJson {
    approval_id: String,
    call_digest: String,
    tool: String,
    args: Value,
    agent_id: String,
    lineage: Vec<String>,
    initiator: String,
    task_id: String,
    intent: String,
    reasons: Vec<String>,
    status: String,
    #[serde(default)]
    resolved_by: Option<String>,
    policy_version: String,
    created_at_ms: i64,
}

impl PendingApproval {
    fn read(value: Value) -> Result<Self, AegisError> {
        let json = json_text(&value);
        let p: PendingJson =
            serde_json::from_value(value).map_err(|e| malformed(format!("an approval did not read back: {e}")))?;
        Ok(PendingApproval {
            approval_id: p.approval_id,
            call_digest: p.call_digest,
            tool: p.tool,
            args_json: json_text(&p.args),
            agent_id: p.agent_id,
            lineage: p.lineage,
            initiator: p.initiator,
            task_id: p.task_id,
            intent: p.intent,
            reasons: p.reasons,
            status: p.status,
            resolved_by: p.resolved_by,
            policy_version: p.policy_version,
            created_at_ms: p.created_at_ms,
            json,
        })
    }
}

/// The answer to an approval or rejection.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ApprovalResolution {
    /// Whether the approver was accepted (a refusal carries the reasons).
    pub accepted: bool,
    /// Why not, when refused.
    pub reasons: Vec<Reason>,
    /// The approval after the answer.
    pub approval: PendingApproval,
    /// The single-use override token the approved call presents, once.
    pub override_token: Option<String>,
}

#[derive(Deserialize)]
struct ResolutionJson {
    accepted: bool,
    reasons: Vec<Reason>,
    approval: Value,
    #[serde(default)]
    override_token: Option<String>,
}

/// An Ed25519 key pair. The private key stays inside: it is never printed and crosses to the
/// foreign side only as this object.
#[derive(uniffi::Object)]
pub struct KeyPair {
    private_jwk: Value,
    public_jwk: Value,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("kid", &self.public_jwk.get("kid")).finish_non_exhaustive()
    }
}

impl KeyPair {
    fn from_private(private_jwk: Value) -> Result<Arc<Self>, AegisError> {
        let public_jwk: Value = run(None, "public_jwk", &private_jwk)?;
        Ok(Arc::new(KeyPair { private_jwk, public_jwk }))
    }
}

#[uniffi::export]
impl KeyPair {
    /// A fresh key from the operating system's randomness.
    #[uniffi::constructor]
    pub fn generate() -> Result<Arc<Self>, AegisError> {
        Self::from_private(run(None, "generate_key", &json!({}))?)
    }

    /// The deterministic key for a 32-byte seed (fixtures and tests only).
    #[uniffi::constructor]
    pub fn from_seed(seed: Vec<u8>) -> Result<Arc<Self>, AegisError> {
        if seed.len() != 32 {
            return Err(AegisError::from(Error::new(ErrorCode::InvalidKey, format!("a seed is 32 bytes, not {}", seed.len()))));
        }
        let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        Self::from_private(run(None, "generate_key", &json!({ "seed_hex": seed_hex }))?)
    }

    /// A key pair from a private JWK (JSON text with `d`).
    #[uniffi::constructor]
    pub fn from_private_jwk(private_jwk_json: String) -> Result<Arc<Self>, AegisError> {
        let jwk: Value = from_str_strict(&private_jwk_json)?;
        if jwk.get("d").is_none() {
            return Err(Error::new(ErrorCode::InvalidKey, "a key pair needs a private jwk (with `d`)").into());
        }
        Self::from_private(jwk)
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> String {
        self.public_jwk.get("kid").and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// The public JWK, as JSON.
    pub fn public_jwk(&self) -> String {
        json_text(&self.public_jwk)
    }

    /// The private JWK, as JSON: the secret, for storing it where secrets go.
    pub fn private_jwk(&self) -> String {
        json_text(&self.private_jwk)
    }
}

/// How to build an engine; the whole JSON configuration is `Engine(configJson)`.
#[derive(Debug, uniffi::Record)]
pub struct EngineOptions {
    /// The policy bundle's directory.
    pub bundle_dir: String,
    /// Issuers whose root credentials are trusted: issuer name to its public JWK (JSON).
    pub trusted_issuers: HashMap<String, String>,
    /// Where state lives: `memory` (the default), `sqlite:PATH` or a `redis://` URL.
    #[uniffi(default = None)]
    pub store: Option<String>,
    /// The key that signs override tokens; engines sharing a store must share it.
    #[uniffi(default = None)]
    pub approval_key: Option<Arc<KeyPair>>,
    /// A fixed time (seconds since the epoch) instead of the clock: fixtures and tests only.
    #[uniffi(default = None)]
    pub fixed_time: Option<i64>,
}

/// The engine: decides on tool calls, holds approvals, keeps the ledger. One per process is
/// usual; it is safe to share across threads.
#[derive(uniffi::Object)]
pub struct Engine {
    inner: CoreEngine,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    fn op<T: DeserializeOwned>(&self, op: &str, input: &Value) -> Result<T, AegisError> {
        run(Some(&self.inner), op, input)
    }

    fn request(chain: Vec<String>, tool: String, args_json: &str, approval_token: Option<String>) -> Result<Value, AegisError> {
        Ok(json!({ "chain": chain, "tool": tool, "args": args_value(args_json)?, "approval_token": approval_token }))
    }

    fn resolve(
        &self,
        op: &str,
        approval_id: String,
        approver_chain: Vec<String>,
        note: Option<String>,
    ) -> Result<ApprovalResolution, AegisError> {
        let out: ResolutionJson =
            self.op(op, &json!({ "approval_id": approval_id, "approver_chain": approver_chain, "note": note }))?;
        Ok(ApprovalResolution {
            accepted: out.accepted,
            reasons: out.reasons,
            approval: PendingApproval::read(out.approval)?,
            override_token: out.override_token,
        })
    }
}

#[uniffi::export]
impl Engine {
    /// An engine from the JSON engine configuration (every option: stores, audit, receipts, ...).
    #[uniffi::constructor]
    pub fn new(config_json: String) -> Result<Arc<Self>, AegisError> {
        Ok(Arc::new(Engine { inner: engine_from_json(&config_json)? }))
    }

    /// An engine from the common options.
    #[uniffi::constructor]
    pub fn open(options: EngineOptions) -> Result<Arc<Self>, AegisError> {
        let mut issuers = Vec::with_capacity(options.trusted_issuers.len());
        for (issuer, jwk) in &options.trusted_issuers {
            let jwk: Value = from_str_strict(jwk)?;
            issuers.push(json!({ "issuer": issuer, "jwk": jwk }));
        }
        let mut config = Map::new();
        config.insert("bundle_dir".into(), json!(options.bundle_dir));
        config.insert("trusted_issuers".into(), Value::Array(issuers));
        if let Some(store) = options.store {
            config.insert("store".into(), json!(store));
        }
        if let Some(key) = options.approval_key {
            config.insert("approval_key".into(), key.private_jwk.clone());
        }
        if let Some(time) = options.fixed_time {
            config.insert("fixed_time".into(), json!(time));
        }
        Self::new(Value::Object(config).to_string())
    }

    /// Decides on one call. Problems with credentials or policies are a `Deny` with reasons,
    /// never an error; `approval_token` is the override token of an approved call.
    #[uniffi::method(default(approval_token = None))]
    pub fn authorize(
        &self,
        chain: Vec<String>,
        tool: String,
        args_json: String,
        approval_token: Option<String>,
    ) -> Result<Decision, AegisError> {
        Decision::read(self.op("authorize", &Self::request(chain, tool, &args_json, approval_token)?)?)
    }

    /// Decides on one call and returns the core's enforcement with it: what a guard acts on.
    #[uniffi::method(default(approval_token = None))]
    pub fn authorize_enforced(
        &self,
        chain: Vec<String>,
        tool: String,
        args_json: String,
        approval_token: Option<String>,
    ) -> Result<Enforced, AegisError> {
        #[derive(Deserialize)]
        struct Out {
            decision: Value,
            enforcement: EnforcementJson,
        }
        let out: Out = self.op("authorize_enforced", &Self::request(chain, tool, &args_json, approval_token)?)?;
        Ok(Enforced { decision: Decision::read(out.decision)?, enforcement: Enforcement::read(out.enforcement) })
    }

    /// Approves as `approver_chain` (a person's root credential holding `aegis.approve`,
    /// outside the requester's chain); the resolution carries the single-use override token.
    #[uniffi::method(default(note = None))]
    pub fn approve(
        &self,
        approval_id: String,
        approver_chain: Vec<String>,
        note: Option<String>,
    ) -> Result<ApprovalResolution, AegisError> {
        self.resolve("approve", approval_id, approver_chain, note)
    }

    /// Rejects a pending approval; the rejecter is checked as an approver is.
    #[uniffi::method(default(note = None))]
    pub fn reject(
        &self,
        approval_id: String,
        approver_chain: Vec<String>,
        note: Option<String>,
    ) -> Result<ApprovalResolution, AegisError> {
        self.resolve("reject", approval_id, approver_chain, note)
    }

    /// Approvals waiting for a human, oldest first.
    pub fn pending_approvals(&self) -> Result<Vec<PendingApproval>, AegisError> {
        let all: Vec<Value> = self.op("pending_approvals", &json!({}))?;
        all.into_iter().map(PendingApproval::read).collect()
    }

    /// Ends a task: every credential of it is refused from now on.
    pub fn end_task(&self, task_id: String) -> Result<(), AegisError> {
        self.op::<Value>("end_task", &json!({ "task_id": task_id })).map(drop)
    }

    /// The version of the bundle in force.
    pub fn policy_version(&self) -> Result<String, AegisError> {
        #[derive(Deserialize)]
        struct Out {
            policy_version: String,
        }
        Ok(self.op::<Out>("policy_version", &json!({}))?.policy_version)
    }

    /// The JWK Set (JSON) that verifies this engine's decision receipts, if it issues them.
    pub fn receipt_jwks(&self) -> Result<Option<String>, AegisError> {
        Ok(self.op::<Option<Value>>("receipt_jwks", &json!({}))?.map(|v| json_text(&v)))
    }

    /// Runs any engine operation of the core's table on JSON (`ledger`, `break_glass`,
    /// `audit_checkpoint`, `admin`, ...): the whole API, for what has no typed method.
    pub fn call(&self, op: String, input_json: String) -> Result<String, AegisError> {
        Ok(call(Some(&self.inner), &op, &input_json)?)
    }
}

/// Issues a root credential for `agent_id`, signed by a trusted issuer's key; `roles` are what
/// the issuer attests (a delegate never holds any).
#[uniffi::export(default(roles = [], ttl_secs = 900))]
#[allow(clippy::too_many_arguments)] // the credential's claims, one argument each, as in every binding
pub fn issue_root(
    issuer: String,
    issuer_key: Arc<KeyPair>,
    agent_id: String,
    agent_key: Arc<KeyPair>,
    task_id: String,
    intent: String,
    scope: Vec<String>,
    roles: Vec<String>,
    ttl_secs: i64,
) -> Result<String, AegisError> {
    run(
        None,
        "issue",
        &json!({
            "issuer": issuer, "signing_key": issuer_key.private_jwk, "agent_id": agent_id,
            "agent_key": agent_key.public_jwk, "task_id": task_id, "intent": intent, "scope": scope,
            "roles": roles, "ttl_secs": ttl_secs,
        }),
    )
}

/// Delegates from `parent` (bound to `parent_key`) to `agent_id`, narrowing `scope`; the
/// delegate's attested id is namespaced under its delegator (`planner/finance-agent`).
#[uniffi::export(default(ttl_secs = 600))]
pub fn delegate(
    parent: String,
    parent_key: Arc<KeyPair>,
    agent_id: String,
    agent_key: Arc<KeyPair>,
    scope: Vec<String>,
    ttl_secs: i64,
) -> Result<String, AegisError> {
    run(
        None,
        "issue",
        &json!({
            "parent": parent, "signing_key": parent_key.private_jwk, "agent_id": agent_id,
            "agent_key": agent_key.public_jwk, "scope": scope, "ttl_secs": ttl_secs,
        }),
    )
}

/// The digest of a call (tool and arguments) that approvals and receipts bind.
#[uniffi::export]
pub fn call_digest(tool: String, args_json: String) -> Result<String, AegisError> {
    run(None, "call_digest", &json!({ "tool": tool, "args": args_value(&args_json)? }))
}

/// What a tool checks for itself: a decision receipt verified offline against the engine's JWK
/// Set, for this tool and these exact arguments; the receipt's claims as JSON. With `consume`,
/// a receipt is accepted once per process (a tool that runs each authorized call once).
#[uniffi::export(default(consume = false))]
#[allow(clippy::too_many_arguments)] // the receipt's bindings, one argument each, as in every binding
pub fn verify_receipt(
    receipt: String,
    jwks_json: String,
    issuer: String,
    audience: String,
    tool: String,
    args_json: String,
    consume: bool,
) -> Result<String, AegisError> {
    let jwks: Value = from_str_strict(&jwks_json)?;
    let claims: Value = run(
        None,
        "verify_receipt",
        &json!({ "receipt": receipt, "jwks": jwks, "issuer": issuer, "audience": audience, "tool": tool, "args": args_value(&args_json)?, "consume": consume }),
    )?;
    Ok(json_text(&claims))
}

/// Runs an engine-free operation of the core's table on JSON (`inspect`, `create_proof`,
/// `audit_verify`, `policy_test`, ...).
#[uniffi::export]
pub fn aegis_call(op: String, input_json: String) -> Result<String, AegisError> {
    Ok(call(None, &op, &input_json)?)
}
