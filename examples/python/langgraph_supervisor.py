"""A LangGraph supervisor that passes work to sub-agents, each acting on its own delegation.

The supervisor (a graph node holding the planner's credential and key) routes the task to three
sub-agents, each a langchain ``create_agent`` graph added as a node. When work reaches a
sub-agent, :func:`aegis.langchain.create_delegated_agent` mints its delegation (scoped to its own
tools, appended to the planner's chain), so its calls are decided as ``planner/<name>``. The
graph is compiled once and serves every thread: each invocation's delegator (the planner's chain
for that thread's task) is looked up from its config, so no thread acts on another's task.

- the invoicing agent drafts an invoice (``planner/invoicing-agent``);
- the finance agent pays 1200, then asks for 9000, which interrupts the graph for an approval;
  the finance agent cannot approve its own call, nor can the planner above it (which holds
  ``aegis.approve``); the finance approver
  approves, and the resumed graph pays once;
- the reporting agent was given a tool the planner does not hold: its delegation leaves it out,
  and the call is denied (``tool_not_in_scope``) without reaching the tool.

The chat models are scripted (no network).
"""

from __future__ import annotations

from typing import Any, List

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

import aegis
from aegis.delegation import Delegator
from aegis.langchain import create_delegated_agent
from payments_setup import (FINANCE_AGENT, ISSUER, ISSUER_KEY, PLANNER_KEY, PLANNER_SCOPE, TOOL, approver_chain,
                            engine, pay, unique_task)

PAID: List[int] = []
INVOICES: List[str] = []
EXPORTS: List[str] = []


@tool(TOOL)
def create_payment(amount: int, currency: str, destination: str) -> str:
    """Create a payment with Stripe."""
    PAID.append(amount)
    return f"paid {amount} {currency} to {destination}"


@tool("invoice.create")
def create_invoice(customer: str, amount: int) -> str:
    """Draft an invoice."""
    INVOICES.append(customer)
    return f"invoice drafted for {customer}"


@tool("ledger.export")
def export_ledger(period: str) -> str:
    """Export the general ledger (the planner was never granted this)."""
    EXPORTS.append(period)
    return f"ledger for {period}"


class ScriptedModel(GenericFakeChatModel):
    """A fake chat model that plays back scripted messages and accepts tools."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedModel":
        return self


def script(*messages: AIMessage) -> ScriptedModel:
    return ScriptedModel(messages=iter(messages))


def calls(n: str, name: str, args: dict) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n}"}])


# The supervisor's plan: each sub-agent, and what it says when done with its part.
PLAN = [("invoicing-agent", "invoice drafted"), ("finance-agent", "payments done"),
        ("reporting-agent", "report attempted")]


def supervisor(state: MessagesState) -> Command[Any]:
    """Routes to the first sub-agent whose part is not done (a scripted supervisor)."""
    said = {m.content for m in state["messages"] if isinstance(m, AIMessage)}
    for agent, done in PLAN:
        if done not in said:
            return Command(goto=agent)
    return Command(goto=END)


def main() -> None:
    eng = engine()
    task = unique_task("py-langgraph-supervisor")
    # The planner may even approve (`aegis.approve` by its exact name): never what it delegated.
    planner = aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=task,
                               intent="bill and pay the vendor invoices", scope=[*PLANNER_SCOPE, "aegis.approve"])
    # The delegator of each thread (its task's planner chain and key); a thread without one runs
    # nothing. The same delegator serves the thread again when it resumes after an approval.
    delegators = {"supervisor-1": Delegator([planner], PLANNER_KEY)}

    def delegator_of(config: Any) -> Delegator:
        return delegators[config["configurable"]["thread_id"]]

    invoicing = create_delegated_agent(eng, delegator_of, "invoicing-agent", script(
        calls("i1", "invoice.create", {"customer": "ACME", "amount": 9000}), AIMessage(content="invoice drafted")),
        [create_invoice])
    finance = create_delegated_agent(eng, delegator_of, "finance-agent", script(
        calls("p1", TOOL, pay(1200)), calls("p2", TOOL, pay(9000)), AIMessage(content="payments done")),
        [create_payment])
    reporting = create_delegated_agent(eng, delegator_of, "reporting-agent", script(
        calls("r1", "ledger.export", {"period": "2026-Q3"}), AIMessage(content="report attempted")),
        [export_ledger])

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervisor, destinations=tuple(a for a, _ in PLAN) + (END,))
    for name, sub_agent in (("invoicing-agent", invoicing), ("finance-agent", finance), ("reporting-agent", reporting)):
        graph.add_node(name, sub_agent)
        graph.add_edge(name, "supervisor")
    graph.add_edge(START, "supervisor")
    app = graph.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "supervisor-1"}}

    result = app.invoke({"messages": [{"role": "user", "content": "bill ACME and pay the vendor"}]}, config)
    interrupts = result.get("__interrupt__") or []
    assert INVOICES == ["ACME"] and PAID == [1200], (INVOICES, PAID)
    assert interrupts, "the 9000 payment should interrupt the graph for approval"
    request = interrupts[0].value
    print("1. the invoicing agent drafted, the finance agent paid 1200; paused:", request["approval_id"])

    pending = eng.approval(request["approval_id"])
    assert pending is not None and pending.agent_id == FINANCE_AGENT, pending
    finance_chain = delegators["supervisor-1"].child("finance-agent", [TOOL]).chain
    assert len(finance_chain) == 2 and finance_chain[0] == planner
    print(f"2. asked by {pending.agent_id}, on the delegation minted for it (scope "
          f"{aegis.inspect(finance_chain[-1])['claims']['scope']})")
    own = eng.approve(request["approval_id"], finance_chain)
    assert not own.accepted and own.reasons[0].code == "approver_conflict", own
    above = eng.approve(request["approval_id"], [planner])
    assert not above.accepted and above.reasons[0].code == "approver_conflict", above
    print("3. the finance agent may not approve its own call:", own.reasons[0].code,
          "| nor the planner:", above.reasons[0].code)
    approved = eng.approve(request["approval_id"], approver_chain())
    assert approved.accepted and approved.override_token

    result = app.invoke(Command(resume={"approval_token": approved.override_token}), config)
    assert "__interrupt__" not in result or not result["__interrupt__"], result.get("__interrupt__")
    assert PAID == [1200, 9000], PAID
    # The resumed sub-agent asked again before presenting the token; that request was superseded.
    assert eng.pending_approvals() == [], eng.pending_approvals()
    print("4. the finance approver approved; the resumed graph paid 9000 once")

    refused = [m for m in result["messages"] if isinstance(m, ToolMessage) and m.name == "ledger.export"]
    assert EXPORTS == [] and refused and refused[0].status == "error" and "tool_not_in_scope" in refused[0].content, \
        refused
    print("5. the reporting agent's out-of-scope tool was refused:", refused[0].content[:60], "...")

    ledger = [(e.tool, e.agent_id) for e in eng.ledger(task)]
    assert ledger == [("invoice.create", "planner/invoicing-agent"), (TOOL, FINANCE_AGENT),
                      ("aegis.approve", "finance-approver"), (TOOL, FINANCE_AGENT)], ledger
    print("6. the task's ledger:", ledger)
    assert result["messages"][-1].content == "report attempted"
    print("langgraph supervisor: ok")


if __name__ == "__main__":
    main()
