//! Approval channels: Slack's request signatures and Bot Framework tokens, attacked; the
//! roster as the only way a chat account becomes an approver, and never a way around the
//! approver checks; messages that cannot be turned against the person reading them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::{
    slack_message, slack_resolved_message, teams_card, Bundle, Channel, ChannelVerdict, Engine, ErrorCode, Outcome, SlackAction,
    SlackVerifier, TeamsAction, TeamsVerifier,
};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut message = format!("v0:{ts}:").into_bytes();
    message.extend_from_slice(body);
    format!("v0={}", hex::encode(hmac_sha256(secret.as_bytes(), &message)))
}

#[test]
fn slack_signatures_are_checked_and_used_once() {
    let verifier = SlackVerifier::new(SECRET);
    let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
    let code = |r: aegis_sod::Result<()>| r.unwrap_err().code();
    assert_eq!(code(verifier.verify(&NOW.to_string(), &sign("other", NOW, body), body, NOW)), ErrorCode::ChannelSignatureInvalid);
    assert_eq!(
        code(verifier.verify(&NOW.to_string(), &sign(SECRET, NOW, b"payload=x"), body, NOW)),
        ErrorCode::ChannelSignatureInvalid
    );
    assert_eq!(
        code(verifier.verify(&NOW.to_string(), &sign(SECRET, NOW + 1, body), body, NOW)),
        ErrorCode::ChannelSignatureInvalid,
        "the timestamp is signed"
    );
    let old = NOW - 301;
    assert_eq!(code(verifier.verify(&old.to_string(), &sign(SECRET, old, body), body, NOW)), ErrorCode::ChannelSignatureInvalid);
    let future = NOW + 301;
    assert_eq!(
        code(verifier.verify(&future.to_string(), &sign(SECRET, future, body), body, NOW)),
        ErrorCode::ChannelSignatureInvalid
    );
    for bad in ["", "v0=", "v1=00", "v0=zz", "sha256=abcd"] {
        assert_eq!(code(verifier.verify(&NOW.to_string(), bad, body, NOW)), ErrorCode::ChannelSignatureInvalid, "{bad}");
    }
    assert_eq!(code(verifier.verify("not-a-number", &sign(SECRET, NOW, body), body, NOW)), ErrorCode::ChannelSignatureInvalid);
    // Valid once; the same request again is a replay, also with its hex in upper case.
    let signature = sign(SECRET, NOW - 200, body);
    verifier.verify(&(NOW - 200).to_string(), &signature, body, NOW).unwrap();
    assert_eq!(code(verifier.verify(&(NOW - 200).to_string(), &signature, body, NOW)), ErrorCode::ChannelReplayed);
    let upper = format!("v0={}", signature[3..].to_uppercase());
    assert_eq!(code(verifier.verify(&(NOW - 200).to_string(), &upper, body, NOW + 10)), ErrorCode::ChannelReplayed);
}

#[test]
fn a_replay_raced_from_many_threads_is_accepted_once() {
    let verifier = Arc::new(SlackVerifier::new(SECRET));
    let body = b"payload=race".to_vec();
    let signature = sign(SECRET, NOW, &body);
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (verifier, body, signature) = (Arc::clone(&verifier), body.clone(), signature.clone());
            std::thread::spawn(move || verifier.verify(&NOW.to_string(), &signature, &body, NOW).is_ok())
        })
        .collect();
    let accepted = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(accepted, 1);
}

fn slack_payload(payload: &Value) -> Vec<u8> {
    let encoded: String = payload
        .to_string()
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("payload={encoded}").into_bytes()
}

#[test]
fn slack_actions_are_parsed_strictly() {
    let click = json!({"type": "block_actions", "user": {"id": "U1", "team_id": "T1"},
        "actions": [{"action_id": "aegis_approve", "value": "apr_1"}], "response_url": "https://hooks.slack.com/x"});
    let action = SlackAction::parse(&slack_payload(&click)).unwrap();
    assert_eq!(
        (action.account.as_str(), action.verdict, action.approval_id.as_str()),
        ("T1/U1", ChannelVerdict::Approve, "apr_1")
    );
    let mut two = click.clone();
    two["actions"] = json!([{"action_id": "aegis_approve", "value": "apr_1"}, {"action_id": "aegis_reject", "value": "apr_2"}]);
    let mut other = click.clone();
    other["actions"][0]["action_id"] = json!("approve_everything");
    let mut no_team = click.clone();
    no_team["user"] = json!({"id": "U1"});
    let mut view = click.clone();
    view["type"] = json!("view_submission");
    for bad in [two, other, no_team, view] {
        assert_eq!(SlackAction::parse(&slack_payload(&bad)).unwrap_err().code(), ErrorCode::MalformedRequest, "{bad}");
    }
    assert!(SlackAction::parse(b"token=abc").is_err());
}

/// An engine on the payments bundle whose chat clicks are attested by key 9.
fn channel_engine(fx: &Fixture, bundle: Bundle) -> Engine {
    Engine::builder()
        .bundle(bundle)
        .trust_issuer(ISSUER, fx.issuer.public_key().clone())
        .clock(fx.clock.clone())
        .approval_channels("aegis-approval-channels", key(9))
        .build()
        .unwrap()
}

fn with_roster(roster: &str) -> Bundle {
    let mut sources = engine_sources();
    sources.manifest = format!("{}\nroster:\n{roster}", sources.manifest.split("\nroster:").next().unwrap());
    Bundle::from_sources(&sources).unwrap()
}

#[test]
fn only_the_roster_makes_a_chat_account_an_approver() {
    let fx = Fixture::new();
    let engine = channel_engine(&fx, Bundle::from_dir(payments_dir()).unwrap());
    let d = engine.authorize(&req(&fx.chain(), pay(7000, GOOD_ACCOUNT), None)).unwrap();
    let id = d.approval_id.unwrap();
    let resolve = |channel, account: &str| engine.resolve_from_channel(channel, account, &id, ChannelVerdict::Approve, None);
    // Off the roster, or the right user in another Slack workspace, or the Slack id as a Teams id.
    assert_eq!(resolve(Channel::Slack, "T0AEGIS/U0NOBODY").unwrap_err().code(), ErrorCode::ChannelUserUnknown);
    assert_eq!(resolve(Channel::Slack, "T0EVIL/U0FINLEAD").unwrap_err().code(), ErrorCode::ChannelUserUnknown);
    assert_eq!(resolve(Channel::Teams, "T0AEGIS/U0FINLEAD").unwrap_err().code(), ErrorCode::ChannelUserUnknown);
    // On the roster without the role: the bundle's approver policies refuse.
    assert!(!resolve(Channel::Slack, "T0AEGIS/U0ANALYST").unwrap().accepted);
    let taken = resolve(Channel::Slack, "T0AEGIS/U0FINLEAD").unwrap();
    assert!(taken.accepted && taken.override_token.is_some());
    assert_eq!(taken.approval.resolved_by.as_deref(), Some("finance-lead"));

    // An engine without channels attests nobody.
    let plain = fx.engine();
    let d = plain.authorize(&req(&fx.chain(), pay(7000, GOOD_ACCOUNT), None)).unwrap();
    let err =
        plain.resolve_from_channel(Channel::Slack, "T0AEGIS/U0FINLEAD", &d.approval_id.unwrap(), ChannelVerdict::Approve, None);
    assert_eq!(err.unwrap_err().code(), ErrorCode::ChannelUserUnknown);
}

#[test]
fn a_roster_entry_naming_the_requesters_delegator_cannot_approve() {
    let fx = Fixture::new();
    // A careless roster maps a chat account onto the identity that initiated the task (the
    // requester itself is the delegate `planner/finance-agent`, a name no roster may hold).
    let bundle = with_roster("  planner: {roles: [finance-approver], slack: [T1/UPLANNER]}\n");
    let engine = channel_engine(&fx, bundle);
    let d = engine.authorize(&req(&fx.chain(), pay(7000, GOOD_ACCOUNT), None)).unwrap();
    let id = d.approval_id.unwrap();
    let r = engine.resolve_from_channel(Channel::Slack, "T1/UPLANNER", &id, ChannelVerdict::Approve, None).unwrap();
    assert!(!r.accepted, "{r:?}");
    assert_eq!(r.reasons[0].code.to_string(), "approver_conflict");
    // The approval stays pending and the call denied.
    let again = engine.authorize(&req(&fx.chain(), pay(7000, GOOD_ACCOUNT), None)).unwrap();
    assert_eq!(again.outcome, Outcome::ApprovalNeeded);
}

#[test]
fn a_roster_is_validated_when_the_bundle_loads() {
    let mut sources = engine_sources();
    let base = sources.manifest.split("\nroster:").next().unwrap().to_owned();
    for roster in [
        "  planner/approver: {slack: [T1/U1]}\n",
        "  a: {slack: [T1/U1]}\n  b: {slack: [T1/U1]}\n",
        "  a: {slack: [U1]}\n",
        "  a: {teams: ['']}\n",
    ] {
        sources.manifest = format!("{base}\nroster:\n{roster}");
        assert_eq!(Bundle::from_sources(&sources).unwrap_err().code(), ErrorCode::InvalidBundle, "{roster}");
    }
}

#[test]
fn messages_cannot_ping_link_or_break_out_of_their_blocks() {
    let fx = Fixture::new();
    let engine = fx.engine();
    let memo = "````<!channel> <https://evil.example|click to approve> &amp; [approve here](https://evil.example) **ok**";
    let mut args = pay(7000, GOOD_ACCOUNT);
    args["memo"] = json!(memo);
    let d = engine.authorize(&req(&fx.chain(), args, None)).unwrap();
    let pending = engine.approval(&d.approval_id.unwrap()).unwrap().unwrap();
    let text = slack_message(&pending).to_string();
    assert!(!text.contains("<!channel>") && !text.contains("<https://evil"), "{text}");
    assert!(text.contains("&lt;!channel&gt;"));
    assert_eq!(text.matches("```").count(), 2, "only the block's own fences: {text}");
    let resolved = slack_resolved_message(&pending, Some("<!here> nope"));
    assert!(!resolved.to_string().contains("<!here>"));
    // A Teams card renders no link or emphasis from the request, and carries the approval id
    // in its actions' data, never a token.
    let card = teams_card(&pending, None);
    let shown = card.to_string();
    assert!(!shown.contains("[approve here]") && !shown.contains("**ok**"), "{shown}");
    assert_eq!(card["actions"][0]["data"]["approval_id"], pending.approval_id.as_str());
    assert_eq!(card["actions"][0]["type"], "Action.Execute");
}

fn bot_keys() -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(repo_root().join("aegis-core/tests/fixtures/rsa.pem")).unwrap()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("bf".into());
    json!({"keys": [jwk]}).to_string()
}

fn bot_token(pem: &str, alg: Algorithm, claims: &Value) -> String {
    let pem = std::fs::read(repo_root().join("aegis-core/tests/fixtures").join(pem)).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_secret(b"the-app-password").unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some("bf".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[test]
fn teams_invokes_need_the_bot_frameworks_token_for_this_bot_and_service() {
    let verifier = TeamsVerifier::new("bot-app", &bot_keys()).unwrap();
    let url = "https://smba.trafficmanager.net/emea/";
    let now = aegis_sod::Clock::now_secs(&aegis_sod::SystemClock);
    let claims =
        json!({"iss": "https://api.botframework.com", "aud": "bot-app", "serviceurl": url, "nbf": now - 5, "exp": now + 600});
    let good = bot_token("rsa.pem", Algorithm::RS256, &claims);
    verifier.verify(Some(&format!("Bearer {good}")), url, now).unwrap();
    let refused = |auth: Option<String>, service: &str| verifier.verify(auth.as_deref(), service, now).unwrap_err().code();
    assert_eq!(refused(None, url), ErrorCode::ChannelSignatureInvalid);
    assert_eq!(refused(Some(good.clone()), url), ErrorCode::ChannelSignatureInvalid, "no Bearer prefix");
    assert_eq!(refused(Some(format!("Bearer {good}")), "https://evil.example/"), ErrorCode::ChannelSignatureInvalid);
    let variants = [
        ("rsa-attacker.pem", Algorithm::RS256, json!({"aud": "bot-app"})),
        ("rsa.pem", Algorithm::RS256, json!({"aud": "another-bot"})),
        ("rsa.pem", Algorithm::RS256, json!({"iss": "https://login.microsoftonline.com/x"})),
        ("rsa.pem", Algorithm::RS256, json!({"exp": now - 400})),
        ("rsa.pem", Algorithm::HS256, json!({})),
    ];
    for (pem, alg, changes) in variants {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        let token = bot_token(pem, alg, &c);
        assert_eq!(refused(Some(format!("Bearer {token}")), url), ErrorCode::ChannelSignatureInvalid, "{pem} {alg:?} {changes}");
    }
    let activity = json!({"type": "invoke", "name": "adaptiveCard/action", "serviceUrl": url, "from": {"aadObjectId": "oid"},
        "value": {"action": {"type": "Action.Execute", "verb": "aegis_reject", "data": {"approval_id": "apr_9"}}}});
    let action = TeamsAction::parse(activity.to_string().as_bytes()).unwrap();
    assert_eq!((action.verdict, action.approval_id.as_str(), action.account.as_str()), (ChannelVerdict::Reject, "apr_9", "oid"));
    let mut message = activity.clone();
    message["type"] = json!("message");
    assert!(TeamsAction::parse(message.to_string().as_bytes()).is_err());
}
