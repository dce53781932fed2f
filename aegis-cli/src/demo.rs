//! `aegis demo`: the payments story, end to end, on the embedded defaults.
//!
//! A planner initiates a task and delegates payments to a finance agent. Every step prints the
//! decision and its reasons, and the demo fails if any decision differs from what it expects.

use std::path::PathBuf;
use std::sync::Arc;

use aegis_sod::audit::{AuditLog, LogKey};
use aegis_sod::{
    admin_proof, delegate, issue_root, slack_message, AdminAction, AdminRequest, AdminSignature, ApprovalResolution,
    AuthorizationRequest, Bundle, Clock, CredentialSpec, Decision, Engine, KeyPair, Outcome, PendingApproval, SystemClock,
    ADMIN_SCOPE,
};
use serde_json::{json, Value};

use clap::Args;

use crate::show;

#[derive(Args)]
pub struct DemoArgs {
    /// The payments bundle directory (default: the repository's `policies/payments`).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Record every step in an audit log in this directory (signed with the demo's log key),
    /// then verify it.
    #[arg(long)]
    audit_log: Option<PathBuf>,
}

/// The demo's audit log: a fixed demo key, so that reruns append to the same log.
fn demo_audit_log(dir: &std::path::Path) -> Result<Arc<AuditLog>, String> {
    let key = LogKey::new("aegis.demo/payments", KeyPair::from_seed(&[8; 32]).map_err(show)?).map_err(show)?;
    Ok(Arc::new(AuditLog::builder(dir, key).open().map_err(show)?))
}

const ISSUER: &str = "https://issuer.aegis.example";
const TOOL: &str = "stripe.create_payment";
const GOOD_ACCOUNT: &str = "acct_1032D82eZvKYlo2C";
const TASK: &str = "task-vendor-payouts-q3";
const SPLIT_TASK: &str = "task-vendor-payouts-q3-batch-2";

pub fn run(args: &DemoArgs) -> Result<(), String> {
    let dir = args.bundle.clone().unwrap_or_else(default_bundle);
    let bundle = Bundle::from_dir(&dir).map_err(show)?;

    // Fixed seeds keep the keys (not the ids or times) identical across runs.
    let key = |n: u8| KeyPair::from_seed(&[n; 32]).map_err(show);
    let (issuer, planner, finance) = (key(1)?, key(2)?, key(3)?);
    let approver = key(4)?;
    let audit = args.audit_log.as_deref().map(demo_audit_log).transpose()?;
    let mut builder = Engine::builder();
    if let Some(log) = &audit {
        builder = builder.audit_log(log.clone());
    }
    let engine = builder
        .bundle(bundle)
        .trust_issuer(ISSUER, issuer.public_key().clone())
        .notifier(Arc::new(|p: &PendingApproval| {
            let slack = slack_message(p);
            println!(
                "   notifier: posted a Slack approval request ({} blocks): {}",
                slack["blocks"].as_array().map_or(0, Vec::len),
                slack["text"]
            );
        }))
        .build()
        .map_err(show)?;
    println!("Aegis demo: payments, policy version {}\n", engine.policy_version());

    let now = SystemClock.now_secs();
    let spec_in = |task: &str, agent: &str, key: &KeyPair, scope: &[&str], issued_at: i64, ttl: i64, jti: &str| CredentialSpec {
        agent_id: agent.into(),
        agent_key: key.public_key().clone(),
        audience: aegis_sod::DEFAULT_AUDIENCE.into(),
        task_id: task.into(),
        intent: "pay the approved vendor invoices for Q3".into(),
        scope: scope.iter().map(|s| (*s).to_owned()).collect(),
        issued_at,
        expires_at: issued_at + ttl,
        jti: jti.into(),
        roles: Vec::new(),
    };
    let spec = |agent: &str, key: &KeyPair, scope: &[&str], issued_at: i64, ttl: i64, jti: &str| {
        spec_in(TASK, agent, key, scope, issued_at, ttl, jti)
    };
    let planner_cred =
        issue_root(ISSUER, &issuer, spec("planner", &planner, &["invoice.create", TOOL], now, 900, "cred-planner"))
            .map_err(show)?;
    let finance_cred =
        delegate(&planner_cred, &planner, spec("finance-agent", &finance, &[TOOL], now, 600, "cred-finance")).map_err(show)?;
    println!("planner (root, issued by {ISSUER}) delegates `{TOOL}` to finance-agent\n");

    let chain = vec![planner_cred.clone(), finance_cred.clone()];
    let pay = |amount: i64, destination: &str| json!({"amount": amount, "currency": "eur", "destination": destination});
    let failures = std::cell::Cell::new(0usize);
    let step_with =
        |title: &str, chain: Vec<String>, args: Value, token: Option<&str>, expect: Outcome| -> Result<Decision, String> {
            let request = AuthorizationRequest::new(chain, TOOL, args.clone());
            let request = match token {
                Some(t) => request.with_approval_token(t),
                None => request,
            };
            let decision = engine.authorize(&request).map_err(show)?;
            print_step(title, &args, &decision, expect);
            if decision.outcome != expect {
                failures.set(failures.get() + 1);
            }
            Ok(decision)
        };

    let step = |title: &str, chain: Vec<String>, args: Value, expect: Outcome| step_with(title, chain, args, None, expect);
    step("1. finance-agent pays 1200", chain.clone(), pay(1200, GOOD_ACCOUNT), Outcome::Allow)?;
    step(
        "2. the planner tries to execute the payment itself",
        vec![planner_cred.clone()],
        pay(1200, GOOD_ACCOUNT),
        Outcome::Deny,
    )?;
    // A clerk of the same task drafts the vendor's invoice, then tries to pay it: the ledger of
    // the task remembers who drafted.
    let clerk_cred =
        delegate(&planner_cred, &planner, spec("clerk", &key(5)?, &["invoice.create", TOOL], now, 600, "cred-clerk"))
            .map_err(show)?;
    let clerk = vec![planner_cred.clone(), clerk_cred];
    let invoice = json!({"customer": "acme-gmbh", "amount": 1200});
    let drafted = engine.authorize(&AuthorizationRequest::new(clerk.clone(), "invoice.create", invoice.clone())).map_err(show)?;
    print_step("2b. a clerk drafts the vendor's invoice (invoice.create)", &invoice, &drafted, Outcome::Allow);
    if drafted.outcome != Outcome::Allow {
        failures.set(failures.get() + 1);
    }
    step("2c. the clerk tries to pay the invoice it drafted", clerk, pay(1200, GOOD_ACCOUNT), Outcome::Deny)?;
    let waiting = step("3. finance-agent pays 9000", chain.clone(), pay(9000, GOOD_ACCOUNT), Outcome::ApprovalNeeded)?;
    let approval_id = waiting.approval_id.ok_or("no approval id")?;

    let forged = forge_scope(&finance_cred)?;
    step(
        "4a. a forged link: finance-agent's credential with its scope rewritten",
        vec![planner_cred.clone(), forged],
        pay(1200, GOOD_ACCOUNT),
        Outcome::Deny,
    )?;
    let expired =
        delegate(&planner_cred, &planner, spec("finance-agent", &finance, &[TOOL], now - 3600, 600, "cred-old")).map_err(show)?;
    step("4b. an expired link in the chain", vec![planner_cred.clone(), expired], pay(1200, GOOD_ACCOUNT), Outcome::Deny)?;

    step("5. a destination that is not a Stripe account", chain.clone(), pay(1200, "DE89370400440532013000"), Outcome::Deny)?;
    let mut with_card = pay(800, GOOD_ACCOUNT);
    with_card["card_number"] = json!("4242424242424242");
    step("6. a payment that carries a card number", chain.clone(), with_card, Outcome::Sanitize)?;

    // The approval, and what an agent chain might try to do with it.
    println!("7. the planner tries to approve the 9000 payment its own delegate asked for");
    let refused = engine.approve(&approval_id, std::slice::from_ref(&planner_cred), None).map_err(show)?;
    print_resolution(&refused, false, &failures);
    // An over-privileged planner, holding `aegis.approve` itself, names a sibling after the
    // approver. The sibling's id is `planner/finance-approver`, a delegate: never an approver.
    let overprivileged =
        issue_root(ISSUER, &issuer, spec("planner", &planner, &[TOOL, "aegis.approve"], now, 900, "cred-planner-op"))
            .map_err(show)?;
    let sibling_key = key(9)?;
    let sibling =
        delegate(&overprivileged, &planner, spec("finance-approver", &sibling_key, &["aegis.approve"], now, 600, "cred-sibling"))
            .map_err(show)?;
    println!("7b. a planner holding `aegis.approve` names a sibling `finance-approver` and approves through it");
    let named = engine.approve(&approval_id, &[overprivileged, sibling], None).map_err(show)?;
    print_resolution(&named, false, &failures);
    println!("8. the finance approver (a person: its own root credential, its role attested by the issuer) approves");
    let mut approver_spec =
        spec_in("approvals-desk", "finance-approver", &approver, &["aegis.approve"], now, 900, "cred-approver");
    approver_spec.roles = vec!["finance-approver".into()];
    let approver_cred = issue_root(ISSUER, &issuer, approver_spec).map_err(show)?;
    let approved = engine.approve(&approval_id, &[approver_cred], Some("invoice INV-2291 checked")).map_err(show)?;
    print_resolution(&approved, true, &failures);
    let token = approved.override_token.ok_or("no override token")?;
    let step = |title: &str, chain: Vec<String>, args: Value, token: Option<&str>, expect: Outcome| {
        step_with(title, chain, args, token, expect)
    };
    step(
        "9. finance-agent retries the 9000 payment with the override token",
        chain.clone(),
        pay(9000, GOOD_ACCOUNT),
        Some(&token),
        Outcome::Allow,
    )?;
    step("10. the same token again", chain.clone(), pay(9000, GOOD_ACCOUNT), Some(&token), Outcome::Deny)?;
    step("11. the token with the amount changed to 9001", chain.clone(), pay(9001, GOOD_ACCOUNT), Some(&token), Outcome::Deny)?;

    // A denied payment comes back split into three, in a fresh task with a 5000 budget.
    let split_root = issue_root(ISSUER, &issuer, spec_in(SPLIT_TASK, "planner", &planner, &[TOOL], now, 900, "cred-planner-2"))
        .map_err(show)?;
    let split_leaf =
        delegate(&split_root, &planner, spec_in(SPLIT_TASK, "finance-agent", &finance, &[TOOL], now, 600, "cred-finance-2"))
            .map_err(show)?;
    let split = vec![split_root, split_leaf];
    for (n, expect) in [Outcome::Allow, Outcome::ApprovalNeeded, Outcome::ApprovalNeeded].into_iter().enumerate() {
        let title = format!("12.{}. payment {} of 3 x 3000 against the task's 5000 budget", n + 1, n + 1);
        step(&title, split.clone(), pay(3000, GOOD_ACCOUNT), None, expect)?;
    }
    step(
        "12.4. a negative payment, to make room in the budget",
        split.clone(),
        pay(-1_000_000, GOOD_ACCOUNT),
        None,
        Outcome::Deny,
    )?;

    engine.end_task(TASK).map_err(show)?;
    println!("13. the planner's task ends: every credential of `{TASK}` is revoked\n");
    step("14. finance-agent tries one more payment in the ended task", chain, pay(100, GOOD_ACCOUNT), None, Outcome::Deny)?;

    // The control plane: changing what is enforced is itself segregated.
    let admin = |name: &str, key: &KeyPair| -> Result<Vec<String>, String> {
        let spec = spec_in("aegis-admins", name, key, &[ADMIN_SCOPE], now, 900, &format!("cred-{name}"));
        issue_root(ISSUER, &issuer, spec).map(|c| vec![c]).map_err(show)
    };
    let (alice_key, bob_key) = (key(8)?, key(9)?);
    let (alice, bob) = (admin("alice", &alice_key)?, admin("bob", &bob_key)?);
    // Each signature is single use: a fresh proof id per signature.
    let signatures = std::cell::Cell::new(0u32);
    let signed = |chain: &[String], key: &KeyPair, action: &AdminAction| -> Result<AdminSignature, String> {
        signatures.set(signatures.get() + 1);
        let jti = format!("demo-admin-{now}-{}", signatures.get());
        let proof = admin_proof(key, action, &engine.policy_version(), &jti, now, 300).map_err(show)?;
        Ok(AdminSignature { chain: chain.to_vec(), proof })
    };
    let log_only = AdminAction::SetMode { mode: aegis_sod::Mode::Shadow };
    println!("15. alice asks to switch Aegis to log-only and approves it herself");
    let alone = AdminRequest {
        policy_version: engine.policy_version(),
        action: log_only.clone(),
        requested_by: signed(&alice, &alice_key, &log_only)?,
        approved_by: signed(&alice, &alice_key, &AdminAction::SetMode { mode: aegis_sod::Mode::Shadow })?,
    };
    match engine.admin(&alone) {
        Err(e) => println!("   refused [ok]: {}: {}\n", e.code(), e.message()),
        Ok(_) => {
            println!("   switched [UNEXPECTED]\n");
            failures.set(failures.get() + 1);
        }
    }
    let candidate_dir = candidate_bundle(&dir)?;
    // The administrators sign the candidate's content (its digest), not just its path.
    let digest = Bundle::from_dir(&candidate_dir).map_err(show)?.digest().to_owned();
    let set = AdminAction::SetCandidate { bundle_dir: candidate_dir.display().to_string(), digest };
    let both = AdminRequest {
        requested_by: signed(&alice, &alice_key, &set)?,
        approved_by: signed(&bob, &bob_key, &set)?,
        policy_version: engine.policy_version(),
        action: set,
    };
    let outcome = engine.admin(&both).map_err(show)?;
    println!(
        "16. alice and bob put a candidate bundle beside the enforced one (shadow rollout): {}\n   requested by {}, approved by {}; the enforced bundle stays {}\n",
        outcome.candidate_version.as_deref().unwrap_or("?"),
        outcome.requested_by,
        outcome.approved_by,
        outcome.policy_version
    );
    let rollout_root =
        issue_root(ISSUER, &issuer, spec_in("task-rollout", "planner", &planner, &[TOOL], now, 900, "cred-rollout"))
            .map_err(show)?;
    let rollout_leaf = delegate(
        &rollout_root,
        &planner,
        spec_in("task-rollout", "finance-agent", &finance, &[TOOL], now, 600, "cred-rollout-f"),
    )
    .map_err(show)?;
    let rollout = vec![rollout_root, rollout_leaf];
    let mut would_block: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let amounts = [1200, 800, 2500];
    for (n, amount) in amounts.into_iter().enumerate() {
        let d = step_with(
            &format!("17.{}. finance-agent pays {amount} under the candidate's eye", n + 1),
            rollout.clone(),
            pay(amount, GOOD_ACCOUNT),
            None,
            Outcome::Allow,
        )?;
        if let Some(c) = d.candidate.as_ref().filter(|c| c.would_block) {
            println!("   candidate: {} ({}); the enforced bundle decided\n", c.outcome, c.policy_ids.join(", "));
            for id in &c.policy_ids {
                *would_block.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for (rule, n) in &would_block {
        println!("   candidate would-block: `{rule}`: {n} of {} calls", amounts.len());
    }
    println!();

    if failures.get() > 0 {
        return Err(format!("{} step(s) did not decide as expected", failures.get()));
    }
    if let (Some(log), Some(dir)) = (&audit, &args.audit_log) {
        let cp = log.checkpoint().map_err(show)?;
        let report = aegis_sod::audit::read_log(dir, None, &[]).map_err(show)?.report;
        println!("audit log `{}`: {} records, checkpoint signed by `{}`", dir.display(), cp.size, log.verifier_key());
        match &report.first_bad {
            None => println!("   verified: every record links, and the signed checkpoint matches the Merkle root\n"),
            Some(b) => return Err(format!("the audit log fails verification at record {}: {}", b.seq, b.why)),
        }
    }
    println!("all steps decided as expected");
    Ok(())
}

fn print_resolution(resolution: &ApprovalResolution, expect_accepted: bool, failures: &std::cell::Cell<usize>) {
    let mark = if resolution.accepted == expect_accepted { "ok" } else { "UNEXPECTED" };
    let verdict = if resolution.accepted { "approved" } else { "refused" };
    println!("   approval: {verdict} [{mark}]");
    for reason in &resolution.reasons {
        println!("   reason:   {}: {}", reason.code, reason.message);
    }
    if let Some(ms) = resolution.approval.latency_ms() {
        println!("   latency:  {ms} ms from request to approval");
    }
    if resolution.override_token.is_some() {
        println!("   override: a single-use token bound to this exact call, resource, agent, task and policy version");
    }
    println!();
    if resolution.accepted != expect_accepted {
        failures.set(failures.get() + 1);
    }
}

fn print_step(title: &str, args: &Value, decision: &Decision, expect: Outcome) {
    let mark = if decision.outcome == expect { "ok" } else { "UNEXPECTED" };
    println!("{title}");
    println!("   args:     {args}");
    println!("   decision: {} [{mark}; expected {expect}]", decision.outcome);
    for reason in &decision.reasons {
        match &reason.policy_id {
            Some(id) => println!("   reason:   {} `{id}`: {}", reason.code, reason.message),
            None => println!("   reason:   {}: {}", reason.code, reason.message),
        }
    }
    if let Some(id) = &decision.approval_id {
        println!("   approval: {id}");
    }
    if let Some(sanitized) = &decision.sanitized_args {
        println!("   the tool receives: {sanitized}");
    }
    if decision.would_block {
        println!("   shadow:   a shadow policy would block this call");
    }
    println!();
}

/// Rewrites the payload of a credential to claim every tool, keeping the original signature.
fn forge_scope(token: &str) -> Result<String, String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("credential is not a compact jws".into());
    };
    let mut claims: Value =
        serde_json::from_slice(&B64.decode(payload).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    claims["scope"] = json!(["*"]);
    let forged = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
    Ok(format!("{header}.{}.{signature}", B64.encode(&forged)))
}

/// The candidate of the demo's shadow rollout: the bundle with one stricter rule, written to a
/// temporary directory.
fn candidate_bundle(dir: &std::path::Path) -> Result<PathBuf, String> {
    let out = std::env::temp_dir().join(format!("aegis-demo-candidate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, out.join(entry.file_name())).map_err(|e| e.to_string())?;
        }
    }
    let rule = "// Candidate rule: payments over 1000 go to a human.\n@id(\"candidate-review-over-1000\")\n\
        @message(\"candidate: payments over 1000 need a finance approver\")\n@approval(\"finance-approver\")\n\
        forbid (principal, action == Action::\"stripe.create_payment\", resource)\nwhen { context.args.amount > 1000 };\n";
    std::fs::write(out.join("candidate.cedar"), rule).map_err(|e| e.to_string())?;
    Ok(out)
}

pub(crate) fn default_bundle() -> PathBuf {
    let local = PathBuf::from("policies/payments");
    if local.is_dir() {
        local
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/payments"))
    }
}
