"""An OpenAI Agents SDK agent whose every tool call goes through Aegis, with a handoff.

The models are scripted (no network: :class:`ScriptedModel` implements the SDK's ``Model``). The
planner drafts an invoice, then hands the payments off to a finance sub-agent; the guard mints
that sub-agent's delegation as the work is handed over (scoped to its one tool), so Aegis
attests it as ``planner/finance-agent``. The finance agent pays 1200 (allowed), tries a bad
destination (denied: the model is told why, the tool never runs) and asks for 9000 (the SDK
pauses with an interruption). The sub-agent's attempt to approve its own call is refused, the
finance approver approves, the run is resumed through the SDK run state with the override
token, and the payment runs once. The same token presented again is refused.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, List

from agents import Agent, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
from agents.models.interface import Model
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

import aegis
from aegis.delegation import Delegator
from aegis.openai_agents import AegisGuard
from payments_setup import (FINANCE_AGENT, ISSUER, ISSUER_KEY, PLANNER_KEY, PLANNER_SCOPE, TOOL, approver_chain,
                            engine, pay, unique_task)

PAID: List[int] = []
INVOICES: List[str] = []


@function_tool
def create_invoice(customer: str, amount: int) -> str:
    """Draft an invoice for a customer."""
    INVOICES.append(customer)
    return f"invoice drafted for {customer}: {amount}"


@function_tool
def create_payment(amount: int, currency: str, destination: str) -> str:
    """Create a payment with Stripe."""
    PAID.append(amount)
    return f"paid {amount} {currency} to {destination}"


class ScriptedModel(Model):
    """A model that plays back scripted turns and keeps what it was shown (no network)."""

    def __init__(self, turns: List[List[Any]]) -> None:
        self.turns = list(turns)
        self.seen: List[Any] = []

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, **kwargs: Any) -> ModelResponse:
        self.seen.append(input)
        assert self.turns, "the model was asked for more turns than were scripted"
        return ModelResponse(output=self.turns.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example runs without streaming")


def call(call_id: str, name: str, args: dict) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(type="function_call", call_id=call_id, name=name, arguments=json.dumps(args))


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(id=f"msg_{len(text)}", type="message", role="assistant", status="completed",
                                 content=[ResponseOutputText(type="output_text", text=text, annotations=[])])


def outputs_seen(model: ScriptedModel) -> List[str]:
    """The tool outputs the model was shown, in order."""
    seen = model.seen[-1] if model.seen else []
    return [str(i.get("output")) for i in seen if isinstance(i, dict) and i.get("type") == "function_call_output"]


async def main() -> None:
    set_tracing_disabled(True)  # no trace export: nothing leaves this process
    eng = engine()
    task = unique_task("py-openai-agents")
    planner_root = aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=task,
                                    intent="pay the approved vendor invoices", scope=list(PLANNER_SCOPE))
    # SDK function names cannot hold dots: map them to the bundle's tool names.
    guard = AegisGuard(eng, actions={"create_invoice": "invoice.create", "create_payment": TOOL})

    finance_model = ScriptedModel([
        [call("call_1", "create_payment", pay(1200))],
        [call("call_2", "create_payment", {**pay(300), "destination": "DE89370400440532013000"})],
        [call("call_3", "create_payment", pay(9000))],
        [say("the payments are done")],
    ])
    finance = Agent(name="finance-agent", instructions="Pay approved invoices.", model=finance_model,
                    tools=[create_payment])
    planner_model = ScriptedModel([
        [call("call_0", "create_invoice", {"customer": "ACME", "amount": 9000})],
        [call("call_h", "transfer_to_finance_agent", {})],  # the SDK's name for the handoff
    ])
    planner = Agent(name="planner", instructions="Plan the work.", model=planner_model, tools=[create_invoice],
                    handoffs=[finance])

    delegator = Delegator([planner_root], PLANNER_KEY)
    guarded = guard.agent(planner, delegator)
    result = await Runner.run(guarded, "bill ACME, then pay the vendor invoices")

    assert INVOICES == ["ACME"] and PAID == [1200], (INVOICES, PAID)
    finance_agent = result.last_agent
    sub = guard.delegator_of(finance_agent)
    assert sub is not None and sub.agent_id == FINANCE_AGENT and sub.scope == (TOOL,), sub
    print(f"1. the planner drafted an invoice and handed off; {sub.agent_id} was delegated {list(sub.scope)}")
    print("2. paid 1200")
    denied = [o for o in outputs_seen(finance_model) if "destination-account-pattern" in o]
    assert denied and denied[0].startswith("Aegis denied this call"), outputs_seen(finance_model)
    print("3. a bad destination never reached the tool; the model was told:", denied[0][:70], "...")

    assert len(result.interruptions) == 1, result.interruptions
    item = result.interruptions[0]
    # The run state the call is approved in: the guard looks the approval up in that run only
    # (one guard serves many runs, whose call ids may repeat).
    state = result.to_state()
    pending = guard.pending(item, state)
    assert pending is not None and pending.agent_id == FINANCE_AGENT and pending.args["amount"] == 9000, pending
    print(f"4. 9000 paused the run: approval {pending.approval_id} asked by {pending.agent_id}")

    refused = eng.approve(pending.approval_id, sub.chain)
    assert not refused.accepted and refused.reasons[0].code == "approver_conflict", refused
    print("5. the finance agent may not approve its own call:", refused.reasons[0].code)
    approved = eng.approve(pending.approval_id, approver_chain(), note="invoice INV-2291 checked")
    assert approved.accepted and approved.override_token
    print("6. the finance approver approved in Aegis")

    guard.approve(state, item, override_token=approved.override_token)
    result = await Runner.run(guarded, state)
    assert PAID == [1200, 9000], PAID
    assert result.final_output == "the payments are done", result.final_output
    print("7. resumed through the run state:", outputs_seen(finance_model)[-1], "|", result.final_output)

    replay = eng.authorize(sub.chain, TOOL, pay(9000), approval_token=approved.override_token)
    assert replay.outcome == "deny" and replay.codes == ("approval_replayed",), replay
    print("8. the same token again:", replay.codes[0])
    ledger = [(e.tool, e.agent_id) for e in eng.ledger(task)]
    assert ledger == [("invoice.create", "planner"), (TOOL, FINANCE_AGENT), ("aegis.approve", "finance-approver"),
                      (TOOL, FINANCE_AGENT)], ledger
    print("9. the task's ledger:", ledger)
    print("openai agents: ok")


if __name__ == "__main__":
    asyncio.run(main())
