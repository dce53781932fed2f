//! Human approvals: pending requests, the approver's checks, single-use override tokens bound
//! to one call, and the channels a human answers in.

mod approver;
mod batch;
mod channel;

use std::sync::Arc;

use cedar_policy::PolicyId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use batch::{BatchEnvelope, BatchRequest};
pub(crate) use channel::ChannelIssuer;

pub use channel::{
    slack_message, slack_resolved_message, teams_card, teams_invoke_response, Channel, ChannelVerdict, SlackAction,
    SlackVerifier, TeamsAction, TeamsVerifier, BOT_FRAMEWORK_ISSUER,
};

use approver::ApproverVerdict;

use crate::audit::{approval_event, kind};
use crate::engine::{Decision, Engine, Reason, ResourceRef, VerifiedCall};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::jws::{self, UnverifiedJws};
use crate::identity::VerifiedChain;
use crate::policy::Bundle;
use crate::time::random_id;

/// The action an approver's decision is evaluated as.
pub const APPROVE_ACTION: &str = "aegis.approve";

/// The `typ` of an override token.
pub const OVERRIDE_TYP: &str = "aegis-approval+jwt";

/// The claims of an override token, signed by the engine's approval key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideClaims {
    /// The approval it redeems; also its single-use id.
    pub approval_id: String,
    /// The call digest it is bound to.
    pub call: String,
    /// The agent that may present it.
    pub sub: String,
    /// The task it is valid in.
    pub task: String,
    /// The policy version it was approved under.
    pub pv: String,
    /// Who approved.
    pub approver: String,
    /// The resource the call targets (`None`: the tool's default resource).
    #[serde(default)]
    pub res: Option<ResourceRef>,
    /// What the approval lifts: the forbid policies it answered and `budget:<name>` for each
    /// budget it allows to be exceeded. Nothing else is lifted.
    pub lifts: Vec<String>,
    /// For a batch approval: the envelope its calls must fit (`call` is then the envelope's
    /// digest, and each call is single-use on its own digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchEnvelope>,
    /// Issued at, seconds.
    pub iat: i64,
    /// Expiry, seconds.
    pub exp: i64,
}

/// The prefix of a budget in an approval's `lifts`.
pub(crate) const BUDGET_LIFT_PREFIX: &str = "budget:";

/// The result of `approve` or `reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalResolution {
    /// Whether the approver's action took effect.
    pub accepted: bool,
    /// Why not, or what decided it.
    pub reasons: Vec<Reason>,
    /// For an accepted approval: the single-use override token to present with the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_token: Option<String>,
    /// The approval as it now stands.
    pub approval: PendingApproval,
}

/// The state of an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a human.
    Pending,
    /// Approved; an override token was minted.
    Approved,
    /// Rejected.
    Rejected,
    /// Closed by Aegis without a human: the same call ran under another approval of the same
    /// task and agent, so this request is moot (approving it would allow the call again).
    Superseded,
}

/// A call waiting for a human decision: everything the human needs to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The id handed out with `approval_needed`.
    pub approval_id: String,
    /// The call digest the approval is bound to.
    pub call_digest: String,
    /// The tool.
    pub tool: String,
    /// The arguments as a human may see them: with every redaction (`@sanitize`) of the
    /// permits that held already applied. The digest binds the real arguments.
    pub args: Value,
    /// The resource the call targets (`None`: the tool's default resource).
    #[serde(default)]
    pub resource: Option<ResourceRef>,
    /// The key thumbprints of the requester's chain: an approver holding one of them is the
    /// requester or above it, whatever its name.
    #[serde(default)]
    pub requester_kids: Vec<String>,
    /// What an approval lifts (see [`OverrideClaims::lifts`]).
    #[serde(default)]
    pub lifts: Vec<String>,
    /// The agent that asked.
    pub agent_id: String,
    /// The agents above it, root first.
    pub lineage: Vec<String>,
    /// The root agent.
    pub initiator: String,
    /// The task.
    pub task_id: String,
    /// The task's intent.
    pub intent: String,
    /// The policies that require approval.
    pub policy_ids: Vec<String>,
    /// Their messages: why approval is needed.
    pub reasons: Vec<String>,
    /// The roles that may approve (from `@approval`).
    pub roles: Vec<String>,
    /// The bundle version that asked.
    pub policy_version: String,
    /// When it was created, milliseconds since the epoch.
    pub created_at_ms: i64,
    /// Pending, approved, rejected or superseded.
    pub status: ApprovalStatus,
    /// Who approved or rejected.
    #[serde(default)]
    pub resolved_by: Option<String>,
    /// When, milliseconds since the epoch.
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    /// The approver's note.
    #[serde(default)]
    pub note: Option<String>,
    /// How many distinct approvers must approve (`@quorum`; 1 unless a policy asks more).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub quorum: u32,
    /// Roles that approve in this order, one approver each (`@stages`); empty: any approver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// The approvals given so far, each by a distinct identity and key; the override token is
    /// minted only with the last one needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Vote>,
    /// For a batch approval ([`Engine::request_batch`]): the envelope of calls it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchEnvelope>,
}

/// One approver's approval of a request that needs several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// The approver's attested identity.
    pub approver: String,
    /// The thumbprint of the approver's root key.
    pub key: String,
    /// The stage's role this vote fills, when the approval is staged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// When, milliseconds since the epoch.
    pub at_ms: i64,
    /// The approver's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl PendingApproval {
    /// Milliseconds between the request and its resolution, once resolved.
    pub fn latency_ms(&self) -> Option<i64> {
        self.resolved_at_ms.map(|r| r.saturating_sub(self.created_at_ms))
    }

    /// How many approvals it takes: the quorum, and at least one per stage.
    pub fn votes_needed(&self) -> usize {
        usize::try_from(self.quorum.max(1)).unwrap_or(usize::MAX).max(self.stages.len())
    }
}

impl Engine {
    /// Records the call as pending a human and hands out its approval id.
    ///
    /// The approval lifts exactly the forbids that asked for it and the budgets that would be
    /// exceeded, plus whatever the override token presented with this call already lifted (a
    /// call approved past its forbids that then exceeds a budget asks again, for both).
    pub(crate) fn open_approval(&self, bundle: &Bundle, call: &mut VerifiedCall<'_>, decision: &mut Decision) -> Result<()> {
        let approval_id = random_id(self.random.as_ref(), "apr_")?;
        let chain = Arc::clone(&call.chain);
        let mut roles = Vec::new();
        let (mut quorum, mut stages) = (1, Vec::<String>::new());
        // A batch's lifts are not carried into a single approval: that would take them past the
        // batch's count, total and the quorum its own forbids ask.
        let carried = call.approval.as_ref().filter(|c| c.batch.is_none());
        let mut lifts: Vec<String> = carried.map(|c| c.lifts.clone()).unwrap_or_default();
        for reason in &decision.reasons {
            match reason.policy_id.as_ref().and_then(|id| bundle.policy_meta(&PolicyId::new(id))) {
                Some(meta) => {
                    roles.push(meta.approval.clone().unwrap_or_default());
                    lifts.push(meta.id.clone());
                    // The strictest policy wins: the largest quorum, every stage once, in order.
                    quorum = quorum.max(meta.quorum);
                    merge_stages(&mut stages, &meta.stages);
                }
                None => roles.push("budget-approver".to_owned()),
            }
        }
        if !call.budget_over.is_empty() && !roles.iter().any(|r| r == "budget-approver") {
            roles.push("budget-approver".to_owned());
        }
        lifts.extend(call.budget_over.iter().map(|b| format!("{BUDGET_LIFT_PREFIX}{b}")));
        roles.sort_unstable();
        roles.dedup();
        lifts.sort_unstable();
        lifts.dedup();
        let pending = PendingApproval {
            approval_id: approval_id.clone(),
            call_digest: call.digest()?.to_owned(),
            tool: call.request.tool.clone(),
            args: call.display_args.take().unwrap_or_else(|| call.request.args.clone()),
            resource: call.request.resource.clone(),
            requester_kids: chain.kids.clone(),
            lifts,
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
            // Stages need one approver each; a larger quorum asks that many in all (the votes
            // past the stages need no particular role).
            quorum,
            stages,
            votes: Vec::new(),
            batch: None,
        };
        self.put_before_approvers(&pending)?;
        decision.approval_id = Some(approval_id);
        Ok(())
    }

    /// Stores a new request, records it, then tells the notifier.
    pub(crate) fn put_before_approvers(&self, pending: &PendingApproval) -> Result<()> {
        self.store.insert_pending(pending)?;
        self.record(|| approval_event(kind::APPROVAL_OPENED, pending, None, pending.created_at_ms))?;
        if let Some(notify) = &self.notifier {
            // The approval is already durable; a notifier that panics must not turn the
            // decision into an error (it is reported by nothing but its own absence).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| notify(pending)));
        }
        Ok(())
    }

    /// Approves a pending approval as the person holding `approver_chain`.
    ///
    /// The approver must be a root identity (attested by a trusted issuer, never a delegate)
    /// holding `aegis.approve` by its exact name, whose own task has not ended; it may not be
    /// the requester, anyone above it in its chain, or hold any key of that chain, and it may
    /// not have performed another duty in the request's task. Beyond that the bundle's policies
    /// over the `aegis.approve` action decide (`principal in Role::"..."` matches the roles the
    /// approver's issuer attests). The check and the approver's duty are one commit; then a
    /// single-use override token bound to the exact call, resource, agent, task and policy
    /// version is minted.
    pub fn approve(&self, approval_id: &str, approver_chain: &[String], note: Option<&str>) -> Result<ApprovalResolution> {
        self.resolve(approval_id, approver_chain, note, ApprovalStatus::Approved)
    }

    /// Rejects a pending approval. The rejecter is checked as an approver is (a root identity
    /// holding `aegis.approve`, outside the requester's chain, not revoked): anyone else could
    /// silence a request by rejecting it.
    pub fn reject(&self, approval_id: &str, approver_chain: &[String], note: Option<&str>) -> Result<ApprovalResolution> {
        self.resolve(approval_id, approver_chain, note, ApprovalStatus::Rejected)
    }

    fn resolve(
        &self,
        approval_id: &str,
        approver_chain: &[String],
        note: Option<&str>,
        status: ApprovalStatus,
    ) -> Result<ApprovalResolution> {
        let pending = self
            .store
            .approval(approval_id)?
            .ok_or_else(|| Error::new(ErrorCode::ApprovalNotFound, format!("no approval `{approval_id}`")))?;
        if pending.status != ApprovalStatus::Pending {
            return Err(Error::new(ErrorCode::ApprovalNotPending, format!("approval `{approval_id}` is already resolved")));
        }
        let now = self.clock.now_secs();
        let refused = |pending: PendingApproval, reason: Reason| ApprovalResolution {
            accepted: false,
            reasons: vec![reason],
            override_token: None,
            approval: pending,
        };
        let checked = self
            .verify_person(approver_chain, APPROVE_ACTION, now)
            .and_then(|chain| self.check_outside_requester(&pending, &chain).map(|()| chain));
        let chain = match checked {
            Ok(chain) => chain,
            Err(e) if is_failure(&e) => return Err(e),
            Err(e) => return Ok(refused(pending, Reason::from_error(&e))),
        };
        let mut reasons = Vec::new();
        if status == ApprovalStatus::Approved {
            if let Some(reason) = self.check_vote(&pending, &chain) {
                return Ok(refused(pending, reason));
            }
            match self.approve_atomically(&pending, &chain, now) {
                Ok(ApproverVerdict::Permitted(r)) => reasons = r,
                Ok(ApproverVerdict::Refused(reason)) => return Ok(refused(pending, reason)),
                Err(e) if is_failure(&e) => return Err(e),
                Err(e) => return Ok(refused(pending, Reason::from_error(&e))),
            }
        }
        let now_ms = self.clock.now_millis();
        let mut resolved = pending.clone();
        if status == ApprovalStatus::Approved {
            resolved.votes.push(Vote {
                approver: chain.agent_id.clone(),
                key: chain.root_kid.clone(),
                stage: pending.stages.get(pending.votes.len()).cloned(),
                at_ms: now_ms,
                note: note.map(str::to_owned),
            });
        }
        // A rejection by any approver closes the request; approvals close it with the last
        // vote needed. Until then nothing is lifted and no token exists.
        let complete = status == ApprovalStatus::Rejected || resolved.votes.len() >= pending.votes_needed();
        if complete {
            resolved.status = status;
            resolved.resolved_by = Some(chain.agent_id.clone());
            resolved.resolved_at_ms = Some(now_ms);
            resolved.note = note.map(str::to_owned);
        }
        if !self.store.resolve(&resolved, pending.votes.len())? {
            // Answered by someone else in between: the duty may be recorded, no token is minted.
            let latest = self.store.approval(approval_id)?;
            return Err(match latest {
                Some(a) if a.status == ApprovalStatus::Pending => Error::new(
                    ErrorCode::Contention,
                    format!("another approver answered approval `{approval_id}` at the same time; answer again"),
                ),
                _ => Error::new(ErrorCode::ApprovalNotPending, format!("approval `{approval_id}` is already resolved")),
            });
        }
        // No token leaves before the approval's record is durable.
        let event_kind = match (status, complete) {
            (ApprovalStatus::Rejected, _) => kind::APPROVAL_REJECTED,
            (_, false) => kind::APPROVAL_VOTED,
            _ => kind::APPROVAL_APPROVED,
        };
        self.record(|| approval_event(event_kind, &resolved, Some(&chain), now_ms))?;
        if status == ApprovalStatus::Rejected || !complete {
            return Ok(ApprovalResolution { accepted: true, reasons, override_token: None, approval: resolved });
        }
        let claims = OverrideClaims {
            approval_id: pending.approval_id.clone(),
            call: pending.call_digest.clone(),
            sub: pending.agent_id.clone(),
            task: pending.task_id.clone(),
            pv: pending.policy_version.clone(),
            approver: chain.agent_id.clone(),
            res: pending.resource.clone(),
            lifts: pending.lifts.clone(),
            batch: pending.batch.clone(),
            iat: now,
            // A batch is usable for its window; a single call's token for the override TTL.
            exp: now.saturating_add(pending.batch.as_ref().map_or(self.override_ttl_secs, |b| b.window_secs)),
        };
        let token = jws::sign(&claims, OVERRIDE_TYP, &self.approval_key)?;
        Ok(ApprovalResolution { accepted: true, reasons, override_token: Some(token), approval: resolved })
    }

    /// Why `chain` may not cast the next vote on `pending`: it already voted (by identity or
    /// key: a quorum is of distinct people), or it lacks the role of the stage that is next.
    fn check_vote(&self, pending: &PendingApproval, chain: &VerifiedChain) -> Option<Reason> {
        let conflict = |message: String| Some(Reason::from_error(&Error::new(ErrorCode::ApproverConflict, message)));
        if pending.votes.iter().any(|v| v.approver == chain.agent_id || v.key == chain.root_kid) {
            return conflict(format!("`{}` already approved this request; it needs distinct approvers", chain.agent_id));
        }
        match pending.stages.get(pending.votes.len()) {
            Some(role) if !chain.roles.contains(role) => conflict(format!(
                "`{}` does not hold `{role}`, the role of stage {} of {}",
                chain.agent_id,
                pending.votes.len() + 1,
                pending.stages.len()
            )),
            _ => None,
        }
    }

    /// Approvals waiting for a human, oldest first.
    pub fn pending_approvals(&self) -> Result<Vec<PendingApproval>> {
        self.store.list_pending()
    }

    /// An approval by id, in any state.
    pub fn approval(&self, approval_id: &str) -> Result<Option<PendingApproval>> {
        self.store.approval(approval_id)
    }

    /// Closes the other pending requests for the call that just ran under `claims`' approval.
    ///
    /// A graph that re-runs its interrupted step (LangGraph does, on resume) asks again before
    /// it presents the override token, which opens a second request for the same call; left
    /// pending, a human could approve it into a second run of the same call. Best effort: the
    /// call is already committed, so a store error here leaves the duplicate pending (as
    /// before) rather than turning a durable allow into an error.
    pub(crate) fn supersede_duplicates(&self, claims: &OverrideClaims, agent_id: &str) {
        let Ok(pending) = self.store.list_pending() else { return };
        let duplicates = pending.into_iter().filter(|p| {
            p.approval_id != claims.approval_id
                && p.task_id == claims.task
                && p.agent_id == agent_id
                && p.call_digest == claims.call
        });
        for mut duplicate in duplicates {
            duplicate.status = ApprovalStatus::Superseded;
            duplicate.resolved_by = Some("aegis".to_owned());
            duplicate.resolved_at_ms = Some(self.clock.now_millis());
            duplicate.note = Some(format!("superseded: the call ran under approval `{}`", claims.approval_id));
            let votes = duplicate.votes.len();
            if self.store.resolve(&duplicate, votes).unwrap_or(false) {
                let _ = self.record(|| approval_event(kind::APPROVAL_SUPERSEDED, &duplicate, None, self.clock.now_millis()));
            }
        }
    }

    /// Verifies an override token presented with a call.
    pub(crate) fn verify_override(
        &self,
        token: &str,
        chain: &VerifiedChain,
        (digest, resource): (&str, Option<&ResourceRef>),
        bundle: &Bundle,
        now: i64,
    ) -> Result<OverrideClaims> {
        let invalid = |e: Error| Error::new(ErrorCode::ApprovalTokenInvalid, format!("override token: {}", e.message()));
        let parsed = UnverifiedJws::<OverrideClaims>::parse(token, OVERRIDE_TYP).map_err(invalid)?;
        parsed.verify(self.approval_key.public_key()).map_err(invalid)?;
        let c = parsed.claims;
        if now.saturating_sub(self.leeway_secs) >= c.exp {
            return Err(Error::new(ErrorCode::ApprovalExpired, "the override token has expired"));
        }
        if c.res != resource.cloned() {
            return Err(Error::new(ErrorCode::ApprovalArgsMismatch, "the approval was for another resource"));
        }
        if c.sub != chain.agent_id {
            return Err(Error::new(ErrorCode::ApprovalWrongAgent, format!("the approval was for agent `{}`", c.sub)));
        }
        if c.task != chain.task_id {
            return Err(Error::new(ErrorCode::ApprovalWrongTask, format!("the approval was for task `{}`", c.task)));
        }
        // A batch's calls are checked against its envelope (`Engine::admit_batched`).
        if c.batch.is_none() && c.call != digest {
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
}

/// Adds the roles of `more` not yet in `stages`, keeping the order each was first named in.
pub(crate) fn merge_stages(stages: &mut Vec<String>, more: &[String]) {
    for stage in more {
        if !stages.contains(stage) {
            stages.push(stage.clone());
        }
    }
}

/// Errors that are failures of the engine (the store is down), not refusals of the approver.
fn is_failure(e: &Error) -> bool {
    matches!(e.code(), ErrorCode::StoreUnavailable | ErrorCode::Internal)
}
