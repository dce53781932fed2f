//! The [`Engine`]: one entry point that decides whether a tool call may run.
//!
//! - `builder`: configuration ([`EngineBuilder`]);
//! - `request`: what a caller asks ([`AuthorizationRequest`]);
//! - `pipeline`: the decision, stage by stage;
//! - `verdict`: from Cedar's evaluation to an outcome (pure);
//! - `decision`: what comes back ([`Decision`]) and [`Decision::enforce`].
//!
//! Approvals, break-glass and budgets extend the engine from their own modules.

mod builder;
mod control;
mod decision;
mod pipeline;
mod replay;
mod request;
mod verdict;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use builder::EngineBuilder;
pub use control::{admin_proof, AdminAction, AdminOutcome, AdminRequest, AdminSignature, Mode, ADMIN_SCOPE};
pub use decision::{CandidateVerdict, Decision, Enforcement, Outcome, Reason};
pub(crate) use pipeline::VerifiedCall;
pub use request::{AuthorizationRequest, ResourceRef};
pub(crate) use verdict::{apply_evaluation, deny, undecided};

use crate::audit::{kind, AuditLog, Event};
use crate::cache::BoundedCache;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{ChainVerifier, KeyPair, VerifiedChain};
use crate::policy::eval::{BaseContext, TaskFacts};
use crate::policy::Bundle;
use crate::state::{LedgerEntry, PendingApproval, Store, TaskState};
use crate::time::{Clock, SecureRandom};

/// Tasks whose last base context (see `CachedBaseContext`) is kept.
pub(crate) const BASE_CONTEXT_CACHE_CAPACITY: usize = 4096;
/// How many tasks' last-read state the engine keeps to decide on (stores whose versions cover
/// it, `Store::versions_cover_decision_state`).
pub(crate) const TASK_VIEW_CACHE_CAPACITY: usize = 4096;

/// How often a decision is re-evaluated when concurrent calls in its task keep committing first.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// Called with every new pending approval (to page a human, post to Slack, ...).
pub type ApprovalNotifier = Arc<dyn Fn(&PendingApproval) + Send + Sync>;

/// The default audience credentials must name.
pub const DEFAULT_AUDIENCE: &str = "aegis";

/// Decides, before each tool call runs, whether it may. Safe to share between threads.
pub struct Engine {
    pub(crate) bundle: ArcSwap<Bundle>,
    pub(crate) verifier: ChainVerifier,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn SecureRandom>,
    pub(crate) leeway_secs: i64,
    /// The store, behind a breaker: a store that fails slowly is not waited on by every
    /// decision (`state::Breaker`).
    pub(crate) store: Arc<dyn Store>,
    /// The same breaker, for asking whether it is open (`record`).
    pub(crate) store_breaker: Arc<crate::state::Breaker>,
    /// Whether the audit log is kept in the store itself (records written in each commit's
    /// transaction), decided on the store as built, before the breaker wraps it.
    pub(crate) audit_in_store: bool,
    pub(crate) approval_key: KeyPair,
    pub(crate) override_ttl_secs: i64,
    pub(crate) max_break_glass_secs: i64,
    pub(crate) notifier: Option<ApprovalNotifier>,
    pub(crate) id_prefix: String,
    pub(crate) id_counter: AtomicU64,
    pub(crate) base_contexts: BoundedCache<String, CachedBaseContext>,
    /// The state of each task as last read or committed here, decided on without a read when
    /// the store's versions cover it (`None` otherwise): the commit refuses a stale one.
    pub(crate) task_views: Option<BoundedCache<String, crate::state::DecisionState>>,
    /// The entities of a principal without roles: none, built once.
    pub(crate) no_entities: cedar_policy::Entities,
    /// Where every decision and change is recorded; `None`: nowhere.
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// Where spans and metrics go; `None`: nowhere.
    #[cfg(feature = "otel")]
    pub(crate) telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    /// The control plane: mode, bundle history, candidate, who may change them.
    pub(crate) control: control::ControlState,
    /// Attests the people who answer approvals in chat platforms; `None`: no channels.
    pub(crate) channel_issuer: Option<crate::approval::ChannelIssuer>,
    /// Signs a receipt for every permitting decision; `None`: no receipts.
    pub(crate) receipts: Option<crate::receipt::ReceiptSigner>,
}

/// The call-independent part of the context last built for a task: most calls in a task come
/// from the same verified chain and find the duties unchanged, so only `now`, `args` and
/// `predicates` are new.
pub(crate) struct CachedBaseContext {
    /// The chain it was built for; a newly verified chain with the same context values (the
    /// same agents, task and intent) reuses it.
    chain: Arc<VerifiedChain>,
    duties: BTreeSet<(String, String)>,
    break_glass: bool,
    base: BaseContext,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("policy_version", &self.policy_version()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// A unique decision id: a random per-engine prefix and a counter. Decision ids identify,
    /// they do not authorize, so they need uniqueness, not a system call per decision.
    pub(crate) fn next_decision_id(&self) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(4 + self.id_prefix.len() + 16);
        id.push_str("dec_");
        id.push_str(&self.id_prefix);
        push_hex(&mut id, n);
        id
    }

    /// The context attributes that do not depend on the call's arguments or time, reused while
    /// the task's duties, the caller and break-glass are unchanged.
    pub(crate) fn base_context(&self, state: &TaskState, chain: &Arc<VerifiedChain>, break_glass: bool) -> BaseContext {
        let hit = self.base_contexts.read(&chain.task_id, |hit| {
            let same_chain = Arc::ptr_eq(&hit.chain, chain) || hit.chain.context == chain.context;
            (same_chain && hit.break_glass == break_glass && hit.duties == state.duties).then(|| hit.base.clone())
        });
        if let Some(base) = hit {
            return base;
        }
        let base = BaseContext::new(chain, TaskFacts { duties: &state.duties }, break_glass);
        let entry = CachedBaseContext { chain: Arc::clone(chain), duties: state.duties.clone(), break_glass, base: base.clone() };
        self.base_contexts.insert(chain.task_id.clone(), entry, |_| false);
        base
    }

    /// The version of the bundle in force.
    pub fn policy_version(&self) -> String {
        self.bundle.load().policy_version().to_owned()
    }

    /// The bundle in force.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.bundle.load_full()
    }

    /// Puts `bundle` in force atomically; calls in flight finish on the old one. The swap is
    /// recorded first: when the audit log fails, the old bundle stays in force. The old bundle
    /// is kept in the history [`Engine::admin`] rolls back to. An engine that requires signed
    /// bundles refuses an unsigned one; one that requires two administrators refuses the
    /// direct call (`admin_approval_required`).
    pub fn swap_bundle(&self, bundle: Bundle) -> Result<()> {
        self.control.direct_change_allowed("swapping the bundle")?;
        self.put_in_force(Arc::new(bundle), kind::BUNDLE_LOADED)
    }

    /// Loads a bundle directory (checking its signature when the engine requires signed
    /// bundles) and swaps it in; on any error the old bundle stays in force.
    pub fn reload_bundle(&self, dir: impl AsRef<Path>) -> Result<String> {
        self.control.direct_change_allowed("reloading the bundle")?;
        let bundle = self.control.load_bundle(dir.as_ref())?;
        let version = bundle.policy_version().to_owned();
        self.put_in_force(Arc::new(bundle), kind::BUNDLE_LOADED)?;
        Ok(version)
    }

    /// The audit log, when the engine keeps one.
    pub fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// Appends the event `event` builds to the audit log (durably), when there is one, and
    /// makes its span and metrics when the engine has telemetry.
    pub(crate) fn record(&self, event: impl FnOnce() -> Event) -> Result<()> {
        if !self.observed() {
            return match &self.audit {
                Some(log) => self.append(log, event()).map(drop),
                None => Ok(()),
            };
        }
        let event = event();
        let appended = match &self.audit {
            Some(log) => self.append(log, event.clone()).map(drop),
            None => Ok(()),
        };
        if appended.is_ok() {
            self.observe(&event, None, None);
        }
        appended
    }

    /// Appends `event` to `log` (the engine's), unless the log is kept in the store and the
    /// store's breaker is cooling down: the database failed slowly a moment ago (a lock another
    /// process holds), and the append would wait as long. After the cool-down the append goes to
    /// the database (the log's own breaker lets one probe through). The append's own breaker cannot stand in:
    /// a decision's store step and its record each wait the busy timeout, longer than either
    /// breaker's cool-down, so two breakers would let every decision probe both.
    pub(crate) fn append(&self, log: &AuditLog, event: Event) -> Result<u64> {
        if self.audit_in_store && self.store_breaker.cooling_down() {
            return Err(Error::new(
                ErrorCode::AuditUnavailable,
                "the audit log's database failed slowly a moment ago, and is not asked again until its cool-down ends",
            ));
        }
        log.append(event)
    }

    /// Whether events are traced (the engine has telemetry).
    pub(crate) fn observed(&self) -> bool {
        #[cfg(feature = "otel")]
        return self.telemetry.is_some();
        #[cfg(not(feature = "otel"))]
        false
    }

    /// Makes the span and metrics of `event`, when the engine has telemetry.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn observe(&self, event: &Event, started: Option<std::time::SystemTime>, traceparent: Option<&str>) {
        #[cfg(feature = "otel")]
        if let Some(telemetry) = &self.telemetry {
            telemetry.observe(event, started, traceparent);
        }
    }

    /// Exports the spans and metrics recorded so far now (nothing without telemetry).
    pub fn flush_telemetry(&self) -> Result<()> {
        #[cfg(feature = "otel")]
        if let Some(telemetry) = &self.telemetry {
            return telemetry.flush();
        }
        Ok(())
    }

    /// The engine's clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Replaces the JWK Set of an external issuer (the refresh hook for hosts that fetch it).
    pub fn update_jwks(&self, issuer: &str, jwks_json: &str) -> Result<()> {
        self.control.direct_change_allowed("replacing an issuer's keys")?;
        self.replace_jwks(issuer, jwks_json)
    }

    /// Recorded first, as a bundle swap is: keys whose change cannot be recorded stay as they
    /// were.
    pub(crate) fn replace_jwks(&self, issuer: &str, jwks_json: &str) -> Result<()> {
        self.verifier.update_jwks(issuer, jwks_json, || {
            self.record(|| {
                Event::new(kind::ADMIN, self.clock.now_millis())
                    .with("action", "update_jwks")
                    .with("issuer", issuer)
                    .with("jwks_digest", crate::identity::digest(jwks_json))
            })
        })
    }

    /// Verifies a credential chain (root first) now.
    pub fn verify_chain(&self, chain: &[String]) -> Result<Arc<VerifiedChain>> {
        self.verifier.verify(chain, self.clock.now_secs())
    }

    /// The task's ledger: every allowed call and approval, oldest first.
    pub fn ledger(&self, task_id: &str) -> Result<Vec<LedgerEntry>> {
        self.store.ledger(task_id)
    }

    /// Ends a task: every credential of the task is refused from now on.
    pub fn end_task(&self, task_id: &str) -> Result<()> {
        if task_id == control::CONTROL_TASK {
            return Err(Error::malformed_request(format!("`{task_id}` is the control plane's own ledger, not a task")));
        }
        self.forget_view(task_id);
        self.store.end_task(task_id, self.clock.now_secs())?;
        self.record(|| Event::new(kind::TASK_ENDED, self.clock.now_millis()).with("task_id", task_id))
    }
}

/// Appends `n` in lowercase hex, as `{:x}` would: by hand, because the formatting machinery
/// costs more than the rest of a decision id.
fn push_hex(out: &mut String, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev().map(|d| d * 4) {
        out.push(char::from(b"0123456789abcdef"[((n >> shift) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_id_counters_are_lowercase_hex() {
        for n in [0, 1, 9, 10, 15, 16, 255, 256, 0xdead_beef, u64::MAX >> 4, u64::MAX] {
            let mut out = String::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}"));
        }
    }
}
