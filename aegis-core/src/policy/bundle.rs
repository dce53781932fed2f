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
//! - `@detect("payment_card, email")` on a permit: when it determines an allow, every match of
//!   those detectors in any string of the arguments is replaced (see [`Detector`]); the outcome
//!   is `sanitize` when one matched.
//! - `@shadow` on any policy: evaluated, never enforced; a matching shadow forbid sets
//!   `would_block`.

// The bundle's tables are filled from the bundle alone (its policy ids and tool names) and only
// read per call: the fast hasher suffices, with no caller able to choose their keys.
use hashbrown::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Decision as CedarDecision, Effect, Entities, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Schema, ValidationMode,
    Validator,
};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::args::ArgsType;
use super::detect::Detector;
use super::eval::{Evaluation, PolicyIndex, PolicyList, PreparedRequest, RequestEntities, ToolTarget};
use super::manifest::{BudgetSpec, Manifest, RosterEntry, TemporalSpec};
use crate::approval::Channel;
use crate::error::{Error, ErrorCode, Result};

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
    /// `@quorum("k")`: how many distinct approvers an approval needs (default 1).
    pub quorum: u32,
    /// `@stages("lead,finance")`: roles that approve in this order, one approver each.
    pub stages: Vec<String>,
    /// `@sanitize`: argument paths to redact (without the leading `args`).
    pub sanitize: Vec<Vec<String>>,
    /// `@detect`: detectors whose matches are redacted in every string of the arguments.
    pub detect: Vec<Detector>,
    /// `@shadow`.
    pub shadow: bool,
    /// `@breakable` (forbids only): an open break-glass grant lifts it.
    pub breakable: bool,
    /// `@category`: what the policy enforces, for reports (`sod` for segregation of duties).
    pub category: Option<String>,
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
    role_type: EntityTypeName,
    /// The entities requests are evaluated with. They hold the schema's action entities when it
    /// puts any action in a group, so that `action in Action::"group"` holds for the group's
    /// members wherever a policy writes it, as Cedar decides with the schema; without groups `in`
    /// on an action is equality and no action entity is needed.
    request_entities: RequestEntities,
    /// The SHA-256 of the bundle's files (hex): what a bundle signature covers.
    digest: String,
    /// The key (thumbprint) whose signature over the digest verified, if one did.
    signed_by: Option<String>,
}

/// What the engine needs per tool, computed once at load.
#[derive(Debug)]
pub(crate) struct ToolEntry {
    /// The action and default resource, as every request holds them (shared, not rebuilt).
    pub target: ToolTarget,
    /// The enforced policies for this action, plus its shadow forbids rewritten as permits, so
    /// that one Cedar evaluation answers both the decision and `would_block`.
    pub policies: PolicyList,
    pub predicates: Vec<CompiledPredicate>,
    pub proof_required: bool,
    /// The declared type of `context.args`, checked before every evaluation.
    pub args_type: Option<ArgsType>,
    /// Every `@sanitize` path of the tool's policies: what its audit records redact.
    pub audit_redactions: Vec<Vec<String>>,
    /// Every `@detect` detector of the tool's policies (sorted, once each): what its audit
    /// records scrub.
    pub audit_detectors: Vec<Detector>,
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

impl BundleSources {
    /// The SHA-256 (hex) of every file, each length-prefixed with its name: what
    /// `policy_version` abbreviates and a bundle signature covers.
    pub fn digest(&self) -> String {
        content_digest(self)
    }

    /// Reads a bundle directory's files: `*.cedar`, one `*.cedarschema` and `manifest.yaml`
    /// (other files and subdirectories, such as `tests/`, are not part of the bundle).
    pub fn read_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("cannot read `{}`: {e}", p.display())))
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::new(ErrorCode::InvalidBundle, format!("cannot read bundle directory `{}`: {e}", dir.display()))
        })?;
        let mut sources = BundleSources::default();
        let mut manifest = None;
        let mut matrix = None;
        let mut schemas = Vec::new();
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cedar") => sources.policies.push((name, read(&path)?)),
                Some("cedarschema") => schemas.push((name, read(&path)?)),
                _ if name == "manifest.yaml" || name == "manifest.yml" => manifest = Some(read(&path)?),
                // The SoD matrix is compiled to Cedar here: the policies it becomes are part of
                // the bundle (and of its digest) like any other.
                _ if name == super::matrix::MATRIX_FILE => matrix = Some(super::matrix::compile(&read(&path)?)?),
                _ => {}
            }
        }
        sources.manifest = manifest
            .ok_or_else(|| Error::new(ErrorCode::InvalidBundle, format!("bundle `{}` has no `manifest.yaml`", dir.display())))?;
        if let Some(compiled) = matrix {
            sources.manifest = super::matrix::merge_into_manifest(&sources.manifest, &compiled)?;
            sources.policies.push((super::matrix::COMPILED_FILE.to_owned(), compiled.cedar));
        }
        if schemas.len() != 1 {
            return Err(Error::new(
                ErrorCode::InvalidBundle,
                format!("bundle `{}` needs exactly one `.cedarschema` file, found {}", dir.display(), schemas.len()),
            ));
        }
        let (schema_file, schema) = schemas.remove(0);
        sources.schema = schema;
        sources.schema_file = schema_file;
        Ok(sources)
    }
}

impl Bundle {
    /// Loads and validates a bundle directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_sources(&BundleSources::read_dir(dir)?)
    }

    /// Loads and validates a bundle from sources in memory.
    pub fn from_sources(sources: &BundleSources) -> Result<Self> {
        let manifest: Manifest = serde_norway::from_str(&sources.manifest)
            .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: {e}")))?;
        // Parsed once for its diagnostics, then in JSON form with the engine's common context
        // added to every action (the schema declares each tool's `args`, nothing repeated).
        let (fragment, _warnings) = cedar_policy::SchemaFragment::from_cedarschema_str(&sources.schema).map_err(|e| {
            Error::new(ErrorCode::InvalidBundle, format!("`{}`: {}", sources.schema_file, render_diagnostic(&e, &sources.schema)))
        })?;
        let mut schema_json = fragment
            .to_json_value()
            .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{}`: {e}", sources.schema_file)))?;
        super::context_schema::add_common_context(&mut schema_json, &manifest);
        let schema = Schema::from_json_value(schema_json.clone())
            .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{}`: {e}", sources.schema_file)))?;
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
        let role_type = type_name(&format!("{ns}{}", manifest.role_type))?;
        let resource_type = type_name(&format!("{ns}{}", manifest.resource_type))?;
        let predicates = compile_predicates(&manifest)?;
        if let Some((name, _)) = manifest.temporal.iter().find(|(_, t)| match t {
            TemporalSpec::CountWithin { secs, .. } | TemporalSpec::SumWithin { secs, .. } => *secs <= 0,
            TemporalSpec::Formerly { tools, .. } => tools.is_empty(),
        }) {
            return Err(Error::new(
                ErrorCode::InvalidBundle,
                format!("`manifest.yaml`: temporal fact `{name}` needs a window > 0 (or, for `formerly`, tools)"),
            ));
        }
        // Counting and summing facts are metered like budgets that never run out.
        let meters: Vec<(String, BudgetSpec)> = manifest.temporal.iter().filter_map(|(name, t)| t.meter(name)).collect();
        if let Some((name, _)) = manifest.budgets.iter().find(|(_, b)| b.limit < 0 || b.window_secs <= 0) {
            return Err(Error::new(
                ErrorCode::InvalidBundle,
                format!("`manifest.yaml`: budget `{name}` needs a limit >= 0 and a window > 0"),
            ));
        }
        validate_roster(&manifest)?;
        let mut tools = HashMap::new();
        for action in schema.actions() {
            let tool = action.id().unescaped().to_owned();
            let entry = ToolEntry {
                target: ToolTarget::new(
                    action,
                    EntityUid::from_type_name_and_id(resource_type.clone(), cedar_policy::EntityId::new(&tool)),
                ),
                policies: PolicyList::for_action(&merge(enforced.for_action(action), shadow_probes.for_action(action))?),
                predicates: predicates
                    .iter()
                    .filter(|(_, tools)| tools.as_ref().is_none_or(|t| t.iter().any(|x| x == &tool)))
                    .map(|(p, _)| CompiledPredicate { name: p.name.clone(), path: p.path.clone(), regex: p.regex.clone() })
                    .collect(),
                proof_required: manifest.proof_required.iter().any(|t| t == "*" || t == &tool),
                args_type: ArgsType::of_action(&schema_json, &tool),
                audit_redactions: enforced
                    .for_action(action)
                    .policies()
                    .filter_map(|p| meta.get(p.id()))
                    .flat_map(|m| m.sanitize.iter().cloned())
                    .collect(),
                audit_detectors: enforced
                    .for_action(action)
                    .policies()
                    .filter_map(|p| meta.get(p.id()))
                    .flat_map(|m| m.detect.iter().copied())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                budgets: manifest
                    .budgets
                    .iter()
                    .chain(meters.iter().map(|(name, spec)| (name, spec)))
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
        validate_batches(&manifest, &meta, &tools)?;
        let digest = sources.digest();
        let policy_version = format!("{}@{}+{}", manifest.name, manifest.version, &digest[..16]);
        let grouped =
            action_entities.iter().any(|a| action_entities.ancestors(&a.uid()).is_some_and(|mut up| up.next().is_some()));
        let action_groups = grouped.then(|| action_entities.clone());
        Ok(Self {
            manifest,
            policy_version,
            enforced,
            shadow,
            meta,
            tools,
            principal_type,
            request_entities: RequestEntities::new(role_type.clone(), action_groups),
            role_type,
            digest,
            signed_by: None,
        })
    }

    /// The SHA-256 (hex) of every file of the bundle: what a bundle signature covers.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The key (thumbprint) whose signature over this bundle verified, if one did.
    pub fn signed_by(&self) -> Option<&str> {
        self.signed_by.as_deref()
    }

    pub(crate) fn set_signed_by(&mut self, kid: String) {
        self.signed_by = Some(kid);
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

    /// The tools that must be covered by a forbid, sorted: the manifest's `critical_tools`,
    /// else every tool but Aegis's own (`aegis.*`).
    pub fn critical_tools(&self) -> Vec<&str> {
        let mut tools: Vec<&str> = match self.manifest.critical_tools.is_empty() {
            true => self.tools().filter(|t| !t.starts_with("aegis.")).collect(),
            false => self.manifest.critical_tools.iter().map(String::as_str).collect(),
        };
        tools.sort_unstable();
        tools
    }

    /// The roster identity a chat platform's account is, with its entry.
    pub fn roster_identity(&self, channel: Channel, account: &str) -> Option<(&str, &RosterEntry)> {
        self.manifest.roster.iter().find_map(|(id, entry)| {
            let accounts = match channel {
                Channel::Slack => &entry.slack,
                Channel::Teams => &entry.teams,
            };
            accounts.iter().any(|a| a == account).then_some((id.as_str(), entry))
        })
    }

    /// Whether a proxy may have `tool` decided without the call's arguments.
    pub fn decides_without_args(&self, tool: &str) -> bool {
        self.manifest.decide_without_args.iter().any(|t| t == tool)
    }

    /// The tools under at least one enforced (not shadow) forbid, sorted.
    pub fn forbidden_tools(&self) -> Vec<&str> {
        let mut tools: Vec<&str> =
            self.tools.iter().filter(|(_, entry)| entry.policies.has_forbid()).map(|(name, _)| name.as_str()).collect();
        tools.sort_unstable();
        tools
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

    pub(crate) fn role_type(&self) -> &EntityTypeName {
        &self.role_type
    }

    /// The entities a request by `principal` holding `roles` is evaluated with (see
    /// `request_entities`).
    pub(crate) fn request_entities(
        &self,
        principal: &cedar_policy::EntityUid,
        roles: &[String],
    ) -> Result<Option<Arc<Entities>>> {
        self.request_entities.of(principal, roles)
    }
}

impl Bundle {
    /// Evaluates a tool's policies once; returns the enforced evaluation and `would_block`.
    ///
    /// Shadow forbids ride along as permits: when the enforced policies deny, Cedar reports
    /// only forbids and the shadow result is moot (`would_block` is false); when they allow,
    /// a satisfied shadow "permit" is a shadow forbid that would have blocked the call.
    pub(crate) fn evaluate(&self, tool: &ToolEntry, request: PreparedRequest, entities: &Entities) -> (Evaluation, Vec<String>) {
        let mut eval = tool.policies.evaluate(request, entities);
        let shadow = |id: &PolicyId| self.meta.get(id).is_some_and(|m| m.shadow);
        let fired = eval.determining.iter().chain(eval.erroring.iter().map(|(id, _)| id));
        let would_block: Vec<String> = fired.filter(|id| shadow(id)).map(ToString::to_string).collect();
        eval.determining.retain(|id| !shadow(id));
        eval.erroring.retain(|(id, _)| !shadow(id));
        eval.permits_under_forbids.retain(|id| !shadow(id));
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
            let line = first_label_offset(&e).map(|off| line_of(src, off));
            Error::new(ErrorCode::InvalidBundle, format!("`{file}`: {}", render_diagnostic(&e, src))).in_file(file, line, None)
        })?;
        if parsed.templates().next().is_some() {
            return Err(Error::new(ErrorCode::InvalidBundle, format!("`{file}`: policy templates are not supported in bundles")));
        }
        let stem = file.strip_suffix(".cedar").unwrap_or(file);
        // Sort by source position: Cedar's own ids are `policy0`, `policy1`, ... in file order.
        let mut policies: Vec<&Policy> = parsed.policies().collect();
        policies
            .sort_by_key(|p| AsRef::<str>::as_ref(p.id()).trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
        let mut cursor = 0;
        for (n, policy) in policies.into_iter().enumerate() {
            let line = policy_line(policy, src, &mut cursor);
            let id = policy.annotation("id").map_or_else(|| format!("{stem}.{n}"), str::to_owned);
            let renamed = policy.new_id(PolicyId::new(&id));
            let info = policy_meta(&renamed, &id, file, line)?;
            if meta.insert(renamed.id().clone(), info).is_some() {
                let e = Error::new(ErrorCode::InvalidBundle, format!("`{file}` line {line}: duplicate policy id `{id}`"));
                return Err(e.in_file(file, Some(line), Some(&id)));
            }
            all.add(renamed).map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("`{file}` line {line}: {e}")))?;
        }
    }
    Ok((all, meta))
}

fn policy_meta(policy: &Policy, id: &str, file: &str, line: usize) -> Result<PolicyMeta> {
    policy_meta_unplaced(policy, id, file, line).map_err(|e| e.in_file(file, Some(line), Some(id)))
}

fn policy_meta_unplaced(policy: &Policy, id: &str, file: &str, line: usize) -> Result<PolicyMeta> {
    let at = || format!("`{file}` line {line}, policy `{id}`");
    let effect = policy.effect();
    let approval = policy.annotation("approval").map(str::to_owned);
    if approval.is_some() && effect != Effect::Forbid {
        return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@approval` belongs on a forbid", at())));
    }
    let quorum = match policy.annotation("quorum") {
        None => 1,
        Some(_) if approval.is_none() => {
            return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@quorum` belongs on an `@approval` forbid", at())))
        }
        Some(k) => k.trim().parse::<u32>().ok().filter(|k| (1..=10).contains(k)).ok_or_else(|| {
            Error::new(ErrorCode::InvalidBundle, format!("{}: `@quorum(\"{k}\")` must be a number from 1 to 10", at()))
        })?,
    };
    let stages: Vec<String> = match policy.annotation("stages") {
        None => Vec::new(),
        Some(_) if approval.is_none() || quorum != 1 => {
            return Err(Error::new(
                ErrorCode::InvalidBundle,
                format!("{}: `@stages` belongs on an `@approval` forbid without `@quorum`", at()),
            ))
        }
        Some(list) => list.split(',').map(|r| r.trim().to_owned()).collect(),
    };
    if stages.iter().any(String::is_empty) || stages.len() > 10 {
        return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@stages` names 1 to 10 roles, comma-separated", at())));
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
    let mut detect = match policy.annotation("detect") {
        None => Vec::new(),
        Some(_) if effect != Effect::Permit => {
            return Err(Error::new(ErrorCode::InvalidBundle, format!("{}: `@detect` belongs on a permit", at())))
        }
        Some(list) => list
            .split(',')
            .map(|name| {
                name.trim()
                    .parse::<Detector>()
                    .map_err(|e| Error::new(ErrorCode::InvalidBundle, format!("{}: `@detect`: {e}", at())))
            })
            .collect::<Result<Vec<_>>>()?,
    };
    detect.sort_unstable();
    detect.dedup();
    Ok(PolicyMeta {
        id: id.to_owned(),
        effect,
        file: file.to_owned(),
        line,
        message: policy.annotation("message").map(str::to_owned),
        approval,
        quorum,
        stages,
        sanitize,
        detect,
        shadow: policy.annotation("shadow").is_some(),
        breakable: policy.annotation("breakable").is_some(),
        category: policy.annotation("category").map(str::to_owned),
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
    let mut first_place = None;
    let messages: Vec<String> = result
        .validation_errors()
        .map(|e| {
            let id = e.policy_id();
            match meta.get(id) {
                Some(m) => {
                    let src = files.iter().find(|(f, _)| f == &m.file).map_or("", |(_, s)| s.as_str());
                    let line = first_label_offset(e).map_or(m.line, |off| line_of(src, off));
                    first_place.get_or_insert_with(|| (m.file.clone(), line, m.id.clone()));
                    format!("`{}` line {line}, policy `{id}`: {e}", m.file)
                }
                None => format!("policy `{id}`: {e}"),
            }
        })
        .collect();
    let error = Error::new(ErrorCode::InvalidBundle, format!("schema validation failed: {}", messages.join("; ")));
    Err(match first_place {
        Some((file, line, id)) => error.in_file(&file, Some(line), Some(&id)),
        None => error,
    })
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
    hex::encode(hasher.finalize())
}

/// A roster identity is a plain name (never namespaced like a delegate's) and an account is
/// listed once: two identities for one account would make a click ambiguous.
fn validate_roster(manifest: &Manifest) -> Result<()> {
    let invalid = |why: String| Err(Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: roster: {why}")));
    let mut seen = std::collections::HashSet::new();
    for (id, entry) in &manifest.roster {
        if id.is_empty() || id.contains('/') || id.chars().any(char::is_whitespace) {
            return invalid(format!("identity `{id}` must be a plain name (no `/`, no spaces)"));
        }
        let accounts = entry.slack.iter().map(|a| ("slack", a)).chain(entry.teams.iter().map(|a| ("teams", a)));
        for (channel, account) in accounts {
            if account.trim().is_empty() || !seen.insert((channel, account.as_str())) {
                return invalid(format!("{channel} account `{account}` is empty or listed twice"));
            }
            if channel == "slack" && account.split('/').filter(|p| !p.is_empty()).count() != 2 {
                return invalid(format!("slack account `{account}` must be `<team id>/<user id>`"));
            }
        }
    }
    Ok(())
}

/// A batch names a tool of the bundle, sane caps, and lifts only `@approval` forbids and
/// approvable budgets of that tool.
fn validate_batches(
    manifest: &Manifest,
    meta: &HashMap<PolicyId, PolicyMeta>,
    tools: &HashMap<String, Arc<ToolEntry>>,
) -> Result<()> {
    let invalid = |tool: &str, why: String| {
        Err(Error::new(ErrorCode::InvalidBundle, format!("`manifest.yaml`: batches of `{tool}`: {why}")))
    };
    for (tool, spec) in &manifest.batches {
        let Some(entry) = tools.get(tool) else { return invalid(tool, "no such tool".into()) };
        if !(1..=1000).contains(&spec.max_calls) || !(1..=86_400).contains(&spec.max_window_secs) {
            return invalid(tool, "`max_calls` must be 1 to 1000 and `max_window_secs` 1 to 86400".into());
        }
        for id in &spec.lifts {
            match meta.get(&PolicyId::new(id)) {
                Some(m) if m.approval.is_some() && m.effect == Effect::Forbid => {}
                _ => return invalid(tool, format!("`{id}` is not an `@approval` forbid")),
            }
        }
        for name in &spec.lifts_budgets {
            // A budget that denies is never lifted (`Engine::request_batch` leaves it out); one
            // that sums an argument is lifted only if the batch bounds that very argument.
            let Some(budget) = entry.budgets.iter().find(|b| &b.name == name) else {
                return invalid(tool, format!("`{name}` is not a budget of the tool"));
            };
            if let Some(sum) = &budget.spec.sum {
                if spec.amount_arg.as_deref() != Some(sum.as_str()) {
                    return invalid(tool, format!("lifting `{name}` needs `amount_arg: {sum}`, which the batch then bounds"));
                }
            }
        }
    }
    Ok(())
}
