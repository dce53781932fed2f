//! Policy bundles: loading, the manifest, evaluation, and the argument helpers obligations use.

mod args;
mod bundle;
mod context_schema;
mod detect;
pub(crate) mod eval;
mod lint;
mod manifest;
mod matrix;
mod signing;
mod suite;

pub use args::REDACTED;
pub(crate) use args::{lookup, redact};
pub(crate) use bundle::ToolEntry;
pub use bundle::{Bundle, BundleSources, PolicyMeta};
pub use context_schema::schema_with_common_context;
pub(crate) use detect::scrub;
pub use detect::{Detector, UnknownDetector};
pub use eval::Evaluation;
#[cfg(feature = "testing")]
pub use eval::PolicyIndex;
pub use lint::{lint, Lint};
pub(crate) use manifest::TEMPORAL_PREFIX;
pub use manifest::{
    BatchSpec, BudgetScope, BudgetSpec, FormerlyBy, Manifest, OnExceed, PredicateSpec, RosterEntry, TemporalSpec,
};
pub use matrix::{compile_matrix, lint_dir, lint_matrix, COMPILED_FILE, MATRIX_FILE};
pub use signing::{sign_bundle, verify_bundle_signature, BundleClaims, BUNDLE_SIGNATURE_FILE};
pub use suite::{run_policy_tests, CaseResult, PolicyTestReport};
