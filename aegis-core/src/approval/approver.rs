//! Who may approve: the built-in segregation of duties, then the bundle's `aegis.approve`
//! policies; and recording the approval as the approver's duty.

use std::sync::Arc;

use cedar_policy::{EntityId, EntityUid};
use serde_json::Value as Json;

use super::{PendingApproval, APPROVE_ACTION};
use crate::engine::{apply_evaluation, undecided, Engine, Outcome, Reason, MAX_ATTEMPTS};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::VerifiedChain;
use crate::policy::eval::{ApprovalFacts, CallContext, PreparedRequest};
use crate::state::{Commit, CommitOutcome, LedgerEntry};

impl Engine {
    /// Built-in segregation of duties (an `Err`), then the bundle's `aegis.approve` policies:
    /// `Ok(Ok(reasons))` when they permit, `Ok(Err(reason))` when they refuse.
    pub(super) fn check_approver(
        &self,
        pending: &PendingApproval,
        chain: &Arc<VerifiedChain>,
        now: i64,
    ) -> Result<std::result::Result<Vec<Reason>, Reason>> {
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
        let facts = ApprovalFacts {
            approval_id: &pending.approval_id,
            tool: &pending.tool,
            requester: &pending.agent_id,
            initiator: &pending.initiator,
            task_id: &pending.task_id,
            roles: &pending.roles,
            policy_ids: &pending.policy_ids,
        };
        let base = self.base_context(&state, chain, false);
        let args = Json::Object(serde_json::Map::new());
        let principal = EntityUid::from_type_name_and_id(bundle.principal_type().clone(), EntityId::new(&chain.agent_id));
        let context = (base, CallContext { args: &args, now, approval: Some(facts) });
        // No arguments: every predicate over them is false.
        let predicates = tool.predicates.iter().map(|p| (smol_str::SmolStr::from(p.name.as_str()), false));
        let prepared = PreparedRequest::new(principal, &tool.target, None, context, predicates)?;
        let (eval, _) = bundle.evaluate(tool, prepared, &self.no_entities);
        let mut verdict = undecided(String::new(), &bundle);
        apply_evaluation(&bundle, &eval, APPROVE_ACTION, &args, &mut verdict);
        if verdict.outcome == Outcome::Allow {
            Ok(Ok(verdict.reasons))
        } else {
            Ok(Err(verdict.reasons.into_iter().next().unwrap_or_else(|| {
                Reason::new(crate::error::ReasonCode::NO_MATCHING_PERMIT, "not permitted to approve")
            })))
        }
    }

    /// Records `tool` (the approval) as `chain`'s duty in the task.
    pub(super) fn record_duty(&self, task_id: &str, chain: &VerifiedChain, tool: &str, now: i64) -> Result<()> {
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
}
