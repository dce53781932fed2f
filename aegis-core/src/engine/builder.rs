//! Configuring an [`Engine`].

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{ApprovalNotifier, Engine, BASE_CONTEXT_CACHE_CAPACITY, DEFAULT_AUDIENCE, TASK_VIEW_CACHE_CAPACITY};
use crate::audit::{bundle_loaded_event, AuditLog};
use crate::cache::BoundedCache;
use crate::error::{Error, Result};
use crate::identity::{ChainPolicy, ChainVerifier, ExternalIssuer, KeyPair, PublicKey, TrustedIssuer};
use crate::policy::Bundle;
use crate::state::{Breaker, MemoryStore, Store};
use crate::time::{random_id, Clock, OsRandom, SecureRandom, SystemClock};

/// Builds an [`Engine`].
pub struct EngineBuilder {
    bundle: Option<Bundle>,
    issuers: Vec<TrustedIssuer>,
    external: Vec<ExternalIssuer>,
    audience: String,
    leeway_secs: i64,
    max_depth: usize,
    max_lifetime_secs: i64,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    store: Option<Arc<dyn Store>>,
    approval_key: Option<KeyPair>,
    override_ttl_secs: i64,
    max_break_glass_secs: i64,
    notifier: Option<ApprovalNotifier>,
    audit: Option<Arc<AuditLog>>,
    #[cfg(feature = "otel")]
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    bundle_keys: Option<Vec<PublicKey>>,
    two_admins: bool,
    channel_issuer: Option<crate::approval::ChannelIssuer>,
    receipts: Option<crate::receipt::ReceiptSigner>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            bundle: None,
            issuers: Vec::new(),
            external: Vec::new(),
            audience: DEFAULT_AUDIENCE.into(),
            leeway_secs: 30,
            max_depth: 4,
            max_lifetime_secs: 24 * 3600,
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            store: None,
            approval_key: None,
            override_ttl_secs: 300,
            max_break_glass_secs: 4 * 3600,
            notifier: None,
            audit: None,
            #[cfg(feature = "otel")]
            telemetry: None,
            bundle_keys: None,
            two_admins: false,
            channel_issuer: None,
            receipts: None,
        }
    }
}

impl EngineBuilder {
    /// The policy bundle (required).
    pub fn bundle(mut self, bundle: Bundle) -> Self {
        self.bundle = Some(bundle);
        self
    }

    /// Trusts `key` to issue root credentials that name `issuer` in `iss`.
    pub fn trust_issuer(mut self, issuer: impl Into<String>, key: PublicKey) -> Self {
        self.issuers.push(TrustedIssuer { name: issuer.into(), key });
        self
    }

    /// Trusts an issuer of external identities (OIDC ID tokens, SPIFFE JWT-SVIDs): one-link
    /// chains whose id, roles and scope the issuer's JWKS-verified token attests.
    pub fn trust_external_issuer(mut self, issuer: ExternalIssuer) -> Self {
        self.external.push(issuer);
        self
    }

    /// The audience credentials must name (default `aegis`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock skew tolerated on `nbf`/`iat`/`exp`, in seconds (default 30, at most 300).
    pub fn leeway_secs(mut self, secs: i64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// The longest delegation chain below the root (default 4).
    pub fn max_delegation_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// The longest lifetime any credential may have, in seconds (default 24 h).
    pub fn max_credential_lifetime_secs(mut self, secs: i64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The randomness for ids (default: the operating system's).
    pub fn random(mut self, random: Arc<dyn SecureRandom>) -> Self {
        self.random = random;
        self
    }

    /// Where state lives (default: a fresh [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The key that signs override tokens. Engines that share a store must share it (default:
    /// a fresh key, valid for this engine only).
    pub fn approval_key(mut self, key: KeyPair) -> Self {
        self.approval_key = Some(key);
        self
    }

    /// How long an override token is valid, in seconds (default 300).
    pub fn override_ttl_secs(mut self, secs: i64) -> Self {
        self.override_ttl_secs = secs;
        self
    }

    /// The longest break-glass grant, in seconds (default 4 h).
    pub fn max_break_glass_secs(mut self, secs: i64) -> Self {
        self.max_break_glass_secs = secs;
        self
    }

    /// Called with every new pending approval.
    pub fn notifier(mut self, notifier: ApprovalNotifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Sends a span and metrics for every decision and event to `telemetry` (feature `otel`).
    #[cfg(feature = "otel")]
    pub fn telemetry(mut self, telemetry: Arc<crate::telemetry::Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Records every decision, approval, break-glass grant, task end and bundle change in
    /// `log`; an allow is returned only once its record is durable. A log kept in an SQLite
    /// store ([`AuditLog::in_store`]) is also the engine's store unless another one is set;
    /// on the same store, each allowed call's record is written in its commit's transaction.
    pub fn audit_log(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Puts in force only bundles signed by one of `keys` ([`Bundle::from_dir_signed`],
    /// `aegis bundle sign`): at build, on every swap and reload.
    pub fn require_signed_bundles(mut self, keys: Vec<PublicKey>) -> Self {
        self.bundle_keys = Some(keys);
        self
    }

    /// Changes to what is enforced (swapping or reloading the bundle, replacing an external
    /// issuer's keys, closing break-glass) are taken only as requests signed by two
    /// administrators ([`Engine::admin`]); the direct methods refuse with
    /// `admin_approval_required`. Switching the mode, rolling back and promoting a candidate
    /// always need two.
    pub fn require_two_admins(mut self) -> Self {
        self.two_admins = true;
        self
    }

    /// Lets people answer approvals in chat platforms (Slack, Teams): once the platform's
    /// signature verifies, [`Engine::resolve_from_channel`] attests the clicking account as
    /// its roster identity (the bundle's `roster`) with a short-lived root credential of
    /// issuer `issuer`, signed by `key`, which this engine trusts; the approval then runs
    /// through every check an approver's does.
    pub fn approval_channels(mut self, issuer: impl Into<String>, key: KeyPair) -> Self {
        let issuer = issuer.into();
        self.issuers.push(TrustedIssuer { name: issuer.clone(), key: key.public_key().clone() });
        self.channel_issuer = Some(crate::approval::ChannelIssuer { issuer, key });
        self
    }

    /// Signs a receipt (issuer `issuer`, audience `audience`, valid `ttl_secs`) for every
    /// permitting decision, with `key`; tools verify it offline against
    /// [`Engine::receipt_jwks`] with [`crate::verify_receipt`].
    pub fn receipts(mut self, issuer: impl Into<String>, audience: impl Into<String>, key: KeyPair, ttl_secs: i64) -> Self {
        self.receipts = Some(crate::receipt::ReceiptSigner {
            issuer: issuer.into(),
            audience: audience.into(),
            key,
            ttl_secs: ttl_secs.max(1),
        });
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Result<Engine> {
        let bundle = self.bundle.ok_or_else(|| Error::malformed_request("an engine needs a policy bundle"))?;
        if let Some(keys) = &self.bundle_keys {
            super::control::check_signed(&bundle, keys)?;
        }
        if !(0..=300).contains(&self.leeway_secs) {
            return Err(Error::malformed_request("leeway must be between 0 and 300 seconds"));
        }
        for (n, external) in self.external.iter().enumerate() {
            let again = self.external[..n].iter().any(|e| e.issuer() == external.issuer());
            if again || self.issuers.iter().any(|i| i.name == external.issuer()) {
                return Err(Error::malformed_request(format!("issuer `{}` is configured twice", external.issuer())));
            }
        }
        if self.issuers.is_empty() && self.external.is_empty() {
            return Err(Error::malformed_request("an engine needs at least one trusted issuer"));
        }
        let policy = ChainPolicy {
            audience: self.audience,
            leeway_secs: self.leeway_secs,
            max_depth: self.max_depth,
            max_lifetime_secs: self.max_lifetime_secs,
        };
        let id_prefix = random_id(self.random.as_ref(), "")?;
        let approval_key = match self.approval_key {
            Some(k) => k,
            None => KeyPair::generate(self.random.as_ref())?,
        };
        let store = self
            .store
            .or_else(|| self.audit.as_ref().and_then(|log| log.store()))
            .unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let breaker = Arc::new(Breaker::new(Arc::clone(&store)));
        let engine = Engine {
            bundle: ArcSwap::from_pointee(bundle),
            verifier: ChainVerifier::new(self.issuers, self.external, policy),
            clock: self.clock,
            random: self.random,
            leeway_secs: self.leeway_secs,
            audit_in_store: self.audit.as_ref().is_some_and(|log| log.is_kept_by(&store)),
            task_views: store.versions_cover_decision_state().then(|| BoundedCache::new(TASK_VIEW_CACHE_CAPACITY)),
            store: Arc::clone(&breaker) as Arc<dyn Store>,
            store_breaker: breaker,
            approval_key,
            override_ttl_secs: self.override_ttl_secs,
            max_break_glass_secs: self.max_break_glass_secs,
            notifier: self.notifier,
            id_prefix,
            id_counter: AtomicU64::new(0),
            base_contexts: BoundedCache::new(BASE_CONTEXT_CACHE_CAPACITY),
            no_entities: cedar_policy::Entities::empty(),
            audit: self.audit,
            #[cfg(feature = "otel")]
            telemetry: self.telemetry,
            control: super::control::ControlState::new(self.bundle_keys, self.two_admins),
            channel_issuer: self.channel_issuer,
            receipts: self.receipts,
        };
        engine.record(|| bundle_loaded_event(&engine.bundle.load(), None, engine.clock.now_millis()))?;
        Ok(engine)
    }
}
