//! The JSON boundary: every operation a binding needs, taking and returning JSON strings.
//!
//! Python, Node and C bindings call these functions and only convert strings and map
//! [`ErrorCode`]s to their own error types, so behaviour cannot drift between languages.
//! Input JSON is parsed strictly (duplicate keys and unknown members are errors).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::credential::{self, CredentialSpec};
use crate::engine::{AuthorizationRequest, Engine};
use crate::error::{Error, ErrorCode, Result};
use crate::json::from_str_strict;
use crate::keys::{Jwk, KeyPair, PublicKey};
use crate::time::{random_id, Clock, ManualClock, OsRandom, SystemClock};
use crate::engine::BreakGlassRequest;
use crate::store::{MemoryStore, PendingApproval, Store};
use crate::{Bundle, BundleSources, RedisStore, SqliteStore};

/// A trusted issuer in an [`EngineConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` root credentials carry.
    pub issuer: String,
    /// The issuer's public key.
    pub jwk: Jwk,
}

/// A bundle given inline, file by file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineBundle {
    /// `manifest.yaml` content.
    pub manifest: String,
    /// The Cedar schema.
    pub schema: String,
    /// Policy files by name.
    pub policies: std::collections::BTreeMap<String, String>,
}

/// Everything needed to build an [`Engine`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// A bundle directory (or give `bundle`).
    #[serde(default)]
    pub bundle_dir: Option<String>,
    /// An inline bundle (or give `bundle_dir`).
    #[serde(default)]
    pub bundle: Option<InlineBundle>,
    /// Issuers whose root credentials are trusted.
    pub trusted_issuers: Vec<IssuerConfig>,
    /// The audience credentials must name.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew tolerance in seconds.
    #[serde(default)]
    pub leeway_secs: Option<i64>,
    /// Maximum delegation depth below the root.
    #[serde(default)]
    pub max_delegation_depth: Option<usize>,
    /// Maximum credential lifetime in seconds.
    #[serde(default)]
    pub max_credential_lifetime_secs: Option<i64>,
    /// A fixed time (seconds since the epoch) instead of the system clock: for fixtures and
    /// tests only.
    #[serde(default)]
    pub fixed_time: Option<i64>,
    /// Where state lives (default: in memory).
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// The private JWK that signs override tokens; engines sharing a store must share it.
    #[serde(default)]
    pub approval_key: Option<Jwk>,
    /// Override token lifetime in seconds.
    #[serde(default)]
    pub override_ttl_secs: Option<i64>,
}

/// Which store an engine uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// In memory, per engine.
    Memory,
    /// A SQLite file.
    Sqlite {
        /// The database file.
        path: String,
    },
    /// A Redis server.
    Redis {
        /// E.g. `redis://127.0.0.1:6379/0`.
        url: String,
        /// Key prefix (default `aegis`).
        #[serde(default)]
        prefix: Option<String>,
    },
}

impl StoreConfig {
    /// Opens the store.
    pub fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Memory => Arc::new(MemoryStore::new()),
            Self::Sqlite { path } => Arc::new(SqliteStore::open(path)?),
            Self::Redis { url, prefix } => Arc::new(RedisStore::open_with_prefix(url, prefix.as_deref().unwrap_or("aegis"))?),
        })
    }
}

/// Builds an engine from a JSON [`EngineConfig`].
pub fn engine_from_json(config: &str) -> Result<Engine> {
    let config: EngineConfig = from_str_strict(config)?;
    engine_from_config(config)
}

/// Builds an engine from an [`EngineConfig`].
pub fn engine_from_config(config: EngineConfig) -> Result<Engine> {
    engine_with_notifier(config, None)
}

/// Builds an engine from an [`EngineConfig`], calling `notifier` with every new pending
/// approval serialized as JSON (bindings wrap their language's callback in it).
pub fn engine_with_notifier(config: EngineConfig, notifier: Option<Arc<dyn Fn(String) + Send + Sync>>) -> Result<Engine> {
    let bundle = load_bundle(config.bundle_dir.as_deref(), config.bundle.as_ref())?;
    let mut builder = Engine::builder().bundle(bundle);
    for issuer in &config.trusted_issuers {
        builder = builder.trust_issuer(issuer.issuer.clone(), PublicKey::from_jwk(&issuer.jwk)?);
    }
    if let Some(audience) = config.audience {
        builder = builder.audience(audience);
    }
    if let Some(leeway) = config.leeway_secs {
        builder = builder.leeway_secs(leeway);
    }
    if let Some(depth) = config.max_delegation_depth {
        builder = builder.max_delegation_depth(depth);
    }
    if let Some(lifetime) = config.max_credential_lifetime_secs {
        builder = builder.max_credential_lifetime_secs(lifetime);
    }
    if let Some(store) = &config.store {
        builder = builder.store(store.open()?);
    }
    if let Some(key) = &config.approval_key {
        builder = builder.approval_key(KeyPair::from_jwk(key)?);
    }
    if let Some(ttl) = config.override_ttl_secs {
        builder = builder.override_ttl_secs(ttl);
    }
    if let Some(notify) = notifier {
        builder = builder.notifier(Arc::new(move |pending: &PendingApproval| {
            if let Ok(json) = serde_json::to_string(pending) {
                notify(json);
            }
        }));
    }
    let clock: Arc<dyn Clock> = match config.fixed_time {
        Some(t) => Arc::new(ManualClock::at_secs(t)),
        None => Arc::new(SystemClock),
    };
    builder.clock(clock).build()
}

/// Loads a bundle from a directory or from inline sources (exactly one of them).
pub fn load_bundle(dir: Option<&str>, inline: Option<&InlineBundle>) -> Result<Bundle> {
    match (dir, inline) {
        (Some(dir), None) => Bundle::from_dir(dir),
        (None, Some(b)) => Bundle::from_sources(&BundleSources {
            manifest: b.manifest.clone(),
            schema: b.schema.clone(),
            schema_file: "schema.cedarschema".into(),
            policies: b.policies.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }),
        _ => Err(Error::malformed_request("give exactly one of `bundle_dir` and `bundle`")),
    }
}

/// Decides on a JSON [`AuthorizationRequest`]; returns the [`crate::Decision`] as JSON.
pub fn authorize_json(engine: &Engine, request: &str) -> Result<String> {
    let request: AuthorizationRequest = from_str_strict(request)?;
    to_json(&engine.authorize(&request)?)
}

/// Generates a key pair (or derives it from a 64-hex-digit seed); returns the private JWK.
pub fn generate_key_json(seed_hex: Option<&str>) -> Result<String> {
    let pair = match seed_hex {
        Some(hex) => KeyPair::from_seed(&decode_hex(hex)?)?,
        None => KeyPair::generate(&OsRandom)?,
    };
    to_json(&pair.to_private_jwk())
}

/// The public JWK of a (private or public) JWK.
pub fn public_jwk_json(jwk: &str) -> Result<String> {
    to_json(&PublicKey::from_jwk_json(jwk)?.to_jwk())
}

/// A request to issue a root credential or delegate one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Root: the issuer's name (`iss`). Ignored when delegating (the parent's agent id is used).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The signing key: the issuer's private JWK for a root, the parent agent's for a link.
    pub signing_key: Jwk,
    /// Delegation only: the parent credential.
    #[serde(default)]
    pub parent: Option<String>,
    /// The agent id.
    pub agent_id: String,
    /// The agent's public key.
    pub agent_key: Jwk,
    /// The audience (default `aegis`).
    #[serde(default)]
    pub audience: Option<String>,
    /// The task id (delegation: defaults to the parent's).
    #[serde(default)]
    pub task_id: Option<String>,
    /// The intent (delegation: defaults to the parent's).
    #[serde(default)]
    pub intent: Option<String>,
    /// The tools granted.
    pub scope: Vec<String>,
    /// Issue time in seconds (default: now).
    #[serde(default)]
    pub issued_at: Option<i64>,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
    /// The credential id (default: random).
    #[serde(default)]
    pub jti: Option<String>,
}

/// Issues a root credential (no `parent`) or delegates one (`parent` given).
pub fn issue_json(request: &str) -> Result<String> {
    issue(from_str_strict(request)?)
}

/// Issues a root credential or delegates one.
pub fn issue(req: IssueRequest) -> Result<String> {
    let signing_key = KeyPair::from_jwk(&req.signing_key)?;
    let issued_at = req.issued_at.unwrap_or_else(|| SystemClock.now_secs());
    let parent = req.parent.as_deref().map(credential::inspect).transpose()?;
    let inherited = |own: Option<String>, from_parent: fn(&credential::CredentialClaims) -> &String| {
        own.or_else(|| parent.as_ref().map(|p| from_parent(&p.claims).clone()))
            .ok_or_else(|| Error::malformed_request("`task_id` and `intent` are required for a root credential"))
    };
    let spec = CredentialSpec {
        agent_id: req.agent_id,
        agent_key: PublicKey::from_jwk(&req.agent_key)?,
        audience: req.audience.or_else(|| parent.as_ref().map(|p| p.claims.aud.clone())).unwrap_or_else(|| crate::DEFAULT_AUDIENCE.into()),
        task_id: inherited(req.task_id, |c| &c.task)?,
        intent: inherited(req.intent, |c| &c.intent)?,
        scope: req.scope,
        issued_at,
        expires_at: issued_at.saturating_add(req.ttl_secs),
        jti: match req.jti {
            Some(j) => j,
            None => random_id(&OsRandom, "cred_")?,
        },
    };
    match (&req.parent, req.issuer) {
        (Some(parent), _) => credential::delegate(parent, &signing_key, spec),
        (None, Some(issuer)) => credential::issue_root(&issuer, &signing_key, spec),
        (None, None) => Err(Error::malformed_request("a root credential needs `issuer`")),
    }
}

/// Decodes a credential without verifying it (for display); returns header, claims, digest.
pub fn inspect_json(token: &str) -> Result<String> {
    to_json(&credential::inspect(token)?)
}

/// A request for a proof of possession.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofRequest {
    /// The leaf agent's private JWK.
    pub key: Jwk,
    /// The tool.
    pub tool: String,
    /// The exact arguments of the call.
    pub args: Value,
    /// Issue time in seconds (default: now).
    #[serde(default)]
    pub issued_at: Option<i64>,
    /// Lifetime in seconds (default 60).
    #[serde(default)]
    pub ttl_secs: Option<i64>,
    /// The proof id (default: random).
    #[serde(default)]
    pub jti: Option<String>,
}

/// Creates a proof of possession for one call.
pub fn create_proof_json(request: &str) -> Result<String> {
    let req: ProofRequest = from_str_strict(request)?;
    let key = KeyPair::from_jwk(&req.key)?;
    let jti = match req.jti {
        Some(j) => j,
        None => random_id(&OsRandom, "pop_")?,
    };
    crate::proof::create_proof(
        &key,
        &req.tool,
        &req.args,
        &jti,
        req.issued_at.unwrap_or_else(|| SystemClock.now_secs()),
        req.ttl_secs.unwrap_or(60),
    )
}

/// A request to approve or reject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The approval.
    pub approval_id: String,
    /// The approver's credential chain, root first.
    pub approver_chain: Vec<String>,
    /// A note for the record.
    #[serde(default)]
    pub note: Option<String>,
}

/// Approves; returns the [`crate::ApprovalResolution`] (with the override token) as JSON.
pub fn approve_json(engine: &Engine, request: &str) -> Result<String> {
    let r: ResolveRequest = from_str_strict(request)?;
    to_json(&engine.approve(&r.approval_id, &r.approver_chain, r.note.as_deref())?)
}

/// Rejects; returns the [`crate::ApprovalResolution`] as JSON.
pub fn reject_json(engine: &Engine, request: &str) -> Result<String> {
    let r: ResolveRequest = from_str_strict(request)?;
    to_json(&engine.reject(&r.approval_id, &r.approver_chain, r.note.as_deref())?)
}

/// Pending approvals, oldest first, as a JSON array.
pub fn pending_approvals_json(engine: &Engine) -> Result<String> {
    to_json(&engine.pending_approvals()?)
}

/// One approval (any state) as JSON, or `null`.
pub fn approval_json(engine: &Engine, approval_id: &str) -> Result<String> {
    to_json(&engine.approval(approval_id)?)
}

/// The Slack Block Kit message body for a pending approval given as JSON.
pub fn slack_message_json(pending: &str) -> Result<String> {
    let pending: PendingApproval = from_str_strict(pending)?;
    to_json(&crate::approval::slack_message(&pending))
}

/// The task ledger as a JSON array.
pub fn ledger_json(engine: &Engine, task_id: &str) -> Result<String> {
    to_json(&engine.ledger(task_id)?)
}

/// Opens a break-glass grant from a JSON [`BreakGlassRequest`]; returns the grant as JSON.
pub fn break_glass_json(engine: &Engine, request: &str) -> Result<String> {
    let r: BreakGlassRequest = from_str_strict(request)?;
    to_json(&engine.break_glass(&r)?)
}

/// Open break-glass grants as a JSON array.
pub fn open_break_glass_json(engine: &Engine) -> Result<String> {
    to_json(&engine.open_break_glass()?)
}

/// Closes a break-glass grant with its review reference.
pub fn close_break_glass(engine: &Engine, id: &str, review_ref: &str) -> Result<()> {
    engine.close_break_glass(id, review_ref)
}

/// The call digest of a tool call given as JSON args (what proofs and approvals bind).
pub fn call_digest_json(tool: &str, args: &str) -> Result<String> {
    Ok(crate::proof::call_digest(tool, &crate::json::parse_value_strict(args)?))
}

/// Decides `iterations` times on the same JSON request and returns the mean seconds per
/// decision, measured in Rust: the baseline the bindings' benchmark scripts compare against.
pub fn time_authorize(engine: &Engine, request: &str, iterations: u32) -> Result<f64> {
    let request: AuthorizationRequest = from_str_strict(request)?;
    let start = std::time::Instant::now();
    for _ in 0..iterations.max(1) {
        engine.authorize(&request)?;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(iterations.max(1)))
}

/// The value at an RFC 6901 JSON pointer in `json`, as JSON text (for callers without a JSON
/// library, such as C programs reading a decision's `/outcome`).
pub fn json_pointer(json: &str, pointer: &str) -> Result<String> {
    let value: Value = serde_json::from_str(json).map_err(|e| Error::malformed_request(format!("invalid json: {e}")))?;
    let found = value
        .pointer(pointer)
        .ok_or_else(|| Error::malformed_request(format!("no value at `{pointer}`")))?;
    to_json(found)
}

/// Every error code, as a JSON array of strings.
pub fn error_codes_json() -> String {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    serde_json::to_string(&codes).unwrap_or_else(|_| "[]".into())
}

/// An error as JSON: `{"code": "...", "message": "..."}`.
pub fn error_json(error: &Error) -> String {
    serde_json::to_string(error).unwrap_or_else(|_| r#"{"code":"internal","message":"error encoding failed"}"#.into())
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("json encoding failed: {e}")))
}

fn decode_hex(hex: &str) -> Result<Vec<u8>> {
    let bad = || Error::new(ErrorCode::InvalidKey, "seed must be 64 hexadecimal digits");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}
