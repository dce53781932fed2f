//! Who may approve: people (root identities) outside the requester's chain and the task's
//! other duties, then the bundle's `aegis.approve` policies; the check and the approver's duty
//! commit are one atomic step.

use std::sync::Arc;

use cedar_policy::{EntityId, EntityUid};
use serde_json::Value as Json;

use super::{PendingApproval, APPROVE_ACTION};
use crate::engine::{apply_evaluation, undecided, Engine, Outcome, Reason, MAX_ATTEMPTS};
use crate::error::{Error, ErrorCode, ReasonCode, Result};
use crate::identity::VerifiedChain;
use crate::policy::eval::{ApprovalFacts, CallContext, PreparedRequest};
use crate::state::{key_holder, Commit, CommitOutcome, LedgerEntry, TaskState};

/// How an approver check came out, short of an error (SoD conflicts and revocations are
/// errors; the bundle's refusal is a reason with the policy's code).
pub(super) enum ApproverVerdict {
    /// The bundle permits it, for these reasons; the duty is recorded.
    Permitted(Vec<Reason>),
    /// The bundle refuses it.
    Refused(Reason),
}

impl Engine {
    /// Verifies the chain of someone acting as a person (an approver, a break-glass approver):
    /// a root identity attested by a trusted issuer, holding `scope` by its exact name, whose
    /// own task has not ended (revocation is checked on every path).
    pub(crate) fn verify_person(&self, chain: &[String], scope: &str, now: i64) -> Result<Arc<VerifiedChain>> {
        let verified = self.verifier.verify(chain, now)?;
        if !verified.is_root() {
            return Err(Error::new(
                ErrorCode::ApproverConflict,
                format!(
                    "`{}` is a delegate; only a root identity (a person or an attested agent) may do this",
                    verified.agent_id
                ),
            ));
        }
        if !verified.grants(scope) {
            return Err(Error::new(
                ErrorCode::ToolNotInScope,
                format!("`{}` holds no credential for `{scope}`", verified.agent_id),
            ));
        }
        if self.store.task_state(&verified.task_id)?.ended {
            return Err(Error::new(ErrorCode::TaskEnded, format!("the credential's task `{}` has ended", verified.task_id)));
        }
        Ok(verified)
    }

    /// Authenticates someone acting as a person for `scope` (`aegis.approve`, `aegis.admin`):
    /// a root identity attested by a trusted issuer, holding `scope` by its exact name, whose
    /// own task has not ended. For services that gate their own endpoints on it.
    pub fn authenticate_person(&self, chain: &[String], scope: &str) -> Result<Arc<VerifiedChain>> {
        self.verify_person(chain, scope, self.clock.now_secs())
    }

    /// Segregation of duties that holds for approving and rejecting alike: not the requester,
    /// nobody above it in its chain, no key of its chain.
    pub(super) fn check_outside_requester(&self, pending: &PendingApproval, chain: &VerifiedChain) -> Result<()> {
        let approver = chain.agent_id.as_str();
        let conflict = |why: &str| Err(Error::new(ErrorCode::ApproverConflict, format!("`{approver}` {why}")));
        if approver == pending.agent_id {
            return conflict("may not approve its own request");
        }
        if pending.initiator == approver || pending.lineage.iter().any(|a| a == approver) {
            return conflict("delegated to the requester and may not approve its request");
        }
        if pending.requester_kids.iter().any(|k| chain.kids.contains(k)) {
            return conflict("holds a key of the requester's chain");
        }
        Ok(())
    }

    /// The approval of `pending` by `chain`, checked against the task's current state and
    /// recorded as the approver's duty in one commit: a duty committed by anyone in between
    /// makes the commit conflict and the check run again on the new state.
    pub(super) fn approve_atomically(
        &self,
        pending: &PendingApproval,
        chain: &Arc<VerifiedChain>,
        now: i64,
    ) -> Result<ApproverVerdict> {
        for _ in 0..MAX_ATTEMPTS {
            let state = self.store.task_state(&pending.task_id)?;
            let reasons = match self.check_approver(pending, chain, &state, now)? {
                ApproverVerdict::Permitted(reasons) => reasons,
                refused => return Ok(refused),
            };
            let commit = Commit {
                task_id: pending.task_id.clone(),
                expected_version: state.version,
                consume: Vec::new(),
                entry: LedgerEntry {
                    tool: APPROVE_ACTION.to_owned(),
                    agent_id: chain.agent_id.clone(),
                    lineage: chain.lineage.clone(),
                    decision_id: self.next_decision_id(),
                    at: now,
                    key: chain.root_kid.clone(),
                },
                reservations: Vec::new(),
                now,
                revision: None,
            };
            let outcome = self.store.commit(commit);
            // The task moved (or may have): decisions in it read it again.
            self.forget_view(&pending.task_id);
            match outcome? {
                CommitOutcome::Committed => return Ok(ApproverVerdict::Permitted(reasons)),
                CommitOutcome::Conflict => continue,
                // The commit consumes nothing and reserves nothing: an ended task is all that is left.
                _ => return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", pending.task_id))),
            }
        }
        Err(Error::new(ErrorCode::Contention, format!("task `{}` kept changing", pending.task_id)))
    }

    /// The task's duties as of `state`, then the bundle's `aegis.approve` policies.
    fn check_approver(
        &self,
        pending: &PendingApproval,
        chain: &Arc<VerifiedChain>,
        state: &TaskState,
        now: i64,
    ) -> Result<ApproverVerdict> {
        let approver = chain.agent_id.as_str();
        if state.ended {
            return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", pending.task_id)));
        }
        // Approving again is not a conflicting duty; drafting, executing, anything else is, by
        // this identity or by anyone holding its key.
        let own_key = key_holder(&chain.root_kid);
        if state.duties.iter().any(|(holder, tool)| (holder == approver || holder == &own_key) && tool != APPROVE_ACTION) {
            return Err(Error::new(ErrorCode::ApproverConflict, format!("`{approver}` already performed a duty in this task")));
        }
        let bundle = self.bundle.load_full();
        let tool = bundle.tool(APPROVE_ACTION).ok_or_else(|| {
            Error::new(ErrorCode::UnknownTool, format!("bundle `{}` has no `{APPROVE_ACTION}` action", bundle.policy_version()))
        })?;
        let facts = ApprovalFacts {
            approval_id: &pending.approval_id,
            tool: &pending.tool,
            requester: &pending.agent_id,
            initiator: &pending.initiator,
            task_id: &pending.task_id,
            roles: &pending.roles,
            policy_ids: &pending.policy_ids,
        };
        let base = self.base_context(state, chain, false);
        let args = Json::Object(serde_json::Map::new());
        let principal = EntityUid::from_type_name_and_id(bundle.principal_type().clone(), EntityId::new(&chain.agent_id));
        let entities = bundle.request_entities(&principal, &chain.roles)?;
        // Temporal facts describe tool calls; an approval's context has none.
        let context = (base, CallContext { args: &args, now, approval: Some(facts), temporal: Vec::new() });
        // No arguments: every predicate over them is false.
        let predicates = tool.predicates.iter().map(|p| (smol_str::SmolStr::from(p.name.as_str()), false));
        let prepared = PreparedRequest::new(principal, &tool.target, None, context, predicates)?;
        let (eval, _) = bundle.evaluate(tool, prepared, entities.as_deref().unwrap_or(&self.no_entities));
        let mut verdict = undecided(String::new(), &bundle);
        apply_evaluation(&bundle, &eval, APPROVE_ACTION, &args, &mut verdict);
        if verdict.outcome == Outcome::Allow {
            Ok(ApproverVerdict::Permitted(verdict.reasons))
        } else {
            let first = verdict.reasons.into_iter().next();
            Ok(ApproverVerdict::Refused(
                first.unwrap_or_else(|| Reason::new(ReasonCode::NO_MATCHING_PERMIT, "not permitted to approve")),
            ))
        }
    }
}
