//! Policy bundles: Cedar policies, a Cedar schema and a manifest, validated strictly at load,
//! indexed by action, and versioned by content.
//!
//! A bundle directory holds `*.cedar` files, exactly one `*.cedarschema` and a `manifest.yaml`.
//!
//! Policy annotations Aegis understands:
//! - `@id("...")`: the policy id used in reasons (default: `<file stem>.<n>`).
//! - `@message("...")`: the reason text shown to users.
//! - `@approval("role")` on a forbid: when every forbid that denies a call is approvable, the
//!   outcome is `approval_needed` instead of `deny`.
//! - `@sanitize("args.a, args.b.c")` on a permit: when it determines an allow, those argument
//!   paths are redacted and the outcome is `sanitize`.
//! - `@shadow` on any policy: evaluated, never enforced; a matching shadow forbid sets
//!   `would_block`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Decision as CedarDecision, Effect, Entities, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, Schema, ValidationMode, Validator,
};
use cedar_policy_core::ast;
use cedar_policy_core::entities::Entities as CoreEntities;
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, Result};

/// Text that replaces a redacted argument.
pub const REDACTED: &str = "[REDACTED]";

/// The bundle manifest (`manifest.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The bundle name.
    pub name: String,
    /// The bundle version.
    pub version: String,
    /// The Cedar namespace of the schema's types and actions, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The entity type of principals (agents).
    #[serde(default = "default_principal_type")]
    pub principal_type: String,
    /// The entity type of the default resource (`<type>::"<tool>"`).
    #[serde(default = "default_resource_type")]
    pub resource_type: String,
    /// Named predicates the engine computes and hands to Cedar as `context.predicates.<name>`.
    #[serde(default)]
    pub predicates: BTreeMap<String, PredicateSpec>,
    /// Tools whose calls need a proof of possession by the leaf key (`*` for all).
    #[serde(default)]
    pub proof_required: Vec<String>,
    /// Budgets: limits on what calls may spend, enforced atomically by the store.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetSpec>,
}

/// A budget: a limit over a rolling window on the sum of one argument (or the number of calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// The tools that spend from it.
    pub tools: Vec<String>,
    /// A dotted path to an integer argument that is summed; absent: each call counts 1.
    #[serde(default)]
    pub sum: Option<String>,
    /// Whose budget: per `task`, per `agent` or per root `initiator`.
    pub per: BudgetScope,
    /// The limit over the window.
    pub limit: i64,
    /// The rolling window, in seconds.
    pub window_secs: i64,
    /// What a call that would exceed it gets: `deny` (default) or `approval`.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

/// Whose spending a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// All calls in the task.
    Task,
    /// The calling agent's calls, across tasks.
    Agent,
    /// The calls of every chain under one root agent, across tasks.
    Initiator,
}

/// What happens when a call would exceed a budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// The call is denied.
    #[default]
    Deny,
    /// The call needs a human approval (role `budget-approver`).
    Approval,
}

fn default_principal_type() -> String {
    "Agent".into()
}
fn default_resource_type() -> String {
    "Tool".into()
}

/// A predicate: a regular expression over one string argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateSpec {
    /// A dotted path into the call's arguments, e.g. `destination` or `payee.account`.
    pub arg: String,
    /// A regular expression (Rust `regex` syntax), matched against the whole value.
    pub pattern: String,
    /// The tools it applies to; all tools when absent.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// The sources of a bundle, for loading from memory rather than a directory.
#[derive(Debug, Clone, Default)]
pub struct BundleSources {
    /// The manifest, as YAML.
    pub manifest: String,
    /// The schema, in Cedar schema syntax.
    pub schema: String,
    /// The schema's file name, for error messages.
    pub schema_file: String,
    /// Policy files: `(file name, Cedar source)`.
    pub policies: Vec<(String, String)>,
}

/// Where a policy came from and what its annotations ask of Aegis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMeta {
    /// The policy id.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: Effect,
    /// The file it was loaded from.
    pub file: String,
    /// The 1-based line where it starts.
    pub line: usize,
    /// `@message`.
    pub message: Option<String>,
    /// `@approval`: the role that may approve.
    pub approval: Option<String>,
    /// `@sanitize`: argument paths to redact (without the leading `args`).
    pub sanitize: Vec<Vec<String>>,
    /// `@shadow`.
    pub shadow: bool,
    /// `@breakable` (forbids only): an open break-glass grant lifts it.
    pub breakable: bool,
}

/// A validated, indexed bundle. Immutable; swap a new one into the engine to change policy.
#[derive(Debug)]
pub struct Bundle {
    manifest: Manifest,
    policy_version: String,
    enforced: PolicyIndex,
    shadow: PolicyIndex,
    meta: HashMap<PolicyId, PolicyMeta>,
    tools: HashMap<String, Arc<ToolEntry>>,
    principal_type: EntityTypeName,
}

/// What the engine needs per tool, computed once at load.
#[derive(Debug)]
pub(crate) struct ToolEntry {
    /// The action, as the request holds it (shared, not rebuilt per call).
    pub action: ast::EntityUIDEntry,
    pub default_resource: ast::EntityUIDEntry,
    /// The enforced policies for this action, plus its shadow forbids rewritten as permits, so
    /// that one Cedar evaluation answers both the decision and `would_block`.
    pub policies: PolicyList,
    pub predicates: Vec<CompiledPredicate>,
    pub proof_required: bool,
    pub budgets: Vec<CompiledBudget>,
}

#[derive(Debug)]
pub(crate) struct CompiledBudget {
    pub name: String,
    pub sum: Option<Vec<String>>,
    pub spec: BudgetSpec,
}

#[derive(Debug)]
pub(crate) struct CompiledPredicate {
    pub name: String,
    pub path: Vec<String>,
    pub regex: Regex,
}

impl Bundle {
    /// Loads and validates a bundle directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| {
                Error::new(ErrorCode::InvalidBundle, format!("cannot read `{}`: {e}", p.display()))
            })
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::new(ErrorCode::InvalidBundle, format!("cannot read bundle directory `{}`: {e}", dir.display()))
        })?;
        let mut sources = BundleSources::default();
        let mut manifest = None;
        let mut schemas = Vec::new();
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cedar") => sources.policies.push((name, read(&path)?)),
                Some("cedarschema") => schemas.push((name, read(&path)?)),
                _ if name == "manifest.yaml" || name == "manifest.yml" => manifest = Some(read(&path)?),
                _ => {}
            }
        }
        sources.manifest = manifest.ok_or_else(|| {
            Error::new(ErrorCode::InvalidBundle, format!("bundle `{}` has no `manifest.yaml`", dir.display()))
        })?;
        if schemas.len() != 1 {
            return Err(Error::new(
                ErrorCode::InvalidBundle,
                format!("bundle `{}` needs exactly one `.cedarschema` file, found {}", dir.display(), schemas.len()),
            ));
        }
        let (schema_file, schema) = schemas.remove(0);
        sources.schema = schema;
        sources.schema_file = schema_file;
        Self::from_sources(&sources)
    }

    /// Loads and validates a bundle from sources in memory.
    pub fn from_sources(sources: &BundleSources) -> Result<Self> {
        let manifest: Manifest = serde_norway::from_str(&sources.manifest)
            .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: {e}")))?;
        let (schema, _warnings) = Schema::from_cedarschema_str(&sources.schema).map_err(|e| {
            Error::new(ErrorCode::InvalidBundle, format!("`{}`: {}", sources.schema_file, render_diagnostic(&e, &sources.schema)))
        })?;
        let action_entities = schema
            .action_entities()
            .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{}`: {e}", sources.schema_file)))?;

        let (all, meta) = parse_policy_files(&sources.policies)?;
        validate(&schema, &all, &meta, &sources.policies)?;

        let (enforced_set, shadow_set) = split_shadow(&all, &meta)?;
        let enforced = PolicyIndex::new(enforced_set, &action_entities)?;
        let shadow_probes = PolicyIndex::new(shadow_forbids_as_permits(&shadow_set)?, &action_entities)?;
        let shadow = PolicyIndex::new(shadow_set, &action_entities)?;

        let ns = manifest.namespace.as_deref().map(|n| format!("{n}::")).unwrap_or_default();
        let principal_type = type_name(&format!("{ns}{}", manifest.principal_type))?;
        let resource_type = type_name(&format!("{ns}{}", manifest.resource_type))?;
        let predicates = compile_predicates(&manifest)?;
        if let Some((name, _)) = manifest.budgets.iter().find(|(_, b)| b.limit < 0 || b.window_secs <= 0) {
            return Err(Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: budget `{name}` needs a limit >= 0 and a window > 0")));
        }
        let mut tools = HashMap::new();
        for action in schema.actions() {
            let tool = action.id().unescaped().to_owned();
            let entry = ToolEntry {
                action: ast::EntityUIDEntry::known(action.as_ref().clone(), None),
                default_resource: ast::EntityUIDEntry::known(
                    EntityUid::from_type_name_and_id(resource_type.clone(), cedar_policy::EntityId::new(&tool)).into(),
                    None,
                ),
                policies: PolicyList::new(&merge(enforced.for_action(action), shadow_probes.for_action(action))?),
                predicates: predicates
                    .iter()
                    .filter(|(_, tools)| tools.as_ref().is_none_or(|t| t.iter().any(|x| x == &tool)))
                    .map(|(p, _)| CompiledPredicate { name: p.name.clone(), path: p.path.clone(), regex: p.regex.clone() })
                    .collect(),
                proof_required: manifest.proof_required.iter().any(|t| t == "*" || t == &tool),
                budgets: manifest
                    .budgets
                    .iter()
                    .filter(|(_, b)| b.tools.iter().any(|t| t == &tool || t == "*"))
                    .map(|(name, b)| CompiledBudget {
                        name: name.clone(),
                        sum: b.sum.as_ref().map(|p| p.split('.').map(str::to_owned).collect()),
                        spec: b.clone(),
                    })
                    .collect(),
            };
            tools.insert(tool, Arc::new(entry));
        }
        let policy_version = format!("{}@{}+{}", manifest.name, manifest.version, content_digest(sources));
        Ok(Self { manifest, policy_version, enforced, shadow, meta, tools, principal_type })
    }

    /// `name@version+digest`: changes whenever any byte of the bundle changes.
    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What Aegis knows about a policy.
    pub fn policy_meta(&self, id: &PolicyId) -> Option<&PolicyMeta> {
        self.meta.get(id)
    }

    /// The tools (Cedar actions) this bundle knows.
    pub fn tools(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// The enforced policies, indexed by action.
    pub fn enforced_policies(&self) -> &PolicyIndex {
        &self.enforced
    }

    /// The shadow policies, indexed by action.
    pub fn shadow_policies(&self) -> &PolicyIndex {
        &self.shadow
    }

    pub(crate) fn tool(&self, tool: &str) -> Option<&Arc<ToolEntry>> {
        self.tools.get(tool)
    }

    pub(crate) fn principal_type(&self) -> &EntityTypeName {
        &self.principal_type
    }
}

/// A policy set indexed by action, evaluated with Aegis's rule: an erroring forbid denies.
///
/// Each action gets the policies whose action scope can match it (equality, membership in a
/// listed action or one of its groups, or no action constraint), so evaluation cost follows the
/// applicable policies rather than the bundle size. Actions the index does not know fall back to
/// the full set, which Cedar evaluates exactly as it would without an index.
#[derive(Debug, Clone)]
pub struct PolicyIndex {
    all: PolicySet,
    all_listed: PolicyList,
    by_action: HashMap<EntityUid, (PolicySet, PolicyList)>,
}

/// The result of evaluating a [`PolicyIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Cedar's own decision.
    pub cedar_decision: CedarDecision,
    /// Aegis's decision: Cedar's, except that an erroring forbid turns an allow into a deny.
    pub decision: CedarDecision,
    /// The policies that determined Cedar's decision.
    pub determining: Vec<PolicyId>,
    /// Policies that failed to evaluate, with the error.
    pub erroring: Vec<(PolicyId, String)>,
    /// The erroring policies that are forbids.
    pub erroring_forbids: Vec<PolicyId>,
}

impl PolicyIndex {
    /// Indexes `policies` by the actions in `action_entities` (from the schema).
    pub fn new(policies: PolicySet, action_entities: &Entities) -> Result<Self> {
        let actions: Vec<EntityUid> = action_entities.iter().map(|e| e.uid()).collect();
        let mut buckets: HashMap<EntityUid, Vec<Policy>> = actions.iter().map(|a| (a.clone(), Vec::new())).collect();
        for policy in policies.policies() {
            for action in &actions {
                let applies = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(uid) => &uid == action,
                    ActionConstraint::In(list) => list.iter().any(|group| {
                        group == action
                            || action_entities.ancestors(action).is_some_and(|mut a| a.any(|x| x == group))
                    }),
                };
                if applies {
                    if let Some(bucket) = buckets.get_mut(action) {
                        bucket.push(policy.clone());
                    }
                }
            }
        }
        let by_action = buckets
            .into_iter()
            .map(|(action, ps)| {
                PolicySet::from_policies(ps)
                    .map(|set| {
                        let listed = PolicyList::new(&set);
                        (action, (set, listed))
                    })
                    .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("cannot index policies: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Self { all_listed: PolicyList::new(&policies), all: policies, by_action })
    }

    /// The policies that can apply to `action`.
    pub fn for_action(&self, action: &EntityUid) -> &PolicySet {
        self.by_action.get(action).map_or(&self.all, |(set, _)| set)
    }

    /// Whether no policy is indexed.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Evaluates `request` against the policies that can apply to its action.
    pub fn evaluate(&self, request: &Request, entities: &Entities) -> Evaluation {
        let list = request.action().and_then(|a| self.by_action.get(a)).map_or(&self.all_listed, |(_, list)| list);
        list.evaluate(AsRef::<ast::Request>::as_ref(request).clone(), entities.as_ref())
    }
}

/// A policy set flattened for evaluation: each policy's condition built once, with its slot
/// values, effect and public id.
///
/// Policies are evaluated one by one on Cedar's `Evaluator` rather than through its
/// `Authorizer`, whose response bookkeeping (six hash maps, and a rebuilt policy with cloned
/// annotations per satisfied policy) cost a fifth of a payments decision, and whose
/// `Policy::condition` rebuilds each policy's expression tree on every call. The decision rule
/// is Cedar's: any satisfied forbid denies, else any satisfied permit allows, else deny;
/// erroring policies are skipped by Cedar and reported. A unit test holds this to Cedar's
/// `Authorizer`, and the Cedar corpus test to Cedar's own answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyList(Vec<CompiledPolicy>);

#[derive(Debug, Clone)]
struct CompiledPolicy {
    /// What `ast::Policy::condition` returns: scope constraints and body, in Cedar's order.
    condition: ast::Expr,
    slots: ast::SlotEnv,
    forbid: bool,
    id: PolicyId,
    /// For Cedar's own error, should a condition ever yield a non-boolean (its `&&` cannot).
    policy: ast::Policy,
}

impl PolicyList {
    fn new(set: &PolicySet) -> Self {
        Self(
            set.policies()
                .map(|p| {
                    let core: &ast::Policy = p.as_ref();
                    CompiledPolicy {
                        condition: core.condition(),
                        slots: core.env().clone(),
                        forbid: core.effect() == ast::Effect::Forbid,
                        id: p.id().clone(),
                        policy: core.clone(),
                    }
                })
                .collect(),
        )
    }

    pub(crate) fn evaluate(&self, request: ast::Request, entities: &CoreEntities) -> Evaluation {
        let evaluator = Evaluator::new(request, entities, Extensions::all_available());
        let (mut permits, mut forbids) = (Vec::new(), Vec::new());
        let mut erroring: Vec<(PolicyId, String)> = Vec::new();
        let mut erroring_forbids: Vec<PolicyId> = Vec::new();
        for CompiledPolicy { condition, slots, forbid, id, policy } in &self.0 {
            let forbid = *forbid;
            // `Evaluator::evaluate`, with the condition built once.
            let satisfied = match evaluator.interpret(condition, slots) {
                Ok(ast::Value { value: ast::ValueKind::Lit(ast::Literal::Bool(b)), .. }) => Ok(b),
                Ok(_) => evaluator.evaluate(policy),
                Err(e) => Err(e),
            };
            match satisfied {
                Ok(true) if forbid => forbids.push(id.clone()),
                Ok(true) => permits.push(id.clone()),
                Ok(false) => {}
                Err(e) => {
                    erroring.push((id.clone(), format!("error while evaluating policy `{id}`: {e}")));
                    if forbid {
                        erroring_forbids.push(id.clone());
                    }
                }
            }
        }
        let (cedar_decision, mut determining) = if !forbids.is_empty() {
            (CedarDecision::Deny, forbids)
        } else if !permits.is_empty() {
            (CedarDecision::Allow, permits)
        } else {
            (CedarDecision::Deny, permits)
        };
        // Set order is unspecified; sorted for stable output.
        let by_id = |a: &PolicyId, b: &PolicyId| AsRef::<str>::as_ref(a).cmp(AsRef::<str>::as_ref(b));
        determining.sort_unstable_by(by_id);
        erroring.sort_unstable_by(|a, b| by_id(&a.0, &b.0));
        erroring_forbids.sort_unstable_by(by_id);
        let decision = if erroring_forbids.is_empty() { cedar_decision } else { CedarDecision::Deny };
        Evaluation { cedar_decision, decision, determining, erroring, erroring_forbids }
    }
}

impl Bundle {
    /// Evaluates a tool's policies once; returns the enforced evaluation and `would_block`.
    ///
    /// Shadow forbids ride along as permits: when the enforced policies deny, Cedar reports
    /// only forbids and the shadow result is moot (`would_block` is false); when they allow,
    /// a satisfied shadow "permit" is a shadow forbid that would have blocked the call.
    pub(crate) fn evaluate(&self, tool: &ToolEntry, request: ast::Request, entities: &Entities) -> (Evaluation, bool) {
        let mut eval = tool.policies.evaluate(request, entities.as_ref());
        let shadow = |id: &PolicyId| self.meta.get(id).is_some_and(|m| m.shadow);
        let would_block = eval.determining.iter().any(shadow) || eval.erroring.iter().any(|(id, _)| shadow(id));
        eval.determining.retain(|id| !shadow(id));
        eval.erroring.retain(|(id, _)| !shadow(id));
        if eval.cedar_decision == CedarDecision::Allow && eval.determining.is_empty() {
            // Only shadow probes matched: no enforced permit, which Cedar would call a deny.
            eval.cedar_decision = CedarDecision::Deny;
            eval.decision = CedarDecision::Deny;
        }
        (eval, would_block)
    }
}

/// Rewrites each shadow forbid as a permit with the same id and conditions.
fn shadow_forbids_as_permits(shadow: &PolicySet) -> Result<PolicySet> {
    let fail = |e: String| Error::new(ErrorCode::InvalidBundle, format!("cannot prepare shadow policies: {e}"));
    let mut out = PolicySet::new();
    for policy in shadow.policies().filter(|p| p.effect() == Effect::Forbid) {
        let mut json = policy.to_json().map_err(|e| fail(e.to_string()))?;
        json["effect"] = serde_json::Value::String("permit".into());
        let probe = Policy::from_json(Some(policy.id().clone()), json).map_err(|e| fail(e.to_string()))?;
        out.add(probe).map_err(|e| fail(e.to_string()))?;
    }
    Ok(out)
}

fn merge(a: &PolicySet, b: &PolicySet) -> Result<PolicySet> {
    PolicySet::from_policies(a.policies().chain(b.policies()).cloned())
        .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("cannot index policies: {e}")))
}

fn type_name(name: &str) -> Result<EntityTypeName> {
    EntityTypeName::from_str(name)
        .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{name}` is not a valid entity type: {e}")))
}

struct PredicateDef {
    name: String,
    path: Vec<String>,
    regex: Regex,
}

fn compile_predicates(manifest: &Manifest) -> Result<Vec<(PredicateDef, Option<Vec<String>>)>> {
    manifest
        .predicates
        .iter()
        .map(|(name, spec)| {
            // Anchored: a pattern constrains the whole value, not a substring of it.
            let regex = Regex::new(&format!("^(?:{})$", spec.pattern)).map_err(|e| {
                Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: predicate `{name}`: invalid pattern: {e}"))
            })?;
            let path = spec.arg.split('.').map(str::to_owned).collect();
            Ok((PredicateDef { name: name.clone(), path, regex }, spec.tools.clone()))
        })
        .collect()
}

fn parse_policy_files(files: &[(String, String)]) -> Result<(PolicySet, HashMap<PolicyId, PolicyMeta>)> {
    let mut all = PolicySet::new();
    let mut meta = HashMap::new();
    for (file, src) in files {
        let parsed = PolicySet::from_str(src).map_err(|e| {
            Error::new(ErrorCode::InvalidBundle, format!("`{file}`: {}", render_diagnostic(&e, src)))
        })?;
        if parsed.templates().next().is_some() {
            return Err(Error::new(ErrorCode::InvalidBundle, format!("`{file}`: policy templates are not supported in bundles")));
        }
        let stem = file.strip_suffix(".cedar").unwrap_or(file);
        // Sort by source position: Cedar's own ids are `policy0`, `policy1`, ... in file order.
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        policies.sort_by_key(|p| AsRef::<str>::as_ref(p.id()).trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
        let mut cursor = 0;
        for (n, policy) in policies.into_iter().enumerate() {
            let line = policy_line(policy, src, &mut cursor);
            let id = policy.annotation("id").map_or_else(|| format!("{stem}.{n}"), str::to_owned);
            let renamed = policy.new_id(PolicyId::new(&id));
            let info = policy_meta(&renamed, &id, file, line)?;
            if meta.insert(renamed.id().clone(), info).is_some() {
                return Err(Error::new(ErrorCode::InvalidBundle, format!("`{file}` line {line}: duplicate policy id `{id}`")));
            }
            all.add(renamed).map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{file}` line {line}: {e}")))?;
        }
    }
    Ok((all, meta))
}

fn policy_meta(policy: &Policy, id: &str, file: &str, line: usize) -> Result<PolicyMeta> {
    let at = || format!("`{file}` line {line}, policy `{id}`");
    let effect = policy.effect();
    let approval = policy.annotation("approval").map(str::to_owned);
    if approval.is_some() && effect != Effect::Forbid {
        return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@approval` belongs on a forbid", at())));
    }
    if policy.annotation("breakable").is_some() && effect != Effect::Forbid {
        return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@breakable` belongs on a forbid", at())));
    }
    let sanitize = match policy.annotation("sanitize") {
        None => Vec::new(),
        Some(_) if effect != Effect::Permit => {
            return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@sanitize` belongs on a permit", at())))
        }
        Some(list) => list
            .split(',')
            .map(|p| {
                let p = p.trim();
                p.strip_prefix("args.")
                    .filter(|rest| !rest.is_empty())
                    .map(|rest| rest.split('.').map(str::to_owned).collect())
                    .ok_or_else(|| {
                        Error::new(ErrorCode::InvalidBundle, format!("{}: sanitize path `{p}` must start with `args.`", at()))
                    })
            })
            .collect::<Result<_>>()?,
    };
    Ok(PolicyMeta {
        id: id.to_owned(),
        effect,
        file: file.to_owned(),
        line,
        message: policy.annotation("message").map(str::to_owned),
        approval,
        sanitize,
        shadow: policy.annotation("shadow").is_some(),
        breakable: policy.annotation("breakable").is_some(),
    })
}

/// The 1-based line where `policy` starts, searching `src` from `cursor` (policies come in
/// file order) and moving the cursor past it.
fn policy_line(policy: &Policy, src: &str, cursor: &mut usize) -> usize {
    let text = policy.to_cedar().unwrap_or_else(|| policy.to_string());
    let rest = src.get(*cursor..).unwrap_or_default();
    match rest.find(text.trim()) {
        Some(off) => {
            let at = *cursor + off;
            *cursor = at + text.trim().len();
            line_of(src, at)
        }
        None => line_of(src, *cursor),
    }
}

fn validate(schema: &Schema, all: &PolicySet, meta: &HashMap<PolicyId, PolicyMeta>, files: &[(String, String)]) -> Result<()> {
    let result = Validator::new(schema.clone()).validate(all, ValidationMode::Strict);
    if result.validation_passed() {
        return Ok(());
    }
    let messages: Vec<String> = result
        .validation_errors()
        .map(|e| {
            let id = e.policy_id();
            match meta.get(id) {
                Some(m) => {
                    let src = files.iter().find(|(f, _)| f == &m.file).map_or("", |(_, s)| s.as_str());
                    let line = first_label_offset(e).map_or(m.line, |off| line_of(src, off));
                    format!("`{}` line {line}, policy `{id}`: {e}", m.file)
                }
                None => format!("policy `{id}`: {e}"),
            }
        })
        .collect();
    Err(Error::new(ErrorCode::InvalidBundle, format!("schema validation failed: {}", messages.join("; "))))
}

fn split_shadow(all: &PolicySet, meta: &HashMap<PolicyId, PolicyMeta>) -> Result<(PolicySet, PolicySet)> {
    let is_shadow = |p: &&Policy| meta.get(p.id()).is_some_and(|m| m.shadow);
    let enforced = PolicySet::from_policies(all.policies().filter(|p| !is_shadow(p)).cloned());
    let shadow = PolicySet::from_policies(all.policies().filter(is_shadow).cloned());
    match (enforced, shadow) {
        (Ok(e), Ok(s)) => Ok((e, s)),
        (Err(e), _) | (_, Err(e)) => Err(Error::new(ErrorCode::InvalidBundle, format!("cannot split shadow policies: {e}"))),
    }
}

fn first_label_offset(diag: &dyn miette::Diagnostic) -> Option<usize> {
    diag.labels().and_then(|mut labels| labels.next()).map(|l| l.offset())
}

fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(0, |s| s.matches('\n').count()) + 1
}

fn render_diagnostic(diag: &(dyn miette::Diagnostic + 'static), src: &str) -> String {
    match first_label_offset(diag) {
        Some(off) => format!("line {}: {diag}", line_of(src, off)),
        None => diag.to_string(),
    }
}

fn content_digest(sources: &BundleSources) -> String {
    let mut files: Vec<(&str, &str)> = sources.policies.iter().map(|(f, s)| (f.as_str(), s.as_str())).collect();
    files.push(("manifest.yaml", &sources.manifest));
    files.push((&sources.schema_file, &sources.schema));
    files.sort_unstable();
    let mut hasher = Sha256::new();
    for (name, content) in files {
        // Length-prefixed so that moving bytes between files changes the digest.
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((content.len() as u64).to_be_bytes());
        hasher.update(content.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{Authorizer, Context};

    /// The flattened evaluation must answer exactly as Cedar's `Authorizer` does, down to the
    /// error messages, over satisfied, unsatisfied and erroring permits and forbids.
    #[test]
    fn policy_list_agrees_with_cedar_authorizer() {
        let src = r#"
            @id("p1") permit(principal, action, resource) when { context.amount < 100 };
            @id("p2") permit(principal, action == Action::"a", resource) when { context.amount < 50 };
            @id("f1") forbid(principal, action, resource) when { context.amount > 70 };
            @id("f2") forbid(principal, action, resource) when { context.flag };
            @id("p3") permit(principal, action, resource) when { context.nested.x == 1 };
            @id("f3") forbid(principal == Agent::"mallory", action, resource);
        "#;
        let set = PolicySet::from_str(src).unwrap();
        let index = PolicyIndex::new(set.clone(), &Entities::empty()).unwrap();
        let mut compared = 0;
        for principal in [r#"Agent::"alice""#, r#"Agent::"mallory""#] {
            for action in [r#"Action::"a""#, r#"Action::"b""#] {
                for amount in [10, 60, 80, 200] {
                    for flag in ["", r#", "flag": true"#, r#", "flag": false"#, r#", "flag": "yes""#] {
                        for nested in ["", r#", "nested": {"x": 1}"#, r#", "nested": {"x": "1"}"#] {
                            let context = format!(r#"{{"amount": {amount}{flag}{nested}}}"#);
                            let request = Request::new(
                                principal.parse().unwrap(),
                                action.parse().unwrap(),
                                r#"Tool::"t""#.parse().unwrap(),
                                Context::from_json_str(&context, None).unwrap(),
                                None,
                            )
                            .unwrap();
                            let ours = index.evaluate(&request, &Entities::empty());
                            let cedar = Authorizer::new().is_authorized(&request, &set, &Entities::empty());
                            let mut reasons: Vec<PolicyId> = cedar.diagnostics().reason().cloned().collect();
                            reasons.sort_unstable_by_key(ToString::to_string);
                            let mut errors: Vec<(PolicyId, String)> = cedar
                                .diagnostics()
                                .errors()
                                .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| {
                                    (e.policy_id().clone(), e.to_string())
                                })
                                .collect();
                            errors.sort_unstable_by_key(|e| e.0.to_string());
                            assert_eq!(ours.cedar_decision, cedar.decision(), "{principal} {action} {context}");
                            assert_eq!(ours.determining, reasons, "{principal} {action} {context}");
                            assert_eq!(ours.erroring, errors, "{principal} {action} {context}");
                            let forbid_errors = errors.iter().filter(|(id, _)| set.policy(id).is_some_and(|p| p.effect() == Effect::Forbid));
                            assert_eq!(ours.erroring_forbids.len(), forbid_errors.count(), "{:?} {:?}", ours.erroring_forbids, errors);
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 192);
    }
}
