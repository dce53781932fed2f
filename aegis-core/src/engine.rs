//! The `Engine`: one entry point that decides whether a tool call may run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use cedar_policy::{Decision as CedarDecision, Effect, Entities, EntityId, EntityUid, PolicyId};
use cedar_policy_core::ast::{self, EntityUIDEntry, Value};
use smol_str::SmolStr;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::approval::{ApprovalResolution, OverrideClaims, OVERRIDE_TYP};
use crate::bundle::{BudgetScope, Bundle, Evaluation, OnExceed, ToolEntry};
use crate::context::string_set;
use crate::credential::{ChainPolicy, ChainVerifier, TrustedIssuer, VerifiedChain};
use crate::decision::{Decision, Outcome, Reason};
use crate::error::{Error, ErrorCode, Result};
use crate::jws::UnverifiedJws;
use crate::keys::{KeyPair, PublicKey};
use crate::proof::call_digest;
use crate::store::{
    ApprovalStatus, BreakGlassGrant, Commit, CommitOutcome, LedgerEntry, MemoryStore, PendingApproval, Reservation, Store,
    TaskState,
};
use crate::time::{random_id, Clock, OsRandom, SecureRandom, SystemClock};

/// The action an approver's decision is evaluated as.
pub const APPROVE_ACTION: &str = "aegis.approve";

/// The scope an approver of break-glass needs.
pub const BREAK_GLASS_SCOPE: &str = "aegis.break_glass";

/// Tasks whose last base context (see `CachedBaseContext`) is kept.
const BASE_CONTEXT_CACHE_CAPACITY: usize = 4096;

/// How often a decision is re-evaluated when concurrent calls in its task keep committing first.
const MAX_ATTEMPTS: usize = 64;

/// Called with every new pending approval (to page a human, post to Slack, ...).
pub type ApprovalNotifier = Arc<dyn Fn(&PendingApproval) + Send + Sync>;

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
    pub args: Json,
    /// What the call targets; defaults to `<resource_type>::"<tool>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// A proof of possession by the leaf key, when the tool requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// An override token from an approval of exactly this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_token: Option<String>,
}

/// A request to open a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// The agents it covers.
    pub agents: Vec<String>,
    /// The tools it covers (`*` for all).
    pub tools: Vec<String>,
    /// Why: required, recorded, shown in review.
    pub reason: String,
    /// At least two credential chains of distinct approvers holding `aegis.break_glass`.
    pub approvers: Vec<Vec<String>>,
    /// How long it lifts breakable forbids, in seconds.
    pub duration_secs: i64,
}

fn empty_object() -> Json {
    Json::Object(serde_json::Map::new())
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
    store: Option<Arc<dyn Store>>,
    approval_key: Option<KeyPair>,
    override_ttl_secs: i64,
    max_break_glass_secs: i64,
    notifier: Option<ApprovalNotifier>,
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
            store: None,
            approval_key: None,
            override_ttl_secs: 300,
            max_break_glass_secs: 4 * 3600,
            notifier: None,
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

    /// Where state lives (default: a fresh [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The key that signs override tokens. Engines that share a store must share it (default:
    /// a fresh key, valid for this engine only).
    pub fn approval_key(mut self, key: KeyPair) -> Self {
        self.approval_key = Some(key);
        self
    }

    /// How long an override token is valid, in seconds (default 300).
    pub fn override_ttl_secs(mut self, secs: i64) -> Self {
        self.override_ttl_secs = secs;
        self
    }

    /// The longest break-glass grant, in seconds (default 4 h).
    pub fn max_break_glass_secs(mut self, secs: i64) -> Self {
        self.max_break_glass_secs = secs;
        self
    }

    /// Called with every new pending approval.
    pub fn notifier(mut self, notifier: ApprovalNotifier) -> Self {
        self.notifier = Some(notifier);
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
        let id_prefix = random_id(self.random.as_ref(), "")?;
        let approval_key = match self.approval_key {
            Some(k) => k,
            None => KeyPair::generate(self.random.as_ref())?,
        };
        Ok(Engine {
            bundle: ArcSwap::from_pointee(bundle),
            verifier: ChainVerifier::new(self.issuers, policy),
            clock: self.clock,
            random: self.random,
            leeway_secs: self.leeway_secs,
            no_entities: Entities::empty(),
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            approval_key,
            override_ttl_secs: self.override_ttl_secs,
            max_break_glass_secs: self.max_break_glass_secs,
            notifier: self.notifier,
            id_prefix,
            id_counter: AtomicU64::new(0),
            base_contexts: Mutex::new(HashMap::new()),
        })
    }
}

/// Decides, before each tool call runs, whether it may. Safe to share between threads.
pub struct Engine {
    bundle: ArcSwap<Bundle>,
    verifier: ChainVerifier,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    leeway_secs: i64,
    no_entities: Entities,
    store: Arc<dyn Store>,
    approval_key: KeyPair,
    override_ttl_secs: i64,
    max_break_glass_secs: i64,
    notifier: Option<ApprovalNotifier>,
    id_prefix: String,
    id_counter: AtomicU64,
    base_contexts: Mutex<HashMap<String, CachedBaseContext>>,
}

/// The call-independent part of the context last built for a task: most calls in a task come
/// from the same verified chain and find the duties unchanged, so only `now`, `args` and
/// `predicates` are new.
struct CachedBaseContext {
    /// The chain it was built for; a newly verified chain with the same context values (the
    /// same agents, task and intent) reuses it.
    chain: Arc<VerifiedChain>,
    duties: BTreeSet<(String, String)>,
    break_glass: bool,
    base: BTreeMap<SmolStr, Value>,
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

    /// A unique decision id: a random per-engine prefix and a counter. Decision ids identify,
    /// they do not authorize, so they need uniqueness, not a system call per decision.
    fn next_decision_id(&self) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(4 + self.id_prefix.len() + 16);
        id.push_str("dec_");
        id.push_str(&self.id_prefix);
        push_hex(&mut id, n);
        id
    }

    /// The context attributes that do not depend on the call's arguments or time, reused while
    /// the task's duties, the caller and break-glass are unchanged.
    fn base_context(&self, state: &TaskState, chain: &Arc<VerifiedChain>, break_glass: bool) -> BTreeMap<SmolStr, Value> {
        let build = || crate::context::base(chain, task_context(state, chain), break_glass);
        let Ok(mut cache) = self.base_contexts.lock() else {
            return build();
        };
        if let Some(hit) = cache.get(&chain.task_id) {
            let same_chain = Arc::ptr_eq(&hit.chain, chain) || hit.chain.context == chain.context;
            if same_chain && hit.break_glass == break_glass && hit.duties == state.duties {
                return hit.base.clone();
            }
        }
        let base = build();
        if cache.len() >= BASE_CONTEXT_CACHE_CAPACITY {
            cache.clear();
        }
        let entry = CachedBaseContext { chain: Arc::clone(chain), duties: state.duties.clone(), break_glass, base: base.clone() };
        cache.insert(chain.task_id.clone(), entry);
        base
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

    /// Decides on one tool call and, when it may run, commits it to the task's state.
    ///
    /// Returns `Err` only for a malformed request or an internal failure; every problem with
    /// credentials, proofs, approvals, state or policies is a `deny` with a reason code.
    pub fn authorize(&self, request: &AuthorizationRequest) -> Result<Decision> {
        if !request.args.is_object() {
            return Err(Error::malformed_request("`args` must be a json object"));
        }
        if request.tool.is_empty() {
            return Err(Error::malformed_request("`tool` must not be empty"));
        }
        let bundle = self.bundle.load_full();
        let now = self.clock.now_secs();
        let mut decision = undecided(self.next_decision_id(), &bundle);
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
        let needs_digest = request.proof.is_some() || request.approval_token.is_some();
        let mut digest = needs_digest.then(|| call_digest(&request.tool, &request.args));
        let mut consume = Vec::new();
        match (&request.proof, tool.proof_required) {
            (None, true) => {
                return Err(Error::new(ErrorCode::ProofRequired, format!("tool `{}` requires a proof of possession", request.tool)))
            }
            (Some(proof), _) => {
                let d = digest.as_deref().unwrap_or_default();
                consume.push(crate::proof::verify(proof, &chain.leaf_key, d, now, self.leeway_secs)?);
            }
            (None, false) => {}
        }
        let approval = match &request.approval_token {
            Some(token) => {
                let claims = self.verify_override(token, &chain, digest.as_deref().unwrap_or_default(), bundle, now)?;
                consume.push((format!("approval:{}", claims.approval_id), claims.exp + self.leeway_secs + 1));
                Some(claims)
            }
            None => None,
        };

        for _ in 0..MAX_ATTEMPTS {
            let state = self.store.task_state(&chain.task_id)?;
            if state.ended {
                return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", chain.task_id)));
            }
            let grant = self.store.open_grants()?.into_iter().find(|g| g.covers(&chain.agent_id, &request.tool, now));
            decision.break_glass_id = grant.as_ref().map(|g| g.id.clone());
            let base = self.base_context(&state, &chain, grant.is_some());
            let cedar_request = self.cedar_request(bundle, tool, &chain, base, &request.args, request.resource.as_ref(), now, None)?;
            let (eval, would_block) = bundle.evaluate(tool, cedar_request, &self.no_entities);
            decision.would_block = would_block;
            decision.reasons.clear();
            decision.sanitized_args = None;
            apply_evaluation(bundle, &eval, &request.tool, &request.args, decision);
            if decision.outcome == Outcome::ApprovalNeeded && approval.is_some() {
                decision.outcome = Outcome::Allow;
                for r in &mut decision.reasons {
                    r.code = ErrorCode::ApprovalGranted;
                }
            } else if decision.outcome != Outcome::Allow && grant.is_some() && breakable(bundle, &eval) {
                decision.outcome = Outcome::Allow;
                for r in &mut decision.reasons {
                    r.code = ErrorCode::BreakGlassApplied;
                }
            }
            // Budgets only for calls that may run: a call the policies deny spends nothing.
            let reservations = if decision.outcome.permits_call() {
                budget_reservations(tool, &chain, &request.args, now, approval.is_none())?
            } else {
                Vec::new()
            };
            if decision.outcome.permits_call() {
                if let Some(over) = self.budget_needing_approval(tool, &reservations)? {
                    decision.outcome = Outcome::ApprovalNeeded;
                    decision.sanitized_args = None;
                    decision.reasons = vec![Reason {
                        code: ErrorCode::BudgetExceeded,
                        policy_id: None,
                        message: format!("budget `{over}` would be exceeded; a budget approver may allow it"),
                    }];
                }
            }
            match decision.outcome {
                Outcome::Deny => return Ok(()),
                Outcome::ApprovalNeeded => {
                    let digest = digest.get_or_insert_with(|| call_digest(&request.tool, &request.args)).clone();
                    return self.open_approval(bundle, &chain, request, digest, decision);
                }
                Outcome::Allow | Outcome::Sanitize => {
                    let commit = Commit {
                        task_id: chain.task_id.clone(),
                        expected_version: state.version,
                        consume: consume.clone(),
                        entry: LedgerEntry {
                            tool: request.tool.clone(),
                            agent_id: chain.agent_id.clone(),
                            lineage: chain.lineage.clone(),
                            decision_id: decision.decision_id.clone(),
                            at: now,
                        },
                        reservations,
                        now,
                    };
                    match self.store.commit(commit)? {
                        CommitOutcome::Committed => {
                            if let Some(claims) = &approval {
                                self.supersede_duplicates(claims, &chain.agent_id);
                            }
                            return Ok(());
                        }
                        CommitOutcome::Conflict => continue,
                        CommitOutcome::TaskEnded => {
                            return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", chain.task_id)))
                        }
                        CommitOutcome::BudgetExceeded(key) => {
                            return Err(Error::new(ErrorCode::BudgetExceeded, format!("budget `{key}` would be exceeded")))
                        }
                        CommitOutcome::AlreadyUsed(key) if key.starts_with("approval:") => {
                            return Err(Error::new(ErrorCode::ApprovalReplayed, "the override token was already used"))
                        }
                        CommitOutcome::AlreadyUsed(_) => {
                            return Err(Error::new(ErrorCode::ProofReplayed, "the proof of possession was already used"))
                        }
                    }
                }
            }
        }
        Err(Error::new(ErrorCode::Contention, format!("task `{}` kept changing during the decision", chain.task_id)))
    }

    /// Closes the other pending requests for the call that just ran under `claims`' approval.
    ///
    /// A graph that re-runs its interrupted step (LangGraph does, on resume) asks again before
    /// it presents the override token, which opens a second request for the same call; left
    /// pending, a human could approve it into a second run of the same call. Best effort: the
    /// call is already committed, so a store error here leaves the duplicate pending (as
    /// before) rather than turning a durable allow into an error.
    fn supersede_duplicates(&self, claims: &OverrideClaims, agent_id: &str) {
        let Ok(pending) = self.store.list_pending() else { return };
        let duplicates = pending.into_iter().filter(|p| {
            p.approval_id != claims.approval_id && p.task_id == claims.task && p.agent_id == agent_id && p.call_digest == claims.call
        });
        for mut duplicate in duplicates {
            duplicate.status = ApprovalStatus::Superseded;
            duplicate.resolved_by = Some("aegis".to_owned());
            duplicate.resolved_at_ms = Some(self.clock.now_millis());
            duplicate.note = Some(format!("superseded: the call ran under approval `{}`", claims.approval_id));
            let _ = self.store.resolve(&duplicate);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cedar_request(
        &self,
        bundle: &Bundle,
        tool: &ToolEntry,
        chain: &VerifiedChain,
        base: BTreeMap<SmolStr, Value>,
        args: &Json,
        resource: Option<&ResourceRef>,
        now: i64,
        approval: Option<Value>,
    ) -> Result<ast::Request> {
        let predicates = tool.predicates.iter().map(|p| {
            let holds = crate::context::lookup(args, &p.path).and_then(Json::as_str).is_some_and(|s| p.regex.is_match(s));
            (SmolStr::from(p.name.as_str()), holds)
        });
        let context = crate::context::build(base, args, predicates, now, approval)?;
        let principal = EntityUid::from_type_name_and_id(bundle.principal_type().clone(), EntityId::new(&chain.agent_id));
        let resource = match resource {
            None => tool.default_resource.clone(),
            Some(r) => {
                let ty: cedar_policy::EntityTypeName = r.entity_type.parse().map_err(|e| {
                    Error::malformed_request(format!("resource type `{}` is not a valid entity type: {e}", r.entity_type))
                })?;
                EntityUIDEntry::known(EntityUid::from_type_name_and_id(ty, EntityId::new(&r.id)).into(), None)
            }
        };
        let principal = EntityUIDEntry::known(principal.into(), None);
        Ok(ast::Request::new_unchecked(principal, tool.action.clone(), resource, Some(context)))
    }

    fn verify_override(&self, token: &str, chain: &VerifiedChain, digest: &str, bundle: &Bundle, now: i64) -> Result<OverrideClaims> {
        let invalid = |e: Error| Error::new(ErrorCode::ApprovalTokenInvalid, format!("override token: {}", e.message()));
        let parsed = UnverifiedJws::<OverrideClaims>::parse(token, OVERRIDE_TYP).map_err(invalid)?;
        parsed.verify(self.approval_key.public_key()).map_err(invalid)?;
        let c = parsed.claims;
        if now - self.leeway_secs >= c.exp {
            return Err(Error::new(ErrorCode::ApprovalExpired, "the override token has expired"));
        }
        if c.sub != chain.agent_id {
            return Err(Error::new(ErrorCode::ApprovalWrongAgent, format!("the approval was for agent `{}`", c.sub)));
        }
        if c.task != chain.task_id {
            return Err(Error::new(ErrorCode::ApprovalWrongTask, format!("the approval was for task `{}`", c.task)));
        }
        if c.call != digest {
            return Err(Error::new(ErrorCode::ApprovalArgsMismatch, "the approval was for another tool or other arguments"));
        }
        if c.pv != bundle.policy_version() {
            return Err(Error::new(
                ErrorCode::ApprovalPolicyChanged,
                format!("the approval was under policy version `{}`; `{}` is in force", c.pv, bundle.policy_version()),
            ));
        }
        Ok(c)
    }

    fn budget_needing_approval(&self, tool: &ToolEntry, reservations: &[Reservation]) -> Result<Option<String>> {
        for (budget, r) in tool.budgets.iter().zip(reservations) {
            if r.enforce && budget.spec.on_exceed == OnExceed::Approval && self.store.budget_spent(&r.key, r.window_start)? + r.amount > r.limit {
                return Ok(Some(budget.name.clone()));
            }
        }
        Ok(None)
    }

    fn open_approval(
        &self,
        bundle: &Bundle,
        chain: &VerifiedChain,
        request: &AuthorizationRequest,
        call_digest: String,
        decision: &mut Decision,
    ) -> Result<()> {
        let approval_id = random_id(self.random.as_ref(), "apr_")?;
        let mut roles: Vec<String> = decision
            .reasons
            .iter()
            .map(|r| match r.policy_id.as_ref().and_then(|id| bundle.policy_meta(&PolicyId::new(id))) {
                Some(meta) => meta.approval.clone().unwrap_or_default(),
                None => "budget-approver".to_owned(),
            })
            .collect();
        roles.sort_unstable();
        roles.dedup();
        let pending = PendingApproval {
            approval_id: approval_id.clone(),
            call_digest,
            tool: request.tool.clone(),
            args: request.args.clone(),
            agent_id: chain.agent_id.clone(),
            lineage: chain.lineage.clone(),
            initiator: chain.initiator.clone(),
            task_id: chain.task_id.clone(),
            intent: chain.intent.clone(),
            policy_ids: decision.reasons.iter().map(|r| r.policy_id.clone().unwrap_or_else(|| "budget".into())).collect(),
            reasons: decision.reasons.iter().map(|r| r.message.clone()).collect(),
            roles,
            policy_version: bundle.policy_version().to_owned(),
            created_at_ms: self.clock.now_millis(),
            status: ApprovalStatus::Pending,
            resolved_by: None,
            resolved_at_ms: None,
            note: None,
        };
        self.store.insert_pending(&pending)?;
        decision.approval_id = Some(approval_id);
        if let Some(notify) = &self.notifier {
            // The approval is already durable; a notifier that panics must not turn the
            // decision into an error (it is reported by nothing but its own absence).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| notify(&pending)));
        }
        Ok(())
    }

    /// Approves a pending approval as the agent (or human) holding `approver_chain`.
    ///
    /// Out of the box the approver may not be the requester, anyone above it in its chain,
    /// anyone whose own chain derives from the requester, or anyone who already performed a duty
    /// in the request's task; beyond that the bundle's policies over the `aegis.approve` action
    /// decide. On success the approval is recorded as the approver's duty in the task and a
    /// single-use override token bound to the exact call is minted.
    pub fn approve(&self, approval_id: &str, approver_chain: &[String], note: Option<&str>) -> Result<ApprovalResolution> {
        self.resolve(approval_id, approver_chain, note, ApprovalStatus::Approved)
    }

    /// Rejects a pending approval. The rejecter must present a valid credential chain.
    pub fn reject(&self, approval_id: &str, approver_chain: &[String], note: Option<&str>) -> Result<ApprovalResolution> {
        self.resolve(approval_id, approver_chain, note, ApprovalStatus::Rejected)
    }

    fn resolve(&self, approval_id: &str, approver_chain: &[String], note: Option<&str>, status: ApprovalStatus) -> Result<ApprovalResolution> {
        let pending = self
            .store
            .approval(approval_id)?
            .ok_or_else(|| Error::new(ErrorCode::ApprovalNotFound, format!("no approval `{approval_id}`")))?;
        if pending.status != ApprovalStatus::Pending {
            return Err(Error::new(ErrorCode::ApprovalNotPending, format!("approval `{approval_id}` is already resolved")));
        }
        let now = self.clock.now_secs();
        let refuse = |pending: PendingApproval, e: Error| ApprovalResolution {
            accepted: false,
            reasons: vec![Reason { code: e.code(), policy_id: None, message: e.message().to_owned() }],
            override_token: None,
            approval: pending,
        };
        let chain = match self.verifier.verify(approver_chain, now) {
            Ok(chain) => chain,
            Err(e) => return Ok(refuse(pending, e)),
        };
        let mut reasons = Vec::new();
        if status == ApprovalStatus::Approved {
            match self.check_approver(&pending, &chain, now) {
                Ok(r) => reasons = r,
                Err(e) if e.code() == ErrorCode::StoreUnavailable || e.code() == ErrorCode::Internal => return Err(e),
                Err(e) => return Ok(refuse(pending, e)),
            }
        }
        let mut resolved = pending.clone();
        resolved.status = status;
        resolved.resolved_by = Some(chain.agent_id.clone());
        resolved.resolved_at_ms = Some(self.clock.now_millis());
        resolved.note = note.map(str::to_owned);
        if !self.store.resolve(&resolved)? {
            return Err(Error::new(ErrorCode::ApprovalNotPending, format!("approval `{approval_id}` is already resolved")));
        }
        if status == ApprovalStatus::Rejected {
            return Ok(ApprovalResolution { accepted: true, reasons, override_token: None, approval: resolved });
        }
        self.record_duty(&pending.task_id, &chain, APPROVE_ACTION, now)?;
        let claims = OverrideClaims {
            approval_id: pending.approval_id.clone(),
            call: pending.call_digest.clone(),
            sub: pending.agent_id.clone(),
            task: pending.task_id.clone(),
            pv: pending.policy_version.clone(),
            approver: chain.agent_id.clone(),
            iat: now,
            exp: now + self.override_ttl_secs,
        };
        let token = crate::jws::sign(&claims, OVERRIDE_TYP, &self.approval_key)?;
        Ok(ApprovalResolution { accepted: true, reasons, override_token: Some(token), approval: resolved })
    }

    /// Built-in segregation of duties, then the bundle's `aegis.approve` policies.
    fn check_approver(&self, pending: &PendingApproval, chain: &Arc<VerifiedChain>, now: i64) -> Result<Vec<Reason>> {
        let approver = chain.agent_id.as_str();
        let conflict = |why: &str| Err(Error::new(ErrorCode::ApproverConflict, format!("`{approver}` {why}")));
        if approver == pending.agent_id {
            return conflict("may not approve its own request");
        }
        if pending.initiator == approver || pending.lineage.iter().any(|a| a == approver) {
            return conflict("delegated to the requester and may not approve its request");
        }
        if chain.lineage.iter().any(|a| a == &pending.agent_id) {
            return conflict("holds a credential derived from the requester");
        }
        let state = self.store.task_state(&pending.task_id)?;
        if state.ended {
            return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", pending.task_id)));
        }
        // Approving again is not a conflicting duty; drafting, executing, anything else is.
        if state.duties.iter().any(|(agent, tool)| agent == approver && tool != APPROVE_ACTION) {
            return conflict("already performed a duty in this task");
        }
        let bundle = self.bundle.load_full();
        if !chain.grants(APPROVE_ACTION) {
            return Err(Error::new(ErrorCode::ToolNotInScope, format!("`{approver}` holds no credential for `{APPROVE_ACTION}`")));
        }
        let tool = bundle.tool(APPROVE_ACTION).ok_or_else(|| {
            Error::new(ErrorCode::UnknownTool, format!("bundle `{}` has no `{APPROVE_ACTION}` action", bundle.policy_version()))
        })?;
            let approval = Value::record(
            [
                ("approval_id", Value::from(pending.approval_id.as_str())),
                ("tool", Value::from(pending.tool.as_str())),
                ("requester", Value::from(pending.agent_id.as_str())),
                ("initiator", Value::from(pending.initiator.as_str())),
                ("task_id", Value::from(pending.task_id.as_str())),
                ("roles", string_set(pending.roles.iter().map(String::as_str))),
                ("policy_ids", string_set(pending.policy_ids.iter().map(String::as_str))),
            ],
            None,
        );
        let base = self.base_context(&state, chain, false);
        let args = Json::Object(serde_json::Map::new());
        let cedar_request = self.cedar_request(&bundle, tool, chain, base, &args, None, now, Some(approval))?;
        let (eval, _) = bundle.evaluate(tool, cedar_request, &self.no_entities);
        let mut verdict = undecided(String::new(), &bundle);
        apply_evaluation(&bundle, &eval, APPROVE_ACTION, &args, &mut verdict);
        if verdict.outcome == Outcome::Allow {
            Ok(verdict.reasons)
        } else {
            let first = verdict.reasons.first().cloned();
            Err(Error::new(
                first.as_ref().map_or(ErrorCode::NoMatchingPermit, |r| r.code),
                first.map_or_else(|| "not permitted to approve".to_owned(), |r| r.message),
            ))
        }
    }

    fn record_duty(&self, task_id: &str, chain: &VerifiedChain, tool: &str, now: i64) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let state = self.store.task_state(task_id)?;
            let commit = Commit {
                task_id: task_id.to_owned(),
                expected_version: state.version,
                consume: Vec::new(),
                entry: LedgerEntry {
                    tool: tool.to_owned(),
                    agent_id: chain.agent_id.clone(),
                    lineage: chain.lineage.clone(),
                    decision_id: self.next_decision_id(),
                    at: now,
                },
                reservations: Vec::new(),
                now,
            };
            match self.store.commit(commit)? {
                CommitOutcome::Conflict => continue,
                CommitOutcome::Committed => return Ok(()),
                // The commit consumes nothing and reserves nothing: an ended task is all that is left.
                _ => return Err(Error::new(ErrorCode::TaskEnded, format!("task `{task_id}` has ended"))),
            }
        }
        Err(Error::new(ErrorCode::Contention, format!("task `{task_id}` kept changing")))
    }

    /// Approvals waiting for a human, oldest first.
    pub fn pending_approvals(&self) -> Result<Vec<PendingApproval>> {
        self.store.list_pending()
    }

    /// An approval by id, in any state.
    pub fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        self.store.approval(approval_id)
    }

    /// The task's ledger: every allowed call and approval, oldest first.
    pub fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        self.store.ledger(task_id)
    }

    /// Ends a task: every credential of the task is refused from now on.
    pub fn end_task(&self, task_id: &str) -> Result<()> {
        self.store.end_task(task_id, self.clock.now_secs())
    }

    /// Opens a time-boxed break-glass grant: lifts forbids annotated `@breakable` for the named
    /// agents and tools. Needs a reason and two distinct approvers who hold `aegis.break_glass`
    /// and are not among the agents covered.
    pub fn break_glass(&self, request: &BreakGlassRequest) -> Result<BreakGlassGrant> {
        let refuse = |m: String| Err(Error::new(ErrorCode::BreakGlassRefused, m));
        if request.reason.trim().is_empty() {
            return refuse("break-glass needs a reason".into());
        }
        if request.agents.is_empty() || request.tools.is_empty() {
            return refuse("break-glass needs at least one agent and one tool".into());
        }
        if request.duration_secs <= 0 || request.duration_secs > self.max_break_glass_secs {
            return refuse(format!("break-glass lasts between 1 and {} seconds", self.max_break_glass_secs));
        }
        let now = self.clock.now_secs();
        let mut approvers: Vec<String> = Vec::new();
        for chain in &request.approvers {
            let verified = self.verifier.verify(chain, now).map_err(|e| {
                Error::new(ErrorCode::BreakGlassRefused, format!("approver credential: [{}] {}", e.code(), e.message()))
            })?;
            if !verified.grants(BREAK_GLASS_SCOPE) {
                return refuse(format!("approver `{}` does not hold `{BREAK_GLASS_SCOPE}`", verified.agent_id));
            }
            if request.agents.contains(&verified.agent_id) {
                return refuse(format!("approver `{}` may not open break-glass for itself", verified.agent_id));
            }
            if !approvers.contains(&verified.agent_id) {
                approvers.push(verified.agent_id.clone());
            }
        }
        if approvers.len() < 2 {
            return refuse("break-glass needs two distinct approvers".into());
        }
        let grant = BreakGlassGrant {
            id: random_id(self.random.as_ref(), "bg_")?,
            agents: request.agents.clone(),
            tools: request.tools.clone(),
            reason: request.reason.clone(),
            approvers,
            opened_at: now,
            expires_at: now + request.duration_secs,
            closed_at: None,
            review_ref: None,
        };
        self.store.insert_grant(&grant)?;
        Ok(grant)
    }

    /// Break-glass grants not yet closed (expired ones included, until reviewed).
    pub fn open_break_glass(&self) -> Result<Vec<BreakGlassGrant>> {
        self.store.open_grants()
    }

    /// Closes a break-glass grant with the reference of its post-incident review.
    pub fn close_break_glass(&self, id: &str, review_ref: &str) -> Result<()> {
        if review_ref.trim().is_empty() {
            return Err(Error::new(ErrorCode::BreakGlassRefused, "closing break-glass needs a review reference"));
        }
        if self.store.close_grant(id, review_ref, self.clock.now_secs())? {
            Ok(())
        } else {
            Err(Error::new(ErrorCode::BreakGlassRefused, format!("no open break-glass grant `{id}`")))
        }
    }
}

/// The `task` context record: what was already done in the task, seen from this chain.
fn task_context(state: &TaskState, chain: &VerifiedChain) -> Value {
    let by_agent = state.duties.iter().filter(|(a, _)| a == &chain.agent_id).map(|(_, t)| t.as_str());
    let by_lineage = state
        .duties
        .iter()
        .filter(|(a, _)| a == &chain.agent_id || chain.lineage.iter().any(|l| l == a))
        .map(|(_, t)| t.as_str());
    Value::record(
        [
            ("duties_by_agent", string_set(by_agent)),
            ("duties_by_lineage", string_set(by_lineage)),
            ("performed", string_set(state.duties.iter().map(|(_, t)| t.as_str()))),
            ("actors", string_set(state.duties.iter().map(|(a, _)| a.as_str()))),
        ],
        None,
    )
}

/// Whether every forbid that denied the call is `@breakable` (and nothing errored).
fn breakable(bundle: &Bundle, eval: &Evaluation) -> bool {
    eval.erroring_forbids.is_empty()
        && !eval.determining.is_empty()
        && eval.determining.iter().all(|id| bundle.policy_meta(id).is_some_and(|m| m.effect == Effect::Forbid && m.breakable))
}

fn budget_reservations(tool: &ToolEntry, chain: &VerifiedChain, args: &Json, now: i64, enforce: bool) -> Result<Vec<Reservation>> {
    tool.budgets
        .iter()
        .map(|b| {
            let amount = match &b.sum {
                None => 1,
                Some(path) => crate::context::lookup(args, path).and_then(Json::as_i64).ok_or_else(|| {
                    Error::malformed_request(format!("budget `{}` sums `args.{}`, which must be an integer", b.name, path.join(".")))
                })?,
            };
            let (scope, id) = match b.spec.per {
                BudgetScope::Task => ("task", &chain.task_id),
                BudgetScope::Agent => ("agent", &chain.agent_id),
                BudgetScope::Initiator => ("initiator", &chain.initiator),
            };
            Ok(Reservation {
                key: format!("{}/{scope}/{id}", b.name),
                amount,
                limit: b.spec.limit,
                window_start: now - b.spec.window_secs,
                enforce,
            })
        })
        .collect()
}

/// A deny with no reasons yet: what a decision is until evaluation says otherwise.
fn undecided(decision_id: String, bundle: &Bundle) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        reasons: Vec::new(),
        approval_id: None,
        sanitized_args: None,
        would_block: false,
        break_glass_id: None,
        decision_id,
        policy_version: bundle.policy_version().to_owned(),
    }
}

/// Appends `n` in lowercase hex, as `{:x}` would: by hand, because the formatting machinery
/// costs more than the rest of a decision id.
fn push_hex(out: &mut String, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev().map(|d| d * 4) {
        out.push(char::from(b"0123456789abcdef"[((n >> shift) & 0xf) as usize]));
    }
}

fn apply_evaluation(bundle: &Bundle, eval: &Evaluation, tool: &str, args: &Json, decision: &mut Decision) {
    let reason = |code: ErrorCode, id: &PolicyId, fallback: &str| Reason {
        code,
        policy_id: Some(AsRef::<str>::as_ref(id).to_owned()),
        message: bundle.policy_meta(id).and_then(|m| m.message.clone()).unwrap_or_else(|| fallback.to_owned()),
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
        return;
    }
    match eval.cedar_decision {
        CedarDecision::Deny if eval.determining.is_empty() => {
            decision.outcome = Outcome::Deny;
            decision.reasons.push(Reason {
                code: ErrorCode::NoMatchingPermit,
                policy_id: None,
                message: format!("no policy permits `{tool}` for this caller"),
            });
        }
        CedarDecision::Deny => {
            let approvable = eval.determining.iter().all(|id| bundle.policy_meta(id).is_some_and(|m| m.approval.is_some()));
            let code = if approvable { ErrorCode::ApprovalRequired } else { ErrorCode::PolicyForbid };
            for id in &eval.determining {
                decision.reasons.push(reason(code, id, "forbidden by policy"));
            }
            decision.outcome = if approvable { Outcome::ApprovalNeeded } else { Outcome::Deny };
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
                let mut sanitized = args.clone();
                crate::context::redact(&mut sanitized, &paths);
                decision.outcome = Outcome::Sanitize;
                decision.sanitized_args = Some(sanitized);
            }
        }
    }
}

fn deny(mut decision: Decision, error: Error) -> Decision {
    decision.outcome = Outcome::Deny;
    decision.approval_id = None;
    decision.sanitized_args = None;
    decision.reasons = vec![Reason { code: error.code(), policy_id: None, message: error.message().to_owned() }];
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_id_counters_are_lowercase_hex() {
        for n in [0, 1, 9, 10, 15, 16, 255, 256, 0xdead_beef, u64::MAX >> 4, u64::MAX] {
            let mut out = String::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}"));
        }
    }
}
