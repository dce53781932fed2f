//! The decision pipeline, one call of [`Engine::authorize`], top down: each stage a function.
//!
//! 1. [`Engine::verify_call`]: the chain, the tool's scope, the proof of possession and the
//!    override token (nothing here reads state).
//! 2. [`Engine::task_state`]: the task's ledger version and duties; ended tasks stop here.
//! 3. [`Engine::evaluate`]: break-glass, the context, Cedar, the verdict, budgets.
//! 4. [`Engine::commit`]: consume single-use ids, append to the ledger and reserve budget, all
//!    or nothing; a conflicting commit in the same task sends the decision back to stage 2.

use std::sync::Arc;

use cedar_policy::{EntityId, EntityUid, PolicyId};
use serde_json::Value as Json;
use smol_str::SmolStr;

use super::decision::{Decision, Outcome, Reason};
use super::request::AuthorizationRequest;
use super::verdict::{apply_evaluation, breakable, deny, lift_forbids, lifts_forbids, redacted_by_permits, undecided};
use super::{Engine, MAX_ATTEMPTS};
use crate::approval::OverrideClaims;
use crate::audit::{decision_event, AuditLog, DecidedCall};
use crate::budget::Reservation;
use crate::error::{Error, ErrorCode, ReasonCode, Result};
use crate::identity::proof::{call_digest, verify as verify_proof};
use crate::identity::VerifiedChain;
use crate::policy::eval::{CallContext, PreparedRequest};
use crate::policy::{lookup, redact, scrub, Bundle, ToolEntry};
use crate::state::{Commit, CommitOutcome, DecisionState, LedgerEntry, RevisionChange};
use crate::time::random_id;

/// A call whose caller, scope, proof and override token verified: what the stateful stages
/// decide on.
pub(crate) struct VerifiedCall<'r> {
    pub request: &'r AuthorizationRequest,
    pub chain: Arc<VerifiedChain>,
    pub tool: Arc<ToolEntry>,
    /// The call digest, computed once when a proof, a token or an approval needs it.
    pub digest: Option<String>,
    /// Single-use ids the commit consumes: the proof's `jti`, the approval's id.
    pub consume: Vec<(String, i64)>,
    /// The verified override token, if one was presented.
    pub approval: Option<OverrideClaims>,
    /// What a batch token reserves for this call: one of the batch's calls, its amount.
    pub batch_reservations: Vec<crate::state::Reservation>,
    /// The arguments with the redactions of every permit that held: what a human approving
    /// the call is shown.
    pub display_args: Option<Json>,
    /// The budgets an approval must also lift: the call would exceed them (`on_exceed:
    /// approval`).
    pub budget_over: Vec<String>,
    /// The shadow policies that would have blocked the call.
    pub shadow: Vec<String>,
    /// What the committed call spent, budget key and amount.
    pub spent: Vec<(String, i64)>,
    /// The decision's record was written with the commit, in the store's transaction.
    pub recorded: bool,
    /// Whether budgets are read before a permitted call commits. They are, except on a call's
    /// first pass through `decide`: its commit reserves each budget against its limit
    /// atomically anyway, so a call within its budgets costs no read (on Redis, a round trip
    /// per budget). A reservation that would exceed a limit fails the commit, which changes
    /// nothing; the call is then decided again with its budgets read first, to ask for an
    /// approval or refuse as the budget says. Every other evaluation (a candidate bundle's, a
    /// replay's) reads them: it may not commit, or not decide again.
    pub budgets_read_first: bool,
}

impl<'r> VerifiedCall<'r> {
    /// A call of `tool` by `chain`, before its proof, token and evaluation are looked at.
    pub fn new(request: &'r AuthorizationRequest, chain: Arc<VerifiedChain>, tool: Arc<ToolEntry>) -> Self {
        Self {
            request,
            chain,
            tool,
            digest: None,
            consume: Vec::new(),
            approval: None,
            batch_reservations: Vec::new(),
            display_args: None,
            budget_over: Vec::new(),
            shadow: Vec::new(),
            spent: Vec::new(),
            recorded: false,
            budgets_read_first: true,
        }
    }

    /// The call digest (RFC 8785 canonical JSON of tool and arguments).
    pub fn digest(&mut self) -> Result<&str> {
        if self.digest.is_none() {
            self.digest = Some(call_digest(&self.request.tool, &self.request.args)?);
        }
        Ok(self.digest.as_deref().unwrap_or_default())
    }
}

impl Engine {
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
        let started = self.observed().then(std::time::SystemTime::now);
        // A guard, not a clone: threads deciding side by side do not all count references on
        // the one bundle.
        let bundle = self.bundle.load();
        let now = self.clock.now_secs();
        let mut decision = undecided(self.next_decision_id(), &bundle);
        let mut call = None;
        let decision = match self.decide(&bundle, request, now, &mut decision, &mut call) {
            Ok(()) => decision,
            Err(e) if e.code() == ErrorCode::MalformedRequest || e.code() == ErrorCode::Internal => return Err(e),
            Err(e) => deny(decision, e),
        };
        // Signed before the record, so that the record says what was returned; a record that
        // cannot be made durable turns the decision into a deny, which drops the receipt.
        let decision = self.with_receipt(call.as_ref().map(|c| c.chain.as_ref()), &request.tool, &request.args, decision);
        let (decision, event) = match &self.audit {
            Some(log) => self.record_decision(log, &bundle, request, call.as_ref(), decision),
            None => (decision, None),
        };
        if started.is_some() {
            // The span carries what the record carries (built here when no record was).
            let event = event.or_else(|| self.decision_record(None, &bundle, request, call.as_ref(), &decision).ok());
            if let Some(event) = event {
                self.observe(&event, started, request.traceparent.as_deref());
            }
        }
        Ok(decision)
    }

    /// Records the decision; a permitting one (or one that opened an approval) whose record
    /// cannot be made durable becomes a deny. What was committed stays committed: state only
    /// tightens, and the call does not run. A decision recorded with its commit (the SQLite
    /// store keeping the log) is durable already. Returns the record it appended, if any.
    fn record_decision(
        &self,
        log: &AuditLog,
        bundle: &Bundle,
        request: &AuthorizationRequest,
        call: Option<&VerifiedCall<'_>>,
        decision: Decision,
    ) -> (Decision, Option<crate::audit::Event>) {
        if call.is_some_and(|c| c.recorded) {
            return (decision, None);
        }
        let appended =
            self.decision_record(Some(log), bundle, request, call, &decision).and_then(|event| match self.observed() {
                // Telemetry makes its span from the same record.
                true => self.append(log, event.clone()).map(|_| Some(event)),
                false => self.append(log, event).map(|_| None),
            });
        match appended {
            Ok(event) => (decision, event),
            Err(e) if decision.outcome == Outcome::Deny => {
                let mut decision = decision;
                decision.reasons.push(Reason::from_error(&e));
                (decision, None)
            }
            Err(e) => (deny(decision, e), None),
        }
    }

    /// The audit record of `decision`; raw arguments are sealed into it when `log` keeps them.
    fn decision_record(
        &self,
        log: Option<&AuditLog>,
        bundle: &Bundle,
        request: &AuthorizationRequest,
        call: Option<&VerifiedCall<'_>>,
        decision: &Decision,
    ) -> Result<crate::audit::Event> {
        let (chain, digest, shadow, spent) = match call {
            Some(c) if decision.permits_call() => (Some(&c.chain), c.digest.clone(), c.shadow.clone(), c.spent.clone()),
            Some(c) => (Some(&c.chain), c.digest.clone(), c.shadow.clone(), Vec::new()),
            None => (None, None, Vec::new(), Vec::new()),
        };
        let categories = decision
            .reasons
            .iter()
            .map(|r| r.policy_id.as_ref().and_then(|id| bundle.policy_meta(&PolicyId::new(id))).and_then(|m| m.category.clone()))
            .collect();
        let digest = digest.or_else(|| call_digest(&request.tool, &request.args).ok());
        // Arguments are recorded with every redaction any of the tool's policies names, and
        // every detector's matches replaced (only their counts are recorded); a tool the bundle
        // does not know has none named, so only the digest is kept.
        let (args, detections) = bundle.tool(&request.tool).map_or((Json::Null, Default::default()), |tool| {
            let mut args = request.args.clone();
            redact(&mut args, &tool.audit_redactions.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let detections = scrub(&mut args, &tool.audit_detectors);
            (args, detections)
        });
        let sealed_args = log
            .and_then(AuditLog::seal_key)
            .map(|(key, random)| key.seal(&request.args, &decision.decision_id, random))
            .transpose()?;
        let call = DecidedCall {
            request,
            chain: chain.map(|c| &**c),
            digest,
            args,
            detections,
            sealed_args,
            shadow_policies: shadow,
            categories,
            spent,
        };
        Ok(decision_event(call, decision, self.clock.now_millis()))
    }

    fn decide<'r>(
        &self,
        bundle: &Bundle,
        request: &'r AuthorizationRequest,
        now: i64,
        decision: &mut Decision,
        slot: &mut Option<VerifiedCall<'r>>,
    ) -> Result<()> {
        let call = slot.insert(self.verify_call(bundle, request, now)?);
        call.budgets_read_first = false;
        for _ in 0..MAX_ATTEMPTS {
            let state = self.task_state(&call.chain)?;
            let evaluated = self.evaluate(bundle, call, &state, now, decision);
            // A candidate bundle in rollout decides beside the enforced one, on the same state.
            if let Some(candidate) = self.control.candidate() {
                let enforced_permits = evaluated.is_ok() && decision.outcome.permits_call();
                decision.candidate = Some(self.candidate_verdict(&candidate, call, &state, now, enforced_permits));
            }
            let mut reservations = evaluated?;
            if self.control.mode() == super::Mode::Shadow && super::verdict::refused_by_policy(decision) {
                // Log-only: the call runs and counts like any allowed call (its proof and
                // token consumed, its duty recorded, its spending reserved); a denying budget
                // still refuses it, and no human is asked.
                reservations = self.log_only_reservations(call, now)?;
                *decision = super::verdict::log_only(
                    std::mem::replace(decision, undecided(String::new(), bundle)),
                    bundle,
                    &request.tool,
                    &request.args,
                );
            }
            if matches!(decision.outcome, Outcome::Deny | Outcome::ApprovalNeeded) && !self.still_current(call, &state)? {
                continue; // decided on a view of the task older than the store's: decide again
            }
            match decision.outcome {
                Outcome::Deny => return Ok(()),
                Outcome::ApprovalNeeded => return self.open_approval(bundle, call, decision),
                Outcome::Allow | Outcome::Sanitize => {
                    call.spent = reservations.iter().map(|r| (r.key.clone(), r.amount)).collect();
                    if self.commit(bundle, call, &state, reservations, decision, now)? {
                        return Ok(());
                    }
                }
            }
        }
        Err(Error::new(ErrorCode::Contention, format!("task `{}` kept changing during the decision", call.chain.task_id)))
    }

    /// Stage 1: who is calling, whether its scope and the bundle know the tool, and the proof
    /// and override token it presents.
    fn verify_call<'r>(&self, bundle: &Bundle, request: &'r AuthorizationRequest, now: i64) -> Result<VerifiedCall<'r>> {
        if request.tool == super::ADMIN_SCOPE {
            // Administrators' signatures are proofs over this name: no tool call may use (and so
            // consume) one.
            return Err(Error::new(ErrorCode::UnknownTool, format!("`{}` is Aegis's own action, not a tool", request.tool)));
        }
        let chain = self.verifier.verify(&request.chain, now)?;
        if !chain.grants(&request.tool) {
            return Err(Error::new(
                ErrorCode::ToolNotInScope,
                format!("agent `{}` holds no credential for tool `{}`", chain.agent_id, request.tool),
            ));
        }
        let mut call = VerifiedCall::new(request, chain, tool_for(bundle, request)?);
        match (&request.proof, call.tool.proof_required) {
            (None, true) => {
                return Err(Error::new(
                    ErrorCode::ProofRequired,
                    format!("tool `{}` requires a proof of possession", request.tool),
                ))
            }
            (Some(proof), _) => {
                let leaf_key = call.chain.leaf_key.clone().ok_or_else(|| {
                    Error::new(ErrorCode::ProofInvalid, "an external identity holds no key to prove possession with")
                })?;
                let used = verify_proof(proof, &leaf_key, call.digest()?, now, self.leeway_secs)?;
                call.consume.push(used);
            }
            (None, false) => {}
        }
        if let Some(token) = &request.approval_token {
            let chain = Arc::clone(&call.chain);
            let claims = self.verify_override(token, &chain, (call.digest()?, request.resource.as_ref()), bundle, now)?;
            match &claims.batch {
                None => call
                    .consume
                    .push((format!("approval:{}", claims.approval_id), claims.exp.saturating_add(self.leeway_secs + 1))),
                Some(envelope) => {
                    let digest = call.digest()?.to_owned();
                    let (once, reservations) =
                        self.admit_batched(bundle, &claims, envelope, (&request.tool, &request.args, &digest))?;
                    call.consume.push(once);
                    call.batch_reservations = reservations;
                }
            }
            call.approval = Some(claims);
        }
        Ok(call)
    }

    /// Stage 2: the task's state and the break-glass grants that name it; an ended task denies.
    pub(super) fn task_state(&self, chain: &VerifiedChain) -> Result<DecisionState> {
        let viewed = self.task_views.as_ref().and_then(|views| views.read(chain.task_id.as_str(), |s| Some(s.clone())));
        let state = match viewed {
            Some(state) => state,
            None => {
                let state = self.store.decision_state(&chain.task_id)?;
                // A view holding a grant is not kept: a process of an older version closes a
                // grant without moving the task's version, so a call under a grant reads afresh.
                if let Some(views) = self.task_views.as_ref().filter(|_| state.grants.is_empty()) {
                    views.insert(chain.task_id.clone(), state.clone(), |_| false);
                }
                state
            }
        };
        if state.task.ended {
            return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", chain.task_id)));
        }
        Ok(state)
    }

    /// Whether `state` is still the task's state in the store. Decided on the engine's view of
    /// the task (SQLite, Redis), a commit checks the version (and revision); a decision that
    /// commits nothing (a deny, an approval to ask a human for) is checked here instead, and an
    /// ended task denies.
    fn still_current(&self, call: &VerifiedCall<'_>, state: &DecisionState) -> Result<bool> {
        if self.task_views.is_none() {
            return Ok(true);
        }
        let task = &call.chain.task_id;
        let current = self.store.decision_state(task)?;
        if current.task.ended {
            self.forget_view(task);
            return Err(Error::new(ErrorCode::TaskEnded, format!("task `{task}` has ended")));
        }
        // The revision too: after a store lost a write, the same version can name another state.
        if current.task.version != state.task.version || current.revision != state.revision {
            self.forget_view(task);
            return Ok(false);
        }
        Ok(true)
    }

    /// Drops the engine's view of a task: the next decision in it reads the store.
    pub(crate) fn forget_view(&self, task_id: &str) {
        if let Some(views) = &self.task_views {
            views.remove(task_id);
        }
    }

    /// Keeps the engine's view of a task in step with a commit: applied on the version it was
    /// decided on, the call's duties join it; otherwise (a conflict, an ended task, an error)
    /// it is dropped and the next decision reads the task.
    fn keep_view(
        &self,
        task_id: &str,
        (expected_version, revision): (u64, Option<String>),
        duties: Vec<(String, String)>,
        committed: bool,
    ) {
        let Some(views) = &self.task_views else { return };
        if !committed {
            views.remove(task_id);
            return;
        }
        views.update(task_id, |view| {
            if view.task.version != expected_version {
                return false;
            }
            view.task.version += 1;
            view.task.duties.extend(duties);
            view.revision = revision;
            true
        });
    }

    /// Stage 3: the verdict on the task's current state, and the budget reservations an
    /// allowed call makes.
    ///
    /// An override (an approval's token, an open break-glass grant) lifts only the forbids it
    /// answers, never a missing permit, and never the obligations: the permits that held still
    /// redact. Budgets stay enforced unless the approval was for that very budget.
    pub(super) fn evaluate(
        &self,
        bundle: &Bundle,
        call: &mut VerifiedCall<'_>,
        state: &DecisionState,
        now: i64,
        decision: &mut Decision,
    ) -> Result<Vec<Reservation>> {
        let (request, chain, tool) = (call.request, &call.chain, &*call.tool);
        let grant = state.grants.iter().find(|g| g.covers(&chain.agent_id, &request.tool, &chain.task_id, now));
        decision.break_glass_id = grant.map(|g| g.id.clone());
        let base = self.base_context(&state.task, chain, grant.is_some());
        let resource = request.resource.as_ref().map(resource_uid).transpose()?;
        let principal = EntityUid::from_type_name_and_id(bundle.principal_type().clone(), EntityId::new(&chain.agent_id));
        let entities = bundle.request_entities(&principal, &chain.roles)?;
        let predicates = tool.predicates.iter().map(|p| {
            let holds = lookup(&request.args, &p.path).and_then(Json::as_str).is_some_and(|s| p.regex.is_match(s));
            (SmolStr::from(p.name.as_str()), holds)
        });
        let temporal = self.temporal_facts(bundle, chain, &state.task, now)?;
        let context = (base, CallContext { args: &request.args, now, approval: None, temporal });
        let prepared = PreparedRequest::new(principal, &tool.target, resource, context, predicates)?;
        let (eval, shadow) = bundle.evaluate(tool, prepared, entities.as_deref().unwrap_or(&self.no_entities));
        decision.would_block = !shadow.is_empty();
        call.shadow = shadow;
        decision.reasons.clear();
        decision.sanitized_args = None;
        apply_evaluation(bundle, &eval, &request.tool, &request.args, decision);
        let approved =
            call.approval.as_ref().is_some_and(|c| decision.outcome == Outcome::ApprovalNeeded && lifts_forbids(&eval, &c.lifts));
        if approved {
            lift_forbids(bundle, &eval, &request.args, decision, ReasonCode::APPROVAL_GRANTED);
        } else if decision.outcome != Outcome::Allow && grant.is_some() && breakable(bundle, &eval) {
            lift_forbids(bundle, &eval, &request.args, decision, ReasonCode::BREAK_GLASS_APPLIED);
        }
        if !decision.outcome.permits_call() && decision.outcome != Outcome::ApprovalNeeded {
            // A call that may not run spends nothing.
            return Ok(Vec::new());
        }
        // Budgets stay enforced under any override but an approval of that very budget. A call
        // that needs an approval anyway asks for its budgets in the same approval, and one a
        // denying budget would refuse is refused now rather than put before a human.
        let lifted = call.approval.as_ref().map(|c| c.lifts.as_slice()).unwrap_or_default();
        let reservations = crate::budget::reservations(tool, chain, &request.args, now, lifted)?;
        let overruns = match decision.outcome.permits_call() && !call.budgets_read_first {
            true => crate::budget::Overruns::default(), // the commit's reservations check (see `budgets_read_first`)
            false => self.overruns(tool, &reservations)?,
        };
        if let Some(key) = overruns.denying {
            return Err(Error::new(ErrorCode::BudgetExceeded, format!("budget `{key}` would be exceeded")));
        }
        if decision.outcome.permits_call() && !overruns.approvable.is_empty() {
            decision.needs_budget_approval(&overruns.approvable.join("`, `"));
        }
        if decision.outcome == Outcome::ApprovalNeeded {
            call.display_args = Some(redacted_by_permits(bundle, &eval, &request.tool, &request.args));
            call.budget_over = overruns.approvable;
            return Ok(Vec::new());
        }
        let mut reservations = reservations;
        reservations.extend(call.batch_reservations.iter().cloned());
        Ok(reservations)
    }

    /// The budget reservations of a call log-only mode lets through: every budget reserved, an
    /// approvable one without its limit (the approval it would need is the policy refusal
    /// log-only waives), a denying one still enforced.
    fn log_only_reservations(&self, call: &VerifiedCall<'_>, now: i64) -> Result<Vec<Reservation>> {
        let reservations = crate::budget::reservations(&call.tool, &call.chain, &call.request.args, now, &[])?;
        let overruns = self.overruns(&call.tool, &reservations)?;
        if let Some(key) = overruns.denying {
            return Err(Error::new(ErrorCode::BudgetExceeded, format!("budget `{key}` would be exceeded")));
        }
        let waived: Vec<String> =
            overruns.approvable.iter().map(|b| format!("{}{b}", crate::approval::BUDGET_LIFT_PREFIX)).collect();
        crate::budget::reservations(&call.tool, &call.chain, &call.request.args, now, &waived)
    }

    /// Stage 4: makes an allowed call count. `Ok(false)`: the task moved since `state`; decide
    /// again.
    pub(super) fn commit(
        &self,
        bundle: &Bundle,
        call: &mut VerifiedCall<'_>,
        state: &DecisionState,
        reservations: Vec<Reservation>,
        decision: &Decision,
        now: i64,
    ) -> Result<bool> {
        let chain = Arc::clone(&call.chain);
        let commit = Commit {
            task_id: chain.task_id.clone(),
            expected_version: state.task.version,
            consume: call.consume.clone(),
            entry: LedgerEntry {
                tool: call.request.tool.clone(),
                agent_id: chain.agent_id.clone(),
                lineage: chain.lineage.clone(),
                decision_id: decision.decision_id.clone(),
                at: now,
                key: chain.kids.last().cloned().unwrap_or_default(),
            },
            reservations,
            now,
            revision: match &state.revision {
                Some(expected) => {
                    Some(RevisionChange { expected: expected.clone(), next: random_id(self.random.as_ref(), "rev_")? })
                }
                None => None,
            },
        };
        let view = self.task_views.as_ref().map(|_| {
            let duties = commit.entry.duty_holders().map(|h| (h, commit.entry.tool.clone())).collect::<Vec<_>>();
            let revision = commit.revision.as_ref().map(|r| r.next.clone());
            (commit.task_id.clone(), commit.expected_version, revision, duties)
        });
        let outcome = self.commit_to_store(bundle, call, commit, decision);
        if let Some((task, version, revision, duties)) = view {
            let committed = matches!(outcome, Ok(CommitOutcome::Committed));
            self.keep_view(&task, (version, revision), duties, committed);
        }
        match outcome? {
            CommitOutcome::Committed => {
                if let Some(claims) = &call.approval {
                    self.supersede_duplicates(claims, &chain.agent_id);
                }
                Ok(true)
            }
            CommitOutcome::Conflict => Ok(false),
            CommitOutcome::TaskEnded => Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", chain.task_id))),
            CommitOutcome::BudgetExceeded(_) if !call.budgets_read_first => {
                call.budgets_read_first = true;
                Ok(false) // decide again, reading the budgets first
            }
            CommitOutcome::BudgetExceeded(key) => {
                Err(Error::new(ErrorCode::BudgetExceeded, format!("budget `{key}` would be exceeded")))
            }
            CommitOutcome::AlreadyUsed(key) if key.starts_with("approval:") => {
                Err(Error::new(ErrorCode::ApprovalReplayed, "the override token was already used"))
            }
            CommitOutcome::AlreadyUsed(_) => {
                Err(Error::new(ErrorCode::ProofReplayed, "the proof of possession was already used"))
            }
        }
    }

    /// The commit itself: with the audit record in the same transaction when the store keeps
    /// the log.
    fn commit_to_store(
        &self,
        bundle: &Bundle,
        call: &mut VerifiedCall<'_>,
        commit: Commit,
        decision: &Decision,
    ) -> Result<CommitOutcome> {
        // A log kept in the engine's own store is written in the commit's transaction: the
        // record exists exactly when the state changed.
        match self.audit.as_ref().filter(|_| self.audit_in_store) {
            Some(log) => {
                let record = self.decision_record(Some(log), bundle, call.request, Some(call), decision)?;
                let outcome = self.store.commit_recorded(commit, &record)?;
                if outcome == CommitOutcome::Committed {
                    call.recorded = true;
                    log.recorded_by_store();
                }
                Ok(outcome)
            }
            None => self.store.commit(commit),
        }
    }
}

/// The bundle's entry for the requested tool, once the arguments have the types its schema
/// declares.
pub(super) fn tool_for(bundle: &Bundle, request: &AuthorizationRequest) -> Result<Arc<ToolEntry>> {
    let tool = bundle.tool(&request.tool).cloned().ok_or_else(|| {
        Error::new(
            ErrorCode::UnknownTool,
            format!("tool `{}` is not an action of bundle `{}`", request.tool, bundle.policy_version()),
        )
    })?;
    if let Some(ty) = &tool.args_type {
        ty.check(&request.args, "args").map_err(|why| Error::new(ErrorCode::ArgsInvalid, why))?;
    }
    Ok(tool)
}

/// The entity a request's `resource` names.
fn resource_uid(r: &crate::engine::ResourceRef) -> Result<EntityUid> {
    let ty: cedar_policy::EntityTypeName = r
        .entity_type
        .parse()
        .map_err(|e| Error::malformed_request(format!("resource type `{}` is not a valid entity type: {e}", r.entity_type)))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(&r.id)))
}
