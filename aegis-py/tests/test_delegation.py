"""Delegation to sub-agents (`aegis.delegation.Delegator`) and its LangGraph glue
(`aegis.langchain.create_delegated_agent`): each sub-agent acts on a delegation minted for it,
scoped to its own tools and never wider than its delegator's, so the engine attests it as
`planner/<name>` and segregation of duties holds across the chain."""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import pytest

import aegis
import aegis.delegation
from aegis.delegation import Delegator
from payments_setup import (FINANCE_AGENT, ISSUER, ISSUER_KEY, PLANNER_KEY, PLANNER_SCOPE, TOOL, approver_chain, engine,
                            pay, unique_task)

NOW = 1_800_000_000


def root(task: str, scope: Any = PLANNER_SCOPE, ttl_secs: int = 900, issued_at: Any = None) -> str:
    return aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=task, intent="pay invoices",
                            scope=list(scope), ttl_secs=ttl_secs, issued_at=issued_at)


def claims(token: str) -> Dict[str, Any]:
    return dict(aegis.inspect(token)["claims"])


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# --- the delegator ----------------------------------------------------------------------------


def test_a_sub_agent_is_delegated_only_its_tools_that_its_delegator_holds() -> None:
    eng, task = engine(), unique_task("dg-scope")
    delegator = Delegator([root(task, ["invoice.*", "stripe.*", "aegis.approve"])], PLANNER_KEY)
    sub = delegator.child("finance-agent", [TOOL, "ledger.export", TOOL, "aegis.approve"])
    assert sub.scope == (TOOL, "aegis.approve")
    assert sub.agent_id == FINANCE_AGENT and sub.name == "finance-agent"
    chain = sub.chain
    assert chain[0] == delegator.chain[0] and len(chain) == 2 and claims(chain[1])["iss"] == "planner"
    assert eng.authorize(chain, TOOL, pay(100)).outcome == "allow"
    denied = eng.authorize(chain, "ledger.export", {"period": "2026-Q3"})
    assert denied.outcome == "deny" and denied.codes == ("tool_not_in_scope",), denied
    # The same grant minted by hand, with the tool the delegator lacks, is refused outright.
    with pytest.raises(aegis.ScopeWidened):
        aegis.delegate(delegator.chain[-1], PLANNER_KEY, "greedy", aegis.KeyPair.generate(),
                       scope=[TOOL, "ledger.export"])
    # Wildcards never delegate approving.
    star = Delegator([root(unique_task("dg-star"), ["*"])], PLANNER_KEY)
    assert star.child("approver", ["aegis.approve", TOOL]).scope == (TOOL,)


def test_the_delegation_is_minted_once_and_renewed_near_expiry_with_the_same_key() -> None:
    clock = Clock(NOW)
    delegator = Delegator([root(unique_task("dg-renew"), issued_at=NOW, ttl_secs=3600)], PLANNER_KEY,
                          ttl_secs=300, clock=clock)
    sub = delegator.child("finance-agent", [TOOL])
    first = sub.chain
    assert sub.chain == first and delegator.child("finance-agent", [TOOL]) is sub
    assert claims(first[-1])["iat"] == NOW and claims(first[-1])["exp"] == NOW + 300
    clock.now = NOW + 300 - aegis.delegation.RENEW_MARGIN_SECS - 1
    assert sub.chain == first
    clock.now += 1
    renewed = sub.chain
    assert renewed[-1] != first[-1] and claims(renewed[-1])["iat"] == clock.now
    assert claims(renewed[-1])["cnf"]["jwk"]["kid"] == claims(first[-1])["cnf"]["jwk"]["kid"] == sub.key.kid


def test_a_delegation_never_outlives_its_delegator() -> None:
    clock = Clock(NOW)
    parent = root(unique_task("dg-exp"), issued_at=NOW, ttl_secs=100)
    sub = Delegator([parent], PLANNER_KEY, ttl_secs=600, clock=clock).child("finance-agent", [TOOL])
    assert claims(sub.chain[-1])["exp"] == claims(parent)["exp"] == NOW + 100
    clock.now = NOW + 100
    sub2 = Delegator([parent], PLANNER_KEY, clock=clock).child("finance-agent", [TOOL])
    with pytest.raises(aegis.CredentialExpired):
        sub2.chain


def test_nested_delegation_is_namespaced_and_renews_down_the_chain() -> None:
    eng, task, clock = engine(), unique_task("dg-nested"), Clock(NOW)
    delegator = Delegator([root(task, issued_at=NOW, ttl_secs=3600)], PLANNER_KEY, ttl_secs=300, clock=clock)
    payer = delegator.child("finance-agent", [TOOL]).child("payer", [TOOL, "invoice.create"])
    assert payer.agent_id == "planner/finance-agent/payer" and payer.scope == (TOOL,)
    middle_leaf = delegator.child("finance-agent", [TOOL]).chain[-1]
    assert payer.chain[1] == middle_leaf
    # The middle delegation renewed: the grandchild is minted again under it, not left dangling.
    clock.now = NOW + 290
    assert payer.chain[1] != middle_leaf and payer.chain[1] == delegator.child("finance-agent", [TOOL]).chain[-1]
    live = Delegator([root(task)], PLANNER_KEY).child("finance-agent", [TOOL]).child("payer", [TOOL])
    assert eng.authorize(live.chain, TOOL, pay(100)).outcome == "allow"
    assert [(e.agent_id, e.lineage) for e in eng.ledger(task)] == [
        ("planner/finance-agent/payer", ("planner", "planner/finance-agent"))]


def test_names_and_tools_are_checked() -> None:
    delegator = Delegator([root(unique_task("dg-names"))], PLANNER_KEY)
    for bad in ("", "finance/agent"):
        with pytest.raises(ValueError):
            delegator.child(bad, [TOOL])
    with pytest.raises(TypeError):
        delegator.child("finance-agent", TOOL)
    delegator.child("finance-agent", [TOOL])
    with pytest.raises(ValueError):
        delegator.child("finance-agent", [TOOL, "invoice.create"])  # a sub-agent's scope is fixed
    with pytest.raises(TypeError):
        Delegator(root(unique_task("dg-str")), PLANNER_KEY)  # type: ignore[arg-type]


def test_concurrent_first_use_mints_one_delegation() -> None:
    delegator = Delegator([root(unique_task("dg-threads"))], PLANNER_KEY)
    chains: List[List[str]] = []
    start = threading.Barrier(8)

    def use() -> None:
        start.wait()
        chains.append(delegator.chain_for("finance-agent", [TOOL]))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(chains) == 8 and all(c == chains[0] for c in chains)


def test_segregation_of_duties_holds_across_the_chain() -> None:
    eng, task = engine(), unique_task("dg-sod")
    delegator = Delegator([root(task, [*PLANNER_SCOPE, "aegis.approve"])], PLANNER_KEY)
    # The delegator itself does not pay: payments are a delegate's duty.
    own = eng.authorize(delegator.chain, TOOL, pay(100))
    assert own.outcome == "deny" and "executor-needs-parent" in [r.policy_id for r in own.reasons], own
    # One sub-agent that drafts may not pay; a separate one may.
    clerk = delegator.child("clerk", ["invoice.create", TOOL])
    assert eng.authorize(clerk.chain, "invoice.create", {"customer": "ACME", "amount": 1}).outcome == "allow"
    drafted = eng.authorize(clerk.chain, TOOL, pay(100))
    assert drafted.outcome == "deny" and "drafter-does-not-pay" in [r.policy_id for r in drafted.reasons]
    payer = delegator.child("finance-agent", [TOOL])
    assert eng.authorize(payer.chain, TOOL, pay(100)).outcome == "allow"
    # Neither the sub-agent nor anything above it approves the sub-agent's call.
    pending = eng.authorize(payer.chain, TOOL, pay(9000))
    assert pending.outcome == "approval_needed" and pending.approval_id
    for chain in (payer.chain, delegator.chain, delegator.child("approver", ["aegis.approve"]).chain):
        refused = eng.approve(pending.approval_id, chain)
        assert not refused.accepted and refused.reasons[0].code == "approver_conflict", refused
    assert eng.approve(pending.approval_id, approver_chain()).accepted


def test_a_delegation_presented_for_another_task_is_refused() -> None:
    eng, task = engine(), unique_task("dg-task")
    delegator = Delegator([root(task)], PLANNER_KEY)
    link = delegator.chain_for("finance-agent", [TOOL])[-1]
    other = root(unique_task("dg-task-other"))
    spliced = eng.authorize([other, link], TOOL, pay(100))
    assert spliced.outcome == "deny" and spliced.codes == ("parent_mismatch",), spliced
    # Another task's delegator mints its own delegations; nothing is shared between them.
    assert Delegator([other], PLANNER_KEY).chain_for("finance-agent", [TOOL])[-1] != link
    eng.end_task(task)
    ended = eng.authorize(delegator.chain_for("finance-agent", [TOOL]), TOOL, pay(100))
    assert ended.outcome == "deny" and ended.codes == ("task_ended",), ended


# --- LangGraph supervisors ----------------------------------------------------------------------


langchain = pytest.importorskip("langchain")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

from aegis.langchain import AegisMiddleware, DelegatedMiddleware, create_delegated_agent, delegated_chain  # noqa: E402


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedModel":
        return self


def script(*messages: AIMessage) -> ScriptedModel:
    return ScriptedModel(messages=iter(messages))


def calls(n: str, name: str, args: Dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n}"}])


def test_a_supervisor_calling_sub_agents_as_tools_gets_them_decided_on_their_delegations() -> None:
    eng, task = engine(), unique_task("dg-tools")
    delegator = Delegator([root(task)], PLANNER_KEY)
    paid: List[int] = []
    exported: List[str] = []

    @tool(TOOL)
    def create_payment(amount: int, currency: str, destination: str) -> str:
        """Create a payment."""
        paid.append(amount)
        return f"paid {amount}"

    @tool("ledger.export")
    def export_ledger(period: str) -> str:
        """Export the ledger."""
        exported.append(period)
        return "ledger"

    finance = create_delegated_agent(eng, delegator, "finance-agent", script(
        calls("p1", TOOL, pay(1200)), calls("x1", "ledger.export", {"period": "Q3"}), AIMessage(content="done")),
        [create_payment, export_ledger])

    @tool
    def ask_finance(request: str) -> str:
        """Hand a payment request to the finance agent."""
        return str(finance.invoke({"messages": [{"role": "user", "content": request}]})["messages"][-1].content)

    supervisor = create_agent(script(calls("s1", "ask_finance", {"request": "pay the vendor"}),
                                     AIMessage(content="finance is done")), tools=[ask_finance])
    out = supervisor.invoke({"messages": [{"role": "user", "content": "pay the vendor"}]})
    assert out["messages"][-1].content == "finance is done"
    assert paid == [1200] and exported == []
    assert [(e.tool, e.agent_id) for e in eng.ledger(task)] == [(TOOL, FINANCE_AGENT)]
    sub = delegator.children()["finance-agent"]
    assert sub.scope == (TOOL,) and eng.ledger(task)[0].key == sub.key.kid


def test_the_delegation_is_minted_when_work_reaches_the_sub_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = engine()
    minted: List[str] = []
    real = aegis.delegation.delegate

    def counting(*args: Any, **kwargs: Any) -> str:
        minted.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(aegis.delegation, "delegate", counting)
    delegator = Delegator([root(unique_task("dg-mint"))], PLANNER_KEY)

    @tool("invoice.create")
    def create_invoice(customer: str, amount: int) -> str:
        """Draft an invoice."""
        return "drafted"

    quiet = create_delegated_agent(eng, delegator, "invoicing-agent", script(AIMessage(content="nothing to do")),
                                   [create_invoice])
    assert minted == []  # building the graph mints nothing
    quiet.invoke({"messages": [{"role": "user", "content": "anything to bill?"}]})
    assert minted == ["invoicing-agent"]  # handed work (even without a tool call): minted once


def test_the_langgraph_glue_composes_with_the_existing_middleware() -> None:
    eng, task = engine(), unique_task("dg-glue")
    delegator = Delegator([root(task)], PLANNER_KEY)
    paid: List[int] = []

    @tool(TOOL)
    def create_payment(amount: int, currency: str, destination: str) -> str:
        """Create a payment."""
        paid.append(amount)
        return "paid"

    # By hand: the plain middleware on the chain source the glue builds.
    chain = delegated_chain(delegator, "finance-agent", [create_payment])
    agent = create_agent(script(calls("p", TOOL, pay(100)), AIMessage(content="ok")), tools=[create_payment],
                         middleware=[AegisMiddleware(eng, chain)])
    agent.invoke({"messages": [{"role": "user", "content": "pay"}]})
    # And the planner's own chain, undelegated, is refused the payment by SoD.
    own = create_agent(script(calls("q", TOOL, pay(100)), AIMessage(content="ok")), tools=[create_payment],
                       middleware=[AegisMiddleware(eng, delegator.chain)])
    out = own.invoke({"messages": [{"role": "user", "content": "pay"}]})
    refused = [m for m in out["messages"] if isinstance(m, ToolMessage)][0]
    assert paid == [100] and refused.status == "error" and "executor-needs-parent" in refused.content
    assert [(e.agent_id) for e in eng.ledger(task)] == [FINANCE_AGENT]
    assert DelegatedMiddleware(eng, delegator, "finance-agent", [TOOL]).delegator is \
        delegator.children()["finance-agent"]


def test_one_compiled_graph_acts_for_each_runs_own_task() -> None:
    # One sub-agent graph, compiled once, invoked for two users' tasks: the delegator comes from
    # each invocation's config, so each run's payment is decided on that run's own chain.
    eng = engine()
    tasks = {"thread-a": unique_task("dg-run-a"), "thread-b": unique_task("dg-run-b")}
    delegators = {thread: Delegator([root(task)], PLANNER_KEY) for thread, task in tasks.items()}
    asked: List[str] = []
    paid: List[int] = []

    def delegator_of(config: Any) -> Delegator:
        asked.append(config["configurable"]["thread_id"])
        return delegators[config["configurable"]["thread_id"]]

    @tool(TOOL)
    def create_payment(amount: int, currency: str, destination: str) -> str:
        """Create a payment."""
        paid.append(amount)
        return "paid"

    finance = create_delegated_agent(eng, delegator_of, "finance-agent", script(
        calls("a", TOOL, pay(100)), AIMessage(content="done"), calls("b", TOOL, pay(200)), AIMessage(content="done")),
        [create_payment])
    for thread in ("thread-a", "thread-b"):
        finance.invoke({"messages": [{"role": "user", "content": "pay"}]}, {"configurable": {"thread_id": thread}})
    assert paid == [100, 200] and set(asked) == set(tasks)
    subs = {thread: d.children()["finance-agent"] for thread, d in delegators.items()}
    assert subs["thread-a"].chain[0] != subs["thread-b"].chain[0]
    for thread, task in tasks.items():
        ledger = eng.ledger(task)  # one payment in each task, by that task's own delegate key
        assert [(e.tool, e.agent_id) for e in ledger] == [(TOOL, FINANCE_AGENT)], ledger
        assert ledger[0].key == subs[thread].key.kid
    assert subs["thread-a"].key.kid != subs["thread-b"].key.kid
    # A run without a delegator of its own runs nothing.
    with pytest.raises(KeyError):
        finance.invoke({"messages": [{"role": "user", "content": "pay"}]}, {"configurable": {"thread_id": "other"}})
    assert paid == [100, 200]
    # The fixed form is unchanged; a source that is neither is refused.
    assert DelegatedMiddleware(eng, delegators["thread-a"], "finance-agent", [TOOL]).delegator is subs["thread-a"]
    assert DelegatedMiddleware(eng, delegator_of, "finance-agent", [TOOL]).delegator is None
    with pytest.raises(TypeError):
        DelegatedMiddleware(eng, "planner", "finance-agent", [TOOL])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        create_delegated_agent(eng, delegator_of, "finance/agent", script(), [create_payment])
