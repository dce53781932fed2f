//! `aegis policy lint`: static checks over a bundle that loads, for mistakes Cedar's validator
//! cannot see because they are about how Aegis uses the policies.
//!
//! Each finding has a stable code:
//! - `negative_test_on_args`: a forbid whose `unless` clause reads `context.args`.
//! - `approval_role_unheld`: a forbid's `@approval` role that no enforced `aegis.approve` permit
//!   mentions.
//! - `tool_without_policy`: a tool no enforced policy applies to.
//! - `tool_without_forbid`: a tool with enforced permits but no enforced forbid.
//! - `context_attribute_unsupplied`: a policy reads a context attribute Aegis never fills in.
//! - `shadow_duplicate`: a shadow forbid with the same scope and conditions as an enforced one.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{Effect, EntityUid, Policy, PolicySet, Schema};
use serde_json::Value as Json;

use super::bundle::{Bundle, BundleSources, PolicyMeta};
use crate::approval::APPROVE_ACTION;

/// The context attributes Aegis fills in for every call (`docs/CONTEXT.md`).
const SUPPLIED_CONTEXT: &[&str] = &[
    "args",
    "agent_id",
    "parent_agent_id",
    "initiator",
    "lineage",
    "depth",
    "task_id",
    "intent",
    "now",
    "predicates",
    "temporal",
    "task",
    "break_glass",
];

/// The context attribute Aegis fills in only for [`APPROVE_ACTION`].
const APPROVAL_CONTEXT: &str = "approval";

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lint {
    /// The stable code, in `snake_case` (see the module documentation).
    pub code: &'static str,
    /// The file it is about: a policy file, or the schema for findings about a tool.
    pub file: String,
    /// The 1-based line: where the policy starts, or where the schema declares the action.
    pub line: usize,
    /// The policy it is about; `None` for findings about a tool.
    pub policy_id: Option<String>,
    /// What is wrong and why it matters.
    pub message: String,
}

/// A policy of the bundle, with what the lints look at.
struct Entry<'a> {
    meta: &'a PolicyMeta,
    /// The policy as Cedar's JSON syntax (EST), `Null` if Cedar cannot render it.
    est: Json,
    /// The tools (schema actions) it applies to.
    tools: BTreeSet<String>,
}

impl Entry<'_> {
    fn lint(&self, code: &'static str, message: String) -> Lint {
        Lint { code, file: self.meta.file.clone(), line: self.meta.line, policy_id: Some(self.meta.id.clone()), message }
    }

    fn is_forbid(&self) -> bool {
        self.meta.effect == Effect::Forbid
    }

    /// The `conditions` of the EST, each as `(kind, body)`.
    fn conditions(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.est.get("conditions").and_then(Json::as_array).into_iter().flatten().filter_map(|c| {
            let kind = c.get("kind").and_then(Json::as_str)?;
            Some((kind, c.get("body")?))
        })
    }
}

/// Runs every lint over a bundle's sources (already loadable: `Bundle::from_sources(sources)`
/// succeeded, and `bundle` is what it returned). Findings are sorted by file, line and code.
pub fn lint(sources: &BundleSources, bundle: &Bundle) -> Vec<Lint> {
    // The bundle loaded, so the schema parses; were it not to, there would be nothing to check.
    let Ok((schema, _warnings)) = Schema::from_cedarschema_str(&sources.schema) else {
        return Vec::new();
    };
    let actions: Vec<&EntityUid> = schema.actions().collect();
    let entries = entries(bundle, &actions);

    let mut out = Vec::new();
    negative_test_on_args(&entries, &mut out);
    approval_role_unheld(bundle, &actions, &entries, &mut out);
    tool_coverage(sources, bundle, &schema, &actions, &mut out);
    context_attribute_unsupplied(&entries, &mut out);
    shadow_duplicate(&entries, &mut out);
    out.sort_by(|a, b| (&a.file, a.line, a.code, &a.policy_id).cmp(&(&b.file, b.line, b.code, &b.policy_id)));
    out
}

/// Every policy of the bundle, enforced and shadow, by id. Collected through the bundle's
/// per-action indexes, which also say which tools each policy applies to.
fn entries<'a>(bundle: &'a Bundle, actions: &[&EntityUid]) -> BTreeMap<String, Entry<'a>> {
    let mut entries: BTreeMap<String, Entry<'a>> = BTreeMap::new();
    for action in actions {
        let tool = action.id().unescaped();
        let enforced = bundle.enforced_policies().for_action(action);
        let shadow = bundle.shadow_policies().for_action(action);
        for policy in enforced.policies().chain(shadow.policies()) {
            let Some(meta) = bundle.policy_meta(policy.id()) else { continue };
            let entry = entries.entry(meta.id.clone()).or_insert_with(|| Entry {
                meta,
                est: policy.to_json().unwrap_or(Json::Null),
                tools: BTreeSet::new(),
            });
            entry.tools.insert(tool.to_owned());
        }
    }
    entries
}

/// A forbid that fires unless something about the arguments holds is a negative test over
/// input the caller controls: reshape the arguments and the condition no longer describes them.
fn negative_test_on_args(entries: &BTreeMap<String, Entry<'_>>, out: &mut Vec<Lint>) {
    for entry in entries.values().filter(|e| e.is_forbid()) {
        let reads_args = entry.conditions().any(|(kind, body)| kind == "unless" && context_reads(body).contains("args"));
        if reads_args {
            out.push(entry.lint(
                "negative_test_on_args",
                format!(
                    "forbid `{}` tests `context.args` in an `unless` clause: a negative test over arguments the caller \
                     controls stops firing when their shape changes; test them in a `when` clause or a manifest predicate",
                    entry.meta.id
                ),
            ));
        }
    }
}

/// `@approval("R")` only names who should approve: the `aegis.approve` permits decide who can.
/// A role none of them mentions means the approval can never be granted by its holders.
fn approval_role_unheld(bundle: &Bundle, actions: &[&EntityUid], entries: &BTreeMap<String, Entry<'_>>, out: &mut Vec<Lint>) {
    let role_type = bundle.role_type().to_string();
    let approve = actions.iter().find(|a| a.id().unescaped() == APPROVE_ACTION);
    let mut held = BTreeSet::new();
    if let Some(approve) = approve {
        for policy in bundle.enforced_policies().for_action(approve).policies().filter(|p| p.effect() == Effect::Permit) {
            if let Ok(est) = policy.to_json() {
                entity_ids_of_type(&est, &role_type, &mut held);
            }
        }
    }
    for entry in entries.values().filter(|e| e.is_forbid()) {
        let Some(role) = &entry.meta.approval else { continue };
        if held.contains(role.as_str()) {
            continue;
        }
        let why = match approve {
            Some(_) => format!("no enforced permit on `{APPROVE_ACTION}` mentions `{role_type}::\"{role}\"`"),
            None => format!("the schema declares no `{APPROVE_ACTION}` action"),
        };
        out.push(entry.lint(
            "approval_role_unheld",
            format!("forbid `{}` asks for approval by role `{role}`, but {why}: nobody could ever approve it", entry.meta.id),
        ));
    }
}

/// Tools (Aegis's own `aegis.*` actions and action groups aside) that no enforced policy
/// applies to, or that enforced permits let through with no enforced forbid to refuse them.
fn tool_coverage(sources: &BundleSources, bundle: &Bundle, schema: &Schema, actions: &[&EntityUid], out: &mut Vec<Lint>) {
    let groups: BTreeSet<&EntityUid> = schema.action_groups().collect();
    for action in actions.iter().filter(|a| !groups.contains(*a)) {
        let tool = action.id().unescaped();
        if tool.starts_with("aegis.") {
            continue;
        }
        let policies: &PolicySet = bundle.enforced_policies().for_action(action);
        let has = |effect: Effect| policies.policies().any(|p: &Policy| p.effect() == effect);
        let (code, message) = if policies.is_empty() {
            ("tool_without_policy", format!("no enforced policy applies to tool `{tool}`: every call to it is denied"))
        } else if has(Effect::Permit) && !has(Effect::Forbid) {
            (
                "tool_without_forbid",
                format!("tool `{tool}` has permits but no enforced forbid: nothing can refuse a call the permits let through"),
            )
        } else {
            continue;
        };
        out.push(Lint {
            code,
            file: sources.schema_file.clone(),
            line: action_line(&sources.schema, tool),
            policy_id: None,
            message,
        });
    }
}

/// A context attribute Aegis never fills in is absent at evaluation: reading it errors, and
/// `has` over it is always false, whatever the schema declares.
fn context_attribute_unsupplied(entries: &BTreeMap<String, Entry<'_>>, out: &mut Vec<Lint>) {
    for entry in entries.values() {
        let mut reads = BTreeSet::new();
        for (_, body) in entry.conditions() {
            reads.extend(context_reads(body));
        }
        for attr in reads {
            if SUPPLIED_CONTEXT.contains(&attr.as_str()) {
                continue;
            }
            let message = if attr == APPROVAL_CONTEXT {
                // Filled in for approvals: only a policy that never applies to them is wrong.
                if entry.tools.iter().any(|t| t == APPROVE_ACTION) {
                    continue;
                }
                format!(
                    "policy `{}` reads `context.{attr}`, which Aegis fills in only for `{APPROVE_ACTION}`, an action this \
                     policy does not apply to",
                    entry.meta.id
                )
            } else {
                format!("policy `{}` reads `context.{attr}`, which Aegis never fills in", entry.meta.id)
            };
            out.push(entry.lint("context_attribute_unsupplied", message));
        }
    }
}

/// A shadow forbid identical to an enforced forbid can never report `would_block` (whenever it
/// matches, the enforced one already denies): the candidate rule is already the rule.
fn shadow_duplicate(entries: &BTreeMap<String, Entry<'_>>, out: &mut Vec<Lint>) {
    let shape = |est: &Json| -> Option<[Json; 4]> {
        if est.is_null() {
            return None;
        }
        let part = |key: &str| est.get(key).cloned().unwrap_or(Json::Null);
        Some([part("principal"), part("action"), part("resource"), part("conditions")])
    };
    let enforced: Vec<(&Entry<'_>, [Json; 4])> =
        entries.values().filter(|e| e.is_forbid() && !e.meta.shadow).filter_map(|e| shape(&e.est).map(|s| (e, s))).collect();
    for entry in entries.values().filter(|e| e.is_forbid() && e.meta.shadow) {
        let Some(own) = shape(&entry.est) else { continue };
        if let Some((twin, _)) = enforced.iter().find(|(_, s)| s == &own) {
            out.push(entry.lint(
                "shadow_duplicate",
                format!(
                    "shadow forbid `{}` has the same scope and conditions as enforced forbid `{}` (`{}` line {}): it can \
                     never report `would_block`",
                    entry.meta.id, twin.meta.id, twin.meta.file, twin.meta.line
                ),
            ));
        }
    }
}

/// The top-level context attributes an EST expression reads (`context.x`, `context["x"]`) or
/// tests (`context has x`).
fn context_reads(expr: &Json) -> BTreeSet<String> {
    fn walk(expr: &Json, out: &mut BTreeSet<String>) {
        match expr {
            Json::Object(map) => {
                for (key, value) in map {
                    if key == "." || key == "has" {
                        let on_context = value.get("left").and_then(|l| l.get("Var")).and_then(Json::as_str) == Some("context");
                        if let (true, Some(attr)) = (on_context, value.get("attr").and_then(Json::as_str)) {
                            out.insert(attr.to_owned());
                        }
                    }
                    walk(value, out);
                }
            }
            Json::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(expr, &mut out);
    out
}

/// The ids of every entity of type `ty` an EST mentions: in the scope (`{"type", "id"}`) or
/// as a literal in a condition (`{"__entity": {"type", "id"}}`).
fn entity_ids_of_type(est: &Json, ty: &str, out: &mut BTreeSet<String>) {
    match est {
        Json::Object(map) => {
            if let (Some(Json::String(t)), Some(Json::String(id))) = (map.get("type"), map.get("id")) {
                if t == ty {
                    out.insert(id.clone());
                }
            }
            map.values().for_each(|v| entity_ids_of_type(v, ty, out));
        }
        Json::Array(items) => items.iter().for_each(|v| entity_ids_of_type(v, ty, out)),
        _ => {}
    }
}

/// The 1-based line of the schema where action `name` is declared (`action "name" ...` or
/// `action name ...`); else the first line that mentions `"name"`; else 1.
fn action_line(schema: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    let declares = |line: &str| {
        // Comments aside: `// action "x"` declares nothing.
        let code = line.split("//").next().unwrap_or_default().trim_start();
        code.strip_prefix("action").filter(|rest| rest.starts_with(char::is_whitespace)).is_some_and(|rest| {
            rest.contains(&quoted) || rest.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '{')).any(|w| w == name)
        })
    };
    schema.lines().position(declares).or_else(|| schema.lines().position(|l| l.contains(&quoted))).map_or(1, |i| i + 1)
}
