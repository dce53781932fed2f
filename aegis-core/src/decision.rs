//! What `authorize` returns: a value, never an error.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorCode;

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
pub struct Reason {
    /// What kind of reason.
    pub code: ErrorCode,
    /// The policy, when a policy is the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// Human-readable text (`@message` of the policy, or the error).
    pub message: String,
}

/// A decision on one tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Decision {
    /// The reason codes, in order.
    pub fn codes(&self) -> Vec<ErrorCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }
}
