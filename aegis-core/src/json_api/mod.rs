//! The JSON boundary: one operation table every binding, the CLI and the vector runners call.
//!
//! Each binding forwards one function, [`call`], with an operation name and a JSON input, and
//! converts strings and errors, nothing more: an operation added here reaches Python, Node, C
//! and the CLI at once, and a test in each binding fails when it lacks a wrapper for one.
//! Input JSON is parsed strictly (duplicate keys and unknown members are errors). Errors are
//! one JSON encoding everywhere ([`error_json`]).

mod config;
mod requests;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use config::{
    engine_from_config, engine_from_json, engine_with_notifier, load_bundle, ApprovalChannelsConfig, EngineConfig,
    ExternalIssuerConfig, InlineBundle, IssuerConfig, ReceiptsConfig, StoreConfig, StoreSetting, TelemetryConfig,
};
pub use requests::{create_proof, issue, IssueRequest, ProofRequest, ResolveRequest};

use crate::audit::{dry_run, read_log, LogKey, LogVerifier, SealKey};
use crate::break_glass::BreakGlassRequest;
use crate::engine::{admin_proof, AdminAction, AdminRequest};
use crate::engine::{AuthorizationRequest, Decision, Engine};
use crate::error::{Error, ErrorCode, ReasonCode, Result};
use crate::identity::{self, KeyPair, PublicKey};
use crate::json::{from_str_strict, parse_value_strict};
use crate::policy::{lint_dir, run_policy_tests, sign_bundle, Bundle};
use crate::state::PendingApproval;
use crate::time::OsRandom;

/// The input of `verify_receipt`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyReceipt {
    receipt: String,
    jwks: Value,
    issuer: String,
    audience: String,
    tool: String,
    args: Value,
    #[serde(default)]
    now: Option<i64>,
    /// Consume the receipt in this process (a second presentation is refused).
    #[serde(default)]
    consume: bool,
}

/// One operation of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// The name bindings pass to [`call`].
    pub name: &'static str,
    /// Whether it acts on an engine (`false`: a free function).
    pub needs_engine: bool,
    /// What it takes and returns.
    pub summary: &'static str,
}

const fn op(name: &'static str, needs_engine: bool, summary: &'static str) -> Operation {
    Operation { name, needs_engine, summary }
}

/// Every operation, engine operations first.
pub const OPERATIONS: &[Operation] = &[
    op("authorize", true, "AuthorizationRequest -> Decision"),
    op("authorize_enforced", true, "AuthorizationRequest -> {decision, enforcement}: what guards call"),
    op("approve", true, "{approval_id, approver_chain, note?} -> ApprovalResolution"),
    op("reject", true, "{approval_id, approver_chain, note?} -> ApprovalResolution"),
    op("pending_approvals", true, "{} -> [PendingApproval]"),
    op("request_batch", true, "BatchRequest -> PendingApproval: asks one approval for a batch of calls"),
    op("approval", true, "{approval_id} -> PendingApproval | null"),
    op("ledger", true, "{task_id} -> [LedgerEntry]"),
    op("end_task", true, "{task_id} -> null"),
    op("break_glass", true, "BreakGlassRequest -> BreakGlassGrant"),
    op("open_break_glass", true, "{} -> [BreakGlassGrant]"),
    op("close_break_glass", true, "{grant_id, review_ref} -> null"),
    op("reload_bundle", true, "{bundle_dir} -> {policy_version}"),
    op("update_jwks", true, "{issuer, jwks} -> null: replaces an external issuer's key set (the refresh hook)"),
    op("policy_version", true, "{} -> {policy_version}"),
    op("audit_checkpoint", true, "{} -> {origin, size, root, note}: signs and exports a checkpoint of the audit log"),
    op("admin", true, "AdminRequest -> AdminOutcome: a change to what is enforced, signed by two administrators"),
    op("control_status", true, "{} -> {policy_version, mode, candidate_version, history}"),
    op("receipt_jwks", true, "{} -> JWK Set | null: the keys that verify this engine's decision receipts"),
    op("flush_telemetry", true, "{} -> null: exports the spans and metrics recorded so far (engine `telemetry`)"),
    op("time_authorize", true, "{request, iterations} -> mean seconds per decision (benchmarks)"),
    op("generate_key", false, "{seed_hex?} -> private JWK"),
    op("public_jwk", false, "JWK -> public JWK"),
    op("issue", false, "IssueRequest -> credential (string)"),
    op("inspect", false, "{token} -> InspectedCredential (unverified, for display)"),
    op("inspect_chain", false, "{chain} -> {agent_id, lineage, task_id, scope}: how the engine names a chain's agent (unverified)"),
    op("create_proof", false, "ProofRequest -> proof (string)"),
    op(
        "verify_signature",
        false,
        "{public_key_hex, message_hex, signature_hex} -> {valid, key_error?}: the strict Ed25519 check",
    ),
    op("audit_keygen", false, "{name, seed_hex?} -> {signer_key, verifier_key}: a log key (signed-note encoding)"),
    op(
        "audit_verify",
        false,
        "{dir, verifier_key?, trusted_checkpoints?} -> LogReport: checks a log and names its first bad record",
    ),
    op(
        "admin_proof",
        false,
        "{key, action, policy_version, issued_at?, ttl_secs?, jti?} -> proof: one administrator's signature over an action",
    ),
    op("bundle_sign", false, "{bundle_dir, key, issued_at?} -> {signature, policy_version}: writes bundle.sig"),
    op("bundle_verify", false, "{bundle_dir, keys} -> {policy_version, signed_by}: checks bundle.sig against trusted keys"),
    op("policy_test", false, "{bundle_dir} -> PolicyTestReport: runs the bundle's tests/*.yaml"),
    op("policy_lint", false, "{bundle_dir} -> [Lint]"),
    op(
        "policy_dry_run",
        false,
        "{bundle_dir, logs, seal_key_hex?} -> DryRunReport: the logs' calls re-decided under a candidate",
    ),
    op(
        "verify_receipt",
        false,
        "{receipt, jwks, issuer, audience, tool, args, now?, consume?} -> ReceiptClaims: a tool's offline check of a decision receipt",
    ),
    op("call_digest", false, "{tool, args} -> digest (string)"),
    op("slack_message", false, "PendingApproval -> Slack Block Kit body"),
    op("enforce", false, "{decision, args} -> Enforcement"),
    op("json_pointer", false, "{json, pointer} -> the value at an RFC 6901 pointer in json text"),
    op("error_codes", false, "{} -> [ErrorCode]"),
    op("reason_codes", false, "{} -> [ReasonCode]"),
    op("operations", false, "{} -> [Operation]"),
];

/// Runs operation `op` on `input` (JSON text; empty means `{}`) and returns JSON text.
///
/// `engine` is required by the operations marked `needs_engine`.
pub fn call(engine: Option<&Engine>, op: &str, input: &str) -> Result<String> {
    let input = if input.trim().is_empty() { "{}" } else { input };
    let engine = || engine.ok_or_else(|| Error::malformed_request(format!("operation `{op}` needs an engine")));
    match op {
        "authorize" => authorize(engine()?, &parse::<AuthorizationRequest>(input)?),
        "authorize_enforced" => authorize_enforced(engine()?, &parse::<AuthorizationRequest>(input)?),
        "approve" => {
            let r: ResolveRequest = parse(input)?;
            to_json(&engine()?.approve(&r.approval_id, &r.approver_chain, r.note.as_deref())?)
        }
        "reject" => {
            let r: ResolveRequest = parse(input)?;
            to_json(&engine()?.reject(&r.approval_id, &r.approver_chain, r.note.as_deref())?)
        }
        "request_batch" => to_json(&engine()?.request_batch(&parse::<crate::approval::BatchRequest>(input)?)?),
        "receipt_jwks" => no_input(input).and_then(|()| to_json(&engine()?.receipt_jwks())),
        "verify_receipt" => {
            let r: VerifyReceipt = parse(input)?;
            let now = r.now.unwrap_or_else(|| crate::time::Clock::now_secs(&crate::time::SystemClock));
            let check = crate::receipt::ReceiptCheck { issuer: r.issuer, audience: r.audience, tool: r.tool, args: r.args };
            let verify = if r.consume { crate::receipt::verify_receipt_once } else { crate::receipt::verify_receipt };
            to_json(&verify(&r.receipt, &r.jwks, &check, now, 30)?)
        }
        "pending_approvals" => no_input(input).and_then(|()| to_json(&engine()?.pending_approvals()?)),
        "approval" => to_json(&engine()?.approval(&parse::<ApprovalId>(input)?.approval_id)?),
        "ledger" => to_json(&engine()?.ledger(&parse::<TaskId>(input)?.task_id)?),
        "end_task" => engine()?.end_task(&parse::<TaskId>(input)?.task_id).and_then(|()| to_json(&Value::Null)),
        "break_glass" => to_json(&engine()?.break_glass(&parse::<BreakGlassRequest>(input)?)?),
        "open_break_glass" => no_input(input).and_then(|()| to_json(&engine()?.open_break_glass()?)),
        "close_break_glass" => {
            let r: CloseBreakGlass = parse(input)?;
            engine()?.close_break_glass(&r.grant_id, &r.review_ref).and_then(|()| to_json(&Value::Null))
        }
        "reload_bundle" => {
            let policy_version = engine()?.reload_bundle(parse::<BundleDir>(input)?.bundle_dir)?;
            to_json(&PolicyVersion { policy_version })
        }
        "update_jwks" => {
            let r: UpdateJwks = parse(input)?;
            engine()?.update_jwks(&r.issuer, &r.jwks.to_string()).and_then(|()| to_json(&Value::Null))
        }
        "admin" => to_json(&engine()?.admin(&parse::<AdminRequest>(input)?)?),
        "control_status" => no_input(input).and_then(|()| {
            let engine = engine()?;
            to_json(&serde_json::json!({
                "policy_version": engine.policy_version(),
                "mode": engine.mode(),
                "candidate_version": engine.candidate_version(),
                "history": engine.bundle_history(),
            }))
        }),
        "admin_proof" => {
            let r: AdminProof = parse(input)?;
            let jti = match r.jti {
                Some(j) => j,
                None => crate::time::random_id(&OsRandom, "adm_")?,
            };
            let now = r.issued_at.unwrap_or_else(|| crate::time::Clock::now_secs(&crate::time::SystemClock));
            to_json(&admin_proof(
                &KeyPair::from_jwk(&r.key)?,
                &r.action,
                &r.policy_version,
                &jti,
                now,
                r.ttl_secs.unwrap_or(300),
            )?)
        }
        "bundle_sign" => {
            let r: BundleSign = parse(input)?;
            let now = r.issued_at.unwrap_or_else(|| crate::time::Clock::now_secs(&crate::time::SystemClock));
            let signature = sign_bundle(&r.bundle_dir, &KeyPair::from_jwk(&r.key)?, now)?;
            let policy_version = Bundle::from_dir(&r.bundle_dir)?.policy_version().to_owned();
            to_json(&serde_json::json!({"signature": signature, "policy_version": policy_version}))
        }
        "bundle_verify" => {
            let r: BundleVerify = parse(input)?;
            let keys = r.keys.iter().map(PublicKey::from_jwk).collect::<Result<Vec<_>>>()?;
            let bundle = Bundle::from_dir_signed(&r.bundle_dir, &keys)?;
            to_json(&serde_json::json!({"policy_version": bundle.policy_version(), "signed_by": bundle.signed_by()}))
        }
        "policy_test" => to_json(&run_policy_tests(parse::<BundleDir>(input)?.bundle_dir)?),
        "policy_lint" => to_json(&lint_dir(parse::<BundleDir>(input)?.bundle_dir)?),
        "policy_dry_run" => {
            let r: DryRun = parse(input)?;
            let candidate = Bundle::from_dir(&r.bundle_dir)?;
            let seal = r
                .seal_key_hex
                .as_deref()
                .map(|k| hex::decode(k).map_err(|_| Error::new(ErrorCode::InvalidKey, "`seal_key_hex` is not hex")))
                .transpose()?
                .map(|k| SealKey::new(&k))
                .transpose()?;
            let logs = r
                .logs
                .iter()
                .map(|dir| read_log(std::path::Path::new(dir), None, &[]).map(|log| (dir.clone(), log)))
                .collect::<Result<Vec<_>>>()?;
            if let Some((dir, log)) = logs.iter().find(|(_, log)| !log.report.intact()) {
                return Err(Error::new(
                    ErrorCode::AuditInvalid,
                    format!("`{dir}` fails verification at {:?}: replay only a log that verifies", log.report.first_bad),
                ));
            }
            to_json(&dry_run(candidate, &logs, seal.as_ref())?)
        }
        "flush_telemetry" => no_input(input).and_then(|()| engine()?.flush_telemetry()).and_then(|()| to_json(&Value::Null)),
        "policy_version" => no_input(input).and_then(|()| to_json(&PolicyVersion { policy_version: engine()?.policy_version() })),
        "audit_checkpoint" => no_input(input).and_then(|()| {
            let log =
                engine()?.audit_log().ok_or_else(|| Error::new(ErrorCode::AuditUnavailable, "this engine keeps no audit log"))?;
            to_json(&log.checkpoint()?.to_json())
        }),
        "audit_keygen" => {
            let r: AuditKeygen = parse(input)?;
            let key = match r.seed_hex {
                Some(hex) => LogKey::new(&r.name, KeyPair::from_seed(&decode_seed(&hex)?)?)?,
                None => LogKey::generate(&r.name, &OsRandom)?,
            };
            to_json(&serde_json::json!({"signer_key": key.to_signer_key().as_str(), "verifier_key": key.verifier_key()}))
        }
        "audit_verify" => {
            let r: AuditVerify = parse(input)?;
            let key = r.verifier_key.as_deref().map(LogVerifier::new).transpose()?;
            let log = read_log(std::path::Path::new(&r.dir), key.as_ref(), &r.trusted_checkpoints)?;
            to_json(&log.report.to_json())
        }
        "time_authorize" => {
            let r: TimeAuthorize = parse(input)?;
            to_json(&time_authorize(engine()?, &r.request, r.iterations)?)
        }
        "generate_key" => {
            let pair = match parse::<GenerateKey>(input)?.seed_hex {
                Some(hex) => KeyPair::from_seed(&decode_seed(&hex)?)?,
                None => KeyPair::generate(&OsRandom)?,
            };
            to_json(&pair.to_private_jwk())
        }
        "public_jwk" => to_json(&PublicKey::from_jwk_json(input)?.to_jwk()),
        "issue" => to_json(&issue(parse(input)?)?),
        "inspect" => to_json(&identity::inspect(&parse::<Token>(input)?.token)?),
        "inspect_chain" => to_json(&identity::inspect_chain(&parse::<ChainInput>(input)?.chain)?),
        "create_proof" => to_json(&create_proof(parse(input)?)?),
        "verify_signature" => {
            let r: VerifySignature = parse(input)?;
            let bytes = |hex_text: &str, what: &str| {
                hex::decode(hex_text).map_err(|_| Error::malformed_request(format!("`{what}` is not hexadecimal")))
            };
            let (message, signature) = (bytes(&r.message_hex, "message_hex")?, bytes(&r.signature_hex, "signature_hex")?);
            let verdict = match PublicKey::from_bytes(&bytes(&r.public_key_hex, "public_key_hex")?) {
                Ok(key) => SignatureVerdict { valid: key.verify_strict(&message, &signature), key_error: None },
                Err(e) => SignatureVerdict { valid: false, key_error: Some(e.code()) },
            };
            to_json(&verdict)
        }
        "call_digest" => {
            let r: CallDigest = parse(input)?;
            to_json(&identity::call_digest(&r.tool, &r.args)?)
        }
        "slack_message" => to_json(&crate::approval::slack_message(&parse::<PendingApproval>(input)?)),
        "enforce" => {
            let r: Enforce = parse(input)?;
            to_json(&r.decision.enforce(&r.args))
        }
        "json_pointer" => {
            let r: JsonPointer = parse(input)?;
            json_pointer(&r.json, &r.pointer)
        }
        "error_codes" => no_input(input).and_then(|()| to_json(&ErrorCode::ALL)),
        "reason_codes" => no_input(input).and_then(|()| to_json(&ReasonCode::all_names().collect::<Vec<_>>())),
        "operations" => no_input(input).and_then(|()| to_json(&OPERATIONS)),
        _ => Err(Error::new(ErrorCode::UnknownOperation, format!("no operation `{op}`"))),
    }
}

/// An error as JSON: `{"code", "message", "link"?, "file"?, "line"?, "policy_id"?}`, the one
/// encoding every binding carries.
pub fn error_json(error: &Error) -> String {
    serde_json::to_string(error).unwrap_or_else(|_| r#"{"code":"internal","message":"error encoding failed"}"#.into())
}

/// Decides `iterations` times on the same request and returns the mean seconds per decision,
/// measured in Rust: the baseline the bindings' benchmark scripts compare against.
pub fn time_authorize(engine: &Engine, request: &AuthorizationRequest, iterations: u32) -> Result<f64> {
    let start = std::time::Instant::now();
    for _ in 0..iterations.max(1) {
        engine.authorize(request)?;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(iterations.max(1)))
}

fn parse<T: DeserializeOwned>(input: &str) -> Result<T> {
    from_str_strict(input)
}

fn no_input(input: &str) -> Result<()> {
    parse::<Empty>(input).map(|_| ())
}

/// The value at an RFC 6901 JSON pointer in `json`, as JSON text (for callers without a JSON
/// library, such as C programs reading a decision's `/outcome`).
pub fn json_pointer(json: &str, pointer: &str) -> Result<String> {
    let value = parse_value_strict(json)?;
    let found = value.pointer(pointer).ok_or_else(|| Error::malformed_request(format!("no value at `{pointer}`")))?;
    to_json(found)
}

/// The `authorize` operation on a request a binding built from its own values (no JSON text on
/// the way in): the decision as the operation writes it.
pub fn authorize(engine: &Engine, request: &AuthorizationRequest) -> Result<String> {
    to_json(&engine.authorize(request)?)
}

/// The `authorize_enforced` operation on a request a binding built from its own values.
pub fn authorize_enforced(engine: &Engine, request: &AuthorizationRequest) -> Result<String> {
    let decision = engine.authorize(request)?;
    let enforcement = decision.enforce(&request.args);
    to_json(&Guarded { decision, enforcement })
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("json encoding failed: {e}")))
}

fn decode_seed(hex: &str) -> Result<Vec<u8>> {
    let bad = || Error::new(ErrorCode::InvalidKey, "seed must be 64 hexadecimal digits");
    if hex.len() != 64 {
        return Err(bad());
    }
    hex::decode(hex).map_err(|_| bad())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalId {
    approval_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskId {
    task_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBreakGlass {
    grant_id: String,
    review_ref: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleDir {
    bundle_dir: String,
}

#[derive(Serialize)]
struct Guarded {
    decision: Decision,
    enforcement: crate::engine::Enforcement,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateJwks {
    issuer: String,
    jwks: Value,
}

#[derive(Serialize)]
struct PolicyVersion {
    policy_version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeAuthorize {
    request: AuthorizationRequest,
    iterations: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditKeygen {
    name: String,
    #[serde(default)]
    seed_hex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditVerify {
    dir: String,
    #[serde(default)]
    verifier_key: Option<String>,
    #[serde(default)]
    trusted_checkpoints: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateKey {
    #[serde(default)]
    seed_hex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainInput {
    chain: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Token {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySignature {
    public_key_hex: String,
    message_hex: String,
    signature_hex: String,
}

#[derive(Serialize)]
struct SignatureVerdict {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_error: Option<ErrorCode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallDigest {
    tool: String,
    args: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enforce {
    decision: Decision,
    args: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPointer {
    json: String,
    pointer: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_dispatched() {
        for op in OPERATIONS {
            let err = call(None, op.name, "{\"no_such_member\": 1}").unwrap_err();
            assert_ne!(err.code(), ErrorCode::UnknownOperation, "`{}` is listed but not dispatched", op.name);
        }
        assert_eq!(call(None, "nope", "{}").unwrap_err().code(), ErrorCode::UnknownOperation);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminProof {
    key: crate::identity::Jwk,
    action: AdminAction,
    policy_version: String,
    #[serde(default)]
    issued_at: Option<i64>,
    #[serde(default)]
    ttl_secs: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleSign {
    bundle_dir: String,
    key: crate::identity::Jwk,
    #[serde(default)]
    issued_at: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleVerify {
    bundle_dir: String,
    keys: Vec<crate::identity::Jwk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    bundle_dir: String,
    logs: Vec<String>,
    #[serde(default)]
    seal_key_hex: Option<String>,
}
