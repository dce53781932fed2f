//! Policy tests (`tests/*.yaml` in a bundle): the payments bundle's own pass; wrong
//! expectations, a removed SoD forbid and malformed files are reported, never passed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use aegis_sod::{run_policy_tests, ErrorCode};
use common::*;

#[test]
fn the_payments_bundle_passes_its_own_tests() {
    let report = run_policy_tests(payments_dir()).unwrap();
    assert!(report.cases.len() >= 10, "{report:?}");
    assert!(report.passed(), "{:#?}", report.cases.iter().filter(|c| !c.passed()).collect::<Vec<_>>());
}

#[test]
fn a_removed_sod_forbid_fails_the_tests_that_name_it() {
    let dir = payments_copy("suite-no-drafter-rule");
    remove_drafter_rule(&dir);
    let report = run_policy_tests(&dir).unwrap();
    assert!(!report.passed());
    let failed: Vec<_> = report.cases.iter().filter(|c| !c.passed()).collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, "whoever drafted the invoice does not pay it");
    assert!(failed[0].failures[0].starts_with("step 2: expected `deny`, got `allow`"), "{:?}", failed[0].failures);
}

#[test]
fn wrong_expectations_are_reported_step_by_step() {
    let dir = payments_copy("suite-wrong");
    std::fs::write(
        dir.join("tests").join("wrong.yaml"),
        r#"
identities:
  planner: {scope: [stripe.create_payment]}
  agent: {delegated_by: planner, scope: [stripe.create_payment]}
  approver: {roles: [finance-approver], scope: [aegis.approve], task: desk}
cases:
  - name: wrong on purpose
    steps:
      - call: {as: agent, tool: stripe.create_payment, args: {amount: 10, currency: eur, destination: acct_1032D82eZvKYlo2C}}
        expect: deny
      - call: {as: agent, tool: stripe.create_payment, args: {amount: 10, currency: eur, destination: nowhere}}
        expect: deny
        reasons: [payment-hard-cap]
      - approve: {by: approver}
        expect: approved
      - call: {as: agent, tool: stripe.create_payment, args: {amount: 10, currency: eur, destination: acct_1032D82eZvKYlo2C}, with_approval: true}
        expect: allow
        would_block: true
"#,
    )
    .unwrap();
    let report = run_policy_tests(&dir).unwrap();
    let case = report.cases.iter().find(|c| c.name == "wrong on purpose").unwrap();
    let f = &case.failures;
    assert!(f[0].starts_with("step 1: expected `deny`, got `allow`"), "{f:?}");
    assert!(f[1].starts_with("step 2: expected reason `payment-hard-cap`"), "{f:?}");
    assert_eq!(f[2], "step 3: no approval is pending");
    assert_eq!(f[3], "step 4: `with_approval`, but no approval was accepted before");
    assert!(f[4].starts_with("step 4: expected would_block true"), "{f:?}");
    assert!(!report.passed());
}

#[test]
fn malformed_test_files_are_errors_with_a_code() {
    for (name, text, needle) in [
        ("unknown-field", "identities: {}\ncases: [{name: x, steps: [{cal: {}}]}]\n", "unknown field `cal`"),
        (
            "unknown-identity",
            "identities: {}\ncases: [{name: x, steps: [{call: {as: ghost, tool: t}}]}]\n",
            "unknown identity `ghost`",
        ),
        ("cycle", "identities: {a: {delegated_by: b}, b: {delegated_by: a}}\ncases: []\n", "cycle"),
        ("two-actions", "identities: {a: {}}\ncases: [{name: x, steps: [{end_task: true, approve: {by: a}}]}]\n", "step 1"),
        ("no-action", "identities: {a: {}}\ncases: [{name: x, steps: [{expect: allow}]}]\n", "a step does one of"),
    ] {
        let dir = payments_copy(&format!("suite-{name}"));
        std::fs::write(dir.join("tests").join("bad.yaml"), text).unwrap();
        let err = run_policy_tests(&dir).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidBundle, "{name}: {err}");
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }
    let empty = payments_copy("suite-none");
    std::fs::remove_dir_all(empty.join("tests")).unwrap();
    assert_eq!(run_policy_tests(&empty).unwrap_err().code(), ErrorCode::InvalidBundle);
}

/// Takes the drafter rule out of a bundle copy's SoD matrix.
fn remove_drafter_rule(dir: &Path) {
    let path = dir.join("sod.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("  - id: drafter-does-not-pay").unwrap();
    let end = start + text[start..].find("  - id: approver-does-not-pay").unwrap();
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}
