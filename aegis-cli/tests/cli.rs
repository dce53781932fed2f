//! The `aegis` binary end to end: the demo, and the key → token → authorize round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn aegis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aegis")).args(args).current_dir(repo_root()).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn demo_walks_the_payments_story() {
    let (ok, out, err) = aegis(&["demo"]);
    assert!(ok, "demo failed: {err}\n{out}");
    for expected in [
        "1. finance-agent pays 1200\n",
        "decision: allow [ok",
        "reason:   policy_forbid `executor-needs-parent`",
        "decision: approval_needed [ok",
        "approval: apr_",
        "reason:   signature_invalid: link 1",
        "reason:   credential_expired: link 1",
        "reason:   policy_forbid `destination-account-pattern`",
        "\"card_number\":\"[REDACTED]\"",
        "notifier: posted a Slack approval request",
        "reason:   tool_not_in_scope: `planner` holds no credential for `aegis.approve`",
        "reason:   approver_conflict: `planner/finance-approver` is a delegate",
        "approval: approved [ok]",
        "reason:   approval_granted `large-payment-needs-approval`",
        "reason:   approval_replayed",
        "reason:   approval_args_mismatch",
        "reason:   budget_exceeded",
        "reason:   budget_amount_invalid",
        "reason:   task_ended",
        "reason:   policy_forbid `drafter-does-not-pay`",
        "refused [ok]: admin_conflict: `alice` cannot approve its own change",
        "requested by alice, approved by bob",
        "candidate: approval_needed (candidate-review-over-1000); the enforced bundle decided",
        "candidate would-block: `candidate-review-over-1000`: 2 of 3 calls",
        "all steps decided as expected",
    ] {
        assert!(out.contains(expected), "demo output lacks {expected:?}:\n{out}");
    }
    assert!(!out.contains("UNEXPECTED"));
}

#[test]
fn keys_tokens_and_authorize_round_trip() {
    let dir = std::env::temp_dir().join(format!("aegis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, content: &str| {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    };
    let seed = |n: u8| format!("{n:02x}").repeat(32);
    let key = |n: u8, public: bool| {
        let s = seed(n);
        let mut args = vec!["keys", "generate", "--seed", &s];
        if public {
            args.push("--public");
        }
        let (ok, out, err) = aegis(&args);
        assert!(ok, "{err}");
        out
    };
    assert!(!key(2, true).contains("\"d\""));
    let issuer = write("issuer.jwk", &key(1, false));
    let issuer_pub = write("issuer.pub.jwk", &key(1, true));
    let planner = write("planner.jwk", &key(2, false));
    let finance_pub = write("finance.pub.jwk", &key(3, true));

    let (ok, root, err) = aegis(&[
        "token",
        "issue",
        "--issuer",
        "https://issuer.example",
        "--key",
        &issuer,
        "--agent",
        "planner",
        "--agent-key",
        &planner,
        "--task",
        "t-1",
        "--intent",
        "pay invoices",
        "--scope",
        "stripe.create_payment",
    ]);
    assert!(ok, "{err}");
    let (ok, child, err) = aegis(&[
        "token",
        "delegate",
        "--parent",
        root.trim(),
        "--key",
        &planner,
        "--agent",
        "finance-agent",
        "--agent-key",
        &finance_pub,
        "--scope",
        "stripe.create_payment",
        "--ttl",
        "300",
    ]);
    assert!(ok, "{err}");
    let (ok, inspected, _) = aegis(&["token", "inspect", child.trim()]);
    assert!(ok && inspected.contains("\"sub\": \"finance-agent\"") && inspected.contains("\"task\": \"t-1\""), "{inspected}");

    // Widening is refused at issue time, with the stable code.
    let (ok, _, err) = aegis(&[
        "token",
        "delegate",
        "--parent",
        root.trim(),
        "--key",
        &planner,
        "--agent",
        "finance-agent",
        "--agent-key",
        &finance_pub,
        "--scope",
        "stripe.create_payment,payroll.run",
    ]);
    assert!(!ok && err.contains("[scope_widened]"), "{err}");

    let request = serde_json::json!({
        "chain": [root.trim(), child.trim()],
        "tool": "stripe.create_payment",
        "args": {"amount": 9000, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"},
    });
    let request = write("request.json", &request.to_string());
    let trust = format!("https://issuer.example={issuer_pub}");
    let (ok, out, err) = aegis(&["authorize", "--bundle", "policies/payments", "--trust", &trust, "--request", &request]);
    assert!(ok, "{err}");
    let decision: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(decision["outcome"], "approval_needed");
    assert!(decision["approval_id"].as_str().unwrap().starts_with("apr_"));

    let (ok, out, _) = aegis(&["policy", "validate", "policies/payments"]);
    assert!(ok && out.starts_with("ok: payments@1.0.0+"), "{out}");
    let broken = write("broken.json", "{\"chain\": [], \"tool\": \"x\", \"tool\": \"y\"}");
    let (ok, _, err) = aegis(&["authorize", "--bundle", "policies/payments", "--trust", &trust, "--request", &broken]);
    assert!(!ok && err.contains("[malformed_request]"), "{err}");
}

#[test]
fn unknown_flags_and_bad_values_are_errors_with_a_usage_line() {
    // A misspelt `--seed` once generated a random key silently.
    let (ok, out, err) = aegis(&["keys", "generate", "--sed", &"ab".repeat(32)]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("--sed") && err.contains("Usage:"), "{err}");
    let (ok, _, err) = aegis(&["keys", "generate", "--seed", "not-hex"]);
    assert!(!ok && err.contains("64 hexadecimal digits") && err.contains("Usage:"), "{err}");
    let (ok, _, err) = aegis(&["authorize", "--bundle", "policies/payments", "--trust", "no-equals-sign", "--request", "r.json"]);
    assert!(!ok && err.contains("NAME=ISSUER.jwk"), "{err}");
    let (ok, _, err) = aegis(&[
        "token",
        "delegate",
        "--parent",
        "x",
        "--key",
        "k",
        "--agent",
        "a",
        "--agent-key",
        "k",
        "--scope",
        "s",
        "--ttl=-5",
    ]);
    assert!(!ok && err.contains("--ttl"), "{err}");
    let (ok, _, err) = aegis(&["frobnicate"]);
    assert!(!ok && err.contains("Usage:"), "{err}");
    // The same seed always gives the same key.
    let seed = "07".repeat(32);
    assert_eq!(aegis(&["keys", "generate", "--seed", &seed]).1, aegis(&["keys", "generate", "--seed", &seed]).1);
}

#[test]
fn the_demo_writes_an_audit_log_that_verifies_and_every_audit_command_checks_it() {
    let dir = std::env::temp_dir().join(format!("aegis-cli-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = dir.join("log");
    let log_arg = log.to_str().unwrap();
    let (ok, out, err) = aegis(&["demo", "--audit-log", log_arg]);
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("verified: every record links"), "{out}");
    let vkey = std::fs::read_to_string(log.join("log.pub")).unwrap().trim().to_owned();
    let (ok, out, err) = aegis(&["audit", "verify", log_arg, "--key", &vkey]);
    assert!(ok && out.contains("intact"), "{out}{err}");
    let trusted = dir.join("trusted.checkpoint");
    std::fs::copy(log.join("checkpoint"), &trusted).unwrap();

    let (ok, out, err) = aegis(&["audit", "inclusion", log_arg, "--seq", "3"]);
    assert!(ok, "{err}");
    let proof: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(proof["verified"], true);
    assert!(!proof["proof"].as_array().unwrap().is_empty());
    let (ok, out, _) = aegis(&["audit", "tail", log_arg, "-n", "8"]);
    assert!(ok && out.contains("task.ended") && out.contains("task_ended") && out.contains("admin"), "{out}");
    let (ok, out, _) = aegis(&["audit", "export", log_arg]);
    assert!(ok);
    let events: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.len() > 10 && events.iter().all(|e| e["specversion"] == "1.0"));

    // A second run extends the log; the earlier checkpoint is consistent with the new one.
    let (ok, _, err) = aegis(&["demo", "--audit-log", log_arg]);
    assert!(ok, "{err}");
    let (ok, out, err) = aegis(&["audit", "consistency", log_arg, "--old", trusted.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["verified"], true);

    // An edited record: non-zero, naming it.
    let segment = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let denied = lines.iter().position(|l| l.contains(r#""outcome":"deny""#)).unwrap();
    lines[denied] = lines[denied].replace(r#""outcome":"deny""#, r#""outcome":"allow""#);
    std::fs::write(&segment, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (ok, out, err) = aegis(&["audit", "verify", log_arg, "--checkpoint", trusted.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(err.contains(&format!("first bad record {denied}")), "{err}");

    // Truncated: the last two records deleted.
    std::fs::write(&segment, text.lines().take(text.lines().count() - 2).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (ok, _, err) = aegis(&["audit", "verify", log_arg]);
    assert!(!ok && err.contains("removed"), "{err}");
}

#[test]
fn policy_test_lint_and_dry_run() {
    let (ok, out, err) = aegis(&["policy", "test", "policies/payments"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("cases,") && out.contains(" 0 failed"), "{out}");

    // The shipped bundle's one finding: invoices have no forbid. Allowed, the run passes.
    let (ok, out, _) = aegis(&["policy", "lint", "policies/payments"]);
    assert!(!ok && out.contains("[tool_without_forbid]"), "{out}");
    let (ok, out, err) = aegis(&["policy", "lint", "policies/payments", "--allow", "tool_without_forbid"]);
    assert!(ok, "{out}{err}");

    // The demo's log replayed: the shipped bundle changes nothing; without the drafter rule
    // the clerk's payment would have run, and the command says so and fails.
    let dir = std::env::temp_dir().join(format!("aegis-cli-dry-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = dir.join("log");
    let (ok, _, err) = aegis(&["demo", "--audit-log", log.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = aegis(&["policy", "dry-run", "--bundle", "policies/payments", "--log", log.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(" 0 changed"), "{out}");
    let candidate = dir.join("candidate");
    std::fs::create_dir_all(&candidate).unwrap();
    for entry in std::fs::read_dir(repo_root().join("policies/payments")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, candidate.join(path.file_name().unwrap())).unwrap();
        }
    }
    let matrix = candidate.join("sod.yaml");
    let text = std::fs::read_to_string(&matrix).unwrap();
    let start = text.find("  - id: drafter-does-not-pay").unwrap();
    let end = start + text[start..].find("  - id: approver-does-not-pay").unwrap();
    std::fs::write(&matrix, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let (ok, out, err) = aegis(&["policy", "dry-run", "--bundle", candidate.to_str().unwrap(), "--log", log.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("1 changed (1 would now run)"), "{out}");
    assert!(out.contains("DENY->ALLOW") && out.contains("by planner/clerk") && out.contains("drafter-does-not-pay"), "{out}");
    assert!(err.contains("1 decision(s) would change"), "{err}");
    let (ok, _, _) = aegis(&[
        "policy",
        "dry-run",
        "--bundle",
        candidate.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--accept-changes",
    ]);
    assert!(ok, "expected changes accepted");
}

#[test]
fn bundles_are_signed_and_verified_and_a_late_edit_is_caught() {
    let dir = std::env::temp_dir().join(format!("aegis-cli-bundle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bundle = dir.join("payments");
    std::fs::create_dir_all(&bundle).unwrap();
    for entry in std::fs::read_dir(repo_root().join("policies/payments")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, bundle.join(path.file_name().unwrap())).unwrap();
        }
    }
    let (ok, private, _) = aegis(&["keys", "generate", "--seed", &"0c".repeat(32)]);
    assert!(ok);
    let (_, public, _) = aegis(&["keys", "generate", "--seed", &"0c".repeat(32), "--public"]);
    let (_, other, _) = aegis(&["keys", "generate", "--seed", &"0d".repeat(32), "--public"]);
    for (name, text) in [("signer.jwk", &private), ("signer.pub.jwk", &public), ("other.pub.jwk", &other)] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let b = bundle.to_str().unwrap();
    let key = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let (ok, out, err) = aegis(&["bundle", "sign", b, "--key", &key("signer.jwk")]);
    assert!(ok && out.starts_with("signed payments@"), "{out}{err}");
    let (ok, out, err) = aegis(&["bundle", "verify", b, "--key", &key("signer.pub.jwk")]);
    assert!(ok && out.starts_with("ok: payments@"), "{out}{err}");
    let (ok, _, err) = aegis(&["bundle", "verify", b, "--key", &key("other.pub.jwk")]);
    assert!(!ok && err.contains("bundle_signature_invalid"), "{err}");
    let matrix = std::fs::read_to_string(bundle.join("sod.yaml")).unwrap().replace("above: 5000", "above: 50000");
    std::fs::write(bundle.join("sod.yaml"), matrix).unwrap();
    let (ok, _, err) = aegis(&["bundle", "verify", b, "--key", &key("signer.pub.jwk")]);
    assert!(!ok && err.contains("a file changed after signing"), "{err}");
}
