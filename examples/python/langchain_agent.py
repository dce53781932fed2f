"""A LangChain agent (langchain 1.x `create_agent`) whose every tool call goes through Aegis.

The chat model is scripted (no network): it asks for a 1200 payment, then a 9000 one. Aegis
allows the first; the second interrupts the graph for a human approval, the planner's attempt
to approve is refused, the finance approver approves, and the resumed run pays once. The same
override token presented again is refused.
"""

from __future__ import annotations

from typing import Any, List

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import aegis
from aegis.langchain import AegisMiddleware
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task

PAID: List[int] = []


@tool(TOOL)
def create_payment(amount: int, currency: str, destination: str) -> str:
    """Create a payment with Stripe."""
    PAID.append(amount)
    return f"paid {amount} {currency} to {destination}"


class ScriptedModel(GenericFakeChatModel):
    """A fake chat model that plays back scripted messages and accepts tools."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedModel":
        return self


def call(n: int, amount: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": TOOL, "args": pay(amount), "id": f"call_{n}"}])


def main() -> None:
    eng = engine()
    chain = finance_chain(unique_task("py-langchain"))
    model = ScriptedModel(messages=iter([call(1, 1200), call(2, 9000), AIMessage(content="both payments are done")]))
    agent = create_agent(model, tools=[create_payment], middleware=[AegisMiddleware(eng, chain)],
                         checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "payments-1"}}

    result = agent.invoke({"messages": [{"role": "user", "content": "pay the two vendor invoices"}]}, config)
    interrupts = result.get("__interrupt__") or []
    assert PAID == [1200], PAID
    assert interrupts, "the 9000 payment should interrupt for approval"
    request = interrupts[0].value
    print("1. paid 1200; the agent is paused:", request["type"], request["approval_id"], "-", request["reasons"][0])

    # The planner holds no `aegis.approve` (and, holding it, would still be above the requester).
    refused = eng.approve(request["approval_id"], chain[:1])
    assert not refused.accepted and refused.reasons[0].code == "tool_not_in_scope", refused
    print("2. the planner's self-approval is refused:", refused.reasons[0].code)
    approved = eng.approve(request["approval_id"], approver_chain())
    assert approved.accepted and approved.override_token
    print("3. the finance approver approved")

    result = agent.invoke(Command(resume={"approval_token": approved.override_token}), config)
    assert PAID == [1200, 9000], PAID
    tool_messages = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    print("4. resumed:", tool_messages[-1].content, "|", result["messages"][-1].content)
    # The resumed graph re-ran the interrupted step, which asked again before presenting the
    # token; that duplicate request was superseded when the call ran, so none is left to approve.
    assert eng.pending_approvals() == [], eng.pending_approvals()

    replay = eng.authorize(chain, TOOL, pay(9000), approval_token=approved.override_token)
    assert replay.outcome == "deny" and replay.codes == ("approval_replayed",), replay
    print("5. the same token again:", replay.codes[0])

    # A denied call never reaches the tool: the model sees an error ToolMessage instead.
    model2 = ScriptedModel(messages=iter([AIMessage(content="", tool_calls=[{"name": TOOL, "args": {**pay(100), "destination": "nope"}, "id": "call_x"}]), AIMessage(content="ok")]))
    agent2 = create_agent(model2, tools=[create_payment], middleware=[AegisMiddleware(eng, chain)])
    out = agent2.invoke({"messages": [{"role": "user", "content": "pay"}]})
    denied = [m for m in out["messages"] if isinstance(m, ToolMessage)][0]
    assert denied.status == "error" and "destination-account-pattern" in denied.content, denied
    assert PAID == [1200, 9000]
    print("6. a bad destination is an error ToolMessage:", denied.content[:60], "...")
    print("langchain agent: ok")


if __name__ == "__main__":
    main()
