//! The one error type of the core, and the stable codes users branch on.
//!
//! Two code sets, kept apart: an [`ErrorCode`] says what went wrong (a bad token, a store that
//! is down, malformed input); a [`ReasonCode`] says why a decision came out as it did, which
//! is either a policy's verdict (`policy_permit`, `approval_granted`, ...) or the error that
//! denied the call. Codes are serialized in `snake_case` and never change meaning once
//! released; bindings generate their exception classes (Python) and type unions (TypeScript)
//! from [`ErrorCode::ALL`] and [`ReasonCode::ALL`], and a test fails when they drift.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a code enum with its `ALL` list, its stable names and string serde.
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[doc = $doc:literal])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[doc = $doc])* $variant,)*
        }

        impl $name {
            /// Every code, in declaration order (bindings generate their types from it).
            pub const ALL: &'static [$name] = &[$(Self::$variant,)*];

            /// The stable `snake_case` name, as serialized.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The code with this stable name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The first line of the code's documentation (bindings use it as a docstring).
            pub fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => first_doc_line(&[$($doc,)*]),)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
                Self::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown code `{name}`")))
            }
        }
    };
}

fn first_doc_line(lines: &[&'static str]) -> &'static str {
    lines.first().map_or("", |l| l.trim())
}

codes! {
    /// What went wrong: a stable, machine-readable code for an error.
    ///
    /// Returned as `Err` for malformed input and internal failures; every other error on the
    /// decision path becomes a `deny` whose reason is [`ReasonCode::Error`] with this code.
    ErrorCode {
        /// The request is not well formed (wrong shape, unsupported value, bad JSON).
        MalformedRequest => "malformed_request",
        /// A key is not a valid Ed25519 key or JWK.
        InvalidKey => "invalid_key",
        /// A bundle failed to load: unreadable file, parse error or schema validation error.
        InvalidBundle => "invalid_bundle",
        /// Something that should be impossible happened; the engine failed closed.
        Internal => "internal",
        /// The request carried no credential chain.
        MissingCredential => "missing_credential",
        /// A token is not a well-formed compact JWS (encoding, JSON, duplicate or unknown members).
        MalformedToken => "malformed_token",
        /// The token's `alg` is not `EdDSA` (for example `none` or `HS256`).
        UnsupportedAlgorithm => "unsupported_algorithm",
        /// The token carries a header Aegis refuses (`jwk`, `jku`, `x5u`, `x5c`, `crit`, ...).
        ForbiddenHeader => "forbidden_header",
        /// The token's `typ` is not the one expected at this position.
        WrongTokenType => "wrong_token_type",
        /// The root credential is not signed by a trusted issuer key, or names another issuer.
        UntrustedIssuer => "untrusted_issuer",
        /// A signature does not verify.
        SignatureInvalid => "signature_invalid",
        /// A credential has expired.
        CredentialExpired => "credential_expired",
        /// A credential is not valid yet (`nbf` or `iat` in the future).
        CredentialNotYetValid => "credential_not_yet_valid",
        /// A credential lives longer than the engine allows.
        LifetimeTooLong => "lifetime_too_long",
        /// A credential was issued for another audience.
        AudienceMismatch => "audience_mismatch",
        /// A delegated link does not name its parent (digest or issuer mismatch).
        ParentMismatch => "parent_mismatch",
        /// A delegated link grants a tool its parent does not hold.
        ScopeWidened => "scope_widened",
        /// A delegated link expires after its parent.
        LifetimeExceedsParent => "lifetime_exceeds_parent",
        /// A delegated link is for another task than its parent.
        TaskMismatch => "task_mismatch",
        /// An agent appears twice in one delegation chain.
        DelegationCycle => "delegation_cycle",
        /// The chain is deeper than the engine allows.
        DelegationTooDeep => "delegation_too_deep",
        /// The leaf credential's scope does not include the requested tool.
        ToolNotInScope => "tool_not_in_scope",
        /// The tool is not an action of the policy bundle.
        UnknownTool => "unknown_tool",
        /// The tool requires a proof of possession and none was presented.
        ProofRequired => "proof_required",
        /// The proof does not verify, is stale, or is for another call.
        ProofInvalid => "proof_invalid",
        /// The proof's `jti` was already used.
        ProofReplayed => "proof_replayed",
        /// The store failed; Aegis denies rather than decide without state.
        StoreUnavailable => "store_unavailable",
        /// The audit log could not make the record durable; Aegis denies rather than allow a
        /// call it cannot account for.
        AuditUnavailable => "audit_unavailable",
        /// An audit log, checkpoint or proof does not verify.
        AuditInvalid => "audit_invalid",
        /// The task has ended; its credentials are revoked.
        TaskEnded => "task_ended",
        /// The call would exceed a budget.
        BudgetExceeded => "budget_exceeded",
        /// A budget contribution is not a whole number from 0 up: budgets only ever consume.
        BudgetAmountInvalid => "budget_amount_invalid",
        /// The arguments do not have the types the bundle's schema declares for the tool.
        ArgsInvalid => "args_invalid",
        /// Concurrent calls in the task kept conflicting; decided as a deny.
        Contention => "contention",
        /// The override token does not verify or is not a well-formed token.
        ApprovalTokenInvalid => "approval_token_invalid",
        /// The override token has expired.
        ApprovalExpired => "approval_expired",
        /// The override token was already used.
        ApprovalReplayed => "approval_replayed",
        /// The override token was approved for another agent.
        ApprovalWrongAgent => "approval_wrong_agent",
        /// The override token was approved for other arguments or another tool.
        ApprovalArgsMismatch => "approval_args_mismatch",
        /// The override token was approved in another task.
        ApprovalWrongTask => "approval_wrong_task",
        /// The override token was approved under another policy version.
        ApprovalPolicyChanged => "approval_policy_changed",
        /// No approval has this id.
        ApprovalNotFound => "approval_not_found",
        /// The approval was already resolved: approved, rejected or superseded.
        ApprovalNotPending => "approval_not_pending",
        /// The approver may not approve this request (segregation of duties).
        ApproverConflict => "approver_conflict",
        /// A break-glass request was refused (reason, approvers, duration).
        BreakGlassRefused => "break_glass_refused",
        /// The operation named at the JSON boundary does not exist.
        UnknownOperation => "unknown_operation",
        /// An administrative change was asked by someone who is not an administrator (a root
        /// identity holding `aegis.admin`), or its signature does not bind the change.
        AdminUnauthorized => "admin_unauthorized",
        /// The second administrator is the one asking (the same identity or key): a change to
        /// what is enforced needs two.
        AdminConflict => "admin_conflict",
        /// This engine takes changes to what is enforced only as signed requests of two
        /// administrators (`Engine::admin`).
        AdminApprovalRequired => "admin_approval_required",
        /// A bundle's signature is missing, does not verify, or is by a key the engine does not
        /// trust for bundles.
        BundleSignatureInvalid => "bundle_signature_invalid",
        /// There is no earlier bundle to roll back to.
        NoPreviousBundle => "no_previous_bundle",
        /// A chat platform's request (a Slack click, a Teams card action) carries no valid
        /// signature or token, or its timestamp is outside the accepted window.
        ChannelSignatureInvalid => "channel_signature_invalid",
        /// A chat platform's request was already received: replays are refused.
        ChannelReplayed => "channel_replayed",
        /// The person who answered in a chat platform is on no entry of the bundle's roster,
        /// or approval channels are not configured.
        ChannelUserUnknown => "channel_user_unknown",
        /// A proxy asked for a decision without the call's arguments, for a tool the bundle
        /// does not let the gate decide without them (`decide_without_args`).
        ArgsRequired => "args_required",
        /// The decision redacts arguments and the caller (a proxy) cannot rewrite them: denied
        /// rather than run the tool with what the policy removed.
        SanitizeUnenforceable => "sanitize_unenforceable",
        /// A batch approval was asked for a tool the bundle does not batch, or beyond the
        /// envelope it allows; or a call is outside its batch's envelope.
        BatchRefused => "batch_refused",
        /// A decision receipt is missing, malformed, not signed by the trusted key, for another
        /// issuer or audience, or expired.
        ReceiptInvalid => "receipt_invalid",
        /// A decision receipt authorized another tool or other arguments than the call's.
        ReceiptMismatch => "receipt_mismatch",
    }
}

codes! {
    /// Why a decision came out as it did, beside the errors ([`ReasonCode::Error`]).
    PolicyVerdict {
        /// A forbid policy matched.
        PolicyForbid => "policy_forbid",
        /// No permit policy matched.
        NoMatchingPermit => "no_matching_permit",
        /// A forbid policy failed to evaluate; Aegis counts that as a deny.
        PolicyError => "policy_error",
        /// An approvable forbid matched; a human may approve the call.
        ApprovalRequired => "approval_required",
        /// The permit policy that determined an `allow` or `sanitize`.
        PolicyPermit => "policy_permit",
        /// An override token (an approval of this very call) lifted the forbids that asked for it.
        ApprovalGranted => "approval_granted",
        /// An open break-glass grant lifted a breakable forbid.
        BreakGlassApplied => "break_glass_applied",
        /// The engine is in log-only mode (two administrators switched it): the policies
        /// refused this call and it was allowed, marked `would_block`.
        ShadowMode => "shadow_mode",
    }
}

/// Why a decision came out as it did: a policy's verdict, or the error that denied the call.
///
/// Serialized flat, as the verdict's or the error's `snake_case` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// A policy's verdict.
    Verdict(PolicyVerdict),
    /// The error that denied the call.
    Error(ErrorCode),
}

impl ReasonCode {
    /// A permit policy determined an `allow` or `sanitize`.
    pub const POLICY_PERMIT: Self = Self::Verdict(PolicyVerdict::PolicyPermit);
    /// A forbid policy matched.
    pub const POLICY_FORBID: Self = Self::Verdict(PolicyVerdict::PolicyForbid);
    /// No permit policy matched.
    pub const NO_MATCHING_PERMIT: Self = Self::Verdict(PolicyVerdict::NoMatchingPermit);
    /// A forbid policy failed to evaluate, which counts as a deny.
    pub const POLICY_ERROR: Self = Self::Verdict(PolicyVerdict::PolicyError);
    /// An approvable forbid matched; a human may approve the call.
    pub const APPROVAL_REQUIRED: Self = Self::Verdict(PolicyVerdict::ApprovalRequired);
    /// An override token turned `approval_needed` into `allow`.
    pub const APPROVAL_GRANTED: Self = Self::Verdict(PolicyVerdict::ApprovalGranted);
    /// An open break-glass grant lifted a breakable forbid.
    pub const BREAK_GLASS_APPLIED: Self = Self::Verdict(PolicyVerdict::BreakGlassApplied);

    /// Every reason code's name: the verdicts, then the errors.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        PolicyVerdict::ALL.iter().map(|v| v.as_str()).chain(ErrorCode::ALL.iter().map(|e| e.as_str()))
    }

    /// The stable `snake_case` name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verdict(v) => v.as_str(),
            Self::Error(e) => e.as_str(),
        }
    }

    /// The error, when an error is the reason.
    pub fn error(self) -> Option<ErrorCode> {
        match self {
            Self::Error(e) => Some(e),
            Self::Verdict(_) => None,
        }
    }
}

impl From<ErrorCode> for ReasonCode {
    fn from(code: ErrorCode) -> Self {
        Self::Error(code)
    }
}

impl From<PolicyVerdict> for ReasonCode {
    fn from(verdict: PolicyVerdict) -> Self {
        Self::Verdict(verdict)
    }
}

impl PartialEq<ErrorCode> for ReasonCode {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == Self::Error(*other)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        PolicyVerdict::from_name(&name)
            .map(Self::Verdict)
            .or_else(|| ErrorCode::from_name(&name).map(Self::Error))
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason code `{name}`")))
    }
}

/// Where an error was found, when it has a place: which link of a chain, which file and line
/// of a bundle, which policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorDetails {
    /// The chain link (0 = the root credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<usize>,
    /// The bundle file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
}

impl ErrorDetails {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// An error from the core: a stable [`ErrorCode`], a lowercase, human-readable message, and
/// where it was found ([`ErrorDetails`]).
///
/// Messages quote user input in backticks and never name Rust types. Its JSON form,
/// `{"code", "message", "link"?, "file"?, "line"?, "policy_id"?}`, is the one encoding every
/// binding carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
    #[serde(flatten, default, skip_serializing_if = "ErrorDetails::is_empty")]
    details: Box<ErrorDetails>,
}

impl Error {
    /// Creates an error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: Box::default() }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where the error was found.
    pub fn details(&self) -> &ErrorDetails {
        &self.details
    }

    /// The error as found at chain link `link`.
    pub(crate) fn at_link(mut self, link: usize) -> Self {
        self.message = format!("link {link}: {}", self.message);
        self.details.link = Some(link);
        self
    }

    /// The error as found in a bundle `file`, at `line` when known, in `policy_id` when known.
    pub(crate) fn in_file(mut self, file: &str, line: Option<usize>, policy_id: Option<&str>) -> Self {
        self.details.file = Some(file.to_owned());
        self.details.line = line;
        self.details.policy_id = policy_id.map(str::to_owned);
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_collide() {
        let mut seen = std::collections::BTreeSet::new();
        for name in ReasonCode::all_names() {
            assert!(seen.insert(name), "`{name}` is both a verdict and an error");
            let code: ReasonCode = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(code.as_str(), name);
        }
        for code in ErrorCode::ALL {
            assert!(!code.description().is_empty(), "{code} has no description");
        }
    }

    #[test]
    fn error_json_carries_its_place() {
        let e = Error::new(ErrorCode::SignatureInvalid, "bad").at_link(2);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "signature_invalid", "message": "link 2: bad", "link": 2})
        );
        let back: Error = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
