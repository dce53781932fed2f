//! Batched approvals: one approval for up to N calls of one tool within an envelope (a limit
//! per call and in total, allowed destinations, a short window), for the bulk work a bundle
//! marks batchable (`batches:` in its manifest).
//!
//! The agent asks for the envelope; approvers answer it like any approval (same checks, same
//! quorum and stages); its token then admits each call that fits the envelope. Every call is
//! still decided, recorded and single-use: the same call twice is a replay, and the batch's
//! count and total are budgets the store enforces atomically with each call's commit.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::{ApprovalStatus, OverrideClaims, PendingApproval};
use crate::engine::{Engine, ResourceRef};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::call_digest;
use crate::policy::{lookup, BatchSpec, Bundle};
use crate::state::Reservation;
use crate::time::random_id;

/// What a batch approval covers: calls of one tool, each within the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEnvelope {
    /// The tool.
    pub tool: String,
    /// How many calls it covers.
    pub max_calls: u32,
    /// The largest amount (the bundle's `amount_arg`) of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_call_limit: Option<i64>,
    /// The largest sum of the amounts of all its calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_limit: Option<i64>,
    /// The values the bundle's `destination_arg` may take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// How long after its approval the batch may be used, in seconds.
    pub window_secs: i64,
}

/// An agent's request for a batch approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The agent's credential chain, root first.
    pub chain: Vec<String>,
    /// The envelope asked for.
    pub envelope: BatchEnvelope,
    /// What the calls target; defaults to the tool's resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// Why: shown to the approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The policy id a batch approval's own reason is listed under.
const BATCH_REASON: &str = "aegis.batch";

fn refused(why: String) -> Error {
    Error::new(ErrorCode::BatchRefused, why)
}

impl BatchEnvelope {
    /// Checks the envelope against what the bundle allows for its tool.
    fn check(&self, spec: &BatchSpec) -> Result<()> {
        if self.max_calls == 0 || self.max_calls > spec.max_calls {
            return Err(refused(format!("a batch of `{}` covers 1 to {} calls", self.tool, spec.max_calls)));
        }
        if self.window_secs <= 0 || self.window_secs > spec.max_window_secs {
            return Err(refused(format!("a batch of `{}` lasts 1 to {} seconds", self.tool, spec.max_window_secs)));
        }
        if spec.amount_arg.is_some() {
            match (self.per_call_limit, self.total_limit) {
                (Some(per), Some(total)) if per >= 0 && total >= 0 => {}
                _ => return Err(refused(format!("a batch of `{}` states `per_call_limit` and `total_limit`", self.tool))),
            }
        }
        if spec.destination_arg.is_some() && self.destinations.is_empty() {
            return Err(refused(format!("a batch of `{}` lists its allowed `destinations`", self.tool)));
        }
        Ok(())
    }

    /// Whether a call's arguments fit: its amount within the per-call limit, its destination
    /// allowed. Returns the amount the call adds to the batch's total.
    fn admit(&self, spec: &BatchSpec, args: &Json) -> Result<i64> {
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        let amount = match &spec.amount_arg {
            None => 0,
            Some(arg) => {
                let amount = lookup(args, &path(arg))
                    .and_then(Json::as_i64)
                    .filter(|a| *a >= 0)
                    .ok_or_else(|| refused(format!("a batched call states `args.{arg}` as a whole number")))?;
                if self.per_call_limit.is_some_and(|limit| amount > limit) {
                    return Err(refused(format!("`args.{arg}` is over the batch's per-call limit")));
                }
                amount
            }
        };
        if let Some(arg) = &spec.destination_arg {
            let destination = lookup(args, &path(arg)).and_then(Json::as_str).unwrap_or_default();
            if !self.destinations.iter().any(|d| d == destination) {
                return Err(refused(format!("`args.{arg}` is not one of the batch's destinations")));
            }
        }
        Ok(amount)
    }
}

/// The bundle's batch rules for `tool`.
fn spec_for<'b>(bundle: &'b Bundle, tool: &str) -> Result<&'b BatchSpec> {
    bundle
        .manifest()
        .batches
        .get(tool)
        .ok_or_else(|| refused(format!("bundle `{}` does not batch `{tool}`", bundle.policy_version())))
}

impl Engine {
    /// Asks for a batch approval: the envelope is checked against the bundle's batch rules for
    /// the tool, the agent's chain must hold the tool, and the request is put before the
    /// approvers (the notifier is called) like any approval. Approving it mints a token that
    /// admits each call fitting the envelope, once each, within its window.
    pub fn request_batch(&self, request: &BatchRequest) -> Result<PendingApproval> {
        let bundle = self.bundle.load_full();
        let envelope = &request.envelope;
        let spec = spec_for(&bundle, &envelope.tool)?;
        envelope.check(spec)?;
        let now = self.clock.now_secs();
        let chain = self.verifier.verify(&request.chain, now)?;
        if !chain.grants(&envelope.tool) {
            return Err(Error::new(
                ErrorCode::ToolNotInScope,
                format!("agent `{}` holds no credential for tool `{}`", chain.agent_id, envelope.tool),
            ));
        }
        if self.store.task_state(&chain.task_id)?.ended {
            return Err(Error::new(ErrorCode::TaskEnded, format!("task `{}` has ended", chain.task_id)));
        }
        // Only budgets that ask for an approval when exceeded; one that denies stays enforced.
        let approvable = |name: &&String| {
            bundle.tool(&envelope.tool).is_some_and(|t| {
                t.budgets.iter().any(|b| &b.name == *name && b.spec.on_exceed == crate::policy::OnExceed::Approval)
            })
        };
        let budgets: Vec<&String> = spec.lifts_budgets.iter().filter(approvable).collect();
        let metas: Vec<_> = spec.lifts.iter().filter_map(|id| bundle.policy_meta(&cedar_policy::PolicyId::new(id))).collect();
        let mut roles: Vec<String> = metas.iter().filter_map(|m| m.approval.clone()).collect();
        if !budgets.is_empty() {
            roles.push("budget-approver".to_owned());
        }
        roles.sort_unstable();
        roles.dedup();
        let mut stages = Vec::new();
        for meta in &metas {
            super::merge_stages(&mut stages, &meta.stages);
        }
        let shown = serde_json::to_value(envelope).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let pending = PendingApproval {
            approval_id: random_id(self.random.as_ref(), "apr_")?,
            call_digest: call_digest(&envelope.tool, &json!({ "aegis.batch": shown }))?,
            tool: envelope.tool.clone(),
            args: shown,
            resource: request.resource.clone(),
            requester_kids: chain.kids.clone(),
            lifts: spec
                .lifts
                .iter()
                .cloned()
                .chain(budgets.iter().map(|b| format!("{}{b}", super::BUDGET_LIFT_PREFIX)))
                .collect(),
            agent_id: chain.agent_id.clone(),
            lineage: chain.lineage.clone(),
            initiator: chain.initiator.clone(),
            task_id: chain.task_id.clone(),
            intent: chain.intent.clone(),
            // Paired with `reasons`: the batch itself, then each forbid it lifts.
            policy_ids: std::iter::once(BATCH_REASON.to_owned()).chain(spec.lifts.iter().cloned()).collect(),
            reasons: std::iter::once(format!(
                "a batch of up to {} `{}` calls within {} s{}",
                envelope.max_calls,
                envelope.tool,
                envelope.window_secs,
                request.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            ))
            .chain(metas.iter().map(|m| m.message.clone().unwrap_or_else(|| m.id.clone())))
            .collect(),
            roles,
            policy_version: bundle.policy_version().to_owned(),
            created_at_ms: self.clock.now_millis(),
            status: ApprovalStatus::Pending,
            resolved_by: None,
            resolved_at_ms: None,
            note: None,
            quorum: metas.iter().map(|m| m.quorum).max().unwrap_or(1),
            stages,
            votes: Vec::new(),
            batch: Some(envelope.clone()),
        };
        self.put_before_approvers(&pending)?;
        Ok(pending)
    }

    /// For a call presenting a batch token: checks it fits the envelope, and returns what the
    /// commit consumes (this call, once) and reserves (one of the batch's calls, its amount).
    pub(crate) fn admit_batched(
        &self,
        bundle: &Bundle,
        claims: &OverrideClaims,
        envelope: &BatchEnvelope,
        (tool, args, digest): (&str, &Json, &str),
    ) -> Result<((String, i64), Vec<Reservation>)> {
        if tool != envelope.tool {
            return Err(Error::new(ErrorCode::ApprovalArgsMismatch, format!("the batch is for `{}`", envelope.tool)));
        }
        let amount = envelope.admit(spec_for(bundle, tool)?, args)?;
        let since = claims.iat.saturating_sub(1);
        let mut reservations = vec![Reservation {
            key: format!("batch/{}/calls", claims.approval_id),
            amount: 1,
            limit: i64::from(envelope.max_calls),
            window_start: since,
            enforce: true,
        }];
        if let Some(total) = envelope.total_limit {
            reservations.push(Reservation {
                key: format!("batch/{}/total", claims.approval_id),
                amount,
                limit: total,
                window_start: since,
                enforce: true,
            });
        }
        let once = (format!("approval:{}:{digest}", claims.approval_id), claims.exp.saturating_add(self.leeway_secs + 1));
        Ok((once, reservations))
    }
}
