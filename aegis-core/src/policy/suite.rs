//! Policy tests: YAML files in a bundle's `tests/` directory, each a list of cases; a case is a
//! sequence of calls, approvals and task ends in one task, with the outcome (and reasons)
//! each step must get. `aegis policy test BUNDLE` runs them on a real engine: real
//! credentials (issued from keys derived from the identities' names), a fixed clock and a
//! fresh in-memory store per case.
//!
//! ```yaml
//! identities:
//!   planner: {scope: [invoice.create, stripe.create_payment]}
//!   finance-agent: {delegated_by: planner, scope: [stripe.create_payment]}
//!   finance-approver: {roles: [finance-approver], scope: [aegis.approve], task: approvals-desk}
//! cases:
//!   - name: the approver's approval lets a large payment through once
//!     steps:
//!       - call: {as: finance-agent, tool: stripe.create_payment, args: {amount: 9000, ...}}
//!         expect: approval_needed
//!         reasons: [large-payment-needs-approval]
//!       - approve: {by: finance-approver}
//!         expect: approved
//!       - call: {as: finance-agent, tool: ..., args: {...}, with_approval: true}
//!         expect: allow
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::{Bundle, BundleSources};
use crate::engine::{AuthorizationRequest, Decision, Engine, ResourceRef};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{delegate, issue_root, CredentialSpec, KeyPair};
use crate::time::ManualClock;

/// The time every case starts at (2026-01-01T00:00:00Z): results do not depend on the day.
const START_SECS: i64 = 1_767_225_600;
/// The issuer of the test identities.
const ISSUER: &str = "aegis-policy-tests";
/// How long the test credentials live.
const CREDENTIAL_SECS: i64 = 3600;

/// One identity of a test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySpec {
    /// The identity that delegates to this one; none: a root attested by the test issuer.
    #[serde(default)]
    delegated_by: Option<String>,
    /// The tools it may call.
    #[serde(default)]
    scope: Vec<String>,
    /// Roles its issuer attests (roots only).
    #[serde(default)]
    roles: Vec<String>,
    /// Its task, when not the case's (an approvals desk, say).
    #[serde(default)]
    task: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    identities: BTreeMap<String, IdentitySpec>,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    call: Option<Call>,
    #[serde(default)]
    approve: Option<Resolve>,
    #[serde(default)]
    reject: Option<Resolve>,
    #[serde(default)]
    end_task: Option<bool>,
    #[serde(default)]
    advance_secs: Option<i64>,
    /// `allow`, `deny`, `sanitize` or `approval_needed` for a call; `approved` or `refused`
    /// for an approval, `rejected` or `refused` for a rejection.
    #[serde(default)]
    expect: Option<String>,
    /// Policy ids or reason codes that must all be among the step's reasons.
    #[serde(default)]
    reasons: Vec<String>,
    /// Whether a shadow policy would have blocked the call.
    #[serde(default)]
    would_block: Option<bool>,
    /// The arguments the tool must receive (after redactions), for a permitted call.
    #[serde(default)]
    args_sent: Option<Json>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    #[serde(rename = "as")]
    caller: String,
    tool: String,
    #[serde(default = "empty_object")]
    args: Json,
    #[serde(default)]
    resource: Option<ResourceRef>,
    /// Present the override token of the last accepted approval.
    #[serde(default)]
    with_approval: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolve {
    by: String,
    #[serde(default)]
    note: Option<String>,
}

fn empty_object() -> Json {
    Json::Object(serde_json::Map::new())
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The test file, relative to the bundle.
    pub file: String,
    /// The case's name.
    pub name: String,
    /// What went other than expected, step by step (`step N: ...`); empty when it passed.
    pub failures: Vec<String>,
}

impl CaseResult {
    /// Whether every step came out as expected.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The results of a bundle's policy tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyTestReport {
    /// The bundle's version.
    pub policy_version: String,
    /// Every case, file by file.
    pub cases: Vec<CaseResult>,
}

impl PolicyTestReport {
    /// Whether there were cases and every one passed.
    pub fn passed(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(CaseResult::passed)
    }
}

/// Runs the policy tests in `dir/tests/*.yaml` against the bundle in `dir`.
pub fn run_policy_tests(dir: impl AsRef<Path>) -> Result<PolicyTestReport> {
    let dir = dir.as_ref();
    let sources = BundleSources::read_dir(dir)?;
    let bundle = Bundle::from_sources(&sources)?;
    let tests = dir.join("tests");
    let mut files: Vec<_> = std::fs::read_dir(&tests)
        .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("no policy tests in `{}`: {e}", tests.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let name = format!("tests/{}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("cannot read `{}`: {e}", path.display())))?;
        let file: TestFile =
            serde_norway::from_str(&text).map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{name}`: {e}")))?;
        // The identities issue, whatever the cases: a file that cannot is an error on its own.
        chains(&file.identities, "check", START_SECS)?;
        for (case, n) in file.cases.iter().flat_map(|c| c.steps.iter().enumerate().map(move |(n, s)| ((c, s), n))) {
            let (case, step) = case;
            let actions = [step.call.is_some(), step.approve.is_some(), step.reject.is_some(), step.end_task.is_some()];
            if actions.iter().filter(|a| **a).count() > 1 || (step.advance_secs.is_none() && !actions.contains(&true)) {
                return Err(Error::new(
                    ErrorCode::InvalidBundle,
                    format!(
                        "`{name}`, case `{}`, step {}: a step does one of `call`, `approve`, `reject`, `end_task`",
                        case.name,
                        n + 1
                    ),
                ));
            }
        }
        for case in &file.cases {
            cases.push(run_case(&sources, &name, &file.identities, case)?);
        }
    }
    Ok(PolicyTestReport { policy_version: bundle.policy_version().to_owned(), cases })
}

/// A key derived from a name: the same identity gets the same key in every run.
fn derived_key(name: &str) -> Result<KeyPair> {
    KeyPair::from_seed(&Sha256::digest(format!("aegis-policy-test:{name}").as_bytes()))
}

fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Issues each identity's chain (root first), delegating in the order names refer to each
/// other.
fn chains(identities: &BTreeMap<String, IdentitySpec>, task: &str, now: i64) -> Result<BTreeMap<String, Vec<String>>> {
    let issuer = derived_key("issuer")?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while out.len() < identities.len() {
        let before = out.len();
        for (name, spec) in identities {
            if out.contains_key(name) {
                continue;
            }
            let key = derived_key(name)?;
            let credential = |task: &str| CredentialSpec {
                agent_id: name.clone(),
                agent_key: key.public_key().clone(),
                audience: crate::engine::DEFAULT_AUDIENCE.into(),
                task_id: task.to_owned(),
                intent: format!("policy test: {task}"),
                scope: spec.scope.clone(),
                issued_at: now,
                expires_at: now + CREDENTIAL_SECS,
                jti: format!("test-{task}-{name}"),
                roles: spec.roles.clone(),
            };
            match &spec.delegated_by {
                None => {
                    let own_task = spec.task.as_deref().unwrap_or(task);
                    out.insert(name.clone(), vec![issue_root(ISSUER, &issuer, credential(own_task))?]);
                }
                Some(parent) => {
                    let Some(parent_chain) = out.get(parent).cloned() else {
                        if !identities.contains_key(parent) {
                            return Err(Error::new(
                                ErrorCode::InvalidBundle,
                                format!("identity `{name}` is delegated by `{parent}`, which the file does not declare"),
                            ));
                        }
                        continue;
                    };
                    let parent_task = identities[parent].task.as_deref().unwrap_or(task);
                    let last = parent_chain.last().cloned().unwrap_or_default();
                    let link = delegate(&last, &derived_key(parent)?, credential(parent_task))?;
                    let mut chain = parent_chain;
                    chain.push(link);
                    out.insert(name.clone(), chain);
                }
            }
        }
        if out.len() == before {
            return Err(Error::new(ErrorCode::InvalidBundle, "the identities' delegations form a cycle"));
        }
    }
    Ok(out)
}

fn run_case(sources: &BundleSources, file: &str, identities: &BTreeMap<String, IdentitySpec>, case: &Case) -> Result<CaseResult> {
    let clock = Arc::new(ManualClock::at_secs(START_SECS));
    let engine = Engine::builder()
        // Each case gets its own engine on a fresh copy of the bundle.
        .bundle(Bundle::from_sources(sources)?)
        .trust_issuer(ISSUER, derived_key("issuer")?.public_key().clone())
        .approval_key(derived_key("approvals")?)
        .clock(clock.clone())
        .build()?;
    let task = format!("{}-{}", slug(file.trim_start_matches("tests/").trim_end_matches(".yaml")), slug(&case.name));
    let chains = chains(identities, &task, START_SECS - 60)?;
    let chain_of = |name: &str| {
        chains.get(name).cloned().ok_or_else(|| Error::new(ErrorCode::InvalidBundle, format!("unknown identity `{name}`")))
    };
    let mut failures = Vec::new();
    let mut pending: Option<String> = None;
    let mut token: Option<String> = None;
    for (n, step) in case.steps.iter().enumerate() {
        let at = |what: String| format!("step {}: {what}", n + 1);
        if let Some(secs) = step.advance_secs {
            clock.advance_secs(secs);
        }
        if let Some(call) = &step.call {
            let mut request = AuthorizationRequest::new(chain_of(&call.caller)?, &call.tool, call.args.clone());
            request.resource = call.resource.clone();
            if call.with_approval {
                match &token {
                    Some(t) => request.approval_token = Some(t.clone()),
                    None => failures.push(at("`with_approval`, but no approval was accepted before".into())),
                }
            }
            let decision = engine.authorize(&request)?;
            if decision.approval_id.is_some() {
                pending = decision.approval_id.clone();
            }
            check_decision(&decision, step, &call.args, &mut |f| failures.push(at(f)));
        }
        for (resolve, approving) in [(&step.approve, true), (&step.reject, false)] {
            let Some(resolve) = resolve else { continue };
            let Some(id) = pending.clone() else {
                failures.push(at("no approval is pending".into()));
                continue;
            };
            let chain = chain_of(&resolve.by)?;
            let resolution = match approving {
                true => engine.approve(&id, &chain, resolve.note.as_deref())?,
                false => engine.reject(&id, &chain, resolve.note.as_deref())?,
            };
            let got = match (resolution.accepted, approving) {
                (true, true) => "approved",
                (true, false) => "rejected",
                (false, _) => "refused",
            };
            if resolution.accepted && approving {
                token = resolution.override_token.clone();
            }
            if let Some(want) = &step.expect {
                if want != got {
                    failures.push(at(format!("expected `{want}`, got `{got}` ({})", describe(&resolution.reasons))));
                }
            }
            check_reasons(&resolution.reasons, &step.reasons, &mut |f| failures.push(at(f)));
        }
        if step.end_task == Some(true) {
            engine.end_task(&task)?;
        }
    }
    Ok(CaseResult { file: file.to_owned(), name: case.name.clone(), failures })
}

fn describe(reasons: &[crate::engine::Reason]) -> String {
    let parts: Vec<String> = reasons
        .iter()
        .map(|r| r.policy_id.as_ref().map_or_else(|| r.code.to_string(), |id| format!("{} `{id}`", r.code)))
        .collect();
    if parts.is_empty() {
        "no reasons".into()
    } else {
        parts.join(", ")
    }
}

fn check_decision(decision: &Decision, step: &Step, args: &Json, fail: &mut dyn FnMut(String)) {
    if let Some(want) = &step.expect {
        if want != decision.outcome.as_str() {
            fail(format!("expected `{want}`, got `{}` ({})", decision.outcome, describe(&decision.reasons)));
        }
    }
    check_reasons(&decision.reasons, &step.reasons, fail);
    if let Some(want) = step.would_block {
        if want != decision.would_block {
            fail(format!("expected would_block {want}, got {}", decision.would_block));
        }
    }
    if let Some(want) = &step.args_sent {
        match decision.enforce(args) {
            crate::engine::Enforcement::Run { args } if &args == want => {}
            crate::engine::Enforcement::Run { args } => fail(format!("the tool would get `{args}`, not `{want}`")),
            other => fail(format!("expected the tool to run, got {other:?}")),
        }
    }
}

fn check_reasons(got: &[crate::engine::Reason], want: &[String], fail: &mut dyn FnMut(String)) {
    for reason in want {
        let found = got.iter().any(|r| r.policy_id.as_deref() == Some(reason.as_str()) || r.code.to_string() == *reason);
        if !found {
            fail(format!("expected reason `{reason}` among: {}", describe(got)));
        }
    }
}
