//! `aegis serve` end to end on loopback: a real nginx (Debian's package) gates a tool server
//! with `auth_request`; an agent's payment is denied as `approval_needed`; a Slack click signed
//! with the test's signing secret approves it; the retry through nginx runs once. Forged,
//! tampered, stale and replayed clicks, clicks by people off the roster or without the role,
//! unsigned and forged Teams actions are all refused. The same loop runs through the gRPC
//! ext_authz `Check` service, and a Slack that cannot be reached leaves the call denied.
//!
//! nginx is required: a machine without it fails here with how to install it (`.ci/run`
//! installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_sod::{call_digest, delegate, issue_root, Clock, CredentialSpec, KeyPair, SystemClock};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const ISSUER: &str = "https://issuer.aegis.example";
const TOOL: &str = "stripe.create_payment";
const ACCOUNT: &str = "acct_1032D82eZvKYlo2C";
const SLACK_SECRET: &str = "test-signing-secret-8f1d";
const TEAMS_APP: &str = "00000000-aegis-bot-app-id";
const TEAMS_SERVICE_URL: &str = "https://smba.trafficmanager.net/emea/";
const LEAD_TEAMS_ID: &str = "4f6c1e2a-7b3d-4c5e-9a8b-0d1e2f3a4b5c";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aegis-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A recording HTTP server: the fake Slack and Teams webhooks, and the tool behind nginx.

#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Recorder {
    addr: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve_one(stream, &sink));
            }
        });
        Self { addr, seen }
    }

    fn all(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for a request to `path` whose body contains `needle`.
    fn wait_for(&self, path: &str, needle: &str) -> Recorded {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.all().into_iter().find(|r| r.path == path && String::from_utf8_lossy(&r.body).contains(needle));
            if let Some(r) = found {
                return r;
            }
            assert!(Instant::now() < deadline, "nothing posted to {path} containing {needle}: {:?}", self.all());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_one(mut stream: TcpStream, sink: &Mutex<Vec<Recorded>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let close = headers.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        sink.lock().unwrap().push(Recorded { path, headers, body });
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok");
        if close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service and nginx.

struct Serve {
    _child: Running,
    http: String,
    grpc: String,
    https: bool,
}

fn start_serve(dir: &Path, config: &Value) -> Serve {
    let path = dir.join("serve.json");
    std::fs::write(&path, config.to_string()).unwrap();
    start_serve_args(&["--config", path.to_str().unwrap()])
}

fn start_serve_with(dir: &Path, config: &Value, extra: &[&str]) -> Serve {
    let path = dir.join("serve.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_serve_args(&args)
}

fn start_serve_args(args: &[&str]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aegis"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut grpc, mut https) = (None, None, false);
    while http.is_none() || grpc.is_none() {
        let line = lines.next().expect("aegis serve exited before listening").unwrap();
        let url = line.strip_prefix("aegis serve: http://").or_else(|| line.strip_prefix("aegis serve: https://"));
        if let Some(rest) = url {
            https = line.starts_with("aegis serve: https://");
            http = Some(rest.split_whitespace().next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("aegis serve: grpc ext_authz on ") {
            grpc = Some(rest.trim().to_owned());
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Serve { _child: Running(child), http: http.unwrap(), grpc: grpc.unwrap(), https }
}

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("nginx is needed for the proxy test: `apt-get install nginx-light` (CI installs it)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx in front of the tool: `auth_request` asks the service; the approval id, the reason
/// and the authorized call's digest come back as headers.
fn start_nginx(dir: &Path, serve: &str, tool: &str) -> (Running, String) {
    let port = free_port();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location /tools/ {{
      auth_request /_aegis;
      auth_request_set $aegis_approval $upstream_http_aegis_approval_id;
      auth_request_set $aegis_reason $upstream_http_aegis_reason;
      auth_request_set $aegis_digest $upstream_http_aegis_call_digest;
      auth_request_set $aegis_receipt $upstream_http_aegis_receipt;
      add_header Aegis-Approval-Id $aegis_approval always;
      add_header Aegis-Reason $aegis_reason always;
      proxy_set_header Aegis-Call-Digest $aegis_digest;
      proxy_set_header Aegis-Receipt $aegis_receipt;
      proxy_set_header Authorization "";
      proxy_pass http://{tool};
    }}
    location = /_aegis {{
      internal;
      proxy_pass http://{serve}/v1/ext_authz;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx_binary())
        .args(["-c", path.to_str().unwrap(), "-p", dir.to_str().unwrap(), "-e", dir.join("nginx-error.log").to_str().unwrap()])
        .spawn()
        .unwrap();
    let child = Running(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

// ---------------------------------------------------------------------------------------------
// Identities, keys and the configuration.

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32]).unwrap()
}

fn spec(task: &str, agent: &str, key: &KeyPair, scope: &[&str]) -> CredentialSpec {
    let now = SystemClock.now_secs();
    CredentialSpec {
        agent_id: agent.into(),
        agent_key: key.public_key().clone(),
        audience: "aegis".into(),
        task_id: task.into(),
        intent: "pay the approved vendor invoices".into(),
        scope: scope.iter().map(|s| (*s).to_owned()).collect(),
        issued_at: now,
        expires_at: now + 900,
        jti: format!("cred-{agent}-{task}"),
        roles: Vec::new(),
    }
}

/// The finance agent's chain in `task`, as a bearer (`root~leaf`).
fn agent_bearer(task: &str) -> String {
    let planner = issue_root(ISSUER, &key(1), spec(task, "planner", &key(2), &["invoice.create", TOOL])).unwrap();
    let finance = delegate(&planner, &key(2), spec(task, "finance-agent", &key(3), &[TOOL])).unwrap();
    format!("Bearer {planner}~{finance}")
}

/// A finance approver's own root credential (a person attested by the issuer), as a bearer.
fn approver_bearer() -> String {
    let mut person = spec("approvals-desk", "finance-approver", &key(4), &["aegis.approve"]);
    person.roles = vec!["finance-approver".into()];
    format!("Bearer {}", issue_root(ISSUER, &key(1), person).unwrap())
}

fn rsa_pem(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("aegis-core/tests/fixtures").join(name)).unwrap()
}

fn teams_jwks() -> Value {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&rsa_pem("rsa.pem")).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("bf-1".into());
    json!({"keys": [jwk]})
}

fn config(dir: &Path, slack_post: &str, teams_post: &str) -> Value {
    let log_key: Value =
        serde_json::from_str(&aegis_sod::json_api::call(None, "audit_keygen", r#"{"name":"serve.test/log"}"#).unwrap()).unwrap();
    json!({
        "engine": {
            "bundle_dir": repo_root().join("policies/payments").display().to_string(),
            "trusted_issuers": [{"issuer": ISSUER, "jwk": key(1).public_key().to_jwk()}],
            "approval_channels": {"key": key(9).to_private_jwk()},
            "receipts": {"key": key(12).to_private_jwk(), "issuer": "aegis.serve.test", "audience": "payments-api"},
            "audit": {"dir": dir.join("audit").display().to_string(), "signing_key": log_key["signer_key"]},
        },
        "slack": {"signing_secret": SLACK_SECRET, "post_url": slack_post},
        "teams": {"app_id": TEAMS_APP, "jwks": teams_jwks(), "post_url": teams_post},
    })
}

fn pay(amount: i64) -> Value {
    json!({"amount": amount, "currency": "eur", "destination": ACCOUNT})
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// The agent's call through nginx: the body, and the same arguments in `Aegis-Args` (nginx's
/// `auth_request` cannot send the body).
fn call_through(nginx: &str, bearer: &str, args: &Value, approval: Option<&str>) -> reqwest::blocking::Response {
    let mut request = client()
        .post(format!("http://{nginx}/tools/{TOOL}"))
        .header("authorization", bearer)
        .header("content-type", "application/json")
        .header("aegis-args", b64(args))
        .body(args.to_string());
    if let Some(id) = approval {
        request = request.header("aegis-approval-id", id);
    }
    request.send().unwrap()
}

fn header(response: &reqwest::blocking::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Slack clicks and Teams actions, made as the platforms make them.

fn slack_body(user: &str, action: &str, approval_id: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0AEGIS", "username": user},
        "team": {"id": "T0AEGIS"},
        "actions": [{"action_id": action, "value": approval_id, "type": "button"}],
        "response_url": response_url,
    });
    format!("payload={}", form_encode(&payload.to_string()))
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn slack_sign(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn slack_click(serve: &str, ts: i64, signature: &str, body: &str) -> reqwest::blocking::Response {
    client()
        .post(format!("http://{serve}/v1/channels/slack/actions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature)
        .body(body.to_owned())
        .send()
        .unwrap()
}

fn teams_activity(user: &str, verb: &str, approval_id: &str) -> Value {
    json!({
        "type": "invoke",
        "name": "adaptiveCard/action",
        "serviceUrl": TEAMS_SERVICE_URL,
        "from": {"id": "29:1abc", "aadObjectId": user},
        "value": {"action": {"type": "Action.Execute", "verb": verb, "data": {"approval_id": approval_id}}},
    })
}

fn teams_token(pem: &str, audience: &str, service_url: &str) -> String {
    let now = SystemClock.now_secs();
    let claims = json!({
        "iss": "https://api.botframework.com", "aud": audience, "serviceurl": service_url,
        "nbf": now - 5, "exp": now + 600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bf-1".into());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&rsa_pem(pem)).unwrap()).unwrap()
}

fn teams_action(serve: &str, token: Option<&str>, activity: &Value) -> reqwest::blocking::Response {
    let mut request = client().post(format!("http://{serve}/v1/channels/teams/messages")).json(activity);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().unwrap()
}

fn approval_status(serve: &str, bearer: &str, id: &str) -> String {
    let body: Value =
        client().get(format!("http://{serve}/v1/approvals/{id}")).header("authorization", bearer).send().unwrap().json().unwrap();
    body["approval"]["status"].as_str().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_payment_through_nginx_is_approved_in_slack_and_runs_once() {
    let dir = temp_dir("nginx");
    let (slack, teams, tool) = (Recorder::start(), Recorder::start(), Recorder::start());
    let serve = start_serve(
        &dir,
        &config(&dir, &format!("http://{}/slack/post", slack.addr), &format!("http://{}/teams/post", teams.addr)),
    );
    let (_nginx, nginx) = start_nginx(&dir, &serve.http, &tool.addr);
    let agent = agent_bearer("task-serve-nginx");
    let response_url = format!("http://{}/slack/response", slack.addr);

    // A small payment passes, and the tool learns the digest of the call that was authorized.
    let small = pay(1200);
    let r = call_through(&nginx, &agent, &small, None);
    assert_eq!(r.status(), 200, "{}", header(&r, "aegis-reason"));
    let ran = tool.all();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].path, format!("/tools/{TOOL}"));
    assert_eq!(serde_json::from_slice::<Value>(&ran[0].body).unwrap(), small);
    assert_eq!(ran[0].headers["aegis-call-digest"], call_digest(TOOL, &small).unwrap());
    assert!(!ran[0].headers.contains_key("authorization"), "the agent's chain is not forwarded to the tool");
    // The tool checks the receipt offline against the service's published keys: valid for this
    // body, refused for any other.
    let jwks: Value = client().get(format!("http://{}/.well-known/jwks.json", serve.http)).send().unwrap().json().unwrap();
    let check = |args: &Value| aegis_sod::ReceiptCheck {
        issuer: "aegis.serve.test".into(),
        audience: "payments-api".into(),
        tool: TOOL.into(),
        args: args.clone(),
    };
    let receipt = &ran[0].headers["aegis-receipt"];
    let now = SystemClock.now_secs();
    let claims = aegis_sod::verify_receipt(receipt, &jwks, &check(&small), now, 30).unwrap();
    assert_eq!(claims.sub, "planner/finance-agent");
    let err = aegis_sod::verify_receipt(receipt, &jwks, &check(&pay(1201)), now, 30).unwrap_err();
    assert_eq!(err.code(), aegis_sod::ErrorCode::ReceiptMismatch);

    // A header naming another tool than the path the upstream runs: denied.
    let r = client()
        .post(format!("http://{nginx}/tools/{TOOL}"))
        .header("authorization", &agent)
        .header("aegis-tool", "invoice.create")
        .header("aegis-args", b64(&json!({"customer": "acme", "amount": 1})))
        .body(small.to_string())
        .send()
        .unwrap();
    assert_eq!((r.status().as_u16(), header(&r, "aegis-reason")), (403, "args_invalid".into()));

    // No chain, no arguments, or arguments that differ from the body: denied at the gate.
    let r = client().post(format!("http://{nginx}/tools/{TOOL}")).header("aegis-args", b64(&small)).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = client().post(format!("http://{nginx}/tools/{TOOL}")).header("authorization", &agent).send().unwrap();
    assert_eq!((r.status().as_u16(), header(&r, "aegis-reason")), (403, "args_required".into()));
    assert_eq!(tool.all().len(), 1, "no denied call reached the tool");

    // A large payment needs a finance approver: denied as approval_needed, with its id.
    let large = pay(7000);
    let r = call_through(&nginx, &agent, &large, None);
    assert_eq!(r.status(), 403);
    let approval_id = header(&r, "aegis-approval-id");
    assert!(approval_id.starts_with("apr_"), "no approval id: {:?}", r.headers());
    assert_eq!(tool.all().len(), 1);

    // The request was posted to Slack: the tool, the arguments, the buttons carry the id only.
    let posted = slack.wait_for("/slack/post", &approval_id);
    let message: Value = serde_json::from_slice(&posted.body).unwrap();
    let text = message.to_string();
    assert!(text.contains("7000") && text.contains(TOOL) && text.contains("large-payment-needs-approval"), "{text}");
    let buttons = message["blocks"].as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(buttons["elements"][0]["value"], approval_id);
    assert!(!text.contains("eyJ"), "no token in the message");
    teams.wait_for("/teams/post", &approval_id);

    let now = SystemClock.now_secs();
    let click = slack_body("U0FINLEAD", "aegis_approve", &approval_id, &response_url);
    // Forged: signed with another secret.
    let r = slack_click(&serve.http, now, &slack_sign("not-the-secret", now, &click), &click);
    assert_eq!(r.status(), 401);
    // Tampered: a valid signature over another body.
    let other = slack_body("U0FINLEAD", "aegis_approve", "apr_other", &response_url);
    let r = slack_click(&serve.http, now, &slack_sign(SLACK_SECRET, now, &other), &click);
    assert_eq!(r.status(), 401);
    // Stale: signed correctly, ten minutes ago.
    let r = slack_click(&serve.http, now - 600, &slack_sign(SLACK_SECRET, now - 600, &click), &click);
    assert_eq!(r.status(), 401);
    // Unsigned.
    let r = slack_click(&serve.http, now, "", &click);
    assert_eq!(r.status(), 401);
    // Someone off the roster, and someone on it without the role: refused by the engine.
    let stranger = slack_body("U0NOBODY", "aegis_approve", &approval_id, &response_url);
    let r = slack_click(&serve.http, now, &slack_sign(SLACK_SECRET, now, &stranger), &stranger);
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["code"], "channel_user_unknown");
    let analyst = slack_body("U0ANALYST", "aegis_approve", &approval_id, &response_url);
    let r = slack_click(&serve.http, now, &slack_sign(SLACK_SECRET, now, &analyst), &analyst);
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["accepted"], false);
    assert_eq!(approval_status(&serve.http, &agent, &approval_id), "pending");
    // A retry before any approval is still denied.
    let r = call_through(&nginx, &agent, &large, Some(&approval_id));
    assert_eq!(r.status(), 403);

    // The finance lead clicks Approve: taken, and the Slack message is updated.
    let signature = slack_sign(SLACK_SECRET, now, &click);
    let r = slack_click(&serve.http, now, &signature, &click);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let update = slack.wait_for("/slack/response", "finance-lead");
    let update: Value = serde_json::from_slice(&update.body).unwrap();
    assert_eq!(update["replace_original"], true);
    assert!(update.to_string().contains("approved"), "{update}");
    assert!(!update["blocks"].as_array().unwrap().iter().any(|b| b["type"] == "actions"), "the buttons are gone");
    assert_eq!(approval_status(&serve.http, &agent, &approval_id), "approved");
    // The same click again: a replay.
    let r = slack_click(&serve.http, now, &signature, &click);
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().unwrap()["code"], "channel_replayed");

    // Other arguments under the approval: denied. The approved call: allowed once.
    let r = call_through(&nginx, &agent, &pay(7001), Some(&approval_id));
    assert_eq!(r.status(), 403);
    let r = call_through(&nginx, &agent, &large, Some(&approval_id));
    assert_eq!(r.status(), 200, "{}", header(&r, "aegis-reason"));
    assert_eq!(tool.all().len(), 2);
    assert_eq!(serde_json::from_slice::<Value>(&tool.all()[1].body).unwrap(), large);
    let r = call_through(&nginx, &agent, &large, Some(&approval_id));
    assert_eq!(r.status(), 403, "the approval is single-use");
    assert_eq!(header(&r, "aegis-reason"), "approval_replayed");
    assert_eq!(tool.all().len(), 2);

    // Teams: an unsigned card action, one signed by another key, one for another bot, one
    // naming another service URL: refused. The real one approves.
    let r = call_through(&nginx, &agent, &pay(8000), None);
    let second = header(&r, "aegis-approval-id");
    assert!(second.starts_with("apr_"));
    let activity = teams_activity(LEAD_TEAMS_ID, "aegis_approve", &second);
    assert_eq!(teams_action(&serve.http, None, &activity).status(), 401);
    let forged = teams_token("rsa-attacker.pem", TEAMS_APP, TEAMS_SERVICE_URL);
    assert_eq!(teams_action(&serve.http, Some(&forged), &activity).status(), 401);
    let other_bot = teams_token("rsa.pem", "another-bot", TEAMS_SERVICE_URL);
    assert_eq!(teams_action(&serve.http, Some(&other_bot), &activity).status(), 401);
    let other_url = teams_token("rsa.pem", TEAMS_APP, "https://evil.example/");
    assert_eq!(teams_action(&serve.http, Some(&other_url), &activity).status(), 401);
    assert_eq!(approval_status(&serve.http, &agent, &second), "pending");
    let token = teams_token("rsa.pem", TEAMS_APP, TEAMS_SERVICE_URL);
    let r = teams_action(&serve.http, Some(&token), &activity);
    assert_eq!(r.status(), 200);
    let card: Value = r.json().unwrap();
    assert_eq!(card["type"], "application/vnd.microsoft.card.adaptive");
    assert!(card["value"].to_string().contains("approved by finance-lead"), "{card}");
    let r = call_through(&nginx, &agent, &pay(8000), Some(&second));
    assert_eq!(r.status(), 200);

    // Prometheus saw it all.
    let metrics = client().get(format!("http://{}/metrics", serve.http)).send().unwrap().text().unwrap();
    for line in [
        "aegis_decisions_total{outcome=\"allow\",tool=\"stripe.create_payment\"} 3",
        "aegis_decisions_total{outcome=\"approval_needed\",tool=\"stripe.create_payment\"} ",
        "aegis_approval_latency_seconds_count 2",
        "aegis_channel_answers_total{channel=\"slack\",result=\"accepted\"} 1",
        "aegis_channel_answers_total{channel=\"slack\",result=\"unverified\"} 5",
        "aegis_channel_answers_total{channel=\"teams\",result=\"unverified\"} 4",
        "aegis_channel_deliveries_total{channel=\"slack\",result=\"ok\"}",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }

    // The live report, rendered by headless Chromium from the service, shows the figures the
    // core computes from the same log.
    // The page is for approvers and administrators: fetched with a finance approver's chain,
    // then rendered from the file (it loads nothing from the network).
    let anonymous = client().get(format!("http://{}/report", serve.http)).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    let page = client().get(format!("http://{}/report", serve.http)).header("authorization", approver_bearer()).send().unwrap();
    assert_eq!(page.status(), 200);
    std::fs::write(dir.join("live-report.html"), page.text().unwrap()).unwrap();
    let url = format!("file://{}", dir.join("live-report.html").display());
    let dom = common::headless(&dir.join("profile"), &["--dump-dom", &url]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(dom.contains("data-rendered=\"ok\""), "the page's charts did not draw: {}", &dom[..dom.len().min(2000)]);
    let shown = common::figures(&dom);
    let core = Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(["report", dir.join("audit").to_str().unwrap(), "--json", "-"])
        .output()
        .unwrap();
    assert!(core.status.success(), "{}", String::from_utf8_lossy(&core.stderr));
    let core: Value = serde_json::from_slice(&core.stdout).unwrap();
    for outcome in ["allow", "approval_needed", "deny"] {
        let expected = core["decisions"][outcome].as_u64().unwrap_or(0);
        assert_eq!(shown[&format!("decisions-{outcome}")], expected.to_string(), "{outcome}");
    }
    assert_eq!(core["decisions"]["allow"], 3);
    assert_eq!(shown["approvals-resolved"], core["approval_latency"]["count"].to_string());
    assert_eq!(shown["logs-intact"], "every log verified");
}

// ---------------------------------------------------------------------------------------------
// The gRPC ext_authz service.

fn check_request(bearer: &str, args: &Value, approval: Option<&str>) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    use envoy_types::pb::envoy::service::auth::v3::{attribute_context, AttributeContext, CheckRequest};
    let mut headers = HashMap::from([
        ("authorization".to_owned(), bearer.to_owned()),
        ("mcp-name".to_owned(), TOOL.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    if let Some(id) = approval {
        headers.insert("aegis-approval-id".into(), id.into());
    }
    // Envoy with `with_request_body`: the body itself, here an MCP `tools/call` request.
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": TOOL, "arguments": args}});
    let http = attribute_context::HttpRequest {
        method: "POST".into(),
        path: "/mcp".into(),
        headers,
        raw_body: body.to_string().into_bytes(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

/// `Check`'s status code (0 allows) and the headers of its HTTP response.
fn grpc_check(addr: &str, request: envoy_types::pb::envoy::service::auth::v3::CheckRequest) -> (i32, HashMap<String, String>) {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = AuthorizationClient::connect(format!("http://{addr}")).await.unwrap();
        let response = client.check(request).await.unwrap().into_inner();
        let headers = match response.http_response {
            Some(HttpResponse::OkResponse(ok)) => ok.headers,
            Some(HttpResponse::DeniedResponse(denied)) => denied.headers,
            _ => Vec::new(),
        };
        let headers = headers.into_iter().filter_map(|h| h.header).map(|h| (h.key, h.value)).collect();
        (response.status.map_or(-1, |s| s.code), headers)
    })
}

#[test]
fn the_same_loop_through_the_grpc_check_service() {
    let dir = temp_dir("grpc");
    let slack = Recorder::start();
    let serve = start_serve(
        &dir,
        &config(&dir, &format!("http://{}/slack/post", slack.addr), &format!("http://{}/teams/post", slack.addr)),
    );
    let agent = agent_bearer("task-serve-grpc");
    const OK: i32 = 0;
    const PERMISSION_DENIED: i32 = 7;
    const UNAUTHENTICATED: i32 = 16;

    let (code, headers) = grpc_check(&serve.grpc, check_request(&agent, &pay(900), None));
    assert_eq!(code, OK, "{headers:?}");
    assert_eq!(headers["aegis-call-digest"], call_digest(TOOL, &pay(900)).unwrap());
    let (code, _) = grpc_check(&serve.grpc, check_request("Bearer ", &pay(900), None));
    assert_eq!(code, UNAUTHENTICATED);
    // The body names another tool than `Mcp-Name`: refused.
    let mut mismatched = check_request(&agent, &pay(900), None);
    let http = mismatched.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
    http.headers.insert("mcp-name".into(), "invoice.create".into());
    assert_eq!(grpc_check(&serve.grpc, mismatched).0, PERMISSION_DENIED);

    let (code, headers) = grpc_check(&serve.grpc, check_request(&agent, &pay(9000), None));
    assert_eq!(code, PERMISSION_DENIED);
    assert_eq!(headers["aegis-outcome"], "approval_needed");
    let approval_id = headers["aegis-approval-id"].clone();
    slack.wait_for("/slack/post", &approval_id);

    let now = SystemClock.now_secs();
    let response_url = format!("http://{}/slack/response", slack.addr);
    let forged = slack_body("U0FINLEAD", "aegis_approve", &approval_id, &response_url);
    assert_eq!(slack_click(&serve.http, now, &slack_sign("guess", now, &forged), &forged).status(), 401);
    assert_eq!(grpc_check(&serve.grpc, check_request(&agent, &pay(9000), Some(&approval_id))).0, PERMISSION_DENIED);
    let click = forged;
    let signature = slack_sign(SLACK_SECRET, now, &click);
    assert_eq!(slack_click(&serve.http, now, &signature, &click).status(), 200);
    assert_eq!(slack_click(&serve.http, now, &signature, &click).status(), 401, "replayed");

    let (code, headers) = grpc_check(&serve.grpc, check_request(&agent, &pay(9000), Some(&approval_id)));
    assert_eq!(code, OK, "{headers:?}");
    let (code, headers) = grpc_check(&serve.grpc, check_request(&agent, &pay(9000), Some(&approval_id)));
    assert_eq!(code, PERMISSION_DENIED, "single use: {headers:?}");
    assert_eq!(headers["aegis-reason"], "approval_replayed");
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_slack_that_cannot_be_reached_leaves_the_call_pending_and_denied() {
    let dir = temp_dir("undelivered");
    // Nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}/slack/post", free_port());
    let serve = start_serve(&dir, &config(&dir, &closed, &closed));
    let agent = agent_bearer("task-serve-undelivered");
    let decide = |args: &Value| -> Value {
        client()
            .post(format!("http://{}/v1/authorize", serve.http))
            .header("authorization", &agent)
            .json(&json!({"tool": TOOL, "args": args}))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let decision = decide(&pay(6000));
    assert_eq!(decision["outcome"], "approval_needed", "{decision}");
    let id = decision["approval_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = client().get(format!("http://{}/metrics", serve.http)).send().unwrap().text().unwrap();
        if metrics.contains("aegis_channel_deliveries_total{channel=\"slack\",result=\"failed\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "no failed delivery counted:\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(approval_status(&serve.http, &agent, &id), "pending");
    assert_eq!(decide(&pay(6000))["outcome"], "approval_needed", "still denied");
}

#[test]
fn every_documented_route_is_served_and_callers_are_authenticated() {
    let dir = temp_dir("routes");
    let slack = Recorder::start();
    let post = format!("http://{}/post", slack.addr);
    let serve = start_serve(&dir, &config(&dir, &post, &post));
    let spec: Value = client().get(format!("http://{}/openapi.json", serve.http)).send().unwrap().json().unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 19);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = format!("http://{}{}", serve.http, path.replace('{', "x").replace('}', ""));
            let response = match method.as_str() {
                "get" => client().get(&url).send().unwrap(),
                "post" => client().post(&url).body("{}").send().unwrap(),
                other => panic!("{other}"),
            };
            let status = response.status().as_u16();
            assert!(status != 404 && status != 405 || path.contains("{approval_id}"), "{method} {path}: {status}");
        }
    }
    // Without credentials, nothing private is answered.
    for path in ["/v1/approvals", "/v1/break-glass", "/v1/tasks/t/ledger"] {
        let status = client().get(format!("http://{}{path}", serve.http)).send().unwrap().status().as_u16();
        assert_eq!(status, 401, "{path}");
    }
    // An agent is not an approver: it cannot list approvals or approve.
    let agent = agent_bearer("task-serve-routes");
    let status =
        client().get(format!("http://{}/v1/approvals", serve.http)).header("authorization", &agent).send().unwrap().status();
    assert_eq!(status, 403);
    let decision: Value = client()
        .post(format!("http://{}/v1/authorize", serve.http))
        .header("authorization", &agent)
        .json(&json!({"tool": TOOL, "args": pay(5500)}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = decision["approval_id"].as_str().unwrap();
    let r =
        client().post(format!("http://{}/v1/approvals/{id}/approve", serve.http)).header("authorization", &agent).send().unwrap();
    assert_eq!(r.status(), 403);
    // Another task's agent cannot read this approval or this task's ledger.
    let stranger = agent_bearer("task-serve-other");
    let r = client().get(format!("http://{}/v1/approvals/{id}", serve.http)).header("authorization", &stranger).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .get(format!("http://{}/v1/tasks/task-serve-routes/ledger", serve.http))
        .header("authorization", &stranger)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // The report is not for agents; the shared tasks of external identities and chat answers
    // are ended by administrators only.
    let r = client().get(format!("http://{}/report", serve.http)).header("authorization", &agent).send().unwrap();
    assert_eq!(r.status(), 403);
    let planner = agent.split('~').next().unwrap().to_owned();
    for shared in ["external:https%3A%2F%2Fidp.example", "channel:aegis-approval-channels"] {
        let r = client()
            .post(format!("http://{}/v1/tasks/{shared}/end", serve.http))
            .header("authorization", &planner)
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{shared}");
    }
    // A delegate cannot end the task; its root can, and then the agent is denied.
    let r = client()
        .post(format!("http://{}/v1/tasks/task-serve-routes/end", serve.http))
        .header("authorization", &agent)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let planner_only = agent.split('~').next().unwrap().to_owned();
    let r = client()
        .post(format!("http://{}/v1/tasks/task-serve-routes/end", serve.http))
        .header("authorization", &planner_only)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let decision: Value = client()
        .post(format!("http://{}/v1/authorize", serve.http))
        .header("authorization", &agent)
        .json(&json!({"tool": TOOL, "args": pay(10)}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(decision["outcome"], "deny");
    assert_eq!(decision["reasons"][0]["code"], "task_ended");
}

#[test]
fn a_batch_approved_in_slack_admits_each_fitting_call_once_at_the_gate() {
    let dir = temp_dir("batch");
    let slack = Recorder::start();
    let post = format!("http://{}/slack/post", slack.addr);
    let serve = start_serve(&dir, &config(&dir, &post, &post));
    let agent = agent_bearer("task-serve-batch");
    let gate = |args: &Value, approval: Option<&str>| {
        let mut request = client()
            .post(format!("http://{}/v1/ext_authz/tools/{TOOL}", serve.http))
            .header("authorization", &agent)
            .body(args.to_string());
        if let Some(id) = approval {
            request = request.header("aegis-approval-id", id);
        }
        let r = request.send().unwrap();
        (r.status().as_u16(), header(&r, "aegis-reason"))
    };
    // Envoy's path is the proxy's: an `X-Original-URI` the client adds does not change the tool.
    let r = client()
        .post(format!("http://{}/v1/ext_authz/tools/{TOOL}", serve.http))
        .header("authorization", &agent)
        .header("x-original-uri", "/tools/invoice.create")
        .body(pay(100).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "decided as `{TOOL}`");
    // 4600 of the task's 5000 a day spent; the next payouts would each need an approval.
    assert_eq!(gate(&pay(4500), None).0, 200);
    assert_eq!(gate(&pay(1000), None).0, 403);

    let envelope = json!({"tool": TOOL, "max_calls": 2, "per_call_limit": 1500, "total_limit": 2500,
        "destinations": [ACCOUNT], "window_secs": 900});
    let r = client()
        .post(format!("http://{}/v1/batches", serve.http))
        .header("authorization", &agent)
        .json(&json!({"envelope": envelope, "reason": "two vendor payouts"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().unwrap()["approval_id"].as_str().unwrap().to_owned();
    let posted: Value = serde_json::from_slice(&slack.wait_for("/slack/post", &id).body).unwrap();
    assert!(posted.to_string().contains("two vendor payouts"));
    let now = SystemClock.now_secs();
    let click = slack_body("U0FINLEAD", "aegis_approve", &id, &format!("http://{}/slack/response", slack.addr));
    assert_eq!(slack_click(&serve.http, now, &slack_sign(SLACK_SECRET, now, &click), &click).status(), 200);

    assert_eq!(gate(&pay(1000), Some(&id)), (200, String::new()));
    assert_eq!(gate(&pay(1000), Some(&id)), (403, "approval_replayed".into()));
    assert_eq!(gate(&pay(1600), Some(&id)), (403, "batch_refused".into()));
    assert_eq!(gate(&pay(1200), Some(&id)).0, 200);
    assert_eq!(gate(&pay(5), Some(&id)), (403, "budget_exceeded".into()), "two calls used");
}

// ---------------------------------------------------------------------------------------------
// TLS and mutual TLS.

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is needed for the TLS test");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn new_key_and_request(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// A self-signed P-256 certificate `<name>.pem` with its key `<name>.key`.
fn self_signed(dir: &Path, name: &str, subject: &str) {
    let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            subject,
        ],
    );
}

fn curl(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).current_dir(dir).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn mutual_tls_admits_only_clients_the_ca_issued() {
    let dir = temp_dir("mtls");
    // A CA; a server certificate for 127.0.0.1 and a client certificate, both issued by it; a
    // client certificate nobody the server trusts issued.
    self_signed(&dir, "ca", "/CN=aegis test CA");
    for (name, ext) in
        [("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"), ("client", "extendedKeyUsage=clientAuth\n")]
    {
        new_key_and_request(&dir, name);
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
    self_signed(&dir, "rogue", "/CN=client");

    let slack = Recorder::start();
    let post = format!("http://{}/post", slack.addr);
    let serve = start_serve_with(
        &dir,
        &config(&dir, &post, &post),
        &[
            "--tls-cert",
            dir.join("server.pem").to_str().unwrap(),
            "--tls-key",
            dir.join("server.key").to_str().unwrap(),
            "--client-ca",
            dir.join("ca.pem").to_str().unwrap(),
        ],
    );
    assert!(serve.https, "the service says it serves https");
    let url = format!("https://{}/healthz", serve.http);
    let ok = curl(&dir, &["--cacert", "ca.pem", "--cert", "client.pem", "--key", "client.key", &url]);
    assert!(ok.is_some_and(|body| body.contains("\"ok\"")), "a client the CA issued is served");
    assert!(curl(&dir, &["--cacert", "ca.pem", &url]).is_none(), "no client certificate: no handshake");
    assert!(curl(&dir, &["--cacert", "ca.pem", "--cert", "rogue.pem", "--key", "rogue.key", &url]).is_none(), "untrusted client");
    assert!(curl(&dir, &[&format!("http://{}/healthz", serve.http)]).is_none(), "no plain HTTP on the TLS port");
    // Behind mutual TLS, callers still authenticate with their chains.
    let decided = curl(
        &dir,
        &[
            "--cacert",
            "ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client.key",
            "-H",
            "content-type: application/json",
            "-H",
            &format!("authorization: {}", agent_bearer("task-serve-mtls")),
            "--data",
            &json!({"tool": TOOL, "args": pay(100)}).to_string(),
            &format!("https://{}/v1/authorize", serve.http),
        ],
    );
    let decision: Value = serde_json::from_str(&decided.unwrap()).unwrap();
    assert_eq!(decision["outcome"], "allow");
}

#[test]
fn the_demo_service_runs_the_payments_bundle_with_the_demo_keys() {
    let serve = start_serve_args(&["--demo"]);
    let health: Value = client().get(format!("http://{}/healthz", serve.http)).send().unwrap().json().unwrap();
    assert!(health["policy_version"].as_str().unwrap().starts_with("payments@"));
    // The demo trusts the demo issuer (key seed 0x01): the agent's chain decides.
    let decision: Value = client()
        .post(format!("http://{}/v1/authorize", serve.http))
        .header("authorization", agent_bearer("task-serve-demo"))
        .json(&json!({"tool": TOOL, "args": pay(7000)}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(decision["outcome"], "approval_needed");
}
