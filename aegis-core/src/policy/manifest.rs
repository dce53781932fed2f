//! The bundle manifest (`manifest.yaml`): name, version, predicates, budgets, proofs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bundle manifest (`manifest.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The bundle name.
    pub name: String,
    /// The bundle version.
    pub version: String,
    /// The Cedar namespace of the schema's types and actions, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The entity type of principals (agents).
    #[serde(default = "default_principal_type")]
    pub principal_type: String,
    /// The entity type of attested roles: a principal is `in` each of its roles.
    #[serde(default = "default_role_type")]
    pub role_type: String,
    /// The entity type of the default resource (`<type>::"<tool>"`).
    #[serde(default = "default_resource_type")]
    pub resource_type: String,
    /// Named predicates the engine computes and hands to Cedar as `context.predicates.<name>`.
    #[serde(default)]
    pub predicates: BTreeMap<String, PredicateSpec>,
    /// Tools whose calls need a proof of possession by the leaf key (`*` for all).
    #[serde(default)]
    pub proof_required: Vec<String>,
    /// Budgets: limits on what calls may spend, enforced atomically by the store.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetSpec>,
    /// The tools that must be under at least one enforced forbid: what the report's policy
    /// coverage measures (default: every tool of the bundle).
    #[serde(default)]
    pub critical_tools: Vec<String>,
    /// Facts over the task's past the engine computes and hands Cedar as
    /// `context.temporal.<name>` (numbers and booleans, as it does predicates).
    // `count_within: {...}` as a one-key map, not a YAML tag.
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    pub temporal: BTreeMap<String, TemporalSpec>,
    /// The people who may answer approvals in a chat platform, by the identity the engine
    /// gives them: a click is attested as that identity (with these roles) only if the
    /// platform's signature verifies and the clicking account is listed here.
    #[serde(default)]
    pub roster: BTreeMap<String, RosterEntry>,
    /// Tools a proxy may have decided without seeing the call's arguments (decided on `{}`):
    /// for tools whose policies never read them. Any other tool asked about without arguments
    /// is denied (`args_required`).
    #[serde(default)]
    pub decide_without_args: Vec<String>,
    /// Tools whose calls may be approved in batches (one approval for up to N calls within an
    /// envelope), and what a batch may lift: low-risk bulk work only.
    #[serde(default)]
    pub batches: BTreeMap<String, BatchSpec>,
}

/// What a batch approval of one tool may cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// The most calls one batch may cover (1 to 1000).
    pub max_calls: u32,
    /// The longest window a batch may stay usable, in seconds (at most a day).
    pub max_window_secs: i64,
    /// The integer argument a batch bounds per call and in total (a dotted path); batches of a
    /// tool with one must state both limits.
    #[serde(default)]
    pub amount_arg: Option<String>,
    /// The argument that must be one of the batch's allowed destinations; batches of a tool
    /// with one must list them.
    #[serde(default)]
    pub destination_arg: Option<String>,
    /// The `@approval` forbids a batch lifts for its calls (their ids).
    #[serde(default)]
    pub lifts: Vec<String>,
    /// The budgets a batch lifts for its calls (its own total bounds them); only those whose
    /// `on_exceed` is `approval`: a budget that denies is never lifted.
    #[serde(default)]
    pub lifts_budgets: Vec<String>,
}

/// One person of the roster: the accounts that are this identity in each chat platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    /// The roles the identity holds (`principal in Role::"..."`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Slack accounts, as `<team id>/<user id>`.
    #[serde(default)]
    pub slack: Vec<String>,
    /// Microsoft Teams accounts, as Entra ID object ids (`aadObjectId`).
    #[serde(default)]
    pub teams: Vec<String>,
}

/// A fact over what was done before this call (past-time operators, after Dogwood's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TemporalSpec {
    /// How many calls of `tools` were allowed within the last `secs` seconds (a `Long`).
    CountWithin {
        /// The tools counted.
        tools: Vec<String>,
        /// The window, in seconds.
        secs: i64,
        /// Whose calls: the `task`'s, the calling `agent`'s or its root `initiator`'s.
        per: BudgetScope,
    },
    /// The sum of integer argument `arg` over allowed calls of `tools` within the last `secs`
    /// seconds (a `Long`; like a budget, a contribution must be a whole number from 0 up).
    SumWithin {
        /// The tools summed.
        tools: Vec<String>,
        /// A dotted path to the integer argument.
        arg: String,
        /// The window, in seconds.
        secs: i64,
        /// Whose calls.
        per: BudgetScope,
    },
    /// Whether any of `tools` was performed before in the task (a `Bool`): by this `agent`
    /// (or its key), by anyone in its `lineage`, or by anyone in the `task`.
    Formerly {
        /// The tools looked for.
        tools: Vec<String>,
        /// By whom.
        by: FormerlyBy,
    },
}

/// Whose past duties [`TemporalSpec::Formerly`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormerlyBy {
    /// The calling agent (or any holder of its key).
    Agent,
    /// The agent and everyone above it in its chain.
    Lineage,
    /// Anyone in the task.
    Task,
}

impl TemporalSpec {
    /// The budget that meters a counting or summing fact: reserved by every allowed call of
    /// its tools, never limited. `None` for `formerly`, which reads the ledger.
    pub(crate) fn meter(&self, name: &str) -> Option<(String, BudgetSpec)> {
        let (tools, sum, secs, per) = match self {
            Self::CountWithin { tools, secs, per } => (tools, None, *secs, *per),
            Self::SumWithin { tools, arg, secs, per } => (tools, Some(arg.clone()), *secs, *per),
            Self::Formerly { .. } => return None,
        };
        let spec = BudgetSpec { tools: tools.clone(), sum, per, limit: i64::MAX, window_secs: secs, on_exceed: OnExceed::Deny };
        Some((format!("{TEMPORAL_PREFIX}{name}"), spec))
    }
}

/// The name prefix of the meters that count and sum for temporal facts.
pub(crate) const TEMPORAL_PREFIX: &str = "temporal.";

/// A budget: a limit over a rolling window on the sum of one argument (or the number of calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// The tools that spend from it.
    pub tools: Vec<String>,
    /// A dotted path to an integer argument that is summed; absent: each call counts 1.
    #[serde(default)]
    pub sum: Option<String>,
    /// Whose budget: per `task`, per `agent` or per root `initiator`.
    pub per: BudgetScope,
    /// The limit over the window.
    pub limit: i64,
    /// The rolling window, in seconds.
    pub window_secs: i64,
    /// What a call that would exceed it gets: `deny` (default) or `approval`.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

/// Whose spending a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// All calls in the task.
    Task,
    /// The calling agent's calls, across tasks.
    Agent,
    /// The calls of every chain under one root agent, across tasks.
    Initiator,
}

/// What happens when a call would exceed a budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// The call is denied.
    #[default]
    Deny,
    /// The call needs a human approval (role `budget-approver`).
    Approval,
}

fn default_role_type() -> String {
    "Role".into()
}
fn default_principal_type() -> String {
    "Agent".into()
}
fn default_resource_type() -> String {
    "Tool".into()
}

/// A predicate: a regular expression over one string argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateSpec {
    /// A dotted path into the call's arguments, e.g. `destination` or `payee.account`.
    pub arg: String,
    /// A regular expression (Rust `regex` syntax), matched against the whole value.
    pub pattern: String,
    /// The tools it applies to; all tools when absent.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}
