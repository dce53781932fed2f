//! The attacks of the identity review that the Python and Node suites do not reach, through the
//! C ABI (`aegis_engine_call`): a hand-signed link with `nbf = iat = i64::MIN`, one proof in two
//! tasks and brace task ids on Redis, and the approver racing its own other duty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, unsafe_code)]

#[path = "../../aegis-core/tests/common/redis.rs"]
mod redis;

use std::ffi::{c_char, CStr, CString};

use aegis_ffi::{
    aegis_call, aegis_engine_call, aegis_engine_free, aegis_engine_new, aegis_string_free, AegisEngine, AegisStatus,
};
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;
const TOOL: &str = "stripe.create_payment";

struct Handle(usize);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle from `aegis_engine_new`, freed once.
        unsafe { aegis_engine_free(self.0 as *mut AegisEngine) };
    }
}

fn out_text(status: AegisStatus, out: *mut c_char) -> Result<Value, AegisStatus> {
    if status != AegisStatus::Ok {
        return Err(status);
    }
    // SAFETY: the library returned `out`; copied, then freed once.
    let text = unsafe { CStr::from_ptr(out).to_str().unwrap().to_owned() };
    // SAFETY: returned by the library and not freed yet.
    unsafe { aegis_string_free(out) };
    Ok(serde_json::from_str(&text).unwrap())
}

fn free_call(op: &str, input: &Value) -> Value {
    let (op, input) = (CString::new(op).unwrap(), CString::new(input.to_string()).unwrap());
    let mut out = std::ptr::null_mut();
    // SAFETY: valid strings and out pointer.
    out_text(unsafe { aegis_call(op.as_ptr(), input.as_ptr(), &mut out) }, out).unwrap()
}

fn engine_call(engine: &Handle, op: &str, input: &Value) -> Value {
    let (op, input) = (CString::new(op).unwrap(), CString::new(input.to_string()).unwrap());
    let mut out = std::ptr::null_mut();
    // SAFETY: the handle is only a value to the library; valid strings and out pointer.
    out_text(unsafe { aegis_engine_call(engine.0 as *const AegisEngine, op.as_ptr(), input.as_ptr(), &mut out) }, out).unwrap()
}

fn key(n: u8) -> Value {
    free_call("generate_key", &json!({ "seed_hex": format!("{n:02x}").repeat(32) }))
}

fn public(k: &Value) -> Value {
    free_call("public_jwk", k)
}

fn new_engine(store: Value, bundle_patch: Option<(&str, &str)>) -> Handle {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut config = json!({
        "trusted_issuers": [{"issuer": "iss", "jwk": public(&key(1))}],
        "fixed_time": NOW, "store": store, "approval_key": key(7),
    });
    match bundle_patch {
        None => config["bundle_dir"] = json!(format!("{root}/policies/payments")),
        Some((from, to)) => {
            // The bundle's files as the engine reads them (its SoD matrix compiled).
            let sources = aegis_sod::BundleSources::read_dir(format!("{root}/policies/payments")).unwrap();
            let policies: serde_json::Map<String, Value> = sources.policies.iter().map(|(f, s)| (f.clone(), json!(s))).collect();
            config["bundle"] =
                json!({"manifest": sources.manifest.replace(from, to), "schema": sources.schema, "policies": policies});
        }
    }
    let config = CString::new(config.to_string()).unwrap();
    let mut engine = std::ptr::null_mut();
    // SAFETY: a valid config string and out pointer.
    assert_eq!(unsafe { aegis_engine_new(config.as_ptr(), &mut engine) }, AegisStatus::Ok);
    Handle(engine as usize)
}

fn issue(request: Value) -> String {
    free_call("issue", &request).as_str().unwrap().to_owned()
}

fn chain(task: &str, agent: &str, scope: &[&str]) -> Vec<String> {
    let root = issue(json!({"issuer": "iss", "signing_key": key(1), "agent_id": "planner", "agent_key": public(&key(2)),
        "task_id": task, "intent": "pay", "scope": ["*"], "issued_at": NOW - 60, "ttl_secs": 3000}));
    let leaf = issue(json!({"parent": root, "signing_key": key(2), "agent_id": agent, "agent_key": public(&key(3)),
        "scope": scope, "issued_at": NOW - 30, "ttl_secs": 2400}));
    vec![root, leaf]
}

fn pay(amount: i64) -> Value {
    json!({"amount": amount, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"})
}

#[test]
fn a_link_with_the_smallest_times_denies_and_panics_nothing() {
    let engine = new_engine(json!("memory"), None);
    let honest = chain("task-min", "finance-agent", &[TOOL]);
    let mut claims = free_call("inspect", &json!({"token": honest[1]}))["claims"].clone();
    (claims["nbf"], claims["iat"]) = (json!(i64::MIN), json!(i64::MIN));
    let signing = aegis_sod::KeyPair::from_seed(&[2; 32]).unwrap();
    let link = aegis_sod::testing::sign(&claims, "aegis-credential+jwt", &signing).unwrap();
    let d = engine_call(&engine, "authorize", &json!({"chain": [honest[0], link], "tool": TOOL, "args": pay(10)}));
    assert_eq!(d["outcome"], "deny", "{d}");
    let d = engine_call(&engine, "authorize", &json!({"chain": honest, "tool": TOOL, "args": pay(10)}));
    assert_eq!(d["outcome"], "allow", "{d}");
}

#[test]
fn on_redis_a_proof_is_accepted_once_and_brace_ids_are_two_tasks() {
    let Some(server) = redis::RedisServer::start() else { return };
    let store = json!({"redis": {"url": server.url(), "prefix": format!("ffi{}", std::process::id())}});
    let engine = new_engine(store, Some(("proof_required: []", "proof_required: [stripe.create_payment]")));
    let proof =
        free_call("create_proof", &json!({"key": key(3), "tool": TOOL, "args": pay(100), "issued_at": NOW, "jti": "pop-once"}));
    let codes: Vec<Value> = ["task-ffi-a", "task-ffi-b"]
        .iter()
        .map(|t| {
            let r = json!({"chain": chain(t, "finance-agent", &[TOOL]), "tool": TOOL, "args": pay(100), "proof": proof});
            engine_call(&engine, "authorize", &r)["reasons"][0]["code"].clone()
        })
        .collect();
    assert_eq!(codes, [json!("policy_permit"), json!("proof_replayed")]);
    let brace = new_engine(json!({"redis": {"url": server.url(), "prefix": format!("ffib{}", std::process::id())}}), None);
    let d = engine_call(
        &brace,
        "authorize",
        &json!({"chain": chain("t{1}", "finance-agent", &[TOOL]), "tool": TOOL, "args": pay(100)}),
    );
    assert_eq!(d["outcome"], "allow");
    assert_eq!(engine_call(&brace, "ledger", &json!({"task_id": "t_1_"})), json!([]));
    assert_eq!(engine_call(&brace, "ledger", &json!({"task_id": "t{1}"})).as_array().unwrap().len(), 1);
}

#[test]
fn the_approver_never_approves_after_its_own_other_duty() {
    let engine = std::sync::Arc::new(new_engine(json!("memory"), None));
    for round in 0..20 {
        let task = format!("task-ffi-race-{round}");
        let asked = engine_call(
            &engine,
            "authorize",
            &json!({"chain": chain(&task, "finance-agent", &[TOOL]), "tool": TOOL, "args": pay(9000)}),
        );
        let id = asked["approval_id"].as_str().unwrap().to_owned();
        let person = |t: &str, scope: &[&str]| {
            vec![issue(
                json!({"issuer": "iss", "signing_key": key(1), "agent_id": "finance-approver", "agent_key": public(&key(4)),
                "task_id": t, "intent": "review", "scope": scope, "roles": ["finance-approver"], "issued_at": NOW - 60, "ttl_secs": 3000}),
            )]
        };
        let (drafter, approver) = (person(&task, &["invoice.create"]), person("desk", &["aegis.approve"]));
        let (e1, e2) = (std::sync::Arc::clone(&engine), std::sync::Arc::clone(&engine));
        let draft = std::thread::spawn(move || {
            engine_call(
                &e1,
                "authorize",
                &json!({"chain": drafter, "tool": "invoice.create", "args": {"customer": "acme", "amount": 900}}),
            )
        });
        let approve =
            std::thread::spawn(move || engine_call(&e2, "approve", &json!({"approval_id": id, "approver_chain": approver})));
        let (_, _) = (draft.join().unwrap(), approve.join().unwrap());
        let ledger = engine_call(&engine, "ledger", &json!({"task_id": task}));
        let at = |tool: &str| ledger.as_array().unwrap().iter().position(|e| e["tool"] == tool);
        if let (Some(invoice), Some(approval)) = (at("invoice.create"), at("aegis.approve")) {
            assert!(approval < invoice, "round {round}: approved after drafting: {ledger}");
        }
    }
}
