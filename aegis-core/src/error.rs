//! The one error type of the core, and the stable codes users branch on.
//!
//! Every failure and every deny reason carries an [`ErrorCode`]. Codes are serialized in
//! `snake_case` and never change meaning once released; bindings map them to exception classes
//! (Python), `err.code` (Node) and status values (C).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable code for an error or a deny reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    // --- malformed input (returned as `Err`) ---
    /// The request is not well formed (wrong shape, unsupported value, bad JSON).
    MalformedRequest,
    /// A key is not a valid Ed25519 key or JWK.
    InvalidKey,
    /// A bundle failed to load: unreadable file, parse error or schema validation error.
    InvalidBundle,
    /// Something that should be impossible happened; the engine failed closed.
    Internal,

    // --- credential chain (deny reasons) ---
    /// The request carried no credential chain.
    MissingCredential,
    /// A token is not a well-formed compact JWS (encoding, JSON, duplicate or unknown members).
    MalformedToken,
    /// The token's `alg` is not `EdDSA` (for example `none` or `HS256`).
    UnsupportedAlgorithm,
    /// The token carries a header Aegis refuses (`jwk`, `jku`, `x5u`, `x5c`, `crit`, ...).
    ForbiddenHeader,
    /// The token's `typ` is not the one expected at this position.
    WrongTokenType,
    /// The root credential is not signed by a trusted issuer key, or names another issuer.
    UntrustedIssuer,
    /// A signature does not verify.
    SignatureInvalid,
    /// A credential has expired.
    CredentialExpired,
    /// A credential is not valid yet (`nbf` or `iat` in the future).
    CredentialNotYetValid,
    /// A credential lives longer than the engine allows.
    LifetimeTooLong,
    /// A credential was issued for another audience.
    AudienceMismatch,
    /// A delegated link does not name its parent (digest or issuer mismatch).
    ParentMismatch,
    /// A delegated link grants a tool its parent does not hold.
    ScopeWidened,
    /// A delegated link expires after its parent.
    LifetimeExceedsParent,
    /// A delegated link is for another task than its parent.
    TaskMismatch,
    /// An agent appears twice in one delegation chain.
    DelegationCycle,
    /// The chain is deeper than the engine allows.
    DelegationTooDeep,
    /// The leaf credential's scope does not include the requested tool.
    ToolNotInScope,
    /// The tool is not an action of the policy bundle.
    UnknownTool,

    // --- proof of possession (deny reasons) ---
    /// The tool requires a proof of possession and none was presented.
    ProofRequired,
    /// The proof does not verify, is stale, or is for another call.
    ProofInvalid,
    /// The proof's `jti` was already used.
    ProofReplayed,

    // --- policy evaluation (reasons) ---
    /// A forbid policy matched.
    PolicyForbid,
    /// No permit policy matched.
    NoMatchingPermit,
    /// A forbid policy failed to evaluate; Aegis counts that as a deny.
    PolicyError,
    /// An approvable forbid matched; a human may approve the call.
    ApprovalRequired,
    /// Not an error: the permit policy that determined an `allow` or `sanitize`.
    PolicyPermit,

    // --- state: stores, tasks, budgets (deny reasons) ---
    /// The store failed; Aegis denies rather than decide without state.
    StoreUnavailable,
    /// The task has ended; its credentials are revoked.
    TaskEnded,
    /// The call would exceed a budget.
    BudgetExceeded,
    /// Concurrent calls in the task kept conflicting; decided as a deny.
    Contention,

    // --- approvals ---
    /// The override token does not verify or is not a well-formed token.
    ApprovalTokenInvalid,
    /// The override token has expired.
    ApprovalExpired,
    /// The override token was already used.
    ApprovalReplayed,
    /// The override token was approved for another agent.
    ApprovalWrongAgent,
    /// The override token was approved for other arguments or another tool.
    ApprovalArgsMismatch,
    /// The override token was approved in another task.
    ApprovalWrongTask,
    /// The override token was approved under another policy version.
    ApprovalPolicyChanged,
    /// No approval has this id.
    ApprovalNotFound,
    /// The approval was already resolved: approved, rejected or superseded.
    ApprovalNotPending,
    /// The approver may not approve this request (segregation of duties).
    ApproverConflict,
    /// Not an error: an override token turned `approval_needed` into `allow`.
    ApprovalGranted,

    // --- break-glass ---
    /// A break-glass request was refused (reason, approvers, duration).
    BreakGlassRefused,
    /// Not an error: an open break-glass grant lifted a breakable forbid.
    BreakGlassApplied,
}

impl ErrorCode {
    /// Every code, in declaration order (bindings generate their error classes from it).
    pub const ALL: &'static [ErrorCode] = &[
        Self::MalformedRequest,
        Self::InvalidKey,
        Self::InvalidBundle,
        Self::Internal,
        Self::MissingCredential,
        Self::MalformedToken,
        Self::UnsupportedAlgorithm,
        Self::ForbiddenHeader,
        Self::WrongTokenType,
        Self::UntrustedIssuer,
        Self::SignatureInvalid,
        Self::CredentialExpired,
        Self::CredentialNotYetValid,
        Self::LifetimeTooLong,
        Self::AudienceMismatch,
        Self::ParentMismatch,
        Self::ScopeWidened,
        Self::LifetimeExceedsParent,
        Self::TaskMismatch,
        Self::DelegationCycle,
        Self::DelegationTooDeep,
        Self::ToolNotInScope,
        Self::UnknownTool,
        Self::ProofRequired,
        Self::ProofInvalid,
        Self::ProofReplayed,
        Self::PolicyForbid,
        Self::NoMatchingPermit,
        Self::PolicyError,
        Self::ApprovalRequired,
        Self::PolicyPermit,
        Self::StoreUnavailable,
        Self::TaskEnded,
        Self::BudgetExceeded,
        Self::Contention,
        Self::ApprovalTokenInvalid,
        Self::ApprovalExpired,
        Self::ApprovalReplayed,
        Self::ApprovalWrongAgent,
        Self::ApprovalArgsMismatch,
        Self::ApprovalWrongTask,
        Self::ApprovalPolicyChanged,
        Self::ApprovalNotFound,
        Self::ApprovalNotPending,
        Self::ApproverConflict,
        Self::ApprovalGranted,
        Self::BreakGlassRefused,
        Self::BreakGlassApplied,
    ];

    /// The stable `snake_case` name of the code, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed_request",
            Self::InvalidKey => "invalid_key",
            Self::InvalidBundle => "invalid_bundle",
            Self::Internal => "internal",
            Self::MissingCredential => "missing_credential",
            Self::MalformedToken => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::ForbiddenHeader => "forbidden_header",
            Self::WrongTokenType => "wrong_token_type",
            Self::UntrustedIssuer => "untrusted_issuer",
            Self::SignatureInvalid => "signature_invalid",
            Self::CredentialExpired => "credential_expired",
            Self::CredentialNotYetValid => "credential_not_yet_valid",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::AudienceMismatch => "audience_mismatch",
            Self::ParentMismatch => "parent_mismatch",
            Self::ScopeWidened => "scope_widened",
            Self::LifetimeExceedsParent => "lifetime_exceeds_parent",
            Self::TaskMismatch => "task_mismatch",
            Self::DelegationCycle => "delegation_cycle",
            Self::DelegationTooDeep => "delegation_too_deep",
            Self::ToolNotInScope => "tool_not_in_scope",
            Self::UnknownTool => "unknown_tool",
            Self::ProofRequired => "proof_required",
            Self::ProofInvalid => "proof_invalid",
            Self::ProofReplayed => "proof_replayed",
            Self::PolicyForbid => "policy_forbid",
            Self::NoMatchingPermit => "no_matching_permit",
            Self::PolicyError => "policy_error",
            Self::ApprovalRequired => "approval_required",
            Self::PolicyPermit => "policy_permit",
            Self::StoreUnavailable => "store_unavailable",
            Self::TaskEnded => "task_ended",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Contention => "contention",
            Self::ApprovalTokenInvalid => "approval_token_invalid",
            Self::ApprovalExpired => "approval_expired",
            Self::ApprovalReplayed => "approval_replayed",
            Self::ApprovalWrongAgent => "approval_wrong_agent",
            Self::ApprovalArgsMismatch => "approval_args_mismatch",
            Self::ApprovalWrongTask => "approval_wrong_task",
            Self::ApprovalPolicyChanged => "approval_policy_changed",
            Self::ApprovalNotFound => "approval_not_found",
            Self::ApprovalNotPending => "approval_not_pending",
            Self::ApproverConflict => "approver_conflict",
            Self::ApprovalGranted => "approval_granted",
            Self::BreakGlassRefused => "break_glass_refused",
            Self::BreakGlassApplied => "break_glass_applied",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the core: a stable [`ErrorCode`] and a lowercase, human-readable message.
///
/// Messages quote user input in backticks and never name Rust types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// Creates an error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn malformed_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedRequest, message)
    }

    pub(crate) fn malformed_token(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedToken, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// Shorthand for results of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
