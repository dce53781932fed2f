//! The control plane: what is enforced (the bundle, its history, a candidate beside it, the
//! mode) and who may change it. A change to what is enforced is itself segregated: it needs
//! a request signed by one administrator and countersigned by a second, distinct one, and is
//! recorded. No single identity can switch Aegis to log-only.
//!
//! An administrator is a root identity (never a delegate) holding `aegis.admin` by its exact
//! name (wildcards never cover `aegis.*`). Each administrator signs the action with the key
//! its credential binds: a proof of possession (the per-call JWS) over the action as the
//! call's arguments, with a `jti` accepted once, globally.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::Engine;
use crate::audit::{bundle_loaded_event, kind, Event};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::proof::{call_digest, verify as verify_proof};
use crate::identity::{create_proof, KeyPair, PublicKey, VerifiedChain};
use crate::policy::Bundle;
use crate::state::{Commit, CommitOutcome, LedgerEntry};

/// The action administrators hold, by this exact name.
pub const ADMIN_SCOPE: &str = "aegis.admin";
/// The task the control plane's own ledger lives in.
pub(crate) const CONTROL_TASK: &str = "aegis:control-plane";
/// Bundles kept for rollback.
const HISTORY: usize = 16;

/// Whether decisions are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decisions are enforced (the default).
    Enforce,
    /// Log-only: a call the policies refuse is allowed and marked `would_block` (reason
    /// `shadow_mode`). Failed identities, proofs, tokens and state still deny.
    Shadow,
}

/// A change to what is enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminAction {
    /// Switch between enforcing and log-only.
    SetMode {
        /// The new mode.
        mode: Mode,
    },
    /// Load a bundle directory and put it in force.
    LoadBundle {
        /// The bundle directory.
        bundle_dir: String,
        /// The SHA-256 of the bundle the administrators reviewed ([`Bundle::digest`]): what
        /// they sign is the content, not a path whose files could change before it loads.
        digest: String,
    },
    /// Put the previous bundle back in force.
    Rollback,
    /// Evaluate a bundle beside the enforced one on live traffic (shadow rollout).
    SetCandidate {
        /// The candidate bundle directory.
        bundle_dir: String,
        /// The SHA-256 of the candidate the administrators reviewed.
        digest: String,
    },
    /// Put the candidate in force.
    PromoteCandidate,
    /// Stop evaluating the candidate.
    ClearCandidate,
    /// Replace an external issuer's JWK Set.
    UpdateJwks {
        /// The issuer.
        issuer: String,
        /// Its new JWK Set.
        jwks: Json,
    },
    /// Close a break-glass grant with its review reference.
    CloseBreakGlass {
        /// The grant.
        grant_id: String,
        /// The post-incident review.
        review_ref: String,
    },
}

impl AdminAction {
    /// The action's name (`set_mode`, `rollback`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::SetMode { .. } => "set_mode",
            Self::LoadBundle { .. } => "load_bundle",
            Self::Rollback => "rollback",
            Self::SetCandidate { .. } => "set_candidate",
            Self::PromoteCandidate => "promote_candidate",
            Self::ClearCandidate => "clear_candidate",
            Self::UpdateJwks { .. } => "update_jwks",
            Self::CloseBreakGlass { .. } => "close_break_glass",
        }
    }

    /// The action as JSON.
    pub fn to_json(&self) -> Result<Json> {
        serde_json::to_value(self).map_err(|e| Error::internal(format!("cannot encode an admin action: {e}")))
    }

    /// What both administrators sign: the action and the bundle version in force when they
    /// asked, so a signature neither outlives the state it was given for nor applies to an
    /// engine running another bundle.
    pub fn signed_payload(&self, policy_version: &str) -> Result<Json> {
        Ok(serde_json::json!({"action": self.to_json()?, "policy_version": policy_version}))
    }
}

/// One administrator's part of a request: who (a credential chain) and a signature over the
/// action by the key it binds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSignature {
    /// The administrator's credential chain: one root credential.
    pub chain: Vec<String>,
    /// A proof of possession over the action (see [`admin_proof`]).
    pub proof: String,
}

/// A change asked by one administrator and approved by a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    /// What to change.
    pub action: AdminAction,
    /// The bundle version in force when the administrators signed: the request is refused once
    /// another is in force.
    pub policy_version: String,
    /// The administrator asking.
    pub requested_by: AdminSignature,
    /// The second administrator.
    pub approved_by: AdminSignature,
}

/// What an accepted administrative change left in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOutcome {
    /// The action taken.
    pub action: String,
    /// The bundle in force now.
    pub policy_version: String,
    /// The mode now.
    pub mode: Mode,
    /// The candidate evaluated beside it, if any.
    pub candidate_version: Option<String>,
    /// Who asked.
    pub requested_by: String,
    /// Who approved.
    pub approved_by: String,
}

/// An administrator's signature over `action` on an engine with `policy_version` in force: a
/// proof of possession by `key` (the key the administrator's credential binds) over
/// [`AdminAction::signed_payload`], valid for `ttl_secs` from `issued_at`, single use by `jti`.
pub fn admin_proof(
    key: &KeyPair,
    action: &AdminAction,
    policy_version: &str,
    jti: &str,
    issued_at: i64,
    ttl_secs: i64,
) -> Result<String> {
    create_proof(key, ADMIN_SCOPE, &action.signed_payload(policy_version)?, jti, issued_at, ttl_secs)
}

/// The engine's control-plane state.
pub(crate) struct ControlState {
    mode: AtomicU8,
    /// Bundles that were in force, oldest first.
    history: Mutex<Vec<Arc<Bundle>>>,
    candidate: ArcSwapOption<Bundle>,
    bundle_keys: Option<Vec<PublicKey>>,
    two_admins: bool,
}

impl ControlState {
    pub(crate) fn new(bundle_keys: Option<Vec<PublicKey>>, two_admins: bool) -> Self {
        Self {
            mode: AtomicU8::new(0),
            history: Mutex::new(Vec::new()),
            candidate: ArcSwapOption::empty(),
            bundle_keys,
            two_admins,
        }
    }

    /// Refuses a direct change when the engine takes changes only from two administrators.
    pub(crate) fn direct_change_allowed(&self, what: &str) -> Result<()> {
        match self.two_admins {
            true => Err(Error::new(
                ErrorCode::AdminApprovalRequired,
                format!("{what} needs a request signed by two administrators (`admin`)"),
            )),
            false => Ok(()),
        }
    }

    /// Loads a bundle directory, checking its signature when the engine requires signed
    /// bundles.
    pub(crate) fn load_bundle(&self, dir: &Path) -> Result<Bundle> {
        match &self.bundle_keys {
            Some(keys) => Bundle::from_dir_signed(dir, keys),
            None => Bundle::from_dir(dir),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Enforce,
            _ => Mode::Shadow,
        }
    }

    pub(crate) fn candidate(&self) -> Option<Arc<Bundle>> {
        self.candidate.load_full()
    }
}

/// Refuses a bundle no trusted key signed.
pub(crate) fn check_signed(bundle: &Bundle, keys: &[PublicKey]) -> Result<()> {
    match bundle.signed_by() {
        Some(kid) if keys.iter().any(|k| k.kid() == kid) => Ok(()),
        Some(kid) => Err(Error::new(
            ErrorCode::BundleSignatureInvalid,
            format!("the bundle is signed by `{kid}`, a key not trusted for bundles"),
        )),
        None => Err(Error::new(
            ErrorCode::BundleSignatureInvalid,
            format!("bundle `{}` is not signed; this engine puts only signed bundles in force", bundle.policy_version()),
        )),
    }
}

fn unauthorized(why: impl Into<String>) -> Error {
    Error::new(ErrorCode::AdminUnauthorized, why)
}

impl Engine {
    /// Whether decisions are enforced or only logged.
    pub fn mode(&self) -> Mode {
        self.control.mode()
    }

    /// The candidate bundle evaluated beside the enforced one, if any.
    pub fn candidate_version(&self) -> Option<String> {
        self.control.candidate().map(|b| b.policy_version().to_owned())
    }

    /// The versions of the bundles a rollback can return to, oldest first.
    pub fn bundle_history(&self) -> Vec<String> {
        self.control
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|b| b.policy_version().to_owned())
            .collect()
    }

    /// Puts `bundle` in force, recorded first, the old one kept for rollback.
    pub(crate) fn put_in_force(&self, bundle: Arc<Bundle>, change: &str) -> Result<()> {
        if let Some(keys) = &self.control.bundle_keys {
            check_signed(&bundle, keys)?;
        }
        // One change at a time: the history and the bundle in force move together.
        let mut history = self.control.history.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.bundle.load_full();
        self.record(|| {
            bundle_loaded_event(&bundle, Some(previous.policy_version()), self.clock.now_millis()).with("change", change)
        })?;
        self.bundle.store(bundle);
        history.push(previous);
        if history.len() > HISTORY {
            history.remove(0);
        }
        Ok(())
    }

    /// Applies a change to what is enforced, asked by one administrator and approved by a
    /// second: both are root identities holding `aegis.admin`, distinct in id and key, each
    /// signing the action and the bundle version in force; both signatures are accepted once.
    /// Everything the change needs is checked first; then it is recorded and takes effect
    /// (a log that fails leaves everything as it was).
    pub fn admin(&self, request: &AdminRequest) -> Result<AdminOutcome> {
        let now = self.clock.now_secs();
        let current = self.policy_version();
        if request.policy_version != current {
            return Err(unauthorized(format!(
                "the request was signed for `{}`, and `{current}` is in force",
                request.policy_version
            )));
        }
        let action = request.action.to_json()?;
        let digest = call_digest(ADMIN_SCOPE, &request.action.signed_payload(&current)?)?;
        let (asker, asker_jti) = self.verify_admin(&request.requested_by, &digest, now, "the requester")?;
        let (second, second_jti) = self.verify_admin(&request.approved_by, &digest, now, "the approver")?;
        if asker.agent_id == second.agent_id || asker.root_kid == second.root_kid {
            return Err(Error::new(
                ErrorCode::AdminConflict,
                format!("`{}` cannot approve its own change: a second administrator must", second.agent_id),
            ));
        }
        self.consume_admin_signatures(&asker, vec![asker_jti, second_jti], now)?;
        let event = || {
            Event::new(kind::ADMIN, self.clock.now_millis())
                .with("action", request.action.name())
                .with("params", action.clone())
                .with("requested_by", asker.agent_id.as_str())
                .with("approved_by", second.agent_id.as_str())
                .with("policy_version", current.as_str())
        };
        self.apply(&request.action, event)?;
        Ok(AdminOutcome {
            action: request.action.name().to_owned(),
            policy_version: self.policy_version(),
            mode: self.mode(),
            candidate_version: self.candidate_version(),
            requested_by: asker.agent_id.clone(),
            approved_by: second.agent_id.clone(),
        })
    }

    /// Loads the bundle an action names and checks it is the one the administrators signed.
    fn load_signed_off(&self, dir: &str, digest: &str) -> Result<Arc<Bundle>> {
        let bundle = self.control.load_bundle(Path::new(dir))?;
        if bundle.digest() != digest {
            return Err(Error::new(
                ErrorCode::InvalidBundle,
                format!("the bundle in `{dir}` ({}) is not the one the administrators signed off", bundle.policy_version()),
            ));
        }
        Ok(Arc::new(bundle))
    }

    /// Checks what `action` needs, records `event`, then makes the change.
    fn apply(&self, action: &AdminAction, event: impl FnOnce() -> Event) -> Result<()> {
        match action {
            AdminAction::SetMode { mode } => {
                self.record(event)?;
                self.control.mode.store(u8::from(*mode == Mode::Shadow), Ordering::SeqCst);
                Ok(())
            }
            AdminAction::LoadBundle { bundle_dir, digest } => {
                // Loading checked the signature when the engine requires one.
                let bundle = self.load_signed_off(bundle_dir, digest)?;
                self.record(event)?;
                self.put_in_force(bundle, kind::BUNDLE_LOADED)
            }
            AdminAction::Rollback => {
                let mut history = self.control.history.lock().unwrap_or_else(PoisonError::into_inner);
                let previous = history
                    .last()
                    .cloned()
                    .ok_or_else(|| Error::new(ErrorCode::NoPreviousBundle, "no earlier bundle to roll back to"))?;
                let current = self.bundle.load_full();
                self.record(event)?;
                self.record(|| {
                    bundle_loaded_event(&previous, Some(current.policy_version()), self.clock.now_millis())
                        .with("change", "rollback")
                })?;
                history.pop();
                self.bundle.store(previous);
                Ok(())
            }
            AdminAction::SetCandidate { bundle_dir, digest } => {
                let bundle = self.load_signed_off(bundle_dir, digest)?;
                self.record(event)?;
                self.control.candidate.store(Some(bundle));
                Ok(())
            }
            AdminAction::PromoteCandidate => {
                let candidate = self
                    .control
                    .candidate()
                    .ok_or_else(|| Error::malformed_request("there is no candidate bundle to promote"))?;
                self.record(event)?;
                self.put_in_force(Arc::clone(&candidate), "promote_candidate")?;
                // Cleared only if it is still the one promoted.
                self.control.candidate.compare_and_swap(&Some(candidate), None);
                Ok(())
            }
            AdminAction::ClearCandidate => {
                self.record(event)?;
                self.control.candidate.store(None);
                Ok(())
            }
            // These record their own change; the administrators' record follows it.
            AdminAction::UpdateJwks { issuer, jwks } => {
                self.replace_jwks(issuer, &jwks.to_string())?;
                self.record(event)
            }
            AdminAction::CloseBreakGlass { grant_id, review_ref } => {
                self.close_grant(grant_id, review_ref)?;
                self.record(event)
            }
        }
    }

    /// What the candidate bundle would decide on `call` in `state` (nothing is committed).
    pub(crate) fn candidate_verdict(
        &self,
        candidate: &Bundle,
        call: &super::VerifiedCall<'_>,
        state: &crate::state::DecisionState,
        now: i64,
        enforced_permits: bool,
    ) -> super::CandidateVerdict {
        let mut scratch = super::undecided(String::new(), candidate);
        let decided = match candidate.tool(&call.request.tool) {
            Some(tool) => {
                let mut shadow_call = super::VerifiedCall::new(call.request, Arc::clone(&call.chain), Arc::clone(tool));
                shadow_call.approval = call.approval.clone();
                self.evaluate(candidate, &mut shadow_call, state, now, &mut scratch).map(drop)
            }
            None => Err(Error::new(ErrorCode::UnknownTool, format!("the candidate has no tool `{}`", call.request.tool))),
        };
        let scratch = match decided {
            Ok(()) => scratch,
            Err(e) => super::verdict::deny(scratch, e),
        };
        let mut policy_ids: Vec<String> = scratch.reasons.iter().filter_map(|r| r.policy_id.clone()).collect();
        policy_ids.dedup();
        super::CandidateVerdict {
            policy_version: candidate.policy_version().to_owned(),
            would_block: enforced_permits && !scratch.outcome.permits_call(),
            outcome: scratch.outcome,
            policy_ids,
        }
    }

    /// Verifies one administrator: the chain, that it is a root holding `aegis.admin`, not
    /// revoked, and that its signature binds this action.
    fn verify_admin(
        &self,
        signature: &AdminSignature,
        digest: &str,
        now: i64,
        who: &str,
    ) -> Result<(Arc<VerifiedChain>, (String, i64))> {
        let chain = self.verifier.verify(&signature.chain, now).map_err(|e| unauthorized(format!("{who}: {}", e.message())))?;
        if !chain.is_root() {
            return Err(unauthorized(format!("{who} `{}` is a delegate; administrators are root identities", chain.agent_id)));
        }
        if !chain.grants(ADMIN_SCOPE) {
            return Err(unauthorized(format!("{who} `{}` holds no `{ADMIN_SCOPE}`", chain.agent_id)));
        }
        if self.store.task_state(&chain.task_id)?.ended {
            return Err(unauthorized(format!("{who} `{}`: its credentials were revoked (task ended)", chain.agent_id)));
        }
        let key = chain
            .leaf_key
            .clone()
            .ok_or_else(|| unauthorized(format!("{who} `{}` holds no key to sign with", chain.agent_id)))?;
        let used = verify_proof(&signature.proof, &key, digest, now, self.leeway_secs).map_err(|e| {
            unauthorized(format!("{who} `{}`: the signature does not bind this change: {}", chain.agent_id, e.message()))
        })?;
        Ok((chain, used))
    }

    /// Accepts both signatures once, globally (the store's single-use ids), and records the
    /// change in the control plane's ledger.
    fn consume_admin_signatures(&self, asker: &VerifiedChain, consume: Vec<(String, i64)>, now: i64) -> Result<()> {
        for _ in 0..super::MAX_ATTEMPTS {
            let state = self.store.task_state(CONTROL_TASK)?;
            let commit = Commit {
                task_id: CONTROL_TASK.to_owned(),
                expected_version: state.version,
                consume: consume.clone(),
                entry: LedgerEntry {
                    tool: ADMIN_SCOPE.to_owned(),
                    agent_id: asker.agent_id.clone(),
                    lineage: Vec::new(),
                    decision_id: String::new(),
                    at: now,
                    key: asker.root_kid.clone(),
                },
                reservations: Vec::new(),
                now,
                revision: None,
            };
            match self.store.commit(commit)? {
                CommitOutcome::Committed => return Ok(()),
                CommitOutcome::Conflict => continue,
                CommitOutcome::AlreadyUsed(_) => return Err(unauthorized("an administrator's signature was already used")),
                other => return Err(Error::internal(format!("the control plane's ledger refused the change: {other:?}"))),
            }
        }
        Err(Error::new(ErrorCode::Contention, "the control plane kept changing"))
    }
}
