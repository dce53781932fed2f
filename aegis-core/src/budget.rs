//! Budgets: limits on what calls may spend over a rolling window, reserved atomically by the
//! store when an allowed call commits. Budgets only ever consume.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::approval::BUDGET_LIFT_PREFIX;
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::VerifiedChain;
use smol_str::SmolStr;

use crate::policy::eval::{duties_by, Temporal};
use crate::policy::{lookup, BudgetScope, Bundle, OnExceed, TemporalSpec, ToolEntry, TEMPORAL_PREFIX};
use crate::state::TaskState;

/// A budget reservation made by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The budget key (budget name and scope, e.g. `payments/task/t-1`).
    pub key: String,
    /// What this call spends.
    pub amount: i64,
    /// The limit over the window.
    pub limit: i64,
    /// Spending before this time (seconds) no longer counts.
    pub window_start: i64,
    /// Whether exceeding the limit fails the commit (false when an approval of this budget
    /// allows it to be exceeded).
    pub enforce: bool,
}

/// The reservations an allowed call of `tool` makes. A budget named in `lifted` (as
/// `budget:<name>`, by an approval of that budget) is reserved without its limit.
///
/// Budgets only consume: a contribution is a whole number from 0 up, and anything else (a
/// negative amount, a fraction, a number past `i64`, a missing argument) refuses the call with
/// `budget_amount_invalid` rather than letting it add room to the budget.
pub(crate) fn reservations(
    tool: &ToolEntry,
    chain: &VerifiedChain,
    args: &Json,
    now: i64,
    lifted: &[String],
) -> Result<Vec<Reservation>> {
    tool.budgets
        .iter()
        .map(|b| {
            let amount = match &b.sum {
                None => 1,
                Some(path) => lookup(args, path).and_then(Json::as_i64).filter(|a| *a >= 0).ok_or_else(|| {
                    Error::new(
                        ErrorCode::BudgetAmountInvalid,
                        format!(
                            "budget `{}` sums `args.{}`, which must be a whole number from 0 to 2^63-1",
                            b.name,
                            path.join(".")
                        ),
                    )
                })?,
            };
            let lifted = lifted.iter().any(|l| l.strip_prefix(BUDGET_LIFT_PREFIX) == Some(b.name.as_str()));
            Ok(Reservation {
                key: budget_key(&b.name, b.spec.per, chain),
                amount,
                limit: b.spec.limit,
                window_start: now.saturating_sub(b.spec.window_secs),
                enforce: !lifted,
            })
        })
        .collect()
}

/// A budget's (or meter's) key for `chain`: its name and scope, e.g. `payments/task/t-1`.
fn budget_key(name: &str, per: BudgetScope, chain: &VerifiedChain) -> String {
    let (scope, id) = match per {
        BudgetScope::Task => ("task", &chain.task_id),
        BudgetScope::Agent => ("agent", &chain.agent_id),
        BudgetScope::Initiator => ("initiator", &chain.initiator),
    };
    format!("{name}/{scope}/{id}")
}

/// Whether spending `amount` on top of `spent` exceeds `limit`; a sum past `i64` does.
pub(crate) fn exceeds(spent: i64, amount: i64, limit: i64) -> bool {
    spent.checked_add(amount).is_none_or(|total| total > limit)
}

/// The enforced budgets a call would exceed, as of now (the commit checks again, atomically).
#[derive(Debug, Default)]
pub(crate) struct Overruns {
    /// Budgets whose `on_exceed` asks for an approval.
    pub approvable: Vec<String>,
    /// A budget whose `on_exceed` denies.
    pub denying: Option<String>,
}

impl Engine {
    /// The bundle's temporal facts for a call by `chain`: counts and sums read from their
    /// meters over the window, `formerly` from the task's ledger.
    pub(crate) fn temporal_facts(
        &self,
        bundle: &Bundle,
        chain: &VerifiedChain,
        state: &TaskState,
        now: i64,
    ) -> Result<Vec<(SmolStr, Temporal)>> {
        let mut facts = Vec::with_capacity(bundle.manifest().temporal.len());
        for (name, spec) in &bundle.manifest().temporal {
            let value = match spec {
                TemporalSpec::CountWithin { secs, per, .. } | TemporalSpec::SumWithin { secs, per, .. } => {
                    let key = budget_key(&format!("{TEMPORAL_PREFIX}{name}"), *per, chain);
                    Temporal::Number(self.store.budget_spent(&key, now.saturating_sub(*secs))?)
                }
                TemporalSpec::Formerly { tools, by } => {
                    Temporal::Holds(duties_by(&state.duties, chain, *by).any(|done| tools.iter().any(|t| t == done)))
                }
            };
            facts.push((SmolStr::from(name.as_str()), value));
        }
        Ok(facts)
    }

    /// Which enforced budgets the reservations would exceed.
    pub(crate) fn overruns(&self, tool: &ToolEntry, reservations: &[Reservation]) -> Result<Overruns> {
        let mut out = Overruns::default();
        for (budget, r) in tool.budgets.iter().zip(reservations).filter(|(_, r)| r.enforce) {
            if exceeds(self.store.budget_spent(&r.key, r.window_start)?, r.amount, r.limit) {
                match budget.spec.on_exceed {
                    OnExceed::Approval => out.approvable.push(budget.name.clone()),
                    OnExceed::Deny => out.denying = out.denying.or_else(|| Some(r.key.clone())),
                }
            }
        }
        Ok(out)
    }
}
