"""Aegis's `Engine.authorize` beside two peers, in the same process, on the same payment call:
cedarpy (Cedar's own Rust engine from Python) on the payments bundle's policies and schema, and
the Agent Governance Toolkit's evaluators on an equivalent payments policy. It prints per-call
times and ratios; nothing is asserted about speed.

    python aegis-py/bench/peers.py [iterations]

The peers, pinned (what these figures were taken with; `scripts/test-all` installs the same):

    target/pyenv/bin/pip install "cedarpy==4.12.2" "agent-governance-toolkit-core==5.0.0"

The call is the one `bench_authorize.py` makes: the finance agent (delegated by the planner)
pays 0 eur to the vendor's account, in a task that has already paid (a warm chain, the memory
store). Each peer is first checked to decide as Aegis does (`check_equivalence`, which
`aegis-py/tests/test_peers_bench.py` runs too): the payment allowed; one over 5000 (Aegis asks
an approval), one over 100000 and one to a destination that is not a Stripe account refused, by
the same policy where the peer can express it.

cedarpy gets everything Aegis's own Cedar evaluation gets: the bundle's `.cedar` files plus the
policies `sod.yaml` compiles to (`sod_policies`), the schema with the context attributes the
engine adds to every action (`bundle_schema`), the principal as an entity, and the context
Aegis builds for this call (identity, lineage, task ledger, predicates; `cedar_request`),
ready-made: the time to build that context, which Aegis spends inside its call, is not counted
for cedarpy (no peer's input is built inside its timing: each is built once). cedarpy is timed
with policies, schema and entities parsed once (the handles it offers for that) and as text
parsed on every call, each with the schema and without.

The Agent Governance Toolkit (AGT) is timed on its plain rule evaluator (`agent_os`
`PolicyEvaluator`: one field comparison per rule, first match by priority, no identity, no
state), on `agentmesh`'s `PolicyEngine` (expressions with `and`, nested fields,
`require_approval`), on `agentmesh`'s `govern()` wrapper (that engine plus its audit log, kept in
memory: it grows with every call, and so does its time per call over the run) and on
`PolicyEngine`'s Cedar path (cedarpy behind it, with the same policies cedarpy gets here). Its
rule languages cannot say everything the bundle says; what each AGT policy leaves out is in the
comments of `agt_documents`, `agt_policy` and printed with the figures.

Rounds are interleaved (every configuration once per round, three rounds) so that a host whose
speed drifts disturbs the ratios less; each figure is the median of the rounds, with min-max.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import pathlib
import re
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))

from payments_setup import BUNDLE, FINANCE_AGENT, TOOL, engine, finance_chain, pay, unique_task  # noqa: E402

try:
    import cedarpy
except ImportError as e:  # the bench runs without a peer, and says so
    cedarpy = None
    CEDARPY_MISSING = str(e)

try:
    # The core package ships `agent_os` and `agentmesh` itself, and they warn on import that
    # their old standalone packages are deprecated in its favour: nothing to act on here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from agent_os.policies.evaluator import PolicyEvaluator
        from agent_os.policies.schema import PolicyDocument
        from agentmesh.governance.govern import govern
        from agentmesh.governance.policy import Policy, PolicyEngine
    # `govern()` logs a warning each time its default handler rejects an approval, which the
    # equivalence check provokes on purpose.
    logging.getLogger("agentmesh.governance.approval").setLevel(logging.ERROR)
except ImportError as e:
    PolicyEvaluator = None
    AGT_MISSING = str(e)

# Stay inside the task's budget: the benchmark repeats one small call many times.
ARGS = {**pay(10), "amount": 0}
# Calls the bundle refuses, each by one of its policies: policy id -> (Aegis's outcome, arguments).
REFUSED = {
    "large-payment-needs-approval": ("approval_needed", pay(9000)),
    "payment-hard-cap": ("deny", pay(150_000)),
    "destination-account-pattern": ("deny", {**ARGS, "destination": "DE89370400440532013000"}),
}

PLANNER = "planner"  # the finance agent's delegator, the root of its chain
INTENT = "pay the approved vendor invoices"  # the root's intent (`payments_setup.finance_chain`)
VERSIONS = ("cedarpy", "agent-governance-toolkit-core")


# -- The payments bundle as plain Cedar ------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _manifest() -> Dict[str, Any]:
    return dict(yaml.safe_load((BUNDLE / "manifest.yaml").read_text()))


def _quoted(s: str) -> str:
    return json.dumps(s)


def _action_scope(tools: Sequence[str]) -> str:
    if len(tools) == 1:
        return f"action == Action::{_quoted(tools[0])}"
    return "action in [" + ", ".join(f"Action::{_quoted(t)}" for t in tools) + "]"


def _policy(pid: str, message: str, effect: str, scope: str, condition: str, principal: str = "principal") -> str:
    return f"@id({_quoted(pid)})\n@message({_quoted(message)})\n{effect} ({principal}, {scope}, resource)\n{condition};\n"


# The executor rules Aegis compiles (aegis-core/src/policy/matrix.rs): flag, id, what it holds,
# condition.
_EXECUTOR_RULES = (
    ("delegated", "executor-needs-parent", "a delegated agent executes it, never the root of the chain",
     "unless { context has parent_agent_id }"),
    ("not_parent", "executor-differs-from-parent", "its executor differs from the agent that delegated to it",
     "when { context has parent_agent_id && context.parent_agent_id == context.agent_id }"),
    ("not_initiator", "executor-differs-from-initiator", "its executor differs from the initiator of the task",
     "when { context.initiator == context.agent_id }"),
    ("not_in_lineage", "executor-not-in-lineage", "its executor does not appear above itself in the chain",
     "when { context.lineage.contains(context.agent_id) }"),
)
_WITHIN = {"agent": "context.task.duties_by_agent", "lineage": "context.task.duties_by_lineage",
           "task": "context.task.performed"}


def sod_policies(matrix: Mapping[str, Any]) -> str:
    """The Cedar policies Aegis compiles a SoD matrix to (aegis-core/src/policy/matrix.rs), with
    the ids and conditions that decide; annotations only Aegis reads (`@approval`, ...) are left
    out. Parts of a matrix this translation does not cover raise rather than being skipped, so
    the comparison never runs on fewer policies than Aegis evaluates. Budgets are not Cedar: the
    engine keeps them, and nothing here stands for them."""
    duties = matrix["duties"]
    out = []
    executors = matrix.get("executors", {})
    for duty, rules in executors.items():
        unknown = set(rules) - {flag for flag, _, _, _ in _EXECUTOR_RULES}
        if unknown:
            raise ValueError(f"sod.yaml executors.{duty}: {sorted(unknown)} not translated here")
        for flag, base, holds, condition in _EXECUTOR_RULES:
            if rules.get(flag):
                pid = f"{base}-{duty}" if len(executors) > 1 else base
                out.append(_policy(pid, f"`{duty}`: {holds}", "forbid", _action_scope(duties[duty]), condition))
    for a in matrix.get("approvers", []):
        tools = duties[a["duty"]]
        condition = (f"context.approval.tool == {_quoted(tools[0])}" if len(tools) == 1
                     else f"{json.dumps(tools)}.contains(context.approval.tool)")
        out.append(_policy(a["id"], a.get("message", ""), "permit", 'action == Action::"aegis.approve"',
                           f"when {{ {condition} }}", principal=f"principal in Role::{_quoted(a['role'])}"))
    for t in matrix.get("thresholds", []):
        out.append(_policy(t["id"], t.get("message", ""), "forbid", _action_scope(duties[t["duty"]]),
                           f"when {{ context.args.{t['arg']} > {int(t['above'])} }}"))
    for i in matrix.get("incompatible", []):
        if "window_secs" in i or i.get("both_ways"):
            raise ValueError(f"sod.yaml incompatible {i['id']}: windows and both_ways not translated here")
        done = duties[i["first"]]
        condition = (f"{_WITHIN[i['within']]}.contains({_quoted(done[0])})" if len(done) == 1
                     else f"{_WITHIN[i['within']]}.containsAny({json.dumps(done)})")
        out.append(_policy(i["id"], i.get("message", ""), "forbid", _action_scope(duties[i["then"]]),
                           f"when {{ {condition} }}"))
    return "\n".join(out)


def bundle_policies() -> str:
    """Every policy Aegis evaluates for the payments bundle, as Cedar text: its `.cedar` files
    and the compiled SoD matrix. A `@shadow` forbid is turned into a permit, as Aegis evaluates
    it (it rides along and is reported, never enforced); a permit already holds for every
    payment, so it changes no decision here and cedarpy still evaluates it."""
    text = "\n".join(p.read_text() for p in sorted(BUNDLE.glob("*.cedar")))
    text += "\n" + sod_policies(yaml.safe_load((BUNDLE / "sod.yaml").read_text()))
    policies = json.loads(cedarpy.policies_to_json_str(text))
    for policy in policies["staticPolicies"].values():
        if "shadow" in policy.get("annotations", {}):
            policy["effect"] = "permit"
    return str(cedarpy.policies_from_json_str(json.dumps(policies)))


def _engine_context(action: str, predicates: Sequence[str]) -> str:
    """The attributes Aegis adds to an action's context (aegis-core/src/policy/context_schema.rs,
    docs/CONTEXT.md), in Cedar schema syntax."""
    strings = "Set<String>"
    attributes = [
        "agent_id: String", "parent_agent_id?: String", "initiator: String", f"lineage: {strings}",
        "depth: Long", "task_id: String", "intent: String", "now: Long",
        "predicates: {" + ", ".join(f"{p}: Bool" for p in predicates) + "}",
        f"task: {{duties_by_agent: {strings}, duties_by_lineage: {strings}, performed: {strings}, actors: {strings}}}",
        "break_glass: Bool",
    ]
    if action == "aegis.approve":
        attributes.append("approval: {approval_id: String, tool: String, requester: String, initiator: String, "
                          f"task_id: String, roles: {strings}, policy_ids: {strings}}}")
    return "".join(f"\n    {a}," for a in attributes)


def bundle_schema() -> str:
    """The bundle's schema as Aegis validates against it: the author's declarations (each
    action's `args`) plus the context attributes the engine adds to every action."""
    manifest = _manifest()
    if manifest.get("namespace") or manifest.get("temporal"):
        raise ValueError("manifest namespace or temporal facts: not translated here")
    predicates = manifest.get("predicates", {})
    schema = (BUNDLE / "payments.cedarschema").read_text()

    def add_context(m: re.Match) -> str:
        action = m.group(1)
        own = [name for name, p in predicates.items() if p.get("tools") is None or action in p["tools"]]
        return m.group(0) + _engine_context(action, own)

    augmented, actions = re.subn(r'action\s+"([^"]+)"\s+appliesTo\s*\{[^}]*?context:\s*\{', add_context, schema)
    if actions != schema.count("appliesTo"):
        raise ValueError("an action without a `context` record in the schema: not translated here")
    return augmented


def cedar_request(args: Mapping[str, Any], task_id: str) -> Dict[str, Any]:
    """The Cedar request Aegis builds for the finance agent's call in a task that has already
    paid: principal `Agent::"planner/finance-agent"` (a delegate: no roles), resource the tool,
    and the context Aegis fills in from the chain, the task's ledger and the manifest's
    predicate (the destination's pattern, which Aegis matches whole)."""
    predicates = {name: re.fullmatch(p["pattern"], str(args.get(p["arg"], ""))) is not None
                  for name, p in _manifest()["predicates"].items() if TOOL in p.get("tools", [TOOL])}
    return {
        "principal": f"Agent::{_quoted(FINANCE_AGENT)}",
        "action": f"Action::{_quoted(TOOL)}",
        "resource": f"Tool::{_quoted(TOOL)}",
        "context": {
            "args": dict(args),
            "agent_id": FINANCE_AGENT, "parent_agent_id": PLANNER, "initiator": PLANNER,
            "lineage": [PLANNER], "depth": 1, "task_id": task_id, "intent": INTENT, "now": int(time.time()),
            "predicates": predicates,
            # What the warm task's ledger holds: this agent already paid.
            "task": {"duties_by_agent": [TOOL], "duties_by_lineage": [TOOL], "performed": [TOOL],
                     "actors": [FINANCE_AGENT]},
            "break_glass": False,
        },
    }


# The principal with its attested roles as parents (a delegate holds none), as Aegis builds it.
CEDAR_ENTITIES = [{"uid": {"type": "Agent", "id": FINANCE_AGENT}, "attrs": {}, "parents": []}]


class CedarPeer:
    """cedarpy on the payments bundle: the policies, schema and entities as text, and parsed
    once into cedarpy's reusable handles."""

    def __init__(self) -> None:
        self.policies = bundle_policies()
        self.schema = bundle_schema()
        self.policy_set = cedarpy.PolicySet.from_str(self.policies)
        self.schema_handle = cedarpy.Schema.from_str(self.schema)
        self.entities = cedarpy.Entities.from_json_str(json.dumps(CEDAR_ENTITIES), self.schema_handle)

    def decide(self, request: Dict[str, Any], *, schema: bool, parsed: bool) -> Any:
        if parsed:
            return cedarpy.is_authorized(request, self.policy_set, self.entities,
                                         self.schema_handle if schema else None)
        return cedarpy.is_authorized(request, self.policies, CEDAR_ENTITIES, self.schema if schema else None)

    @staticmethod
    def policy_ids(result: Any) -> List[str]:
        """The `@id`s of the policies that decided."""
        ids = result.diagnostics.id_annotations_by_reason
        return sorted(ids.get(r, r) for r in result.diagnostics.reasons)


# -- The Agent Governance Toolkit -----------------------------------------------------------

def agt_documents() -> List[Any]:
    """The payments bundle in `agent_os`'s rule language: one comparison of one context field
    per rule, the highest-priority match wins, deny when nothing matches. What it cannot say:
    rules scoped to a tool and an amount at once (the amount limits apply to any call with an
    `amount`), the SoD executor rules (they compare the caller with its delegator and the
    initiator: the evaluator compares a field with a constant, and knows no identity), the
    task's ledger (drafter and approver do not pay), the daily budget, approvals (over 5000 is a
    plain deny), sanitizing obligations and shadow rules."""
    destination = _manifest()["predicates"]["destination_account_valid"]["pattern"]
    return [PolicyDocument.model_validate({
        "name": "payments",
        "rules": [
            {"name": "payment-hard-cap", "action": "deny", "priority": 100,
             "condition": {"field": "amount", "operator": "gt", "value": 100_000},
             "message": "payments over 100000 are never made by agents"},
            # The bundle's predicate must match the whole destination; `matches` searches, so the
            # rule denies where a lookahead for the whole pattern, anchored at the start, fails.
            {"name": "destination-account-pattern", "action": "deny", "priority": 90,
             "condition": {"field": "destination", "operator": "matches", "value": rf"^(?!(?:{destination})\Z)"},
             "message": "the destination must be a Stripe account id: acct_ and 16 letters or digits"},
            {"name": "large-payment-needs-approval", "action": "deny", "priority": 80,
             "condition": {"field": "amount", "operator": "gt", "value": 5000},
             "message": "payments over 5000 need a finance approver"},
            {"name": "payments-by-task-agents", "action": "allow", "priority": 10,
             "condition": {"field": "tool_name", "operator": "eq", "value": TOOL}},
            {"name": "invoices-by-any-task-agent", "action": "allow", "priority": 10,
             "condition": {"field": "tool_name", "operator": "eq", "value": "invoice.create"}},
        ],
        "defaults": {"action": "deny"},
    })]


def agt_context(args: Mapping[str, Any]) -> Dict[str, Any]:
    """What `agent_os`'s evaluator reads: flat fields, the tool and its arguments."""
    return {"tool_name": TOOL, "agent_id": FINANCE_AGENT, **args}


def agt_policy() -> Any:
    """The payments bundle in `agentmesh`'s expression language (`and`, nested fields,
    `require_approval`): the amount limits are scoped to the payments tool and over 5000 asks
    an approval. It has no regular expressions (no destination rule), no identity relations, no
    ledger, no budget, no obligations and no shadow mode."""
    return Policy.model_validate({
        "name": "payments",
        "agents": ["*"],
        "default_action": "deny",
        "rules": [
            {"name": "payment-hard-cap", "action": "deny", "priority": 100,
             "condition": f"action.type == '{TOOL}' and args.amount > 100000"},
            {"name": "large-payment-needs-approval", "action": "require_approval", "priority": 80,
             "approvers": ["finance-approver"], "condition": f"action.type == '{TOOL}' and args.amount > 5000"},
            {"name": "payments-by-task-agents", "action": "allow", "priority": 10,
             "condition": f"action.type == '{TOOL}'"},
            {"name": "invoices-by-any-task-agent", "action": "allow", "priority": 10,
             "condition": "action.type == 'invoice.create'"},
        ],
    })


def agentmesh_context(args: Mapping[str, Any]) -> Dict[str, Any]:
    """What `agentmesh`'s engine reads (and what `govern()` builds from a call's keywords)."""
    return {"action": {"type": TOOL}, "args": dict(args)}


def agentmesh_cedar_context(request: Mapping[str, Any]) -> Dict[str, Any]:
    """`agentmesh`'s Cedar path takes the principal from `agent_did`, the resource from
    `resource`, the action from `tool_name`, and passes the rest on as Cedar's context."""
    return {"agent_did": request["principal"], "resource": request["resource"], "tool_name": TOOL,
            **request["context"]}


class AgtPeer:
    """The Agent Governance Toolkit's evaluators, each on its payments policy."""

    def __init__(self, cedar_policies: Optional[str]) -> None:
        self.evaluator = PolicyEvaluator(agt_documents())
        self.engine = PolicyEngine()
        self.engine.load_policy(agt_policy())
        # `govern()` wraps the tool; a denial returns it instead of raising, to be checked.
        self.governed = govern(lambda **_: True, policy=agt_policy(), agent_id=FINANCE_AGENT,
                               on_deny=lambda decision: decision)
        self.cedar_engine = None
        if cedar_policies is not None:
            self.cedar_engine = PolicyEngine()
            self.cedar_engine.load_cedar(cedar_content=cedar_policies, entities=CEDAR_ENTITIES, mode="cedarpy")

    def evaluate(self, args: Mapping[str, Any]) -> bool:
        return bool(self.evaluator.evaluate(agt_context(args)).allowed)

    def engine_evaluate(self, args: Mapping[str, Any]) -> bool:
        return bool(self.engine.evaluate(FINANCE_AGENT, agentmesh_context(args)).allowed)

    def govern_call(self, args: Mapping[str, Any]) -> bool:
        return self.governed(action=TOOL, args=dict(args)) is True

    def cedar_evaluate(self, request: Mapping[str, Any]) -> bool:
        return bool(self.cedar_engine.evaluate(FINANCE_AGENT, agentmesh_cedar_context(request)).allowed)


# -- Equivalence ----------------------------------------------------------------------------

class Setup(NamedTuple):
    """Aegis's engine with a warm chain, and each peer that could be imported (else None)."""

    engine: Any
    chain: List[str]
    task_id: str
    cedar: Optional[CedarPeer]
    agt: Optional[AgtPeer]


def setup() -> Setup:
    eng = engine()
    task_id = unique_task("bench-peers")
    chain = finance_chain(task_id)
    eng.authorize(chain, TOOL, ARGS)  # the task has paid once: the warm state every call sees
    cedar = CedarPeer() if cedarpy is not None else None
    agt = AgtPeer(cedar.policies if cedar else None) if PolicyEvaluator is not None else None
    return Setup(eng, chain, task_id, cedar, agt)


def check_equivalence(state: Setup) -> None:
    """Holds every peer to Aegis's decisions: the benchmark's payment allowed, and each call in
    `REFUSED` refused, by the same policy where the peer names one (an AGT policy that cannot
    express a rule is not held to it), so that the timings compare equivalent policies."""
    eng, chain, task_id, cedar, agt = state
    decision = eng.authorize(chain, TOOL, ARGS)
    assert decision.outcome == "allow", decision
    for policy_id, (outcome, args) in REFUSED.items():
        decision = eng.authorize(chain, TOOL, args)
        assert decision.outcome == outcome and policy_id in [r.policy_id for r in decision.reasons], decision
    if cedar is not None:
        # What Aegis checks when it loads the bundle: the policies type-check against the schema.
        assert cedarpy.validate_policies(cedar.policies, cedar.schema_handle).validation_passed
        for schema in (True, False):
            for parsed in (True, False):
                result = cedar.decide(cedar_request(ARGS, task_id), schema=schema, parsed=parsed)
                assert result.decision == cedarpy.Decision.Allow, (result.decision, result.diagnostics.errors)
                assert not result.diagnostics.errors, result.diagnostics.errors
                for policy_id, (_, args) in REFUSED.items():
                    result = cedar.decide(cedar_request(args, task_id), schema=schema, parsed=parsed)
                    assert result.decision == cedarpy.Decision.Deny, (policy_id, result.decision)
                    assert policy_id in CedarPeer.policy_ids(result), CedarPeer.policy_ids(result)
    if agt is not None:
        every, amounts = set(REFUSED), {"large-payment-needs-approval", "payment-hard-cap"}
        checks: List[Tuple[str, Callable[[Mapping[str, Any]], bool], set]] = [
            ("agent_os PolicyEvaluator", agt.evaluate, every),
            ("agentmesh PolicyEngine", agt.engine_evaluate, amounts),  # no regular expressions
            ("agentmesh govern()", agt.govern_call, amounts)]
        if agt.cedar_engine is not None:
            checks.append(("agentmesh Cedar path", lambda a: agt.cedar_evaluate(cedar_request(a, task_id)), every))
        for name, decide, covered in checks:
            assert decide(ARGS), f"{name} refuses the payment"
            for policy_id in covered:
                assert not decide(REFUSED[policy_id][1]), f"{name} allows what {policy_id} refuses"


# -- Timing ---------------------------------------------------------------------------------

def per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


class Case:
    """One configuration: its call, how many calls per round, and its rounds' per-call times."""

    def __init__(self, label: str, fn: Callable[[], Any], calls: int) -> None:
        self.label, self.fn, self.calls = label, fn, calls
        self.times: List[float] = []

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def line(self, aegis: Optional["Case"] = None, ratio: str = "") -> str:
        lo, hi = min(self.times) * 1e6, max(self.times) * 1e6
        spread = f"({lo:.2f}-{hi:.2f})"
        text = f"  {self.label:<50} {self.calls:>6} calls {self.median * 1e6:8.2f} µs {spread:<19}"
        if aegis is not None:
            text += f" {ratio:>13} {self.median / aegis.median:6.2f}x"
        return text.rstrip()


def run_rounds(cases: Sequence[Case], rounds: int = 3) -> None:
    """Warms every configuration up, then times each once per round, rounds interleaved."""
    for case in cases:
        per_call(case.fn, max(case.calls // 10, 100))
    for _ in range(rounds):
        for case in cases:
            case.times.append(per_call(case.fn, case.calls))


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(iterations: int = 20_000) -> None:
    """Checks the peers decide as Aegis does, then times them: `iterations` calls per round for
    the fast configurations, a tenth of that for those that parse text on every call."""
    slow = max(iterations // 10, 200)
    state = setup()
    check_equivalence(state)
    eng, chain, task_id, cedar, agt = state
    request = cedar_request(ARGS, task_id)

    aegis_case = Case("Aegis Engine.authorize (warm chain, memory store)", lambda: eng.authorize(chain, TOOL, ARGS),
                      iterations)
    cedar_cases: List[Case] = []
    if cedar is not None:
        for parsed, calls, how in ((True, iterations, "parsed once"), (False, slow, "text parsed per call")):
            for schema in (True, False):
                cedar_cases.append(Case(f"is_authorized, {how}, {'with' if schema else 'no'} schema",
                                        lambda s=schema, p=parsed: cedar.decide(request, schema=s, parsed=p), calls))
    agt_cases: List[Case] = []
    if agt is not None:
        # Each evaluator's input built once, as cedarpy's is (none of them changes it).
        agt_cases = [
            Case("agent_os PolicyEvaluator (plain rules)", functools.partial(agt.evaluator.evaluate, agt_context(ARGS)),
                 iterations),
            Case("agentmesh PolicyEngine (expressions)",
                 functools.partial(agt.engine.evaluate, FINANCE_AGENT, agentmesh_context(ARGS)), iterations),
            Case("agentmesh govern() (the engine + its audit log)",
                 functools.partial(agt.governed, action=TOOL, args=ARGS), iterations),
        ]
        if agt.cedar_engine is not None:
            agt_cases.append(Case("agentmesh PolicyEngine, Cedar path (cedarpy, text)",
                                  functools.partial(agt.cedar_engine.evaluate, FINANCE_AGENT,
                                                    agentmesh_cedar_context(request)), slow))

    run_rounds([aegis_case, *cedar_cases, *agt_cases])

    print(f"peers, same process, {len(aegis_case.times)} interleaved rounds: median per call (min-max)")
    print(f"  versions: aegis-sod {_version('aegis-sod')}, "
          + ", ".join(f"{d} {_version(d)}" for d in VERSIONS))
    print(aegis_case.line())
    print("cedarpy on the payments bundle (same policies, SoD matrix compiled, same schema), Allow")
    if cedar is None:
        print(f"  cedarpy not available ({CEDARPY_MISSING}): pip install cedarpy==4.12.2")
    for case in cedar_cases:
        print(case.line(aegis_case, "cedarpy/aegis"))
    if cedar is not None:
        print("  goal: Aegis >= 10x faster than cedarpy, with the schema and without; cedarpy gets the")
        print("  context Aegis builds per call (chain, ledger, predicates) ready-made, outside its timing")
    print("Agent Governance Toolkit on an equivalent payments policy, allowed")
    if agt is None:
        print(f"  agent-governance-toolkit-core not available ({AGT_MISSING}): "
              "pip install agent-governance-toolkit-core==5.0.0")
    for case in agt_cases:
        print(case.line(aegis_case, "AGT/aegis"))
    if agt is not None:
        print("  goal: ratio > 1 (Aegis faster). Every Aegis call checks the credential chain (signatures")
        print("  verified on first sight, then cached by its bytes), evaluates the bundle's Cedar policies")
        print("  (SoD included), records the call in the task's ledger and checks the task's budget; AGT's")
        print("  rule evaluators do none of that: no identity, delegation, SoD, ledger, budget or obligations")
        print("  (its Cedar path evaluates the SoD policies, on the same context handed to it ready-made)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
