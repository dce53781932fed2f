"""A Google ADK agent whose every tool call goes through Aegis (`aegis.adk.AegisToolGuard`).

The model is scripted (a `BaseLlm` that plays back its turns; no network). It asks for a 1200
payment (runs), a 300 one carrying a card number (runs, with the number redacted in the very
arguments the tool receives), one to a malformed destination (denied: the tool does not run and
the model is told why), and a 9000 one, which needs a finance approver: the run pauses on ADK's
tool confirmation, the planner's attempt to approve is refused, the finance approver approves,
and the run resumed with the override token pays once. The token presented again is refused.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncGenerator, Dict, List

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.genai import types

from aegis.adk import AegisToolGuard, approval_answer, pending_approvals
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task

PAID: List[Dict[str, Any]] = []


def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> Dict[str, Any]:
    """Create a payment with Stripe."""
    PAID.append({"amount": amount, "currency": currency, "destination": destination, "card_number": card_number})
    return {"status": "paid", "amount": amount, "currency": currency, "destination": destination}


class ScriptedModel(BaseLlm):
    """Plays back scripted model turns, one per call, and keeps the requests it was sent."""

    script: List[LlmResponse]
    requests: List[LlmRequest] = []

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(llm_request)
        yield self.script.pop(0)


def turn(part: types.Part) -> LlmResponse:
    # Usage is reported as a real model would (ADK's metrics warn about a turn without it).
    usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=1, candidates_token_count=1,
                                                      total_token_count=2)
    return LlmResponse(content=types.Content(role="model", parts=[part]), usage_metadata=usage)


def call(n: int, args: Dict[str, Any]) -> LlmResponse:
    return turn(types.Part(function_call=types.FunctionCall(name="create_payment", args=args, id=f"call_{n}")))


def text(message: str) -> LlmResponse:
    return turn(types.Part(text=message))


def responses_seen(request: LlmRequest) -> Dict[str, Any]:
    """The tool results the model was shown, by call id."""
    return {p.function_response.id: p.function_response.response
            for c in request.contents for p in c.parts or [] if p.function_response is not None}


async def run(runner: InMemoryRunner, session_id: str, message: types.Content) -> List[Any]:
    return [e async for e in runner.run_async(user_id="finance", session_id=session_id, new_message=message)]


async def main() -> None:
    eng = engine()
    chain = finance_chain(unique_task("py-adk"))
    model = ScriptedModel(model="scripted", script=[
        call(1, pay(1200)),
        call(2, {**pay(300), "card_number": "4242424242424242"}),
        call(3, {**pay(100), "destination": "DE89370400440532013000"}),
        call(4, pay(9000)),
        text("all four invoices are handled"),
    ])
    agent = LlmAgent(name="finance_agent", model=model, tools=[create_payment],
                     instruction="Pay the vendor invoices.",
                     before_tool_callback=AegisToolGuard(eng, chain, tool_names={"create_payment": TOOL}))
    runner = InMemoryRunner(agent=agent, app_name="payments")
    session = await runner.session_service.create_session(app_name="payments", user_id="finance")

    events = await run(runner, session.id, types.Content(role="user", parts=[types.Part(text="pay the invoices")]))
    assert [p["amount"] for p in PAID] == [1200, 300], PAID
    print("1. paid 1200")
    assert PAID[1]["card_number"] == "[REDACTED]", PAID[1]
    print("2. paid 300; the tool received the card number as", PAID[1]["card_number"])
    denied = responses_seen(model.requests[3])["call_3"]
    assert "destination-account-pattern" in denied["error"], denied
    print("3. the bad destination never reached the tool; the model was told:", denied["error"][:70], "...")
    waiting = pending_approvals(events)
    assert len(waiting) == 1 and waiting[0].function_call_id == "call_4" and waiting[0].args["amount"] == 9000, waiting
    assert model.script, "the run pauses on the approval: the model is not called again"
    print("4. the run is paused on ADK's tool confirmation:", waiting[0].approval_id, "-", waiting[0].reasons[0])

    # The planner holds no `aegis.approve` (and, holding it, would still be above the requester).
    refused = eng.approve(waiting[0].approval_id, chain[:1])
    assert not refused.accepted and refused.reasons[0].code == "tool_not_in_scope", refused
    print("5. the planner's self-approval is refused:", refused.reasons[0].code)
    approved = eng.approve(waiting[0].approval_id, approver_chain())
    assert approved.accepted and approved.override_token
    print("6. the finance approver approved")

    events = await run(runner, session.id, approval_answer(waiting[0], approved.override_token))
    assert [p["amount"] for p in PAID] == [1200, 300, 9000], PAID
    final = [p.text for e in events if e.content for p in e.content.parts or [] if p.text]
    assert final == ["all four invoices are handled"], final
    print("7. resumed with the token: paid 9000 |", final[0])
    assert eng.pending_approvals() == [], eng.pending_approvals()

    replay = eng.authorize(chain, TOOL, pay(9000), approval_token=approved.override_token)
    assert replay.outcome == "deny" and replay.codes == ("approval_replayed",), replay
    print("8. the same token again:", replay.codes[0], "|", json.dumps([p["amount"] for p in PAID]))
    print("adk agent: ok")


if __name__ == "__main__":
    asyncio.run(main())
