//! `aegis serve`: the decision service, for stacks that are not Python, Node, Rust or C and
//! for approvals that arrive from a chat platform.
//!
//! One engine behind an HTTP API (axum on hyper), the Envoy ext_authz contract over HTTP (also
//! what nginx's `auth_request` calls) and gRPC (tonic), Slack and Teams approval callbacks,
//! Prometheus metrics and the live report. Every decision and check is the core's: this module
//! maps HTTP to engine calls and errors to statuses, nothing more. Engine calls may block on a
//! durable store, so they run on the blocking pool.

mod api;
mod chat;
mod gate;
mod grpc;
mod metrics;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aegis_sod::json_api::{engine_with_notifier, ApprovalChannelsConfig, EngineConfig, IssuerConfig};
use aegis_sod::{Engine, KeyPair, PendingApproval, SlackVerifier, TeamsVerifier};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::show;

#[derive(Args)]
pub struct ServeArgs {
    /// The service's configuration (JSON): `engine` (as for the bindings), `slack`, `teams`.
    #[arg(long, required_unless_present = "demo", conflicts_with = "demo")]
    config: Option<PathBuf>,
    /// Run on the payments bundle with the demo's keys (printed at start), in memory.
    #[arg(long)]
    demo: bool,
    /// Where the HTTP API listens.
    #[arg(long, default_value = "127.0.0.1:8181")]
    listen: SocketAddr,
    /// Where the ext_authz gRPC service listens (default: not at all).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Serve the HTTP API over TLS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM, PKCS#8 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

/// The service's configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeConfig {
    /// The engine, exactly as the bindings take it.
    engine: EngineConfig,
    /// Slack approvals.
    #[serde(default)]
    slack: Option<SlackConfig>,
    /// Teams approvals.
    #[serde(default)]
    teams: Option<TeamsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackConfig {
    /// The Slack app's signing secret.
    signing_secret: String,
    /// Where approval requests are posted (an incoming webhook, or a relay to
    /// `chat.postMessage`); none: requests are only listed by the API.
    #[serde(default)]
    post_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamsConfig {
    /// The bot's Microsoft app id: the audience of the Bot Framework's tokens.
    app_id: String,
    /// The Bot Framework's JWK Set.
    jwks: Value,
    /// Where approval cards are posted (a Teams incoming webhook or workflow URL).
    #[serde(default)]
    post_url: Option<String>,
}

/// Everything a handler needs.
pub(crate) struct Service {
    pub engine: Arc<Engine>,
    pub slack: Option<SlackVerifier>,
    pub teams: Option<TeamsVerifier>,
    /// Override tokens of approved calls, by approval id: a proxy's retry names the approval
    /// (`Aegis-Approval-Id`) and the gate presents its token. The engine checks everything the
    /// token binds (agent, task, call, version) and that it is used once; a token is kept
    /// after its use so that a second retry is refused as `approval_replayed` rather than
    /// opening a new request for a human.
    pub tokens: Mutex<HashMap<String, (String, std::time::Instant)>>,
    pub metrics: metrics::Metrics,
    pub outbox: mpsc::Sender<chat::Outgoing>,
}

/// Messages waiting to be posted to Slack and Teams.
const OUTBOX_CAPACITY: usize = 1024;

/// How long a kept override token is remembered (tokens expire sooner: 5 minutes by default).
const TOKEN_MEMORY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Service {
    /// Keeps an approved call's token for the agent's retry.
    pub fn keep_token(&self, approval_id: &str, token: Option<&String>) {
        if let Some(token) = token {
            let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            tokens.retain(|_, (_, kept)| kept.elapsed() < TOKEN_MEMORY);
            tokens.insert(approval_id.to_owned(), (token.clone(), std::time::Instant::now()));
        }
    }

    /// The token kept for an approval.
    pub fn token_for(&self, approval_id: &str) -> Option<String> {
        self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(approval_id).map(|(t, _)| t.clone())
    }
}

pub fn run(args: &ServeArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<(), String> {
    if args.demo && !args.listen.ip().is_loopback() {
        return Err("`--demo` uses published keys: it listens on loopback addresses only".into());
    }
    let config = match (&args.config, args.demo) {
        (Some(path), _) => aegis_sod::from_str_strict::<ServeConfig>(&crate::read(path)?).map_err(show)?,
        (None, _) => demo_config()?,
    };
    // Bounded: a flood of requests cannot grow the queue without end; a message that does not
    // fit is not posted (its approval stays pending, listed by the API).
    let (outbox, inbox) = mpsc::channel(OUTBOX_CAPACITY);
    let notify_tx = outbox.clone();
    // The engine calls this with every new pending approval, on the deciding thread: it only
    // queues the message; delivery happens on the runtime and never delays or changes the
    // decision (a failed delivery leaves the call pending and denied).
    let notifier: Arc<dyn Fn(String) + Send + Sync> = Arc::new(move |pending: String| {
        if let Ok(pending) = serde_json::from_str::<PendingApproval>(&pending) {
            let _ = notify_tx.try_send(chat::Outgoing::NewApproval(Box::new(pending)));
        }
    });
    let engine = Arc::new(engine_with_notifier(config.engine, Some(notifier)).map_err(show)?);
    if config.slack.as_ref().is_some_and(|s| s.signing_secret.len() < 16) {
        return Err("`slack.signing_secret` must be the app's signing secret (16 characters or more)".into());
    }
    let slack = config.slack.as_ref().map(|s| SlackVerifier::new(&s.signing_secret));
    let teams = match &config.teams {
        Some(t) => Some(TeamsVerifier::new(&t.app_id, &t.jwks.to_string()).map_err(show)?),
        None => None,
    };
    let service = Arc::new(Service {
        engine,
        slack,
        teams,
        tokens: Mutex::new(HashMap::new()),
        metrics: metrics::Metrics::default(),
        outbox,
    });
    let posts = chat::Posts { slack: config.slack.and_then(|s| s.post_url), teams: config.teams.and_then(|t| t.post_url) };
    tokio::spawn(chat::deliver(Arc::clone(&service), posts, inbox));

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key, args.client_ca.as_deref())?),
        _ => None,
    };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let http_addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and supervisors read these lines to find the ports.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("aegis serve: {scheme}://{http_addr} (policy version {})", service.engine.policy_version());
    if let Some(addr) = args.grpc_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        println!("aegis serve: grpc ext_authz on {}", listener.local_addr().map_err(|e| e.to_string())?);
        tokio::spawn(grpc::serve(Arc::clone(&service), listener));
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let app = api::router(service);
    match tls {
        Some(config) => {
            tokio::select! {
                () = tls::serve(listener, config, app) => Ok(()),
                () = shutdown() => Ok(()),
            }
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(|e| e.to_string()),
    }
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The demo's keys and secrets: fixed, printed, never for production.
pub(crate) mod demo_keys {
    /// The issuer of agents' and approvers' root credentials.
    pub const ISSUER: &str = "https://issuer.aegis.example";
    /// Its key's seed.
    pub const ISSUER_SEED: [u8; 32] = [1; 32];
    /// The seed of the key attesting roster identities for Slack and Teams.
    pub const CHANNEL_SEED: [u8; 32] = [9; 32];
    /// The demo Slack app's signing secret.
    pub const SLACK_SECRET: &str = "aegis-demo-slack-signing-secret";
}

fn demo_config() -> Result<ServeConfig, String> {
    let issuer = KeyPair::from_seed(&demo_keys::ISSUER_SEED).map_err(show)?;
    let channels = KeyPair::from_seed(&demo_keys::CHANNEL_SEED).map_err(show)?;
    let mut engine: EngineConfig =
        serde_json::from_value(serde_json::json!({"bundle_dir": crate::demo::default_bundle().display().to_string()}))
            .map_err(|e| e.to_string())?;
    engine.trusted_issuers.push(IssuerConfig { issuer: demo_keys::ISSUER.into(), jwk: issuer.public_key().to_jwk() });
    engine.approval_channels = Some(ApprovalChannelsConfig { issuer: None, key: channels.to_private_jwk() });
    eprintln!(
        "demo: trusting issuer `{}` (key seed 0x01 x 32); Slack signing secret `{}`; the roster is in the bundle's manifest",
        demo_keys::ISSUER,
        demo_keys::SLACK_SECRET
    );
    Ok(ServeConfig {
        engine,
        slack: Some(SlackConfig { signing_secret: demo_keys::SLACK_SECRET.into(), post_url: None }),
        teams: None,
    })
}
