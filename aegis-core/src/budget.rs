//! Budgets: limits on what calls may spend over a rolling window, reserved atomically by the
//! store when an allowed call commits. Budgets only ever consume.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::engine::Engine;
use crate::error::{Error, Result};
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
    /// Whether exceeding the limit fails the commit (false when an approval overrides it).
    pub enforce: bool,
}

/// The reservations an allowed call of `tool` makes; `enforce` is false when an approval
/// overrides the limits.
pub(crate) fn reservations(tool: &ToolEntry, chain: &VerifiedChain, args: &Json, now: i64, enforce: bool) -> Result<Vec<Reservation>> {
    tool.budgets
        .iter()
        .map(|b| {
            let amount = match &b.sum {
                None => 1,
                Some(path) => lookup(args, path).and_then(Json::as_i64).ok_or_else(|| {
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

impl Engine {
    /// The first budget whose `on_exceed` asks for approval and that this call would exceed.
    pub(crate) fn budget_needing_approval(&self, tool: &ToolEntry, reservations: &[Reservation]) -> Result<Option<String>> {
        for (budget, r) in tool.budgets.iter().zip(reservations) {
            if r.enforce && budget.spec.on_exceed == OnExceed::Approval && self.store.budget_spent(&r.key, r.window_start)? + r.amount > r.limit {
                return Ok(Some(budget.name.clone()));
            }
        }
        Ok(None)
    }

}
