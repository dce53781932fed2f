//! Engine configuration as JSON: what every binding and the CLI build an engine from. Store
//! URLs and defaults are parsed here, once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::audit::{AuditLog, LogKey, SealKey};
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{ExternalIssuer, Jwk, KeyPair, PublicKey};
use crate::json::from_str_strict;
use crate::policy::{Bundle, BundleSources};
use crate::state::{MemoryStore, PendingApproval, Store};
use crate::time::{Clock, ManualClock, SystemClock};

/// A trusted issuer in an [`EngineConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` root credentials carry.
    pub issuer: String,
    /// The issuer's public key.
    pub jwk: Jwk,
}

/// An issuer of external identities in an [`EngineConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerConfig {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must hold.
    pub audience: String,
    /// Its JWK Set (RFC 7517).
    pub jwks: serde_json::Value,
    /// Allowed algorithms (default `RS256`, `ES256`, `EdDSA`).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// The claim holding the identity's roles (e.g. `groups`).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// What its identities may do (default `["aegis.approve"]`).
    #[serde(default)]
    pub scope: Option<Vec<String>>,
    /// The task its identities belong to, for revocation (default `external:<issuer>`).
    #[serde(default)]
    pub task: Option<String>,
}

impl ExternalIssuerConfig {
    /// The issuer this configures.
    pub fn build(&self) -> Result<ExternalIssuer> {
        let mut issuer = ExternalIssuer::new(&self.issuer, &self.audience, &self.jwks.to_string())?;
        if let Some(algorithms) = &self.algorithms {
            issuer = issuer.algorithms(&algorithms.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        if let Some(claim) = &self.roles_claim {
            issuer = issuer.roles_claim(claim);
        }
        if let Some(scope) = &self.scope {
            issuer = issuer.scope(scope.clone());
        }
        if let Some(task) = &self.task {
            issuer = issuer.task(task);
        }
        Ok(issuer)
    }
}

/// A bundle given inline, file by file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineBundle {
    /// `manifest.yaml` content.
    pub manifest: String,
    /// The Cedar schema.
    pub schema: String,
    /// Policy files by name.
    pub policies: std::collections::BTreeMap<String, String>,
}

/// Everything needed to build an [`Engine`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// A bundle directory (or give `bundle`).
    #[serde(default)]
    pub bundle_dir: Option<String>,
    /// An inline bundle (or give `bundle_dir`).
    #[serde(default)]
    pub bundle: Option<InlineBundle>,
    /// Issuers whose root credentials are trusted.
    #[serde(default)]
    pub trusted_issuers: Vec<IssuerConfig>,
    /// Issuers of external identities (OIDC ID tokens, SPIFFE JWT-SVIDs).
    #[serde(default)]
    pub external_issuers: Vec<ExternalIssuerConfig>,
    /// The audience credentials must name.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew tolerance in seconds.
    #[serde(default)]
    pub leeway_secs: Option<i64>,
    /// Maximum delegation depth below the root.
    #[serde(default)]
    pub max_delegation_depth: Option<usize>,
    /// Maximum credential lifetime in seconds.
    #[serde(default)]
    pub max_credential_lifetime_secs: Option<i64>,
    /// A fixed time (seconds since the epoch) instead of the system clock: for fixtures and
    /// tests only.
    #[serde(default)]
    pub fixed_time: Option<i64>,
    /// Where state lives (default: in memory): a URL (`memory`, `sqlite:PATH`,
    /// `redis://...`) or a [`StoreConfig`] object.
    #[serde(default)]
    pub store: Option<StoreSetting>,
    /// The private JWK that signs override tokens; engines sharing a store must share it.
    #[serde(default)]
    pub approval_key: Option<Jwk>,
    /// Override token lifetime in seconds.
    #[serde(default)]
    pub override_ttl_secs: Option<i64>,
    /// The longest break-glass grant, in seconds.
    #[serde(default)]
    pub max_break_glass_secs: Option<i64>,
    /// The audit log (default: none).
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// OpenTelemetry export (default: none; needs the `otel` feature).
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// Put in force only bundles signed by one of these keys (`bundle.sig`); the engine's
    /// `bundle_dir` is then checked too.
    #[serde(default)]
    pub bundle_keys: Option<Vec<Jwk>>,
    /// Take changes to what is enforced only as requests of two administrators (`admin`).
    #[serde(default)]
    pub require_two_admins: bool,
    /// Let people answer approvals in Slack and Teams as the bundle's roster identities
    /// (`Engine::resolve_from_channel`).
    #[serde(default)]
    pub approval_channels: Option<ApprovalChannelsConfig>,
    /// Sign a receipt for every permitting decision, for tools that check for themselves.
    #[serde(default)]
    pub receipts: Option<ReceiptsConfig>,
}

/// Decision receipts (`Engine::receipt_jwks`, `verify_receipt`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// The signing key (private JWK).
    pub key: Jwk,
    /// The issuer receipts name (default `aegis`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The audience receipts name: the tools that verify them (default `aegis-tools`).
    #[serde(default)]
    pub audience: Option<String>,
    /// How long a receipt is valid, in seconds (default 60).
    #[serde(default)]
    pub ttl_secs: Option<i64>,
}

/// The issuer that attests the people answering approvals in chat platforms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalChannelsConfig {
    /// The issuer's name (default `aegis-approval-channels`); it must differ from every
    /// trusted issuer's.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Its private JWK.
    pub key: Jwk,
}

/// Where the engine sends its OpenTelemetry spans and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL, e.g. `http://127.0.0.1:4318`.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute (default `aegis`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// How often metrics are exported, in milliseconds (default 60000).
    #[serde(default)]
    pub export_interval_ms: Option<u64>,
}

impl TelemetryConfig {
    /// The exporter this configures.
    #[cfg(feature = "otel")]
    pub fn build(&self) -> Result<crate::telemetry::Telemetry> {
        let mut config = crate::telemetry::OtlpConfig::new(&self.otlp_endpoint);
        if let Some(name) = &self.service_name {
            config.service_name = name.clone();
        }
        if let Some(ms) = self.export_interval_ms {
            config.export_interval = std::time::Duration::from_millis(ms.max(1));
        }
        crate::telemetry::Telemetry::otlp(&config)
    }
}

/// Where and how the engine records what it decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log's directory (created if absent); or set `in_store`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Keep the log in the engine's SQLite store (`store: "sqlite:PATH"`) instead of a
    /// directory: each allowed call's record is written in the transaction of its commit.
    #[serde(default)]
    pub in_store: bool,
    /// A file holding the log's signed-note private key (`PRIVATE+KEY+<name>+<id>+<key>`, as
    /// `aegis audit keygen` writes it). Keep it outside the log's directory.
    #[serde(default)]
    pub signing_key_file: Option<String>,
    /// The private key itself (prefer `signing_key_file`).
    #[serde(default)]
    pub signing_key: Option<String>,
    /// A directory every checkpoint is also written to as a new file.
    #[serde(default)]
    pub export_checkpoints_to: Option<String>,
    /// Sign a checkpoint after this many records (default 1000; 0: only when asked).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// A 32-byte key, hex, that seals each decision's raw arguments for replay (default: raw
    /// arguments are not kept).
    #[serde(default)]
    pub seal_key_hex: Option<String>,
}

impl AuditConfig {
    /// Opens the log in its directory (a log `in_store` is opened with its engine, by
    /// [`engine_from_config`]).
    pub fn open(&self) -> Result<AuditLog> {
        self.open_with(|_| Err(Error::malformed_request("`audit.in_store` is opened with the engine's SQLite store")))
    }

    /// Opens the log; `in_store` makes the builder of a log kept in the engine's store.
    fn open_with(&self, in_store: impl FnOnce(LogKey) -> Result<crate::audit::AuditLogBuilder>) -> Result<AuditLog> {
        let skey = match (&self.signing_key, &self.signing_key_file) {
            (Some(k), None) => Zeroizing::new(k.clone()),
            (None, Some(path)) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| Error::new(ErrorCode::InvalidKey, format!("cannot read `{path}`: {e}")))?,
            ),
            _ => return Err(Error::malformed_request("`audit` needs exactly one of `signing_key` and `signing_key_file`")),
        };
        let key = LogKey::from_signer_key(&skey)?;
        let mut builder = match (&self.dir, self.in_store) {
            (Some(dir), false) => AuditLog::builder(dir, key),
            (None, true) => in_store(key)?,
            _ => return Err(Error::malformed_request("`audit` needs exactly one of `dir` and `in_store`")),
        };
        if let Some(dir) = &self.export_checkpoints_to {
            builder = builder.export_checkpoints_to(dir);
        }
        if let Some(n) = self.checkpoint_every {
            builder = builder.checkpoint_every(n);
        }
        if let Some(hex_key) = &self.seal_key_hex {
            let key =
                Zeroizing::new(hex::decode(hex_key).map_err(|_| Error::new(ErrorCode::InvalidKey, "`seal_key_hex` is not hex"))?);
            builder = builder.seal_raw_args(SealKey::new(&key)?);
        }
        builder.open()
    }
}

/// A store, as a URL or as a [`StoreConfig`] object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoreSetting {
    /// `memory`, `sqlite:PATH`, `redis://...` or `redis+cluster://HOST:PORT,HOST:PORT`.
    Url(String),
    /// The object form, which can also set a Redis key prefix.
    Config(StoreConfig),
}

impl StoreSetting {
    /// The store's configuration.
    pub fn config(&self) -> Result<StoreConfig> {
        match self {
            Self::Url(url) => StoreConfig::from_url(url),
            Self::Config(c) => Ok(c.clone()),
        }
    }
}

/// Which store an engine uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// In memory, per engine.
    Memory,
    /// A SQLite file.
    Sqlite {
        /// The database file.
        path: String,
    },
    /// A Redis server.
    Redis {
        /// E.g. `redis://127.0.0.1:6379/0`.
        url: String,
        /// Key prefix (default `aegis`).
        #[serde(default)]
        prefix: Option<String>,
    },
    /// A Redis Cluster.
    RedisCluster {
        /// URLs of one or more of its nodes (e.g. `redis://10.0.0.1:6379`): the client learns
        /// the rest from them.
        nodes: Vec<String>,
        /// Key prefix (default `aegis`).
        #[serde(default)]
        prefix: Option<String>,
    },
}

impl StoreConfig {
    /// Parses a store URL: `memory`, `sqlite:PATH`, `redis://HOST:PORT/DB` (`rediss://` too),
    /// or `redis+cluster://HOST:PORT,HOST:PORT` (`rediss+cluster://`) for a Redis Cluster.
    pub fn from_url(url: &str) -> Result<Self> {
        if url == "memory" {
            Ok(Self::Memory)
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(Error::malformed_request("a sqlite store needs a path: `sqlite:PATH`"));
            }
            Ok(Self::Sqlite { path: path.to_owned() })
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Self::Redis { url: url.to_owned(), prefix: None })
        } else if let Some(nodes) = cluster_nodes(url) {
            Ok(Self::RedisCluster { nodes: nodes?, prefix: None })
        } else {
            Err(Error::malformed_request(format!(
                "store `{url}` is not `memory`, `sqlite:PATH`, `redis://...` or `redis+cluster://...`"
            )))
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite { .. } => "sqlite",
            Self::Redis { .. } => "redis",
            Self::RedisCluster { .. } => "redis_cluster",
        }
    }

    /// Opens the store.
    pub fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Self::Memory => Arc::new(MemoryStore::new()),
            #[cfg(feature = "sqlite")]
            Self::Sqlite { path } => Arc::new(crate::state::SqliteStore::open(path)?),
            #[cfg(feature = "redis")]
            Self::Redis { url, prefix } => {
                let prefix = prefix.as_deref().unwrap_or("aegis");
                match cluster_nodes(url) {
                    // The object form with a cluster URL: the bindings' `redis_prefix` builds it.
                    Some(nodes) => Arc::new(crate::state::RedisStore::open_cluster(&nodes?, prefix)?),
                    None => Arc::new(crate::state::RedisStore::open_with_prefix(url, prefix)?),
                }
            }
            #[cfg(feature = "redis")]
            Self::RedisCluster { nodes, prefix } => {
                Arc::new(crate::state::RedisStore::open_cluster(nodes, prefix.as_deref().unwrap_or("aegis"))?)
            }
            #[allow(unreachable_patterns)]
            other => return Err(Error::malformed_request(format!("store `{}` is not compiled in", other.kind()))),
        })
    }
}

/// The node URLs of a `redis+cluster://HOST:PORT,HOST:PORT` (`rediss+cluster://`) store URL;
/// `None` for any other URL.
fn cluster_nodes(url: &str) -> Option<Result<Vec<String>>> {
    let (scheme, nodes) = url
        .strip_prefix("redis+cluster://")
        .map(|n| ("redis", n))
        .or(url.strip_prefix("rediss+cluster://").map(|n| ("rediss", n)))?;
    let nodes: Vec<&str> = nodes.split(',').map(str::trim).collect();
    if nodes.iter().any(|n| n.is_empty()) {
        return Some(Err(Error::malformed_request(format!(
            "store `{url}` names an empty node: `redis+cluster://HOST:PORT,HOST:PORT`"
        ))));
    }
    Some(Ok(nodes.iter().map(|n| format!("{scheme}://{n}")).collect()))
}

/// Builds an engine from a JSON [`EngineConfig`].
pub fn engine_from_json(config: &str) -> Result<Engine> {
    let config: EngineConfig = from_str_strict(config)?;
    engine_from_config(config)
}

/// Builds an engine from an [`EngineConfig`].
pub fn engine_from_config(config: EngineConfig) -> Result<Engine> {
    engine_with_notifier(config, None)
}

/// Builds an engine from an [`EngineConfig`], calling `notifier` with every new pending
/// approval serialized as JSON (bindings wrap their language's callback in it).
pub fn engine_with_notifier(config: EngineConfig, notifier: Option<Arc<dyn Fn(String) + Send + Sync>>) -> Result<Engine> {
    let bundle_keys =
        config.bundle_keys.as_ref().map(|keys| keys.iter().map(PublicKey::from_jwk).collect::<Result<Vec<_>>>()).transpose()?;
    let bundle = match (&bundle_keys, config.bundle_dir.as_deref()) {
        (Some(keys), Some(dir)) => Bundle::from_dir_signed(dir, keys)?,
        _ => load_bundle(config.bundle_dir.as_deref(), config.bundle.as_ref())?,
    };
    let mut builder = Engine::builder().bundle(bundle);
    if let Some(keys) = bundle_keys {
        builder = builder.require_signed_bundles(keys);
    }
    if config.require_two_admins {
        builder = builder.require_two_admins();
    }
    for issuer in &config.trusted_issuers {
        builder = builder.trust_issuer(issuer.issuer.clone(), PublicKey::from_jwk(&issuer.jwk)?);
    }
    for issuer in &config.external_issuers {
        builder = builder.trust_external_issuer(issuer.build()?);
    }
    if let Some(r) = &config.receipts {
        builder = builder.receipts(
            r.issuer.clone().unwrap_or_else(|| "aegis".to_owned()),
            r.audience.clone().unwrap_or_else(|| "aegis-tools".to_owned()),
            KeyPair::from_jwk(&r.key)?,
            r.ttl_secs.unwrap_or(60),
        );
    }
    if let Some(channels) = &config.approval_channels {
        let name = channels.issuer.clone().unwrap_or_else(|| "aegis-approval-channels".to_owned());
        if config.trusted_issuers.iter().any(|i| i.issuer == name) {
            return Err(Error::malformed_request(format!("issuer `{name}` is configured twice")));
        }
        builder = builder.approval_channels(name, KeyPair::from_jwk(&channels.key)?);
    }
    if let Some(audience) = config.audience {
        builder = builder.audience(audience);
    }
    if let Some(leeway) = config.leeway_secs {
        builder = builder.leeway_secs(leeway);
    }
    if let Some(depth) = config.max_delegation_depth {
        builder = builder.max_delegation_depth(depth);
    }
    if let Some(lifetime) = config.max_credential_lifetime_secs {
        builder = builder.max_credential_lifetime_secs(lifetime);
    }
    // An SQLite store is kept typed: an audit log `in_store` lives in its database.
    #[cfg(feature = "sqlite")]
    let mut sqlite: Option<Arc<crate::state::SqliteStore>> = None;
    if let Some(store) = &config.store {
        let store = match store.config()? {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { path } => {
                let opened = Arc::new(crate::state::SqliteStore::open(path)?);
                sqlite = Some(Arc::clone(&opened));
                opened
            }
            other => other.open()?,
        };
        builder = builder.store(store);
    }
    if let Some(key) = &config.approval_key {
        builder = builder.approval_key(KeyPair::from_jwk(key)?);
    }
    if let Some(ttl) = config.override_ttl_secs {
        builder = builder.override_ttl_secs(ttl);
    }
    if let Some(secs) = config.max_break_glass_secs {
        builder = builder.max_break_glass_secs(secs);
    }
    if let Some(audit) = &config.audit {
        let log = audit.open_with(|key| {
            #[cfg(feature = "sqlite")]
            if let Some(store) = sqlite.take() {
                return Ok(AuditLog::in_store(store, key));
            }
            let _ = key;
            Err(Error::malformed_request("`audit.in_store` needs an SQLite store (`store: \"sqlite:PATH\"`)"))
        })?;
        builder = builder.audit_log(Arc::new(log));
    }
    if let Some(telemetry) = &config.telemetry {
        #[cfg(feature = "otel")]
        {
            builder = builder.telemetry(Arc::new(telemetry.build()?));
        }
        #[cfg(not(feature = "otel"))]
        return Err(Error::malformed_request(format!(
            "`telemetry` ({}) needs the `otel` feature, which this build lacks",
            telemetry.otlp_endpoint
        )));
    }
    if let Some(notify) = notifier {
        builder = builder.notifier(Arc::new(move |pending: &PendingApproval| {
            if let Ok(json) = serde_json::to_string(pending) {
                notify(json);
            }
        }));
    }
    let clock: Arc<dyn Clock> = match config.fixed_time {
        Some(t) => Arc::new(ManualClock::at_secs(t)),
        None => Arc::new(SystemClock),
    };
    builder.clock(clock).build()
}

/// Loads a bundle from a directory or from inline sources (exactly one of them).
pub fn load_bundle(dir: Option<&str>, inline: Option<&InlineBundle>) -> Result<Bundle> {
    match (dir, inline) {
        (Some(dir), None) => Bundle::from_dir(dir),
        (None, Some(b)) => Bundle::from_sources(&BundleSources {
            manifest: b.manifest.clone(),
            schema: b.schema.clone(),
            schema_file: "schema.cedarschema".into(),
            policies: b.policies.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }),
        _ => Err(Error::malformed_request("give exactly one of `bundle_dir` and `bundle`")),
    }
}
