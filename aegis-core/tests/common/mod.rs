//! Shared fixtures: fixed-seed keys, a fixed clock, the payments bundle, and hostile tokens.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod redis;

use std::path::PathBuf;
use std::sync::Arc;

use aegis_sod::json_api::StoreConfig;
use aegis_sod::testing::{b64_decode, b64_encode, sign};
use aegis_sod::{
    delegate, issue_root, AuthorizationRequest, Bundle, CredentialClaims, CredentialSpec, Engine, KeyPair, ManualClock,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
pub const ISSUER: &str = "https://issuer.aegis.example";
pub const TOOL: &str = "stripe.create_payment";
pub const TASK: &str = "task-vendor-payouts-q3";
pub const GOOD_ACCOUNT: &str = "acct_1032D82eZvKYlo2C";
pub const TYP: &str = "aegis-credential+jwt";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn payments_dir() -> PathBuf {
    repo_root().join("policies/payments")
}

pub fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32]).unwrap()
}

/// Keys: 1 issuer, 2 planner, 3 finance, 4 approver, 5 attacker, 6.. spare agents.
pub struct Fixture {
    pub issuer: KeyPair,
    pub planner: KeyPair,
    pub finance: KeyPair,
    pub attacker: KeyPair,
    pub clock: Arc<ManualClock>,
}

impl Fixture {
    pub fn new() -> Self {
        Self { issuer: key(1), planner: key(2), finance: key(3), attacker: key(5), clock: Arc::new(ManualClock::at_secs(NOW)) }
    }

    pub fn engine(&self) -> Engine {
        self.engine_with(Bundle::from_dir(payments_dir()).unwrap())
    }

    /// An engine builder on the payments bundle and `store`, with a shared approval key (as
    /// engines that share a store must have).
    pub fn builder_on(&self, store: std::sync::Arc<dyn aegis_sod::Store>) -> aegis_sod::EngineBuilder {
        Engine::builder()
            .bundle(Bundle::from_dir(payments_dir()).unwrap())
            .trust_issuer(ISSUER, self.issuer.public_key().clone())
            .clock(self.clock.clone())
            .store(store)
            .approval_key(key(7))
    }

    pub fn engine_with(&self, bundle: Bundle) -> Engine {
        Engine::builder()
            .bundle(bundle)
            .trust_issuer(ISSUER, self.issuer.public_key().clone())
            .clock(self.clock.clone())
            .build()
            .unwrap()
    }

    pub fn spec(&self, agent: &str, key: &KeyPair, scope: &[&str], issued_at: i64, ttl: i64) -> CredentialSpec {
        CredentialSpec {
            agent_id: agent.into(),
            agent_key: key.public_key().clone(),
            audience: aegis_sod::DEFAULT_AUDIENCE.into(),
            task_id: TASK.into(),
            intent: "pay the approved vendor invoices for Q3".into(),
            scope: scope.iter().map(|s| (*s).to_owned()).collect(),
            issued_at,
            expires_at: issued_at + ttl,
            jti: format!("cred-{agent}-{issued_at}"),
            roles: Vec::new(),
        }
    }

    pub fn planner_cred(&self) -> String {
        issue_root(ISSUER, &self.issuer, self.spec("planner", &self.planner, &["invoice.create", TOOL], NOW - 60, 900)).unwrap()
    }

    pub fn finance_cred(&self, planner: &str) -> String {
        delegate(planner, &self.planner, self.spec("finance-agent", &self.finance, &[TOOL], NOW - 30, 600)).unwrap()
    }

    pub fn chain(&self) -> Vec<String> {
        let planner = self.planner_cred();
        let finance = self.finance_cred(&planner);
        vec![planner, finance]
    }

    /// The claims of a token, for crafting variants.
    pub fn claims(token: &str) -> CredentialClaims {
        aegis_sod::inspect(token).unwrap().claims
    }

    /// Signs raw claims (any JSON) as a credential with `key`: bypasses every issuing check.
    pub fn sign_raw(claims: &Value, key: &KeyPair) -> String {
        sign(claims, TYP, key).unwrap()
    }
}

pub fn pay(amount: i64, destination: &str) -> Value {
    json!({"amount": amount, "currency": "eur", "destination": destination})
}

/// A token with the given header and payload JSON text (verbatim) and signature bytes.
pub fn assemble(header: &str, payload: &str, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64_encode(header.as_bytes()), b64_encode(payload.as_bytes()), b64_encode(signature))
}

/// Signs verbatim header and payload text with `key` (valid EdDSA signature over odd content).
pub fn sign_verbatim(header: &str, payload: &str, key: &KeyPair) -> String {
    // Reuse the library signer on a throwaway token to get at the private key's signature.
    let input = format!("{}.{}", b64_encode(header.as_bytes()), b64_encode(payload.as_bytes()));
    let sig = ed25519_sign(key, input.as_bytes());
    format!("{input}.{}", b64_encode(&sig))
}

fn ed25519_sign(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let jwk = key.to_private_jwk();
    let seed: [u8; 32] = b64_decode(jwk.d.as_deref().unwrap()).unwrap().try_into().unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed).sign(message).to_bytes().to_vec()
}

/// HMAC-SHA256 (RFC 2104), for the "public key as HS256 secret" attack.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new().chain_update(&inner).chain_update(message).finalize();
    Sha256::new().chain_update(&outer).chain_update(inner_hash).finalize().to_vec()
}

/// Every hostile or notable case, as (name, chain, tool, args, expected outcome, expected codes).
pub struct Case {
    pub name: &'static str,
    pub chain: Vec<String>,
    pub tool: &'static str,
    pub args: Value,
    pub outcome: &'static str,
    pub codes: Vec<&'static str>,
    pub policy_ids: Vec<&'static str>,
    pub would_block: bool,
}

fn case(name: &'static str, chain: Vec<String>, args: Value, outcome: &'static str, codes: &[&'static str]) -> Case {
    Case { name, chain, tool: TOOL, args, outcome, codes: codes.to_vec(), policy_ids: Vec::new(), would_block: false }
}

pub fn cases(fx: &Fixture) -> Vec<Case> {
    let planner = fx.planner_cred();
    let finance = fx.finance_cred(&planner);
    let good = vec![planner.clone(), finance.clone()];
    let ok = pay(1200, GOOD_ACCOUNT);
    let link = |claims: &Value, key: &KeyPair| vec![planner.clone(), Fixture::sign_raw(claims, key)];
    let finance_claims = serde_json::to_value(Fixture::claims(&finance)).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = finance_claims.clone();
        f(&mut c);
        c
    };
    let mut out = Vec::new();

    let mut c = case("allow_1200_delegated", good.clone(), ok.clone(), "allow", &["policy_permit"]);
    c.policy_ids = vec!["payments-by-task-agents"];
    out.push(c);
    let mut c = case("planner_executes_itself", vec![planner.clone()], ok.clone(), "deny", &["policy_forbid", "policy_forbid"]);
    c.policy_ids = vec!["executor-differs-from-initiator", "executor-needs-parent"];
    out.push(c);
    let mut c = case("approval_needed_9000", good.clone(), pay(9000, GOOD_ACCOUNT), "approval_needed", &["approval_required"]);
    c.policy_ids = vec!["large-payment-needs-approval"];
    out.push(c);
    let mut c =
        case("hard_cap_not_approvable", good.clone(), pay(200_000, GOOD_ACCOUNT), "deny", &["policy_forbid", "policy_forbid"]);
    c.policy_ids = vec!["large-payment-needs-approval", "payment-hard-cap"];
    out.push(c);
    let mut c = case("bad_destination", good.clone(), pay(1200, "DE89370400440532013000"), "deny", &["policy_forbid"]);
    c.policy_ids = vec!["destination-account-pattern"];
    out.push(c);
    let mut card = pay(800, GOOD_ACCOUNT);
    card["card_number"] = json!("4242424242424242");
    let mut c = case("sanitize_card_number", good.clone(), card, "sanitize", &["policy_permit", "policy_permit"]);
    c.policy_ids = vec!["payments-by-task-agents", "redact-card-number"];
    out.push(c);
    let mut usd = pay(3000, GOOD_ACCOUNT);
    usd["currency"] = json!("usd");
    let mut c = case("shadow_would_block", good.clone(), usd, "allow", &["policy_permit"]);
    c.policy_ids = vec!["payments-by-task-agents"];
    c.would_block = true;
    out.push(c);
    // A string where the schema declares a Long: once a policy error (and a fail-open risk for
    // forbids written as negative tests), now refused before any policy runs.
    let mut wrong_type = pay(1200, GOOD_ACCOUNT);
    wrong_type["amount"] = json!("1200");
    out.push(case("argument_type_mismatch_denies", good.clone(), wrong_type, "deny", &["args_invalid"]));
    out.push(Case {
        tool: "invoice.create",
        ..case("tool_not_in_scope", good.clone(), json!({"customer": "c1", "amount": 5}), "deny", &["tool_not_in_scope"])
    });
    let wide_root = issue_root(ISSUER, &fx.issuer, fx.spec("planner", &fx.planner, &["*"], NOW - 60, 900)).unwrap();
    out.push(Case { tool: "payroll.run", ..case("unknown_tool", vec![wide_root], json!({}), "deny", &["unknown_tool"]) });
    out.push(case("missing_chain", vec![], ok.clone(), "deny", &["missing_credential"]));

    // Signatures and issuers.
    let mut forged = finance.split('.').map(str::to_owned).collect::<Vec<_>>();
    forged[1] = b64_encode(serde_json::to_string(&with(&|c| c["scope"] = json!(["*"]))).unwrap().as_bytes());
    out.push(case("forged_signature", vec![planner.clone(), forged.join(".")], ok.clone(), "deny", &["signature_invalid"]));
    let rogue_root = issue_root(ISSUER, &fx.attacker, fx.spec("planner", &fx.planner, &[TOOL], NOW - 60, 900)).unwrap();
    let rogue_child = delegate(&rogue_root, &fx.planner, fx.spec("finance-agent", &fx.finance, &[TOOL], NOW - 30, 600)).unwrap();
    out.push(case("untrusted_issuer_key", vec![rogue_root, rogue_child], ok.clone(), "deny", &["untrusted_issuer"]));
    let misnamed =
        issue_root("https://other-issuer.example", &fx.issuer, fx.spec("planner", &fx.planner, &[TOOL], NOW - 60, 900)).unwrap();
    out.push(case("issuer_name_mismatch", vec![misnamed], ok.clone(), "deny", &["untrusted_issuer"]));
    out.push(case("link_signed_by_wrong_key", link(&finance_claims, &fx.attacker), ok.clone(), "deny", &["signature_invalid"]));

    // Narrowing.
    out.push(case(
        "widened_scope",
        link(&with(&|c| c["scope"] = json!([TOOL, "payroll.run"])), &fx.planner),
        ok.clone(),
        "deny",
        &["scope_widened"],
    ));
    out.push(case(
        "child_outlives_parent",
        link(&with(&|c| c["exp"] = json!(NOW + 3600)), &fx.planner),
        ok.clone(),
        "deny",
        &["lifetime_exceeds_parent"],
    ));
    out.push(case(
        "task_changed",
        link(&with(&|c| c["task"] = json!("another-task")), &fx.planner),
        ok.clone(),
        "deny",
        &["task_mismatch"],
    ));
    out.push(case(
        "wrong_parent_digest",
        link(&with(&|c| c["par"] = json!(aegis_sod::digest("x"))), &fx.planner),
        ok.clone(),
        "deny",
        &["parent_mismatch"],
    ));
    out.push(case(
        "audience_changed",
        link(&with(&|c| c["aud"] = json!("other-engine")), &fx.planner),
        ok.clone(),
        "deny",
        &["audience_mismatch"],
    ));
    // Cycle: planner → finance → planner again.
    let back = delegate(&finance, &fx.finance, fx.spec("planner", &fx.planner, &[TOOL], NOW - 20, 300)).unwrap();
    out.push(case("delegation_cycle", vec![planner.clone(), finance.clone(), back], ok.clone(), "deny", &["delegation_cycle"]));
    // Depth: root + 5 links with max depth 4.
    let mut deep = vec![planner.clone()];
    let mut parent_key = fx.planner.clone();
    for n in 0..5u8 {
        let k = key(10 + n);
        let agent = format!("sub-agent-{n}");
        let next = delegate(deep.last().unwrap(), &parent_key, fx.spec(&agent, &k, &[TOOL], NOW - 10, 300)).unwrap();
        deep.push(next);
        parent_key = k;
    }
    out.push(case("delegation_too_deep", deep.clone(), ok.clone(), "deny", &["delegation_too_deep"]));
    deep.pop();
    let mut c = case("depth_at_limit_allowed", deep, ok.clone(), "allow", &["policy_permit"]);
    c.policy_ids = vec!["payments-by-task-agents"];
    out.push(c);

    // Token format.
    let payload = serde_json::to_string(&finance_claims).unwrap();
    out.push(case(
        "alg_none",
        vec![planner.clone(), assemble(&format!(r#"{{"alg":"none","typ":"{TYP}"}}"#), &payload, b"")],
        ok.clone(),
        "deny",
        &["unsupported_algorithm"],
    ));
    let hs_header = format!(r#"{{"alg":"HS256","typ":"{TYP}"}}"#);
    let hs_input = format!("{}.{}", b64_encode(hs_header.as_bytes()), b64_encode(payload.as_bytes()));
    let planner_pub = fx.planner.public_key().as_bytes().to_vec();
    let hs_token = format!("{hs_input}.{}", b64_encode(&hmac_sha256(&planner_pub, hs_input.as_bytes())));
    out.push(case(
        "hs256_with_public_key_as_secret",
        vec![planner.clone(), hs_token],
        ok.clone(),
        "deny",
        &["unsupported_algorithm"],
    ));
    let dup_payload = payload.replacen('{', r#"{"scope":["*"],"#, 1);
    let header = format!(r#"{{"alg":"EdDSA","typ":"{TYP}","kid":"{}"}}"#, fx.planner.kid());
    out.push(case(
        "duplicate_claims",
        vec![planner.clone(), sign_verbatim(&header, &dup_payload, &fx.planner)],
        ok.clone(),
        "deny",
        &["malformed_token"],
    ));
    let jwk_header = format!(
        r#"{{"alg":"EdDSA","typ":"{TYP}","jwk":{}}}"#,
        serde_json::to_string(&fx.attacker.public_key().to_jwk()).unwrap()
    );
    out.push(case(
        "embedded_jwk_header",
        vec![planner.clone(), sign_verbatim(&jwk_header, &payload, &fx.planner)],
        ok.clone(),
        "deny",
        &["forbidden_header"],
    ));
    let jwt_header = r#"{"alg":"EdDSA","typ":"JWT"}"#;
    out.push(case(
        "wrong_typ",
        vec![planner.clone(), sign_verbatim(jwt_header, &payload, &fx.planner)],
        ok.clone(),
        "deny",
        &["wrong_token_type"],
    ));
    out.push(case(
        "non_canonical_base64_signature",
        vec![planner.clone(), non_canonical_signature(&finance)],
        ok.clone(),
        "deny",
        &["malformed_token"],
    ));
    out.push(case("padded_base64", vec![planner.clone(), format!("{finance}==")], ok.clone(), "deny", &["malformed_token"]));

    // Time.
    let expired = delegate(&planner, &fx.planner, fx.spec("finance-agent", &fx.finance, &[TOOL], NOW - 900, 600)).unwrap();
    out.push(case("expired_link", vec![planner.clone(), expired], ok.clone(), "deny", &["credential_expired"]));
    let future = delegate(&planner, &fx.planner, fx.spec("finance-agent", &fx.finance, &[TOOL], NOW + 120, 300)).unwrap();
    out.push(case("not_yet_valid_link", vec![planner.clone(), future], ok.clone(), "deny", &["credential_not_yet_valid"]));
    let skewed = delegate(&planner, &fx.planner, fx.spec("finance-agent", &fx.finance, &[TOOL], NOW + 20, 300)).unwrap();
    let mut c = case("within_clock_leeway", vec![planner.clone(), skewed], ok, "allow", &["policy_permit"]);
    c.policy_ids = vec!["payments-by-task-agents"];
    out.push(c);
    out
}

/// The same signature bytes, spelled with non-zero trailing bits in the last character.
fn non_canonical_signature(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = sig.as_bytes()[sig.len() - 1];
    let index = ALPHABET.iter().position(|c| *c == last).unwrap();
    // 64 bytes leave 4 unused low bits in the last character; set one.
    let altered = ALPHABET[index | 1] as char;
    format!("{rest}.{}{altered}", &sig[..sig.len() - 1])
}

// --- shared by the store tests (aegis-core) and the process tests (aegis-cli) ---

pub fn temp_path(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("aegis-stores-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{n}"))
}

pub fn sqlite_config() -> StoreConfig {
    StoreConfig::Sqlite { path: temp_path("store.db").to_string_lossy().into_owned() }
}

pub fn redis_config(server: &redis::RedisServer) -> StoreConfig {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    StoreConfig::Redis { url: server.url(), prefix: Some(format!("t{}-{n}", std::process::id())) }
}

pub fn approver_key() -> KeyPair {
    key(4)
}

pub fn spec_in(task: &str, agent: &str, key: &KeyPair, scope: &[&str], issued_at: i64, ttl: i64) -> CredentialSpec {
    CredentialSpec {
        agent_id: agent.into(),
        agent_key: key.public_key().clone(),
        audience: aegis_sod::DEFAULT_AUDIENCE.into(),
        task_id: task.into(),
        intent: "pay the approved vendor invoices".into(),
        scope: scope.iter().map(|s| (*s).to_owned()).collect(),
        issued_at,
        expires_at: issued_at + ttl,
        jti: format!("cred-{task}-{agent}-{issued_at}"),
        roles: Vec::new(),
    }
}

/// planner (root) → `agent` with `scope`, in `task`, valid from `now`.
pub fn chain_in(task: &str, agent: &str, agent_key: &KeyPair, scope: &[&str], now: i64) -> Vec<String> {
    let root = issue_root(ISSUER, &key(1), spec_in(task, "planner", &key(2), &["*"], now - 60, 3000)).unwrap();
    let leaf = delegate(&root, &key(2), spec_in(task, agent, agent_key, scope, now - 30, 2400)).unwrap();
    vec![root, leaf]
}

/// A person's root credential: the issuer attests the role named like the person, and each
/// person holds a key of its own (`finance-approver` holds `approver_key()`).
pub fn approver_chain(agent: &str, now: i64) -> Vec<String> {
    let k = person_key(agent);
    let mut spec = spec_in("approvals-desk", agent, &k, &["aegis.approve", "aegis.break_glass"], now - 60, 3000);
    spec.roles = vec![agent.to_owned()];
    vec![issue_root(ISSUER, &key(1), spec).unwrap()]
}

/// The key of a person: `approver_key()` for the finance approver, one per name otherwise.
pub fn person_key(agent: &str) -> KeyPair {
    if agent == "finance-approver" {
        return approver_key();
    }
    let seed = agent.bytes().fold([7u8; 32], |mut acc, b| {
        acc[usize::from(b) % 32] = acc[usize::from(b) % 32].wrapping_mul(31).wrapping_add(b);
        acc
    });
    KeyPair::from_seed(&seed).unwrap()
}

pub fn req(chain: &[String], args: Value, token: Option<&str>) -> AuthorizationRequest {
    let request = AuthorizationRequest::new(chain.to_vec(), TOOL, args);
    match token {
        Some(t) => request.with_approval_token(t),
        None => request,
    }
}

/// The payments bundle's sources (its SoD matrix compiled), to load variants of it in memory.
pub fn engine_sources() -> aegis_sod::BundleSources {
    aegis_sod::BundleSources::read_dir(payments_dir()).unwrap()
}

/// Removes the policy `policy_id` (from `@id` to its `;`) from whichever file holds it.
pub fn remove_policy(sources: &mut aegis_sod::BundleSources, policy_id: &str) {
    for (_, text) in &mut sources.policies {
        if let Some(start) = text.find(&format!("@id(\"{policy_id}\")")) {
            let end = start + text[start..].find(";\n").unwrap() + 2;
            text.replace_range(start..end, "");
            return;
        }
    }
    panic!("no policy {policy_id}");
}

/// The token with one bit of its signature flipped (the middle byte): well-formed, invalid.
pub fn tamper_signature(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = b64_decode(sig).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    format!("{rest}.{}", b64_encode(&bytes))
}

/// A fresh copy of the payments bundle (with its tests), to vary on disk.
pub fn payments_copy(name: &str) -> PathBuf {
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_dir(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let dir = temp_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&payments_dir(), &dir);
    dir
}

/// `manifest` without its top-level section `name` (the line `name:` and everything indented
/// under it).
pub fn without_section(manifest: &str, name: &str) -> String {
    let mut out = String::with_capacity(manifest.len());
    let mut skipping = false;
    for line in manifest.lines() {
        if !line.is_empty() && !line.starts_with([' ', '\t', '#', '-']) {
            skipping = line.strip_prefix(name).is_some_and(|rest| rest.starts_with(':'));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
