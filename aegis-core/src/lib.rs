#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod approval;
pub mod audit;
mod break_glass;
mod budget;
mod cache;
mod engine;
mod error;
mod identity;
mod json;
pub mod json_api;
mod policy;
mod receipt;
mod state;
#[cfg(feature = "otel")]
pub mod telemetry;
mod time;

pub use approval::{
    slack_message, slack_resolved_message, teams_card, teams_invoke_response, ApprovalResolution, ApprovalStatus, BatchEnvelope,
    BatchRequest, Channel, ChannelVerdict, OverrideClaims, PendingApproval, SlackAction, SlackVerifier, TeamsAction,
    TeamsVerifier, Vote, APPROVE_ACTION, BOT_FRAMEWORK_ISSUER,
};
pub use break_glass::{BreakGlassGrant, BreakGlassRequest, BREAK_GLASS_SCOPE};
pub use engine::{
    admin_proof, AdminAction, AdminOutcome, AdminRequest, AdminSignature, ApprovalNotifier, AuthorizationRequest,
    CandidateVerdict, Decision, Enforcement, Engine, EngineBuilder, Mode, Outcome, Reason, ResourceRef, ADMIN_SCOPE,
    DEFAULT_AUDIENCE,
};
pub use error::{Error, ErrorCode, ErrorDetails, PolicyVerdict, ReasonCode, Result};
pub use identity::{
    call_digest, create_proof, delegate, digest, inspect, inspect_chain, issue_root, CredentialClaims, CredentialSpec,
    ExternalIssuer, InspectedChain, InspectedCredential, Jwk, KeyPair, PublicKey, TrustedIssuer, VerifiedChain,
};
pub use json::from_str_strict;
pub use policy::{
    compile_matrix, lint, lint_dir, lint_matrix, run_policy_tests, schema_with_common_context, sign_bundle,
    verify_bundle_signature, BatchSpec, BudgetScope, BudgetSpec, Bundle, BundleClaims, BundleSources, CaseResult, Detector, Lint,
    Manifest, OnExceed, PolicyMeta, PolicyTestReport, PredicateSpec, RosterEntry, UnknownDetector, BUNDLE_SIGNATURE_FILE,
    COMPILED_FILE, MATRIX_FILE, REDACTED,
};
pub use receipt::{verify_receipt, verify_receipt_once, ReceiptCheck, ReceiptClaims, RECEIPT_TYP};
#[cfg(feature = "redis")]
pub use state::RedisStore;
#[cfg(feature = "sqlite")]
pub use state::SqliteStore;
pub use state::{Commit, CommitOutcome, DecisionState, LedgerEntry, MemoryStore, Reservation, RevisionChange, Store, TaskState};
pub use time::{Clock, ManualClock, OsRandom, SecureRandom, SystemClock};

/// Internals for the project's own tests and benchmarks (feature `testing`): not a stable API.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::identity::jws::{b64_decode, b64_encode, sign};
    pub use crate::policy::{Evaluation, PolicyIndex};
}
