//! Re-deciding recorded calls under another bundle (`aegis policy dry-run`): the same stages as
//! [`Engine::authorize`] after the chain (which the record attests), on the replay engine's own
//! store, so that duties and budgets build up as the candidate would have let them.

use std::sync::Arc;

use super::decision::{Decision, Outcome};
use super::request::AuthorizationRequest;
use super::verdict::{deny, undecided};
use super::{Engine, VerifiedCall};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::VerifiedChain;
use crate::state::{Commit, CommitOutcome, LedgerEntry};

impl Engine {
    /// Decides `request` by `chain` at `now` under the engine's bundle and commits what it
    /// permits. A call that was allowed by an approval counts as permitted when the candidate
    /// still asks for an approval (`approved`): the human's answer stands.
    pub(crate) fn redecide(
        &self,
        chain: Arc<VerifiedChain>,
        request: &AuthorizationRequest,
        now: i64,
        approved: bool,
    ) -> Decision {
        let bundle = self.bundle.load_full();
        let mut decision = undecided(self.next_decision_id(), &bundle);
        let decided = (|| -> Result<()> {
            let mut call = VerifiedCall::new(request, chain, super::pipeline::tool_for(&bundle, request)?);
            let state = self.task_state(&call.chain)?;
            let reservations = self.evaluate(&bundle, &mut call, &state, now, &mut decision)?;
            let stands = decision.outcome.permits_call() || (approved && decision.outcome == Outcome::ApprovalNeeded);
            if stands {
                // Not re-evaluated on conflict: the replay engine has one writer.
                self.commit(&bundle, &mut call, &state, reservations, &decision, now)?;
            }
            Ok(())
        })();
        match decided {
            Ok(()) => decision,
            Err(e) => deny(decision, e),
        }
    }

    /// Records a duty the log shows was performed outside a call (an approval) in the replay
    /// engine's ledger.
    pub(crate) fn replay_duty(&self, task_id: &str, entry: LedgerEntry, now: i64) -> Result<()> {
        for _ in 0..super::MAX_ATTEMPTS {
            let state = self.store.task_state(task_id)?;
            let commit = Commit {
                task_id: task_id.to_owned(),
                expected_version: state.version,
                consume: Vec::new(),
                entry: entry.clone(),
                reservations: Vec::new(),
                now,
                revision: None,
            };
            if self.store.commit(commit)? != CommitOutcome::Conflict {
                return Ok(());
            }
        }
        Err(Error::new(ErrorCode::Contention, format!("task `{task_id}` kept changing during the replay")))
    }
}
