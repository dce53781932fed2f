//! Budgets: limits on what calls may spend over a rolling window, reserved atomically by the
//! store when an allowed call commits. Budgets only ever consume.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::approval::BUDGET_LIFT_PREFIX;
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::VerifiedChain;
use crate::policy::{lookup, BudgetScope, OnExceed, ToolEntry};

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
            let (scope, id) = match b.spec.per {
                BudgetScope::Task => ("task", &chain.task_id),
                BudgetScope::Agent => ("agent", &chain.agent_id),
                BudgetScope::Initiator => ("initiator", &chain.initiator),
            };
            let lifted = lifted.iter().any(|l| l.strip_prefix(BUDGET_LIFT_PREFIX) == Some(b.name.as_str()));
            Ok(Reservation {
                key: format!("{}/{scope}/{id}", b.name),
                amount,
                limit: b.spec.limit,
                window_start: now.saturating_sub(b.spec.window_secs),
                enforce: !lifted,
            })
        })
        .collect()
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
