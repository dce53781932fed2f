//! What `authorize` returns: a value, never an error; and the one rule for running the tool.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorCode, ReasonCode};

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The call may proceed with the arguments as given.
    Allow,
    /// The call must not proceed.
    Deny,
    /// The call may proceed with `sanitized_args` in place of the arguments.
    Sanitize,
    /// The call must not proceed until a human approves it; see `approval_id`.
    ApprovalNeeded,
}

impl Outcome {
    /// `allow`, `deny`, `sanitize` or `approval_needed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Sanitize => "sanitize",
            Self::ApprovalNeeded => "approval_needed",
        }
    }

    /// Whether the tool may run (`allow` or `sanitize`).
    pub fn permits_call(self) -> bool {
        matches!(self, Self::Allow | Self::Sanitize)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reason {
    /// What kind of reason: a policy's verdict or the error that denied the call.
    pub code: ReasonCode,
    /// The policy, when a policy is the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// Human-readable text (`@message` of the policy, or the error).
    pub message: String,
    /// The chain link the error was found at, when a credential is the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<usize>,
}

impl Reason {
    /// A reason with a code and a message.
    pub fn new(code: impl Into<ReasonCode>, message: impl Into<String>) -> Self {
        Self { code: code.into(), policy_id: None, message: message.into(), link: None }
    }

    /// The reason, naming the policy that gave it.
    pub fn for_policy(mut self, policy_id: &str) -> Self {
        self.policy_id = Some(policy_id.to_owned());
        self
    }

    /// The error that denied a call, as a reason.
    pub fn from_error(error: &Error) -> Self {
        Self {
            code: ReasonCode::Error(error.code()),
            policy_id: error.details().policy_id.clone(),
            message: error.message().to_owned(),
            link: error.details().link,
        }
    }
}

/// A decision on one tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// The outcome.
    pub outcome: Outcome,
    /// The reasons; for a deny, at least one.
    pub reasons: Vec<Reason>,
    /// For `approval_needed`: the id a human approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// For `sanitize`: the arguments the tool must receive instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitized_args: Option<Value>,
    /// A shadow policy would have blocked this call.
    pub would_block: bool,
    /// The open break-glass grant that covers this call, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_id: Option<String>,
    /// A unique id of this decision.
    pub decision_id: String,
    /// The bundle version that decided.
    pub policy_version: String,
    /// What the candidate bundle evaluated beside the enforced one would have decided (shadow
    /// rollout); never the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateVerdict>,
    /// For a permitting decision of an engine that issues receipts: the receipt the tool
    /// verifies ([`crate::verify_receipt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// The candidate bundle's verdict on a call the enforced bundle decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CandidateVerdict {
    /// The candidate's version.
    pub policy_version: String,
    /// What it would have decided.
    pub outcome: Outcome,
    /// The policies behind its verdict.
    pub policy_ids: Vec<String>,
    /// The enforced bundle lets the call run and the candidate would not.
    pub would_block: bool,
}

/// What a guard does with a decision: the one rule every binding and integration follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
#[non_exhaustive]
pub enum Enforcement {
    /// Run the tool with exactly these arguments (the sanitized ones for `sanitize`).
    Run {
        /// The arguments the tool receives.
        args: Value,
    },
    /// Do not run the tool: a human must approve first.
    AwaitApproval {
        /// The approval to ask for.
        approval_id: String,
        /// Why.
        message: String,
    },
    /// Do not run the tool.
    Refuse {
        /// The first reason's code.
        code: ReasonCode,
        /// Why.
        message: String,
    },
}

impl Decision {
    /// Whether any field a warm decision leaves unset is set (an approval, sanitized
    /// arguments, a break-glass grant, a candidate verdict, a receipt). Bindings send a decision
    /// without them in a shorter form; every field is named here, so a new one must be sorted
    /// into the common or the rare ones before this compiles.
    pub fn has_rare_fields(&self) -> bool {
        let Self {
            outcome: _,
            reasons: _,
            would_block: _,
            decision_id: _,
            policy_version: _,
            approval_id,
            sanitized_args,
            break_glass_id,
            candidate,
            receipt,
        } = self;
        approval_id.is_some() || sanitized_args.is_some() || break_glass_id.is_some() || candidate.is_some() || receipt.is_some()
    }

    /// The reason codes, in order.
    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }

    /// Whether the tool may run.
    pub fn permits_call(&self) -> bool {
        self.outcome.permits_call()
    }

    /// The one rule for whether the tool runs and with which arguments: `args` for `allow`,
    /// the sanitized arguments for `sanitize` (never the raw ones), nothing otherwise. Any
    /// outcome this rule does not know refuses.
    pub fn enforce(&self, args: &Value) -> Enforcement {
        let message = || self.reasons.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; ");
        match (self.outcome, &self.sanitized_args, &self.approval_id) {
            (Outcome::Allow, None, _) => Enforcement::Run { args: args.clone() },
            (Outcome::Sanitize, Some(sanitized), _) => Enforcement::Run { args: sanitized.clone() },
            (Outcome::ApprovalNeeded, _, Some(id)) => Enforcement::AwaitApproval { approval_id: id.clone(), message: message() },
            _ => Enforcement::Refuse {
                code: self.reasons.first().map_or(ReasonCode::Error(ErrorCode::Internal), |r| r.code),
                message: message(),
            },
        }
    }

    /// Turns a permitting decision into `approval_needed` for a budget whose `on_exceed` asks
    /// for approval.
    pub(crate) fn needs_budget_approval(&mut self, budget: &str) {
        self.outcome = Outcome::ApprovalNeeded;
        self.sanitized_args = None;
        let message = format!("budget `{budget}` would be exceeded; a budget approver may allow it");
        self.reasons = vec![Reason::new(ErrorCode::BudgetExceeded, message)];
    }
}
