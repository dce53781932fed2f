//! The SoD matrix (`sod.yaml`) compiled to Cedar, and the schema's common context: the
//! payments bundle is written on them; incompatible duties within an agent, a lineage or a
//! task, both ways; nothing the engine does not fill in validates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use aegis_sod::{compile_matrix, AuthorizationRequest, Bundle, BundleSources, ErrorCode, Outcome, COMPILED_FILE};
use cedar_policy::PolicyId;
use common::*;
use serde_json::json;

#[test]
fn the_payments_bundle_is_written_on_its_matrix() {
    let sources = BundleSources::read_dir(payments_dir()).unwrap();
    let (_, compiled) = sources.policies.iter().find(|(f, _)| f == COMPILED_FILE).expect("the matrix compiled");
    assert!(compiled.contains("// sod.yaml line"), "each policy names its matrix line");
    let bundle = Bundle::from_sources(&sources).unwrap();
    for id in [
        "executor-needs-parent",
        "executor-differs-from-parent",
        "executor-differs-from-initiator",
        "executor-not-in-lineage",
        "drafter-does-not-pay",
        "approver-does-not-pay",
    ] {
        let meta = bundle.policy_meta(&PolicyId::new(id)).unwrap_or_else(|| panic!("no policy {id}"));
        assert_eq!((meta.file.as_str(), meta.category.as_deref()), (COMPILED_FILE, Some("sod")), "{id}");
    }
    let threshold = bundle.policy_meta(&PolicyId::new("large-payment-needs-approval")).unwrap();
    assert_eq!((threshold.approval.as_deref(), threshold.breakable), (Some("finance-approver"), true));
    // The schema declares only `args`; the common context is added, so no action repeats it.
    let schema = std::fs::read_to_string(payments_dir().join("payments.cedarschema")).unwrap();
    assert!(!schema.contains("duties_by_agent") && !schema.contains("initiator: String"));
    let full = aegis_sod::schema_with_common_context(&sources).unwrap();
    assert_eq!(full.matches("duties_by_agent").count(), 3, "{full}");
}

const SCHEMA: &str = r#"
entity Role;
entity Agent in [Role];
entity Tool;
action "draft" appliesTo { principal: [Agent], resource: [Tool], context: { args: {} } };
action "pay" appliesTo { principal: [Agent], resource: [Tool], context: { args: {} } };
"#;

fn matrix_bundle(matrix: &str) -> BundleSources {
    BundleSources {
        manifest: "name: m\nversion: 1.0.0\n".into(),
        schema: SCHEMA.into(),
        schema_file: "m.cedarschema".into(),
        policies: vec![
            ("permits.cedar".into(), "permit (principal, action, resource);\n".into()),
            (COMPILED_FILE.into(), compile_matrix(matrix).unwrap()),
        ],
    }
}

#[test]
fn incompatible_duties_within_a_task_both_ways() {
    let fx = Fixture::new();
    let matrix = "roles: []\nduties: {draft: [draft], pay: [pay]}\n\
                  incompatible: [{id: no-draft-and-pay, first: draft, then: pay, within: task, both_ways: true}]\n";
    let engine = fx
        .builder_on(Arc::new(aegis_sod::MemoryStore::new()))
        .bundle(Bundle::from_sources(&matrix_bundle(matrix)).unwrap())
        .build()
        .unwrap();
    let call = |task: &str, agent: &str, n: u8, tool: &str| {
        let chain = chain_in(task, agent, &key(n), &["draft", "pay"], NOW);
        engine.authorize(&AuthorizationRequest::new(chain, tool, json!({}))).unwrap()
    };
    // Another agent of the same task drafted: paying is refused anywhere in the task.
    assert_eq!(call("t1", "drafter", 20, "draft").outcome, Outcome::Allow);
    let d = call("t1", "payer", 21, "pay");
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons[0].policy_id.as_deref(), Some("no-draft-and-pay"));
    // The other order: paid first, drafting afterwards is refused (`both_ways`).
    assert_eq!(call("t2", "payer", 21, "pay").outcome, Outcome::Allow);
    let d = call("t2", "drafter", 20, "draft");
    assert_eq!((d.outcome, d.reasons[0].policy_id.as_deref()), (Outcome::Deny, Some("no-draft-and-pay-reverse")));
    // Another task is unaffected.
    assert_eq!(call("t3", "payer", 21, "pay").outcome, Outcome::Allow);
}

#[test]
fn within_an_agent_only_the_agent_is_bound() {
    let fx = Fixture::new();
    let matrix = "roles: []\nduties: {draft: [draft], pay: [pay]}\n\
                  incompatible: [{id: own, first: draft, then: pay, within: agent}]\n";
    let engine = fx
        .builder_on(Arc::new(aegis_sod::MemoryStore::new()))
        .bundle(Bundle::from_sources(&matrix_bundle(matrix)).unwrap())
        .build()
        .unwrap();
    let chain = |agent: &str, n: u8| chain_in("t", agent, &key(n), &["draft", "pay"], NOW);
    let ask =
        |c: &[String], tool: &str| engine.authorize(&AuthorizationRequest::new(c.to_vec(), tool, json!({}))).unwrap().outcome;
    assert_eq!(ask(&chain("a", 20), "draft"), Outcome::Allow);
    assert_eq!(ask(&chain("b", 21), "pay"), Outcome::Allow);
    assert_eq!(ask(&chain("a", 20), "pay"), Outcome::Deny);
}

#[test]
fn the_common_context_holds_only_what_the_engine_fills_in() {
    let mut sources = matrix_bundle("roles: []\nduties: {pay: [pay]}\n");
    sources.policies.push((
        "uses.cedar".into(),
        "forbid (principal, action == Action::\"pay\", resource) when { context.task.performed.contains(\"draft\") && context.depth > 3 && context.now > 0 && context.intent == \"x\" };\n".into(),
    ));
    Bundle::from_sources(&sources).unwrap();
    sources.policies.push(("bogus.cedar".into(), "forbid (principal, action, resource) when { context.bogus == 1 };\n".into()));
    let err = Bundle::from_sources(&sources).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidBundle);
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn a_windowed_incompatibility_and_matrix_budgets_reach_the_manifest() {
    let fx = Fixture::new();
    let dir = temp_path("matrix-window");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.yaml"), "name: w\nversion: 1.0.0\n").unwrap();
    std::fs::write(dir.join("m.cedarschema"), SCHEMA).unwrap();
    std::fs::write(dir.join("permits.cedar"), "permit (principal, action, resource);\n").unwrap();
    std::fs::write(
        dir.join("sod.yaml"),
        "roles: []\nduties: {draft: [draft], pay: [pay]}\n\
         incompatible: [{id: cool-off, first: draft, then: pay, within: agent, window_secs: 600}]\n\
         budgets: {pays: {tools: [pay], per: task, limit: 2, window_secs: 86400}}\n",
    )
    .unwrap();
    let sources = BundleSources::read_dir(&dir).unwrap();
    assert!(sources.manifest.contains("sod_cool_off") && sources.manifest.contains("pays"), "{}", sources.manifest);
    let engine =
        fx.builder_on(Arc::new(aegis_sod::MemoryStore::new())).bundle(Bundle::from_sources(&sources).unwrap()).build().unwrap();
    let ask = |tool: &str, now: i64| {
        let chain = chain_in("t", "a", &key(20), &["draft", "pay"], now);
        engine.authorize(&AuthorizationRequest::new(chain, tool, json!({}))).unwrap()
    };
    assert_eq!(ask("draft", NOW).outcome, Outcome::Allow);
    let d = ask("pay", NOW);
    assert_eq!((d.outcome, d.reasons[0].policy_id.as_deref()), (Outcome::Deny, Some("cool-off")));
    // Ten minutes later the window has passed; the matrix's budget allows two payments.
    fx.clock.advance_secs(601);
    assert_eq!(ask("pay", NOW + 601).outcome, Outcome::Allow);
    assert_eq!(ask("pay", NOW + 601).outcome, Outcome::Allow);
    assert_eq!(ask("pay", NOW + 601).codes(), vec![aegis_sod::ReasonCode::Error(ErrorCode::BudgetExceeded)]);
    // A budget the manifest declares too is refused by name.
    std::fs::write(
        dir.join("manifest.yaml"),
        "name: w\nversion: 1.0.0\nbudgets: {pays: {tools: [pay], per: task, limit: 9, window_secs: 60}}\n",
    )
    .unwrap();
    let err = BundleSources::read_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("declared in the manifest too"), "{err}");
}

#[test]
fn a_declared_engine_attribute_of_another_type_fails_validation() {
    let mut sources = matrix_bundle("roles: []\nduties: {pay: [pay]}\n");
    sources.schema = SCHEMA.replace(
        r#"action "pay" appliesTo { principal: [Agent], resource: [Tool], context: { args: {} } };"#,
        r#"action "pay" appliesTo { principal: [Agent], resource: [Tool], context: { args: {}, depth: String } };"#,
    );
    sources.policies.push((
        "typed.cedar".into(),
        "permit (principal, action == Action::\"pay\", resource) when { context.depth != \"0\" };\n".into(),
    ));
    let err = Bundle::from_sources(&sources).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidBundle, "{err}");
}

#[test]
fn thresholds_compile_quorums_and_stages() {
    let matrix = "roles: [lead, finance]\nduties: {draft: [draft], pay: [pay]}\nthresholds:\n\
                  \x20 - {id: two-approve, duty: pay, arg: amount, above: 10, approval: finance, quorum: 2}\n\
                  \x20 - {id: staged, duty: pay, arg: amount, above: 100, approval: finance, stages: [lead, finance]}\n";
    let compiled = compile_matrix(matrix).unwrap();
    assert!(compiled.contains("@quorum(\"2\")") && compiled.contains("@stages(\"lead,finance\")"), "{compiled}");
    let mut sources = matrix_bundle(matrix);
    sources.schema = SCHEMA.replace(
        r#"action "pay" appliesTo { principal: [Agent], resource: [Tool], context: { args: {} } };"#,
        r#"action "pay" appliesTo { principal: [Agent], resource: [Tool], context: { args: { amount: Long } } };"#,
    );
    let bundle = Bundle::from_sources(&sources).unwrap();
    assert_eq!(bundle.policy_meta(&PolicyId::new("two-approve")).unwrap().quorum, 2);
    assert_eq!(bundle.policy_meta(&PolicyId::new("staged")).unwrap().stages, ["lead", "finance"]);
    // A quorum without an approval role, a stage naming an undeclared role: refused.
    let no_role = "roles: []\nduties: {pay: [pay]}\nthresholds: [{id: t, duty: pay, arg: amount, above: 1, quorum: 2}]\n";
    assert!(compile_matrix(no_role).is_err());
    let unknown = "roles: [finance]\nduties: {pay: [pay]}\n\
                   thresholds: [{id: t, duty: pay, arg: amount, above: 1, approval: finance, stages: [ghost]}]\n";
    assert!(compile_matrix(unknown).is_err());
}
