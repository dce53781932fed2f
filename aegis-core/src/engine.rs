//! The `Engine`: one entry point that decides whether a tool call may run.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{Decision as CedarDecision, Effect, Entities, EntityId, EntityUid, PolicyId, Request, RestrictedExpression};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bundle::{evaluate_set, Bundle, ToolEntry};
use crate::credential::{ChainPolicy, ChainVerifier, TrustedIssuer, VerifiedChain};
use crate::decision::{Decision, Outcome, Reason};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::PublicKey;
use crate::proof::{call_digest, ReplayGuard};
use crate::time::{random_id, Clock, OsRandom, SecureRandom, SystemClock};

/// The default audience credentials must name.
pub const DEFAULT_AUDIENCE: &str = "aegis";

/// What a resource reference names: a Cedar entity type and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// The entity type, e.g. `Account` (namespaced if the bundle is).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The entity id.
    pub id: String,
}

/// One tool call to decide on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    /// The credential chain, root first, leaf (the caller) last.
    pub chain: Vec<String>,
    /// The tool, i.e. the Cedar action id.
    pub tool: String,
    /// The tool's arguments: a JSON object.
    #[serde(default = "empty_object")]
    pub args: Value,
    /// What the call targets; defaults to `<resource_type>::"<tool>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// A proof of possession by the leaf key, when the tool requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    bundle: Option<Bundle>,
    issuers: Vec<TrustedIssuer>,
    audience: String,
    leeway_secs: i64,
    max_depth: usize,
    max_lifetime_secs: i64,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            bundle: None,
            issuers: Vec::new(),
            audience: DEFAULT_AUDIENCE.into(),
            leeway_secs: 30,
            max_depth: 4,
            max_lifetime_secs: 24 * 3600,
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
        }
    }
}

impl EngineBuilder {
    /// The policy bundle (required).
    pub fn bundle(mut self, bundle: Bundle) -> Self {
        self.bundle = Some(bundle);
        self
    }

    /// Trusts `key` to issue root credentials that name `issuer` in `iss`.
    pub fn trust_issuer(mut self, issuer: impl Into<String>, key: PublicKey) -> Self {
        self.issuers.push(TrustedIssuer { name: issuer.into(), key });
        self
    }

    /// The audience credentials must name (default `aegis`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock skew tolerated on `nbf`/`iat`/`exp`, in seconds (default 30, at most 300).
    pub fn leeway_secs(mut self, secs: i64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// The longest delegation chain below the root (default 4).
    pub fn max_delegation_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// The longest lifetime any credential may have, in seconds (default 24 h).
    pub fn max_credential_lifetime_secs(mut self, secs: i64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The randomness for ids (default: the operating system's).
    pub fn random(mut self, random: Arc<dyn SecureRandom>) -> Self {
        self.random = random;
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Result<Engine> {
        let bundle = self.bundle.ok_or_else(|| Error::malformed_request("an engine needs a policy bundle"))?;
        if !(0..=300).contains(&self.leeway_secs) {
            return Err(Error::malformed_request("leeway must be between 0 and 300 seconds"));
        }
        if self.issuers.is_empty() {
            return Err(Error::malformed_request("an engine needs at least one trusted issuer"));
        }
        let policy = ChainPolicy {
            audience: self.audience,
            leeway_secs: self.leeway_secs,
            max_depth: self.max_depth,
            max_lifetime_secs: self.max_lifetime_secs,
        };
        Ok(Engine {
            bundle: ArcSwap::from_pointee(bundle),
            verifier: ChainVerifier::new(self.issuers, policy),
            replay: ReplayGuard::default(),
            clock: self.clock,
            random: self.random,
            leeway_secs: self.leeway_secs,
            no_entities: Entities::empty(),
        })
    }
}

/// Decides, before each tool call runs, whether it may. Safe to share between threads.
pub struct Engine {
    bundle: ArcSwap<Bundle>,
    verifier: ChainVerifier,
    replay: ReplayGuard,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    leeway_secs: i64,
    no_entities: Entities,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("policy_version", &self.policy_version()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The version of the bundle in force.
    pub fn policy_version(&self) -> String {
        self.bundle.load().policy_version().to_owned()
    }

    /// The bundle in force.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.bundle.load_full()
    }

    /// Puts `bundle` in force atomically; calls in flight finish on the old one.
    pub fn swap_bundle(&self, bundle: Bundle) {
        self.bundle.store(Arc::new(bundle));
    }

    /// Loads a bundle directory and swaps it in; on any error the old bundle stays in force.
    pub fn reload_bundle(&self, dir: impl AsRef<Path>) -> Result<String> {
        let bundle = Bundle::from_dir(dir)?;
        let version = bundle.policy_version().to_owned();
        self.swap_bundle(bundle);
        Ok(version)
    }

    /// The engine's clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Verifies a credential chain (root first) now.
    pub fn verify_chain(&self, chain: &[String]) -> Result<Arc<VerifiedChain>> {
        self.verifier.verify(chain, self.clock.now_secs())
    }

    /// Decides on one tool call.
    ///
    /// Returns `Err` only for a malformed request or an internal failure; every problem with
    /// credentials, proofs or policies is a `deny` with a reason code.
    pub fn authorize(&self, request: &AuthorizationRequest) -> Result<Decision> {
        if !request.args.is_object() {
            return Err(Error::malformed_request("`args` must be a json object"));
        }
        if request.tool.is_empty() {
            return Err(Error::malformed_request("`tool` must not be empty"));
        }
        let bundle = self.bundle.load_full();
        let now = self.clock.now_secs();
        let mut decision = Decision {
            outcome: Outcome::Deny,
            reasons: Vec::new(),
            approval_id: None,
            sanitized_args: None,
            would_block: false,
            decision_id: random_id(self.random.as_ref(), "dec_")?,
            policy_version: bundle.policy_version().to_owned(),
        };
        match self.decide(&bundle, request, now, &mut decision) {
            Ok(()) => Ok(decision),
            Err(e) if e.code() == ErrorCode::MalformedRequest || e.code() == ErrorCode::Internal => Err(e),
            Err(e) => Ok(deny(decision, e)),
        }
    }

    fn decide(&self, bundle: &Bundle, request: &AuthorizationRequest, now: i64, decision: &mut Decision) -> Result<()> {
        let chain = self.verifier.verify(&request.chain, now)?;
        if !chain.grants(&request.tool) {
            return Err(Error::new(
                ErrorCode::ToolNotInScope,
                format!("agent `{}` holds no credential for tool `{}`", chain.agent_id, request.tool),
            ));
        }
        let tool = bundle.tool(&request.tool).ok_or_else(|| {
            Error::new(ErrorCode::UnknownTool, format!("tool `{}` is not an action of bundle `{}`", request.tool, bundle.policy_version()))
        })?;
        match (&request.proof, tool.proof_required) {
            (None, true) => {
                return Err(Error::new(ErrorCode::ProofRequired, format!("tool `{}` requires a proof of possession", request.tool)))
            }
            (Some(proof), _) => {
                let digest = call_digest(&request.tool, &request.args);
                self.replay.verify_and_consume(proof, &chain.leaf_key, &digest, now, self.leeway_secs)?;
            }
            (None, false) => {}
        }
        let cedar_request = self.cedar_request(bundle, tool, &chain, request, now)?;
        let eval = evaluate_set(&tool.policies, bundle.effects(), &cedar_request, &self.no_entities);
        if let Some(shadow) = &tool.shadow {
            let shadow_eval = evaluate_set(shadow, bundle.shadow_effects(), &cedar_request, &self.no_entities);
            decision.would_block = !shadow_eval.erroring_forbids.is_empty()
                || shadow_eval.determining.iter().any(|id| bundle.shadow_effects().get(id) == Some(&Effect::Forbid));
        }
        self.apply_evaluation(bundle, &eval, request, decision)
    }

    fn cedar_request(
        &self,
        bundle: &Bundle,
        tool: &ToolEntry,
        chain: &VerifiedChain,
        request: &AuthorizationRequest,
        now: i64,
    ) -> Result<Request> {
        let predicates = tool
            .predicates
            .iter()
            .map(|p| {
                let holds = crate::context::lookup(&request.args, &p.path)
                    .and_then(Value::as_str)
                    .is_some_and(|s| p.regex.is_match(s));
                (p.name.clone(), RestrictedExpression::new_bool(holds))
            })
            .collect();
        let context = crate::context::build(chain, &request.args, predicates, now)?;
        let principal = EntityUid::from_type_name_and_id(bundle.principal_type().clone(), EntityId::new(&chain.agent_id));
        let resource = match &request.resource {
            None => tool.default_resource.clone(),
            Some(r) => {
                let ty = r.entity_type.parse().map_err(|e| {
                    Error::malformed_request(format!("resource type `{}` is not a valid entity type: {e}", r.entity_type))
                })?;
                EntityUid::from_type_name_and_id(ty, EntityId::new(&r.id))
            }
        };
        Request::new(principal, tool.action.clone(), resource, context, None)
            .map_err(|e| Error::internal(format!("cedar request: {e}")))
    }

    fn apply_evaluation(
        &self,
        bundle: &Bundle,
        eval: &crate::bundle::Evaluation,
        request: &AuthorizationRequest,
        decision: &mut Decision,
    ) -> Result<()> {
        let reason = |code: ErrorCode, id: &PolicyId, fallback: &str| {
            let meta = bundle.policy_meta(id);
            Reason {
                code,
                policy_id: Some(AsRef::<str>::as_ref(id).to_owned()),
                message: meta.and_then(|m| m.message.clone()).unwrap_or_else(|| fallback.to_owned()),
            }
        };
        if !eval.erroring_forbids.is_empty() {
            decision.outcome = Outcome::Deny;
            for (id, error) in eval.erroring.iter().filter(|(id, _)| eval.erroring_forbids.contains(id)) {
                decision.reasons.push(Reason {
                    code: ErrorCode::PolicyError,
                    policy_id: Some(AsRef::<str>::as_ref(id).to_owned()),
                    message: format!("forbid policy failed to evaluate, which counts as a deny: {error}"),
                });
            }
            return Ok(());
        }
        match eval.cedar_decision {
            CedarDecision::Deny if eval.determining.is_empty() => {
                decision.outcome = Outcome::Deny;
                decision.reasons.push(Reason {
                    code: ErrorCode::NoMatchingPermit,
                    policy_id: None,
                    message: format!("no policy permits `{}` for this caller", request.tool),
                });
            }
            CedarDecision::Deny => {
                let approvable = eval
                    .determining
                    .iter()
                    .all(|id| bundle.policy_meta(id).is_some_and(|m| m.approval.is_some()));
                for id in &eval.determining {
                    let code = if approvable { ErrorCode::ApprovalRequired } else { ErrorCode::PolicyForbid };
                    decision.reasons.push(reason(code, id, "forbidden by policy"));
                }
                if approvable {
                    decision.outcome = Outcome::ApprovalNeeded;
                    decision.approval_id = Some(random_id(self.random.as_ref(), "apr_")?);
                } else {
                    decision.outcome = Outcome::Deny;
                }
            }
            CedarDecision::Allow => {
                let mut paths: Vec<&[String]> = Vec::new();
                for id in &eval.determining {
                    decision.reasons.push(reason(ErrorCode::PolicyPermit, id, "permitted by policy"));
                    if let Some(meta) = bundle.policy_meta(id) {
                        paths.extend(meta.sanitize.iter().map(Vec::as_slice));
                    }
                }
                if paths.is_empty() {
                    decision.outcome = Outcome::Allow;
                } else {
                    let mut sanitized = request.args.clone();
                    crate::context::redact(&mut sanitized, &paths);
                    decision.outcome = Outcome::Sanitize;
                    decision.sanitized_args = Some(sanitized);
                }
            }
        }
        Ok(())
    }
}

fn deny(mut decision: Decision, error: Error) -> Decision {
    decision.outcome = Outcome::Deny;
    decision.approval_id = None;
    decision.sanitized_args = None;
    decision.reasons = vec![Reason { code: error.code(), policy_id: None, message: error.message().to_owned() }];
    decision
}
