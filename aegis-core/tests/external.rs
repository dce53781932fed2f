//! External identities as roots: OIDC ID tokens and SPIFFE JWT-SVIDs minted by an independent
//! implementation (`jsonwebtoken`, from the fixture keys in `tests/fixtures/`), verified against
//! the issuer's JWKS, and every way to smuggle one in refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aegis_sod::{Bundle, Clock, Engine, ErrorCode, ExternalIssuer, Outcome};
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const IDP: &str = "https://idp.example";
const AUDIENCE: &str = "aegis-approvals";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("aegis-core/tests/fixtures").join(name)).unwrap()
}

fn signing_key(alg: Algorithm, file: &str) -> EncodingKey {
    let pem = fixture(file);
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("{other:?}"),
    }
    .unwrap()
}

fn public_jwk(alg: Algorithm, file: &str, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&signing_key(alg, file), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn jwks(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

fn provider_keys() -> String {
    jwks(vec![
        public_jwk(Algorithm::RS256, "rsa.pem", "rsa-1"),
        public_jwk(Algorithm::ES256, "ec.pem", "ec-1"),
        public_jwk(Algorithm::EdDSA, "ed25519.pem", "ed-1"),
    ])
}

fn id_token(alg: Algorithm, file: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &signing_key(alg, file)).unwrap()
}

fn alice(now: i64) -> Value {
    json!({"iss": IDP, "sub": "alice@example.com", "aud": AUDIENCE, "iat": now - 10, "exp": now + 600, "groups": ["finance-approver"]})
}

fn engine(fx: &Fixture, issuer: ExternalIssuer) -> Engine {
    Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .trust_external_issuer(issuer)
        .clock(fx.clock.clone())
        .build()
        .unwrap()
}

fn provider() -> ExternalIssuer {
    ExternalIssuer::new(IDP, AUDIENCE, &provider_keys()).unwrap().roles_claim("groups")
}

fn pending_payment(engine: &Engine, task: &str) -> String {
    let chain = chain_in(task, "finance-agent", &key(3), &[TOOL], NOW);
    engine.authorize(&req(&chain, pay(9000, GOOD_ACCOUNT), None)).unwrap().approval_id.unwrap()
}

#[test]
fn a_person_from_an_oidc_provider_approves_with_rs256_es256_and_eddsa() {
    let fx = Fixture::new();
    let engine = engine(&fx, provider());
    for (n, (alg, file, kid)) in
        [(Algorithm::RS256, "rsa.pem", "rsa-1"), (Algorithm::ES256, "ec.pem", "ec-1"), (Algorithm::EdDSA, "ed25519.pem", "ed-1")]
            .into_iter()
            .enumerate()
    {
        let id = pending_payment(&engine, &format!("task-oidc-{n}"));
        let token = id_token(alg, file, kid, &alice(fx.clock.now_secs()));
        let r = engine.approve(&id, &[token], None).unwrap();
        assert!(r.accepted, "{alg:?}: {r:?}");
        assert_eq!(r.approval.resolved_by.as_deref(), Some("alice@example.com"));
    }
}

#[test]
fn every_way_to_smuggle_an_external_token_in_is_refused() {
    let fx = Fixture::new();
    let engine = engine(&fx, provider().algorithms(&["RS256", "EdDSA"]).unwrap());
    let now = fx.clock.now_secs();
    let id = pending_payment(&engine, "task-oidc-attacks");
    let refused = |token: String, code: ErrorCode, why: &str| {
        let r = engine.approve(&id, &[token], None).unwrap();
        assert!(!r.accepted, "{why}: accepted");
        assert_eq!(r.reasons[0].code, code, "{why}: {:?}", r.reasons);
    };
    let rsa = |claims: &Value| id_token(Algorithm::RS256, "rsa.pem", "rsa-1", claims);
    let mut claims = alice(now);
    claims["aud"] = json!("someone-else");
    refused(rsa(&claims), ErrorCode::AudienceMismatch, "another audience");
    let mut claims = alice(now);
    claims["exp"] = json!(now - 120);
    refused(rsa(&claims), ErrorCode::CredentialExpired, "expired");
    let mut claims = alice(now);
    claims["nbf"] = json!(now + 600);
    refused(rsa(&claims), ErrorCode::CredentialNotYetValid, "not yet valid");
    let mut claims = alice(now);
    claims.as_object_mut().unwrap().remove("exp");
    refused(rsa(&claims), ErrorCode::MalformedToken, "no expiry");
    refused(id_token(Algorithm::ES256, "ec.pem", "ec-1", &alice(now)), ErrorCode::UnsupportedAlgorithm, "ES256 not allowed here");
    // The attacker signs with its own key under the provider's kid.
    refused(id_token(Algorithm::RS256, "rsa-attacker.pem", "rsa-1", &alice(now)), ErrorCode::SignatureInvalid, "foreign key");
    refused(id_token(Algorithm::RS256, "rsa-attacker.pem", "nope", &alice(now)), ErrorCode::UntrustedIssuer, "unknown kid");
    // ... or ships its key in the header.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.jwk = Some(public_jwk(Algorithm::RS256, "rsa-attacker.pem", "rsa-1"));
    let embedded = encode(&header, &alice(now), &signing_key(Algorithm::RS256, "rsa-attacker.pem")).unwrap();
    refused(embedded, ErrorCode::ForbiddenHeader, "header jwk");
    // The classic confusion: HS256 keyed with the provider's public key; and `alg: none`.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let confused = encode(&hs, &alice(now), &EncodingKey::from_secret(provider_keys().as_bytes()).unwrap()).unwrap();
    refused(confused, ErrorCode::UnsupportedAlgorithm, "HS256");
    let b64 = |v: &Value| aegis_sod::testing::b64_encode(v.to_string().as_bytes());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "rsa-1"})), b64(&alice(now)));
    let r = engine.approve(&id, &[none], None).unwrap();
    assert!(!r.accepted, "alg none");
    // An external identity cannot delegate: it binds no key Aegis knows.
    let r = engine.approve(&id, &[rsa(&alice(now)), fx.chain()[1].clone()], None).unwrap();
    assert_eq!((r.accepted, r.reasons[0].code), (false, ErrorCode::ParentMismatch.into()));
    // Without the attested group, the payments policy refuses.
    let mut claims = alice(now);
    claims["groups"] = json!(["engineering"]);
    let r = engine.approve(&id, &[rsa(&claims)], None).unwrap();
    assert_eq!((r.accepted, r.reasons[0].code), (false, aegis_sod::ReasonCode::NO_MATCHING_PERMIT));
    // Nothing above was accepted: the request is still pending for a real approver.
    assert!(engine.approve(&id, &[rsa(&alice(now))], None).unwrap().accepted);
}

#[test]
fn key_rotation_and_revocation_apply_from_the_next_call() {
    let fx = Fixture::new();
    let engine = engine(&fx, provider());
    let now = fx.clock.now_secs();
    let old = id_token(Algorithm::RS256, "rsa.pem", "rsa-1", &alice(now));
    // The provider rotates to its EC key only.
    engine.update_jwks(IDP, &jwks(vec![public_jwk(Algorithm::ES256, "ec.pem", "ec-2")])).unwrap();
    let id = pending_payment(&engine, "task-rotation");
    assert_eq!(engine.approve(&id, std::slice::from_ref(&old), None).unwrap().reasons[0].code, ErrorCode::UntrustedIssuer);
    assert_eq!(engine.update_jwks("https://unknown.example", "{}").unwrap_err().code(), ErrorCode::UntrustedIssuer);
    // Ending the issuer's task revokes its identities on every path.
    engine.end_task(&format!("external:{IDP}")).unwrap();
    let fresh = id_token(Algorithm::ES256, "ec.pem", "ec-2", &alice(now));
    let r = engine.approve(&id, &[fresh], None).unwrap();
    assert_eq!((r.accepted, r.reasons[0].code), (false, ErrorCode::TaskEnded.into()));
}

#[test]
fn a_spiffe_svid_is_an_identity_too() {
    let fx = Fixture::new();
    let issuer = ExternalIssuer::new("https://spire.example", "aegis", &provider_keys())
        .unwrap()
        .scope(vec!["invoice.create".into()])
        .task("spiffe-workloads");
    let engine = engine(&fx, issuer);
    let now = fx.clock.now_secs();
    let svid = json!({"iss": "https://spire.example", "sub": "spiffe://example.org/ns/billing/sa/drafter", "aud": ["aegis"], "iat": now, "exp": now + 300});
    let token = id_token(Algorithm::ES256, "ec.pem", "ec-1", &svid);
    let draft = aegis_sod::AuthorizationRequest::new(vec![token], "invoice.create", json!({"customer": "acme", "amount": 900}));
    let d = engine.authorize(&draft).unwrap();
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    let ledger = engine.ledger("spiffe-workloads").unwrap();
    assert_eq!(ledger[0].agent_id, "spiffe://example.org/ns/billing/sa/drafter");
}

#[test]
fn an_issuer_configured_twice_is_an_error() {
    let fx = Fixture::new();
    let twice = Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_external_issuer(provider())
        .trust_external_issuer(ExternalIssuer::new(IDP, "other-audience", &provider_keys()).unwrap())
        .clock(fx.clock.clone())
        .build();
    assert_eq!(twice.unwrap_err().code(), ErrorCode::MalformedRequest);
    let both_kinds = Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(IDP, fx.issuer.public_key().clone())
        .trust_external_issuer(provider())
        .build();
    assert_eq!(both_kinds.unwrap_err().code(), ErrorCode::MalformedRequest);
}

/// A key change that cannot be recorded is not made, as a bundle swap is not: with the audit
/// log unable to write, `update_jwks` fails and the old keys stay in force.
#[test]
fn a_key_change_that_cannot_be_recorded_is_not_made() {
    let fx = Fixture::new();
    let dir = temp_path("jwks-unrecorded");
    std::fs::create_dir_all(&dir).unwrap();
    let key = aegis_sod::audit::LogKey::new("aegis.example/jwks", aegis_sod::KeyPair::from_seed(&[9; 32]).unwrap()).unwrap();
    let log = std::sync::Arc::new(aegis_sod::audit::AuditLog::builder(&dir, key).segment_bytes(1).open().unwrap());
    let engine = Engine::builder()
        .bundle(Bundle::from_dir(payments_dir()).unwrap())
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .trust_external_issuer(provider())
        .clock(fx.clock.clone())
        .audit_log(log.clone())
        .build()
        .unwrap();
    let now = fx.clock.now_secs();
    let old = id_token(Algorithm::RS256, "rsa.pem", "rsa-1", &alice(now));
    assert!(engine.verify_chain(std::slice::from_ref(&old)).is_ok());
    // The next segment is /dev/full: every write fails with ENOSPC, as a full disk does.
    std::os::unix::fs::symlink("/dev/full", dir.join(format!("{:020}.jsonl", log.size()))).unwrap();
    let ec_only = jwks(vec![public_jwk(Algorithm::ES256, "ec.pem", "ec-2")]);
    assert_eq!(engine.update_jwks(IDP, &ec_only).unwrap_err().code(), ErrorCode::AuditUnavailable);
    assert!(engine.verify_chain(std::slice::from_ref(&old)).is_ok(), "the old keys stay in force");
    let new = id_token(Algorithm::ES256, "ec.pem", "ec-2", &alice(now));
    assert!(engine.verify_chain(&[new]).is_err(), "the new key was not put in force");
}
