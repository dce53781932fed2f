//! `aegis policy lint`: the shipped payments bundle yields only what is known about it, and each
//! lint fires on a small bundle written to trigger it, and not on its near miss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use aegis_sod::{lint, Bundle, BundleSources, Lint};

/// `(code, file, line, policy id)` of each finding: what the tests compare.
type Found = (&'static str, String, usize, Option<String>);

const SCHEMA_FILE: &str = "t.cedarschema";

/// The context attributes Aegis fills in, as the schema declares them for every action.
const CONTEXT: &str = "agent_id: String, parent_agent_id?: String, initiator: String, lineage: Set<String>, depth: Long, \
                       task_id: String, intent: String, now: Long, task: TaskDuties, break_glass: Bool";

/// A schema with `pay` on line 5, `refund` on line 6, `aegis.approve` on line 7, then `extra`.
/// `pay` also declares `risk` and `approval`, which Aegis never fills in for it.
fn schema(extra: &str) -> String {
    format!(
        r#"entity Role;
entity Agent in [Role];
entity Tool;
type TaskDuties = {{ duties_by_agent: Set<String>, duties_by_lineage: Set<String>, performed: Set<String>, actors: Set<String> }};
action "pay" appliesTo {{ principal: [Agent], resource: [Tool], context: {{ args: {{ amount: Long, memo?: String }}, predicates: {{ ok: Bool }}, {CONTEXT}, risk?: Long, approval?: {{ tool: String }} }} }};
action "refund" appliesTo {{ principal: [Agent], resource: [Tool], context: {{ args: {{ amount: Long }}, predicates: {{}}, {CONTEXT} }} }};
action "aegis.approve" appliesTo {{ principal: [Agent], resource: [Tool], context: {{ args: {{}}, predicates: {{}}, {CONTEXT}, approval: {{ tool: String, roles: Set<String> }} }} }};
{extra}
"#
    )
}

/// Policies that lint clean over [`schema`]: both tools permitted and capped, and a finance
/// approver.
const BASE: &str = r#"@id("approver")
permit (principal in Role::"finance", action == Action::"aegis.approve", resource)
when { context.approval.tool == "pay" };

@id("permit-all")
permit (principal, action in [Action::"pay", Action::"refund"], resource);

@id("cap")
forbid (principal, action in [Action::"pay", Action::"refund"], resource)
when { context.args.amount > 100 };
"#;

/// The engine fills `context.predicates` from the manifest: `ok` is declared there.
const MANIFEST: &str = "name: t\nversion: 1.0.0\npredicates:\n  ok: {arg: memo, pattern: 'x', tools: [pay]}\n";

fn run(schema: String, extra: &[(&str, &str)]) -> Vec<Lint> {
    let mut policies = vec![("base.cedar".to_owned(), BASE.to_owned())];
    policies.extend(extra.iter().map(|(f, s)| ((*f).to_owned(), (*s).to_owned())));
    let sources = BundleSources { manifest: MANIFEST.into(), schema, schema_file: SCHEMA_FILE.into(), policies };
    let bundle = Bundle::from_sources(&sources).unwrap_or_else(|e| panic!("bundle does not load: {e}"));
    lint(&sources, &bundle)
}

fn found(lints: &[Lint]) -> Vec<Found> {
    lints.iter().map(|l| (l.code, l.file.clone(), l.line, l.policy_id.clone())).collect()
}

fn at(code: &'static str, file: &str, line: usize, policy: Option<&str>) -> Found {
    (code, file.to_owned(), line, policy.map(str::to_owned))
}

#[test]
fn the_payments_bundle_yields_only_the_unforbidden_invoice_tool() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/payments");
    let sources = BundleSources::read_dir(&dir).unwrap();
    let bundle = Bundle::from_sources(&sources).unwrap();
    let lints = lint(&sources, &bundle);
    assert_eq!(found(&lints), vec![at("tool_without_forbid", "payments.cedarschema", 23, None)], "{lints:#?}");
    assert!(lints[0].message.contains("`invoice.create`"), "{}", lints[0].message);
}

#[test]
fn the_base_bundle_is_clean() {
    let lints = run(schema(""), &[]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn negative_test_on_args() {
    let src = r#"@id("memo-required")
forbid (principal, action == Action::"pay", resource)
unless { context.args has memo };
"#;
    let lints = run(schema(""), &[("neg.cedar", src)]);
    assert_eq!(found(&lints), vec![at("negative_test_on_args", "neg.cedar", 1, Some("memo-required"))], "{lints:#?}");
    assert!(lints[0].message.contains("`memo-required`") && lints[0].message.contains("`context.args`"));

    // Near misses: `unless` over a predicate (the payments bundle's destination check), and a
    // positive `when` test over the arguments.
    let src = r#"@id("predicate-holds")
forbid (principal, action == Action::"pay", resource)
unless { context.predicates.ok };

@id("memo-present")
forbid (principal, action == Action::"pay", resource)
when { context.args has memo && context.args.amount > 10 };
"#;
    let lints = run(schema(""), &[("ok.cedar", src)]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn approval_role_unheld() {
    let src = r#"// A role no approval permit mentions.
@id("treasurer-approves")
@approval("treasurer")
forbid (principal, action == Action::"pay", resource)
when { context.args.amount > 50 };
"#;
    let lints = run(schema(""), &[("approvals.cedar", src)]);
    assert_eq!(found(&lints), vec![at("approval_role_unheld", "approvals.cedar", 2, Some("treasurer-approves"))], "{lints:#?}");
    assert!(lints[0].message.contains("`treasurer`"), "{}", lints[0].message);

    // A shadow permit is never enforced: the role is still unheld.
    let shadow = r#"@id("treasurer-shadow")
@shadow
permit (principal in Role::"treasurer", action == Action::"aegis.approve", resource);
"#;
    let lints = run(schema(""), &[("approvals.cedar", src), ("shadow.cedar", shadow)]);
    assert_eq!(found(&lints), vec![at("approval_role_unheld", "approvals.cedar", 2, Some("treasurer-approves"))], "{lints:#?}");

    // Near misses: the role in the scope of an approval permit, or in its conditions.
    let src = r#"@id("finance-approves")
@approval("finance")
forbid (principal, action == Action::"pay", resource)
when { context.args.amount > 50 };

@id("auditor-approves")
@approval("auditor")
forbid (principal, action == Action::"refund", resource)
when { context.args.amount > 50 };

@id("auditors")
permit (principal, action == Action::"aegis.approve", resource)
when { principal in Role::"auditor" && context.approval.tool == "refund" };
"#;
    let lints = run(schema(""), &[("approvals.cedar", src)]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn tool_without_policy() {
    let extra = r#"action "export" appliesTo { principal: [Agent], resource: [Tool], context: { args: {}, predicates: {}, depth: Long } };
action "aegis.other" appliesTo { principal: [Agent], resource: [Tool], context: { args: {}, predicates: {}, depth: Long } };"#;
    let lints = run(schema(extra), &[]);
    assert_eq!(found(&lints), vec![at("tool_without_policy", SCHEMA_FILE, 8, None)], "{lints:#?}");
    assert!(lints[0].message.contains("`export`"), "{}", lints[0].message);

    // Near miss: a forbid over every action covers it (Aegis's own actions are never flagged).
    let src = r#"@id("too-deep")
forbid (principal, action, resource)
when { context.depth > 5 };
"#;
    let lints = run(schema(extra), &[("all.cedar", src)]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn tool_without_policy_skips_action_groups() {
    let extra = r#"action "writes";
action "export" in ["writes"] appliesTo { principal: [Agent], resource: [Tool], context: { args: {}, predicates: {}, depth: Long } };"#;
    let lints = run(schema(extra), &[]);
    assert_eq!(found(&lints), vec![at("tool_without_policy", SCHEMA_FILE, 9, None)], "{lints:#?}");

    // Covered through its group: `action in [group]`.
    let src = r#"@id("writes-permitted")
permit (principal, action in [Action::"writes"], resource);
@id("writes-capped")
forbid (principal, action in [Action::"writes"], resource) when { context.depth > 5 };
"#;
    let lints = run(schema(extra), &[("writes.cedar", src)]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn tool_without_forbid() {
    let extra = r#"action "export" appliesTo { principal: [Agent], resource: [Tool], context: { args: {}, predicates: {}, depth: Long } };"#;
    let permit = r#"@id("export-permitted")
permit (principal, action == Action::"export", resource);
"#;
    // A shadow forbid refuses nothing.
    let shadow = r#"@id("export-shadow-cap")
@shadow
forbid (principal, action == Action::"export", resource) when { context.depth > 5 };
"#;
    let lints = run(schema(extra), &[("export.cedar", permit), ("shadow.cedar", shadow)]);
    assert_eq!(found(&lints), vec![at("tool_without_forbid", SCHEMA_FILE, 8, None)], "{lints:#?}");
    assert!(lints[0].message.contains("`export`"), "{}", lints[0].message);

    // Near miss: an enforced forbid.
    let forbid = r#"@id("export-cap")
forbid (principal, action == Action::"export", resource) when { context.depth > 5 };
"#;
    let lints = run(schema(extra), &[("export.cedar", permit), ("forbid.cedar", forbid)]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn context_attribute_unsupplied() {
    let src = r#"@id("risky")
forbid (principal, action == Action::"pay", resource)
when { context has risk && context.risk > 3 };

@id("approved-payment")
forbid (principal, action == Action::"pay", resource)
when { context has approval && context.approval.tool == "pay" };
"#;
    let lints = run(schema(""), &[("context.cedar", src)]);
    assert_eq!(
        found(&lints),
        vec![
            at("context_attribute_unsupplied", "context.cedar", 1, Some("risky")),
            at("context_attribute_unsupplied", "context.cedar", 5, Some("approved-payment")),
        ],
        "{lints:#?}"
    );
    assert!(lints[0].message.contains("`context.risk`"), "{}", lints[0].message);
    assert!(lints[1].message.contains("`context.approval`") && lints[1].message.contains("`aegis.approve`"));

    // Near misses: `approval` for approvals (the base's approver permit), the optional
    // `parent_agent_id`, and `task`.
    let src = r#"@id("sod")
forbid (principal, action == Action::"pay", resource)
unless { context has parent_agent_id && !context.task.duties_by_agent.contains("refund") };
"#;
    let lints = run(schema(""), &[("context.cedar", src)]);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn shadow_duplicate() {
    let src = r#"@id("cap-candidate")
@shadow
forbid (principal, action in [Action::"pay", Action::"refund"], resource)
when { context.args.amount > 100 };
"#;
    let lints = run(schema(""), &[("shadow.cedar", src)]);
    assert_eq!(found(&lints), vec![at("shadow_duplicate", "shadow.cedar", 1, Some("cap-candidate"))], "{lints:#?}");
    assert!(lints[0].message.contains("`cap`"), "{}", lints[0].message);

    // Near misses: another threshold, or a narrower scope.
    let src = r#"@id("lower-cap-candidate")
@shadow
forbid (principal, action in [Action::"pay", Action::"refund"], resource)
when { context.args.amount > 99 };

@id("pay-cap-candidate")
@shadow
forbid (principal, action == Action::"pay", resource)
when { context.args.amount > 100 };
"#;
    let lints = run(schema(""), &[("shadow.cedar", src)]);
    assert!(lints.is_empty(), "{lints:#?}");
}
