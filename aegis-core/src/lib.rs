//! Aegis: decides, in-process and before any tool runs, whether an AI agent's tool call may
//! proceed.
//!
//! The [`Engine`] verifies who is calling and through which chain of agents
//! ([`VerifiedChain`]), evaluates a Cedar policy [`Bundle`] over the call, and returns a
//! [`Decision`]: `allow`, `deny`, `sanitize` or `approval_needed`, with reasons users can
//! branch on ([`ErrorCode`]).
//!
//! ```no_run
//! use aegis_core::{AuthorizationRequest, Bundle, Engine, KeyPair, OsRandom};
//! # fn main() -> aegis_core::Result<()> {
//! let issuer = KeyPair::generate(&OsRandom)?;
//! let engine = Engine::builder()
//!     .bundle(Bundle::from_dir("policies/payments")?)
//!     .trust_issuer("https://issuer.example", issuer.public_key().clone())
//!     .build()?;
//! # let chain = vec![];
//! let decision = engine.authorize(&AuthorizationRequest {
//!     chain,
//!     tool: "stripe.create_payment".into(),
//!     args: serde_json::json!({"amount": 1200, "currency": "eur", "destination": "acct_1234567890"}),
//!     resource: None,
//!     proof: None,
//!     approval_token: None,
//! })?;
//! if !decision.outcome.permits_call() { /* do not run the tool */ }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod approval;
pub mod bundle;
mod context;
pub mod credential;
pub mod decision;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod json;
pub mod jws;
pub mod keys;
pub mod proof;
pub mod redis_store;
pub mod sqlite;
pub mod store;
pub mod time;

pub use bundle::{Bundle, BundleSources, Evaluation, Manifest, PolicyIndex, PolicyMeta, PredicateSpec};
pub use credential::{delegate, digest, inspect, issue_root, CredentialClaims, CredentialSpec, InspectedCredential, TrustedIssuer, VerifiedChain};
pub use decision::{Decision, Outcome, Reason};
pub use approval::{slack_message, ApprovalResolution, OverrideClaims};
pub use engine::{
    ApprovalNotifier, AuthorizationRequest, BreakGlassRequest, Engine, EngineBuilder, ResourceRef, APPROVE_ACTION,
    BREAK_GLASS_SCOPE, DEFAULT_AUDIENCE,
};
pub use redis_store::RedisStore;
pub use sqlite::SqliteStore;
pub use store::{
    ApprovalStatus, BreakGlassGrant, Commit, CommitOutcome, LedgerEntry, MemoryStore, PendingApproval, Reservation, Store,
    TaskState,
};
pub use error::{Error, ErrorCode, Result};
pub use keys::{Jwk, KeyPair, PublicKey};
pub use proof::{call_digest, create_proof};
pub use time::{Clock, ManualClock, OsRandom, SecureRandom, SystemClock};
