//! The SoD matrix: `sod.yaml` in a bundle declares duties (groups of tools), how each duty's
//! executor must stand in its delegation chain, who approves it, the thresholds that need an
//! approval, and which duties one agent (or one lineage, or one task) may not combine. It is
//! compiled to Cedar policies, each tied to its matrix line by a comment; `aegis policy
//! compile` prints them. Loading a bundle compiles its matrix: the YAML is the source, the
//! Cedar is never edited by hand.
//!
//! ```yaml
//! roles: [finance-approver]
//! duties:
//!   draft_invoice: [invoice.create]
//!   pay: [stripe.create_payment]
//!   approve: [aegis.approve]
//! executors:
//!   pay: {delegated: true, not_parent: true, not_initiator: true, not_in_lineage: true}
//! approvers:
//!   - {id: finance-approver-approves-payments, duty: pay, role: finance-approver}
//! thresholds:
//!   - {id: large-payment-needs-approval, duty: pay, arg: amount, above: 5000, approval: finance-approver, breakable: true}
//! incompatible:
//!   - {id: drafter-does-not-pay, first: draft_invoice, then: pay, within: agent}
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::manifest::{BudgetScope, BudgetSpec, TemporalSpec};
use crate::error::{Error, ErrorCode, Result};

/// The matrix file's name in a bundle.
pub const MATRIX_FILE: &str = "sod.yaml";
/// The name the compiled policies carry in the bundle (errors and lints point at it).
pub const COMPILED_FILE: &str = "sod.yaml.cedar";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Matrix {
    /// Issuer-attested roles the matrix names.
    #[serde(default)]
    roles: Vec<String>,
    /// Duty name -> the tools that perform it.
    duties: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    executors: BTreeMap<String, Executor>,
    #[serde(default)]
    approvers: Vec<Approver>,
    #[serde(default)]
    thresholds: Vec<Threshold>,
    #[serde(default)]
    incompatible: Vec<Incompatible>,
    /// Budgets, as in the manifest (merged into it; a name declared in both is an error).
    #[serde(default)]
    budgets: BTreeMap<String, BudgetSpec>,
}

/// What a matrix adds to its bundle: Cedar policies, and budgets and temporal facts for the
/// manifest.
#[derive(Debug)]
pub(crate) struct CompiledMatrix {
    pub cedar: String,
    pub budgets: BTreeMap<String, BudgetSpec>,
    pub temporal: BTreeMap<String, TemporalSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Executor {
    /// Executed by a delegate, never by the root of the chain.
    #[serde(default)]
    delegated: bool,
    /// Never by the agent that delegated to it.
    #[serde(default)]
    not_parent: bool,
    /// Never by the task's initiator.
    #[serde(default)]
    not_initiator: bool,
    /// Never by an agent that appears above itself in the chain.
    #[serde(default)]
    not_in_lineage: bool,
    /// Only by identities holding one of these roles.
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approver {
    id: String,
    duty: String,
    role: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Threshold {
    id: String,
    duty: String,
    arg: String,
    above: i64,
    /// The role that may approve a call over the threshold; none: the threshold is a hard
    /// limit.
    #[serde(default)]
    approval: Option<String>,
    /// How many distinct approvers holding the role must approve (`@quorum`).
    #[serde(default)]
    quorum: Option<u32>,
    /// Roles that approve in this order, one approver each (`@stages`).
    #[serde(default)]
    stages: Vec<String>,
    #[serde(default)]
    breakable: bool,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Incompatible {
    id: String,
    /// The duty done first.
    first: String,
    /// The duty it excludes afterwards.
    then: String,
    /// Who may not combine them: the same `agent` (or key holder), anyone in its `lineage`,
    /// or anyone in the `task`.
    within: Within,
    /// Also forbid `first` after `then`.
    #[serde(default)]
    both_ways: bool,
    /// Only within this many seconds after `first` (counted by a temporal fact the matrix
    /// declares, `sod_<id>`); absent: for the rest of the task.
    #[serde(default)]
    window_secs: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Within {
    Agent,
    Lineage,
    Task,
}

impl Within {
    fn set(self) -> &'static str {
        match self {
            Self::Agent => "context.task.duties_by_agent",
            Self::Lineage => "context.task.duties_by_lineage",
            Self::Task => "context.task.performed",
        }
    }
}

/// The 1-based line of the first line of `text` holding `needle`, for the comments that tie a
/// generated policy to its matrix entry.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map_or(1, |n| n + 1)
}

/// The line of the first `needle` after the line holding `section`.
fn line_after(text: &str, section: &str, needle: &str) -> usize {
    let start = line_of(text, section);
    text.lines().skip(start).position(|l| l.contains(needle)).map_or(start, |n| start + n + 1)
}

fn invalid(why: String) -> Error {
    Error::new(ErrorCode::InvalidBundle, format!("`{MATRIX_FILE}`: {why}"))
}

fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn action_scope(tools: &[String]) -> String {
    match tools {
        [one] => format!("action == Action::{}", quoted(one)),
        many => format!("action in [{}]", many.iter().map(|t| format!("Action::{}", quoted(t))).collect::<Vec<_>>().join(", ")),
    }
}

fn string_set(tools: &[String]) -> String {
    format!("[{}]", tools.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", "))
}

/// Compiles `sod.yaml` to Cedar policies (one `@category("sod")` policy per rule, each with a
/// comment naming its matrix line).
pub fn compile_matrix(yaml: &str) -> Result<String> {
    compile(yaml).map(|c| c.cedar)
}

/// The temporal fact a windowed incompatibility counts with.
fn window_fact(id: &str) -> String {
    format!("sod_{}", id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>())
}

pub(crate) fn compile(yaml: &str) -> Result<CompiledMatrix> {
    let m: Matrix = serde_norway::from_str(yaml).map_err(|e| invalid(e.to_string()))?;
    let tools = |duty: &str| -> Result<&Vec<String>> {
        m.duties.get(duty).filter(|t| !t.is_empty()).ok_or_else(|| invalid(format!("no duty `{duty}` (or it names no tools)")))
    };
    let role = |r: &str| -> Result<()> {
        match m.roles.iter().any(|x| x == r) {
            true => Ok(()),
            false => Err(invalid(format!("role `{r}` is not among the matrix's `roles`"))),
        }
    };
    let mut out = format!("// Compiled from `{MATRIX_FILE}` by Aegis: do not edit; change the matrix.\n");
    let mut emit = |line: usize, id: &str, category: bool, extra: &[String], message: &str, body: String| {
        let _ = write!(out, "\n// {MATRIX_FILE} line {line}\n@id({})\n", quoted(id));
        if category {
            out.push_str("@category(\"sod\")\n");
        }
        for annotation in extra {
            out.push_str(annotation);
            out.push('\n');
        }
        let _ = writeln!(out, "@message({})\n{body};", quoted(message));
    };
    // Executor rules are named after what they hold; with several duties, after the duty too.
    let several = m.executors.len() > 1;
    for (duty, rules) in &m.executors {
        let scope = action_scope(tools(duty)?);
        let forbid = |condition: &str| format!("forbid (principal, {scope}, resource)\n{condition}");
        let id = |base: &str| if several { format!("{base}-{duty}") } else { base.to_owned() };
        let needle = line_after(yaml, "executors:", &format!("{duty}:"));
        let checks: [(bool, &str, String, &str); 4] = [
            (
                rules.delegated,
                "executor-needs-parent",
                format!("`{duty}` must be executed by a delegated agent, never by the root of the chain"),
                "unless { context has parent_agent_id }",
            ),
            (
                rules.not_parent,
                "executor-differs-from-parent",
                format!("the executor of `{duty}` must differ from the agent that delegated to it"),
                "when { context has parent_agent_id && context.parent_agent_id == context.agent_id }",
            ),
            (
                rules.not_initiator,
                "executor-differs-from-initiator",
                format!("the executor of `{duty}` must differ from the initiator of the task"),
                "when { context.initiator == context.agent_id }",
            ),
            (
                rules.not_in_lineage,
                "executor-not-in-lineage",
                format!("the executor of `{duty}` must not appear above itself in the delegation chain"),
                "when { context.lineage.contains(context.agent_id) }",
            ),
        ];
        for (on, base, message, condition) in checks {
            if on {
                emit(needle, &id(base), true, &[], &message, forbid(condition));
            }
        }
        if !rules.roles.is_empty() {
            for r in &rules.roles {
                role(r)?;
            }
            let holds = rules.roles.iter().map(|r| format!("principal in Role::{}", quoted(r))).collect::<Vec<_>>().join(" || ");
            emit(
                needle,
                &format!("{duty}-performed-by-role"),
                true,
                &[],
                &format!("`{duty}` is performed only by {}", rules.roles.join(", ")),
                forbid(&format!("unless {{ {holds} }}")),
            );
        }
    }
    for a in &m.approvers {
        role(&a.role)?;
        let tools = tools(&a.duty)?;
        let condition = match tools.as_slice() {
            [one] => format!("context.approval.tool == {}", quoted(one)),
            many => format!("{}.contains(context.approval.tool)", string_set(many)),
        };
        let message = a.message.clone().unwrap_or_else(|| format!("a {} answers `{}` approvals", a.role, a.duty));
        emit(
            line_of(yaml, &format!("id: {}", a.id)),
            &a.id,
            false,
            &[],
            &message,
            format!(
                "permit (principal in Role::{}, action == Action::\"aegis.approve\", resource)\nwhen {{ {condition} }}",
                quoted(&a.role)
            ),
        );
    }
    for t in &m.thresholds {
        let mut extra = Vec::new();
        if let Some(r) = &t.approval {
            role(r)?;
            extra.push(format!("@approval({})", quoted(r)));
        }
        if (t.quorum.is_some() || !t.stages.is_empty()) && t.approval.is_none() {
            return Err(invalid(format!("threshold `{}`: `quorum` and `stages` need an `approval` role", t.id)));
        }
        if let Some(k) = t.quorum {
            extra.push(format!("@quorum({})", quoted(&k.to_string())));
        }
        if !t.stages.is_empty() {
            for r in &t.stages {
                role(r)?;
            }
            extra.push(format!("@stages({})", quoted(&t.stages.join(","))));
        }
        if t.breakable {
            extra.push("@breakable".into());
        }
        let path = t.arg.split('.').map(str::to_owned).collect::<Vec<_>>();
        if path.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            return Err(invalid(format!("threshold `{}`: `{}` is not an argument path", t.id, t.arg)));
        }
        let message = t.message.clone().unwrap_or_else(|| format!("`{}` over {} needs approval", t.duty, t.above));
        emit(
            line_of(yaml, &format!("id: {}", t.id)),
            &t.id,
            false,
            &extra,
            &message,
            format!(
                "forbid (principal, {}, resource)\nwhen {{ context.args.{} > {} }}",
                action_scope(tools(&t.duty)?),
                path.join("."),
                t.above
            ),
        );
    }
    let mut temporal = BTreeMap::new();
    for i in &m.incompatible {
        if let Some(secs) = i.window_secs {
            let per = match i.within {
                Within::Agent => BudgetScope::Agent,
                Within::Task => BudgetScope::Task,
                Within::Lineage => {
                    return Err(invalid(format!("`{}`: a window counts per `agent` or `task`, not per `lineage`", i.id)))
                }
            };
            if secs <= 0 || i.both_ways {
                return Err(invalid(format!("`{}`: a window needs `window_secs` > 0 and one direction", i.id)));
            }
            let fact = TemporalSpec::CountWithin { tools: tools(&i.first)?.clone(), secs, per };
            if temporal.insert(window_fact(&i.id), fact).is_some() {
                return Err(invalid(format!(
                    "`{}`: another windowed rule's id maps to the same fact `{}`",
                    i.id,
                    window_fact(&i.id)
                )));
            }
        }
        let message =
            i.message.clone().unwrap_or_else(|| format!("whoever did `{}` in this task may not do `{}`", i.first, i.then));
        let pairs = if i.both_ways {
            vec![(&i.first, &i.then, i.id.clone()), (&i.then, &i.first, format!("{}-reverse", i.id))]
        } else {
            vec![(&i.first, &i.then, i.id.clone())]
        };
        for (first, then, id) in pairs {
            let done = tools(first)?;
            let condition = match (i.window_secs, done.as_slice()) {
                (Some(_), _) => format!("context.temporal.{} >= 1", window_fact(&i.id)),
                (None, [one]) => format!("{}.contains({})", i.within.set(), quoted(one)),
                (None, many) => format!("{}.containsAny({})", i.within.set(), string_set(many)),
            };
            emit(
                line_of(yaml, &format!("id: {}", i.id)),
                &id,
                true,
                &[],
                &message,
                format!("forbid (principal, {}, resource)\nwhen {{ {condition} }}", action_scope(tools(then)?)),
            );
        }
    }
    Ok(CompiledMatrix { cedar: out, budgets: m.budgets, temporal })
}

/// Merges what a matrix declares for the manifest (budgets, the temporal facts of windowed
/// rules) into the manifest's YAML.
pub(crate) fn merge_into_manifest(manifest: &str, compiled: &CompiledMatrix) -> Result<String> {
    if compiled.budgets.is_empty() && compiled.temporal.is_empty() {
        return Ok(manifest.to_owned());
    }
    let bad = |e: &dyn std::fmt::Display| Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: {e}"));
    let mut doc: serde_norway::Value = serde_norway::from_str(manifest).map_err(|e| bad(&e))?;
    let map = doc.as_mapping_mut().ok_or_else(|| bad(&"not a mapping"))?;
    for (section, entries) in [
        ("budgets", serde_norway::to_value(&compiled.budgets).map_err(|e| bad(&e))?),
        (
            "temporal",
            serde_norway::with::singleton_map_recursive::serialize(&compiled.temporal, serde_norway::value::Serializer)
                .map_err(|e| bad(&e))?,
        ),
    ] {
        let Some(entries) = entries.as_mapping() else { continue };
        let target = map
            .entry(serde_norway::Value::from(section))
            .or_insert_with(|| serde_norway::Value::Mapping(serde_norway::Mapping::new()));
        let target = target.as_mapping_mut().ok_or_else(|| bad(&format!("`{section}` is not a mapping")))?;
        for (name, spec) in entries {
            if target.contains_key(name) {
                return Err(invalid(format!("`{section}` entry {name:?} is declared in the manifest too")));
            }
            target.insert(name.clone(), spec.clone());
        }
    }
    serde_norway::to_string(&doc).map_err(|e| bad(&e))
}

/// Static SoD conflicts in a matrix (`static_sod_conflict`): a role allowed to perform two
/// duties the matrix calls incompatible, or to execute a duty it also approves. The dynamic
/// checks still refuse the second duty; the finding says the role design invites it.
pub fn lint_matrix(yaml: &str) -> Vec<super::Lint> {
    let Ok(m) = serde_norway::from_str::<Matrix>(yaml) else { return Vec::new() };
    let roles_of = |duty: &str| m.executors.get(duty).map(|e| e.roles.clone()).unwrap_or_default();
    let mut out = Vec::new();
    let mut finding = |needle: &str, message: String| {
        out.push(super::Lint {
            code: "static_sod_conflict",
            file: MATRIX_FILE.to_owned(),
            line: line_of(yaml, needle),
            policy_id: None,
            message,
        });
    };
    for i in &m.incompatible {
        let (a, b) = (roles_of(&i.first), roles_of(&i.then));
        for role in a.iter().filter(|r| b.contains(r)) {
            finding(
                &format!("id: {}", i.id),
                format!(
                    "role `{role}` may perform both `{}` and `{}`, which `{}` says one agent may not combine",
                    i.first, i.then, i.id
                ),
            );
        }
    }
    for a in &m.approvers {
        if roles_of(&a.duty).contains(&a.role) {
            finding(&format!("id: {}", a.id), format!("role `{}` both executes and approves `{}`", a.role, a.duty));
        }
    }
    out
}

/// Every lint of the bundle in `dir`: the policies' and, when it has one, the SoD matrix's.
pub fn lint_dir(dir: impl AsRef<std::path::Path>) -> Result<Vec<super::Lint>> {
    let dir = dir.as_ref();
    let sources = super::BundleSources::read_dir(dir)?;
    let bundle = super::Bundle::from_sources(&sources)?;
    let mut found = super::lint(&sources, &bundle);
    if let Ok(yaml) = std::fs::read_to_string(dir.join(MATRIX_FILE)) {
        found.extend(lint_matrix(&yaml));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_duties_and_roles_are_named() {
        let base = "roles: [r]\nduties: {pay: [p]}\n";
        let err = compile_matrix(&format!("{base}thresholds: [{{id: t, duty: nope, arg: a, above: 1}}]\n")).unwrap_err();
        assert!(err.to_string().contains("no duty `nope`"), "{err}");
        let err = compile_matrix(&format!("{base}approvers: [{{id: a, duty: pay, role: ghost}}]\n")).unwrap_err();
        assert!(err.to_string().contains("role `ghost`"), "{err}");
        let err =
            compile_matrix(&format!("{base}thresholds: [{{id: t, duty: pay, arg: \"a) || true\", above: 1}}]\n")).unwrap_err();
        assert!(err.to_string().contains("not an argument path"), "{err}");
        let err = compile_matrix("duties: {pay: [p]}\nextra: 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn static_conflicts_are_found() {
        let yaml = "roles: [clerk, boss]\nduties: {draft: [d], pay: [p]}\n\
                    executors: {draft: {roles: [clerk]}, pay: {roles: [clerk, boss]}}\n\
                    approvers: [{id: boss-approves, duty: pay, role: boss}]\n\
                    incompatible: [{id: no-both, first: draft, then: pay, within: agent}]\n";
        let found = lint_matrix(yaml);
        let messages: Vec<&str> = found.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(found.len(), 2, "{messages:?}");
        assert!(messages[0].contains("role `clerk` may perform both `draft` and `pay`"), "{messages:?}");
        assert!(messages[1].contains("role `boss` both executes and approves `pay`"), "{messages:?}");
        assert_eq!((found[0].code, found[0].line), ("static_sod_conflict", 5));
        // Disjoint roles: nothing to report.
        assert!(lint_matrix(
            &yaml
                .replace("pay: {roles: [clerk, boss]}", "pay: {roles: [payer]}")
                .replace("[clerk, boss]", "[clerk, boss, payer]")
        )
        .is_empty());
    }

    #[test]
    fn windowed_rules_never_share_a_fact() {
        let yaml = "roles: []\nduties: {a: [x], b: [y]}\nincompatible: [\
                    {id: a-b, first: a, then: b, within: task, window_secs: 60}, \
                    {id: a_b, first: b, then: a, within: task, window_secs: 600}]\n";
        let err = compile(yaml).unwrap_err();
        assert!(err.to_string().contains("same fact `sod_a_b`"), "{err}");
    }

    #[test]
    fn names_are_quoted_as_cedar_strings() {
        let out = compile_matrix(
            "roles: []\nduties: {a: [\"t\\\"x\"], b: [u]}\nincompatible: [{id: \"i\\\"d\", first: a, then: b, within: task}]\n",
        )
        .unwrap();
        assert!(out.contains(r#"context.task.performed.contains("t\"x")"#), "{out}");
        assert!(out.contains(r#"@id("i\"d")"#), "{out}");
    }
}
