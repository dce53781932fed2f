//! Policy evaluation: the one module that touches Cedar's internals (`cedar-policy-core`).
//!
//! Everything that builds Cedar values, requests and contexts, or evaluates policies, lives
//! here, so an upgrade of Cedar touches this module only. With the `cedar-authorizer` feature,
//! policies are evaluated through Cedar's public `Authorizer` instead of its `Evaluator`; a
//! differential test holds the two to the same answers.

mod context;

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{ActionConstraint, Decision as CedarDecision, Entities, EntityUid, Policy, PolicyId, PolicySet, Request};
use cedar_policy_core::ast;
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;

use crate::cache::BoundedCache;
use crate::error::{Error, ErrorCode, Result};

pub(crate) use context::{duties_by, ApprovalFacts, BaseContext, CallContext, ChainContext, TaskFacts, Temporal};

/// What every request for one tool shares, built once at load: the action and the default
/// resource (`<resource_type>::"<tool>"`).
#[derive(Debug)]
pub(crate) struct ToolTarget {
    action: ast::EntityUIDEntry,
    default_resource: ast::EntityUIDEntry,
}

impl ToolTarget {
    pub(crate) fn new(action: &EntityUid, default_resource: EntityUid) -> Self {
        Self {
            action: ast::EntityUIDEntry::known(action.as_ref().clone(), None),
            default_resource: ast::EntityUIDEntry::known(default_resource.into(), None),
        }
    }
}

/// How many principals' request entities a bundle keeps (see [`RequestEntities`]).
const PRINCIPALS_KEPT: usize = 256;

/// The entities requests are evaluated with: the principal as an entity whose parents are its
/// attested roles (`principal in Role::"finance-approver"`), and the schema's action entities when
/// it groups actions. None when there is neither: no entity is needed.
///
/// A principal's set is kept (per bundle, bounded): on a schema that groups its actions it holds
/// every action entity, and building it on each call cost an agent with a role 260 us a decision
/// with 200 grouped actions (10 us once the actions were copied rather than rebuilt).
#[derive(Debug)]
pub(crate) struct RequestEntities {
    role_type: cedar_policy::EntityTypeName,
    actions: Option<Arc<Entities>>,
    /// By principal id and roles (see `principal_key`).
    with_roles: BoundedCache<String, Arc<Entities>>,
}

impl RequestEntities {
    /// For a bundle whose roles are `role_type` entities, with the schema's action entities
    /// when it groups actions.
    pub(crate) fn new(role_type: cedar_policy::EntityTypeName, actions: Option<Entities>) -> Self {
        Self { role_type, actions: actions.map(Arc::new), with_roles: BoundedCache::new(PRINCIPALS_KEPT) }
    }

    /// The entities for `principal` holding `roles`.
    pub(crate) fn of(&self, principal: &EntityUid, roles: &[String]) -> Result<Option<Arc<Entities>>> {
        if roles.is_empty() {
            return Ok(self.actions.clone());
        }
        let key = principal_key(principal.id().unescaped(), roles);
        if let Some(kept) = self.with_roles.read(&key, |e| Some(Arc::clone(e))) {
            return Ok(Some(kept));
        }
        let built = Arc::new(self.build(principal, roles)?);
        self.with_roles.insert(key, Arc::clone(&built), |_| false);
        Ok(Some(built))
    }

    fn build(&self, principal: &EntityUid, roles: &[String]) -> Result<Entities> {
        let parents: std::collections::HashSet<EntityUid> = roles
            .iter()
            .map(|r| EntityUid::from_type_name_and_id(self.role_type.clone(), cedar_policy::EntityId::new(r)))
            .collect();
        let roles = parents.iter().map(|r| cedar_policy::Entity::new_no_attrs(r.clone(), std::collections::HashSet::new()));
        let principal = cedar_policy::Entity::new_no_attrs(principal.clone(), parents.clone());
        let added = roles.chain(std::iter::once(principal)).map(|e| Arc::new(AsRef::<ast::Entity>::as_ref(&e).clone()));
        // Added to the action entities as they are, not rebuilt with their closure computed
        // again: nothing needs computing, since the principal's parents are its roles, roles
        // have no parents, and neither is an action.
        let base = self.actions.as_deref().map(|a| AsRef::<CoreEntities>::as_ref(a).clone()).unwrap_or_default();
        base.add_entities(added, None::<&NoEntitiesSchema>, TCComputation::AssumeAlreadyComputed, Extensions::none())
            .map(Entities::from)
            .map_err(|e| Error::internal(format!("request entities: {e}")))
    }
}

/// A key naming a principal id and its roles, each prefixed with its length: no two different
/// lists share one, whatever characters the ids hold.
fn principal_key(id: &str, roles: &[String]) -> String {
    let mut key = String::with_capacity(8 + id.len() + roles.iter().map(|r| r.len() + 4).sum::<usize>());
    for part in std::iter::once(id).chain(roles.iter().map(String::as_str)) {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key
}

/// A request ready for evaluation.
pub(crate) struct PreparedRequest(ast::Request);

impl PreparedRequest {
    /// The request for `principal` calling `target`, on `resource` (default: the tool's own),
    /// with the base context, the call's attributes and the tool's predicates.
    pub(crate) fn new(
        principal: EntityUid,
        target: &ToolTarget,
        resource: Option<EntityUid>,
        context: (BaseContext, CallContext<'_>),
        predicates: impl IntoIterator<Item = (smol_str::SmolStr, bool)>,
    ) -> Result<Self> {
        let context = context::build(context.0, context.1, predicates)?;
        let resource = match resource {
            None => target.default_resource.clone(),
            Some(r) => ast::EntityUIDEntry::known(r.into(), None),
        };
        let principal = ast::EntityUIDEntry::known(principal.into(), None);
        Ok(Self(ast::Request::new_unchecked(principal, target.action.clone(), resource, Some(context))))
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
    /// The permits that held although forbids denied (empty when Cedar allowed: then they are
    /// `determining`); see [`Evaluation::satisfied_permits`].
    pub permits_under_forbids: Vec<PolicyId>,
}

impl Evaluation {
    /// Every satisfied permit, whatever the decision: the obligations (`@sanitize`) an
    /// override must still honour when it lifts the forbids that denied the call.
    pub fn satisfied_permits(&self) -> &[PolicyId] {
        if self.cedar_decision == CedarDecision::Allow {
            &self.determining
        } else {
            &self.permits_under_forbids
        }
    }
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
                        group == action || action_entities.ancestors(action).is_some_and(|mut a| a.any(|x| x == group))
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
                        let listed = PolicyList::for_action(&set);
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
        self.list_for(request).evaluate(PreparedRequest(AsRef::<ast::Request>::as_ref(request).clone()), entities)
    }

    fn list_for(&self, request: &Request) -> &PolicyList {
        request.action().and_then(|a| self.by_action.get(a)).map_or(&self.all_listed, |(_, list)| list)
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
/// `Authorizer`, and the Cedar corpus test to Cedar's own answers. With the `cedar-authorizer`
/// feature the list evaluates through `Authorizer` itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyList {
    compiled: Vec<CompiledPolicy>,
    /// The same policies, for Cedar's `Authorizer`.
    set: PolicySet,
    /// Its permits alone, to tell which permits held when forbids denied.
    permits: PolicySet,
}

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
    /// The list of `set`, each policy's whole condition evaluated.
    pub(crate) fn new(set: &PolicySet) -> Self {
        Self::compile(set, false)
    }

    /// The list of `set`, every policy of which the index found applying to one action: each
    /// condition without its action scope, which holds (as Cedar decides it with the schema's
    /// action entities, `action in [group]` included), and without the `principal` and
    /// `resource` scopes that constrain nothing.
    pub(crate) fn for_action(set: &PolicySet) -> Self {
        Self::compile(set, true)
    }

    fn compile(set: &PolicySet, for_one_action: bool) -> Self {
        let compiled = set
            .policies()
            .map(|p| {
                let core: &ast::Policy = p.as_ref();
                CompiledPolicy {
                    condition: match for_one_action {
                        false => core.condition(),
                        true => condition_for_its_action(core),
                    },
                    slots: core.env().clone(),
                    forbid: core.effect() == ast::Effect::Forbid,
                    id: p.id().clone(),
                    policy: core.clone(),
                }
            })
            .collect();
        Self {
            compiled,
            set: set.clone(),
            permits: PolicySet::from_policies(set.policies().filter(|p| p.effect() == cedar_policy::Effect::Permit).cloned())
                .unwrap_or_default(),
        }
    }

    /// Whether any of the list's policies is a forbid (shadow forbids are permits here).
    pub(crate) fn has_forbid(&self) -> bool {
        self.compiled.iter().any(|p| p.forbid)
    }

    /// Evaluates every policy of the list on `request`.
    pub(crate) fn evaluate(&self, request: PreparedRequest, entities: &Entities) -> Evaluation {
        #[cfg(feature = "cedar-authorizer")]
        {
            self.evaluate_with_authorizer(request, entities)
        }
        #[cfg(not(feature = "cedar-authorizer"))]
        {
            self.evaluate_compiled(request, entities.as_ref())
        }
    }

    #[cfg_attr(feature = "cedar-authorizer", allow(dead_code))]
    fn evaluate_compiled(&self, request: PreparedRequest, entities: &CoreEntities) -> Evaluation {
        let evaluator = Evaluator::new(request.0, entities, Extensions::all_available());
        let (mut permits, mut forbids) = (Vec::new(), Vec::new());
        let mut erroring: Vec<(PolicyId, String)> = Vec::new();
        let mut erroring_forbids: Vec<PolicyId> = Vec::new();
        for CompiledPolicy { condition, slots, forbid, id, policy } in &self.compiled {
            let forbid = *forbid;
            // `Evaluator::evaluate`, with the condition built once.
            // An unconditional policy (`permit (principal, action == A, resource);` in A's
            // list) holds without evaluating anything.
            if let ast::ExprKind::Lit(ast::Literal::Bool(true)) = condition.expr_kind() {
                if forbid {
                    forbids.push(id.clone())
                } else {
                    permits.push(id.clone())
                }
                continue;
            }
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
        // No copy of the permits on the common path: an allow's permits are its determining set.
        let (cedar_decision, determining, under_forbids) = if !forbids.is_empty() {
            (CedarDecision::Deny, forbids, permits)
        } else if !permits.is_empty() {
            (CedarDecision::Allow, permits, Vec::new())
        } else {
            (CedarDecision::Deny, Vec::new(), Vec::new())
        };
        Evaluation::sorted(cedar_decision, determining, erroring, erroring_forbids, under_forbids)
    }

    #[cfg_attr(not(feature = "cedar-authorizer"), allow(dead_code))]
    fn evaluate_with_authorizer(&self, request: PreparedRequest, entities: &Entities) -> Evaluation {
        let request = Request::from(request.0);
        let response = cedar_policy::Authorizer::new().is_authorized(&request, &self.set, entities);
        let is_forbid = |id: &PolicyId| self.compiled.iter().any(|p| &p.id == id && p.forbid);
        let determining: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        let erroring: Vec<(PolicyId, String)> = response
            .diagnostics()
            .errors()
            .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| (e.policy_id().clone(), e.to_string()))
            .collect();
        let erroring_forbids = erroring.iter().map(|(id, _)| id.clone()).filter(|id| is_forbid(id)).collect();
        let under_forbids = if response.decision() == CedarDecision::Allow || determining.is_empty() {
            Vec::new()
        } else {
            // Denied by forbids: which permits held is asked of the permits alone.
            let permits = cedar_policy::Authorizer::new().is_authorized(&request, &self.permits, entities);
            permits.diagnostics().reason().cloned().collect()
        };
        Evaluation::sorted(response.decision(), determining, erroring, erroring_forbids, under_forbids)
    }
}

/// `policy`'s condition for a request whose action its action scope is known to match: the
/// `principal` and `resource` scopes that constrain something, then the body, in Cedar's order
/// (dropping a scope that evaluates to `true` without error changes no result).
fn condition_for_its_action(policy: &ast::Policy) -> ast::Expr {
    let principal = policy.principal_constraint();
    let resource = policy.resource_constraint();
    let scopes = [
        (!matches!(principal.as_inner(), ast::PrincipalOrResourceConstraint::Any)).then(|| principal.as_expr()),
        (!matches!(resource.as_inner(), ast::PrincipalOrResourceConstraint::Any)).then(|| resource.as_expr()),
    ];
    let parts: Vec<ast::Expr> = scopes.into_iter().flatten().chain(policy.non_scope_constraints().cloned()).collect();
    parts.into_iter().rev().reduce(|rest, part| ast::Expr::and(part, rest)).unwrap_or_else(|| ast::Expr::val(true))
}

impl Evaluation {
    /// An evaluation with its lists sorted by policy id (set order is unspecified), and
    /// Aegis's rule applied: an erroring forbid denies.
    fn sorted(
        cedar_decision: CedarDecision,
        mut determining: Vec<PolicyId>,
        mut erroring: Vec<(PolicyId, String)>,
        mut erroring_forbids: Vec<PolicyId>,
        mut permits_under_forbids: Vec<PolicyId>,
    ) -> Self {
        let by_id = |a: &PolicyId, b: &PolicyId| AsRef::<str>::as_ref(a).cmp(AsRef::<str>::as_ref(b));
        determining.sort_unstable_by(by_id);
        erroring.sort_unstable_by(|a, b| by_id(&a.0, &b.0));
        erroring_forbids.sort_unstable_by(by_id);
        permits_under_forbids.sort_unstable_by(by_id);
        let decision = if erroring_forbids.is_empty() { cedar_decision } else { CedarDecision::Deny };
        Self { cedar_decision, decision, determining, erroring, erroring_forbids, permits_under_forbids }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::Effect;
    use cedar_policy::{Authorizer, Context};
    use std::str::FromStr;

    #[test]
    fn principal_keys_name_one_list_each() {
        let lists: [(&str, &[&str]); 5] = [("ab", &["c"]), ("a", &["bc"]), ("a", &["b", "c"]), ("a:1", &[]), ("a", &["1"])];
        let keys: std::collections::HashSet<String> = lists
            .iter()
            .map(|(id, roles)| principal_key(id, &roles.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>()))
            .collect();
        assert_eq!(keys.len(), lists.len(), "{keys:?}");
    }

    /// A principal's kept entities are its own: the same agent with other roles, or another
    /// agent with the same roles, gets entities of its own, each holding the action groups.
    #[test]
    fn kept_request_entities_belong_to_their_principal_and_roles() {
        let action = |id: &str| EntityUid::from_str(&format!("Action::\"{id}\"")).unwrap();
        let group = cedar_policy::Entity::new_no_attrs(action("money_out"), Default::default());
        let pay = cedar_policy::Entity::new_no_attrs(action("pay"), [action("money_out")].into_iter().collect());
        let actions = Entities::from_entities([group, pay], None).unwrap();
        let kept = RequestEntities::new(cedar_policy::EntityTypeName::from_str("Role").unwrap(), Some(actions));
        let agent = |id: &str| EntityUid::from_str(&format!("Agent::\"{id}\"")).unwrap();
        let role = |id: &str| EntityUid::from_str(&format!("Role::\"{id}\"")).unwrap();
        let roles_of = |who: &str, roles: &[&str]| {
            let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
            let entities = kept.of(&agent(who), &roles).unwrap().unwrap();
            assert!(entities.ancestors(&action("pay")).unwrap().any(|a| *a == action("money_out")));
            let mut held: Vec<EntityUid> = entities.ancestors(&agent(who)).unwrap().cloned().collect();
            held.sort_by_key(ToString::to_string);
            held
        };
        for _ in 0..2 {
            assert_eq!(roles_of("bot", &["treasury"]), vec![role("treasury")]);
            assert_eq!(roles_of("bot", &["auditor"]), vec![role("auditor")]);
            assert_eq!(roles_of("bot", &["auditor", "treasury"]), vec![role("auditor"), role("treasury")]);
            assert!(kept.of(&agent("other"), &["treasury".to_owned()]).unwrap().unwrap().ancestors(&agent("bot")).is_none());
        }
        // Without roles: the action entities alone, shared.
        assert!(kept.of(&agent("bot"), &[]).unwrap().unwrap().ancestors(&agent("bot")).is_none());
    }

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
                            let list = index.list_for(&request);
                            let prepared = || PreparedRequest(AsRef::<ast::Request>::as_ref(&request).clone());
                            assert_eq!(
                                list.evaluate_compiled(prepared(), Entities::empty().as_ref()),
                                list.evaluate_with_authorizer(prepared(), &Entities::empty())
                            );
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
                            let forbid_errors =
                                errors.iter().filter(|(id, _)| set.policy(id).is_some_and(|p| p.effect() == Effect::Forbid));
                            assert_eq!(
                                ours.erroring_forbids.len(),
                                forbid_errors.count(),
                                "{:?} {:?}",
                                ours.erroring_forbids,
                                errors
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 192);
    }

    /// A list built for one action drops the scopes the index settled: it must answer as
    /// Cedar's `Authorizer` does with the schema's action entities (`action in [group]`
    /// through the hierarchy), over principal and resource scopes that hold, fail and error.
    #[test]
    fn list_for_one_action_agrees_with_cedar_given_the_action_entities() {
        let schema = cedar_policy::Schema::from_cedarschema_str(
            r#"entity Role; entity Agent in [Role]; entity Tool; entity Doc;
               action "writes"; action "all";
               action "pay" in ["writes"] appliesTo { principal: [Agent], resource: [Tool, Doc], context: { amount: Long } };
               action "read" in ["all"] appliesTo { principal: [Agent], resource: [Tool, Doc], context: { amount: Long } };"#,
        )
        .unwrap()
        .0;
        let actions = schema.action_entities().unwrap();
        let src = r#"
            @id("group-permit") permit(principal, action in [Action::"writes"], resource);
            @id("group-cap") forbid(principal, action in [Action::"writes", Action::"all"], resource) when { context.amount > 70 };
            @id("exact") permit(principal, action == Action::"read", resource is Doc) when { context.amount < 50 };
            @id("role-only") permit(principal in Role::"finance", action, resource == Tool::"t");
            @id("mallory") forbid(principal == Agent::"mallory", action in Action::"all", resource);
            @id("erroring") forbid(principal, action == Action::"pay", resource) when { context.amount + 9223372036854775807 > 0 };
            @id("group-itself") forbid(principal, action == Action::"writes", resource);
            @id("group-in-body") forbid(principal, action, resource) when { action in Action::"all" && context.amount == -5 };
        "#;
        let set = PolicySet::from_str(src).unwrap();
        let index = PolicyIndex::new(set.clone(), &actions).unwrap();
        let finance = cedar_policy::Entity::new_no_attrs(
            r#"Agent::"alice""#.parse().unwrap(),
            [r#"Role::"finance""#.parse().unwrap()].into_iter().collect(),
        );
        let mut compared = 0;
        for (principal, roles) in [(r#"Agent::"alice""#, true), (r#"Agent::"alice""#, false), (r#"Agent::"mallory""#, false)] {
            let entities = if roles {
                Entities::from_entities(
                    [finance.clone(), cedar_policy::Entity::with_uid(r#"Role::"finance""#.parse().unwrap())],
                    None,
                )
                .unwrap()
            } else {
                Entities::empty()
            };
            let with_actions = Entities::from_entities(entities.iter().chain(actions.iter()).cloned(), None).unwrap();
            for action in [r#"Action::"pay""#, r#"Action::"read""#] {
                for resource in [r#"Tool::"t""#, r#"Doc::"d""#] {
                    for amount in [10, 60, 80, -5] {
                        let request = Request::new(
                            principal.parse().unwrap(),
                            action.parse().unwrap(),
                            resource.parse().unwrap(),
                            Context::from_json_str(&format!(r#"{{"amount": {amount}}}"#), None).unwrap(),
                            None,
                        )
                        .unwrap();
                        let list = index.list_for(&request);
                        let prepared = || PreparedRequest(AsRef::<ast::Request>::as_ref(&request).clone());
                        // The engine evaluates with the action entities when the schema groups actions.
                        let ours = list.evaluate_compiled(prepared(), with_actions.as_ref());
                        assert_eq!(ours, list.evaluate_with_authorizer(prepared(), &with_actions));
                        let cedar = Authorizer::new().is_authorized(&request, &set, &with_actions);
                        let mut reasons: Vec<PolicyId> = cedar.diagnostics().reason().cloned().collect();
                        reasons.sort_unstable_by_key(ToString::to_string);
                        let errors: Vec<PolicyId> = cedar
                            .diagnostics()
                            .errors()
                            .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| e.policy_id().clone())
                            .collect();
                        let context = format!("{principal} {roles} {action} {resource} {amount}");
                        assert_eq!(ours.cedar_decision, cedar.decision(), "{context}");
                        assert_eq!(ours.determining, reasons, "{context}");
                        assert_eq!(ours.erroring.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), errors, "{context}");
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 48);
        // The group's forbid reached its member, and the one naming the group itself did not.
        let pay = index.for_action(&r#"Action::"pay""#.parse().unwrap());
        let ids: Vec<String> = pay.policies().filter_map(|p| p.annotation("id")).map(str::to_owned).collect();
        let read = index.for_action(&r#"Action::"read""#.parse().unwrap());
        assert!(read.policies().any(|p| p.annotation("id") == Some("group-in-body")));
        assert!(ids.contains(&"group-cap".to_owned()) && !ids.contains(&"group-itself".to_owned()), "{ids:?}");
    }
}
