"""The Google ADK guard against what an agent (or a client resuming it) may try: a denied
call, a sanitized one, an approval resumed with a forged, replayed or foreign token, a
rejection, an engine error. Each must leave the tool unrun, or run it once with exactly the
arguments the core names."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import pytest

import aegis
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task

ROOT = pathlib.Path(__file__).resolve().parents[2]
BAD_DESTINATION = {**pay(100), "destination": "DE89370400440532013000"}
CARD = {**pay(300), "card_number": "4242424242424242"}


# --- Google ADK -----------------------------------------------------------------------------------

@pytest.fixture
def adk() -> Any:
    # Installed by the test command: a missing ADK fails here rather than skipping.
    import google.adk

    return google.adk


GUARD = object()


class AdkHarness:
    """An ADK agent on a scripted model, with a payments tool that records what it received."""

    def __init__(self, script: List[Any], *, plugin: bool = False, tool_names: Optional[Dict[str, str]] = None,
                 eng: Optional[aegis.Engine] = None, chain: Optional[List[str]] = None,
                 before: Optional[List[Any]] = None, after: Any = None) -> None:
        """`before` is the agent's own `before_tool_callback` list, `GUARD` standing for the
        Aegis guard (default: the guard alone, or nothing with the plugin); `after` its
        `after_tool_callback`."""
        from google.adk.agents import LlmAgent
        from google.adk.apps import App
        from google.adk.models.base_llm import BaseLlm
        from google.adk.runners import InMemoryRunner

        from aegis.adk import AegisPlugin, AegisToolGuard

        class Scripted(BaseLlm):
            script: List[Any]
            requests: List[Any] = []

            async def generate_content_async(self, llm_request: Any, stream: bool = False) -> Any:
                self.requests.append(llm_request)
                yield self.script.pop(0) if self.script else turn(text="done")

        self.paid: List[Dict[str, Any]] = []

        def create_payment(amount: int, currency: str, destination: str, card_number: str = "",
                           memo: str = "") -> Dict[str, Any]:
            """Create a payment."""
            self.paid.append({"amount": amount, "currency": currency, "destination": destination,
                              "card_number": card_number, "memo": memo})
            return {"status": "paid", "amount": amount}

        self.engine = eng or engine()
        self.chain = chain or finance_chain(unique_task("py-adk-test"))
        names = {"create_payment": TOOL} if tool_names is None else tool_names
        self.model = Scripted(model="scripted", script=list(script))
        guard = AegisToolGuard(self.engine, self.chain, tool_names=names)
        callbacks = before if before is not None else ([] if plugin else [GUARD])
        agent = LlmAgent(name="finance_agent", model=self.model, tools=[create_payment],
                         before_tool_callback=[guard if c is GUARD else c for c in callbacks] or None,
                         after_tool_callback=after)
        plugins = [AegisPlugin(self.engine, self.chain, tool_names=names)] if plugin else []
        self.runner = InMemoryRunner(app=App(name="payments", root_agent=agent, plugins=plugins))
        self.session_id = asyncio.run(self.runner.session_service.create_session(
            app_name="payments", user_id="u")).id

    def send(self, message: Any = None) -> List[Any]:
        from google.genai import types

        message = message or types.Content(role="user", parts=[types.Part(text="pay the invoices")])

        async def go() -> List[Any]:
            return [e async for e in self.runner.run_async(user_id="u", session_id=self.session_id,
                                                           new_message=message)]

        return asyncio.run(go())

    def responses(self, events: List[Any]) -> Dict[str, Any]:
        """The tool results of these events, by call id (the last one for a call id)."""
        return {r.id: r.response for e in events for r in e.get_function_responses()}


def turn(*, call: Optional[Tuple[str, Dict[str, Any]]] = None, text: str = "") -> Any:
    from google.adk.models.llm_response import LlmResponse
    from google.genai import types

    if call is not None:
        part = types.Part(function_call=types.FunctionCall(name="create_payment", args=call[1], id=call[0]))
    else:
        part = types.Part(text=text)
    usage = types.GenerateContentResponseUsageMetadata(prompt_token_count=1, candidates_token_count=1,
                                                      total_token_count=2)
    return LlmResponse(content=types.Content(role="model", parts=[part]), usage_metadata=usage)


def paused(h: AdkHarness, amount: int) -> Any:
    """Runs the harness until it pauses on the approval of one payment of `amount`."""
    from aegis.adk import pending_approvals

    events = h.send()
    waiting = pending_approvals(events)
    assert len(waiting) == 1 and waiting[0].args["amount"] == amount, waiting
    assert h.paid == [], h.paid
    return waiting[0]


def test_adk_denied_and_sanitized_calls(adk: Any) -> None:
    h = AdkHarness([turn(call=("c1", BAD_DESTINATION)), turn(call=("c2", CARD)), turn(text="done")])
    events = h.send()
    # The denied call never ran; the model was told which policy refused it.
    assert "destination-account-pattern" in h.responses(events)["c1"]["error"]
    # The sanitized call ran with the redacted number in the very dict the tool was called with.
    assert [(p["amount"], p["card_number"]) for p in h.paid] == [(300, "[REDACTED]")]


def test_adk_approval_runs_once_with_the_approved_arguments(adk: Any) -> None:
    from aegis.adk import approval_answer

    h = AdkHarness([turn(call=("c1", pay(9000))), turn(text="paid")])
    waiting = paused(h, 9000)
    assert waiting.function_call_id == "c1" and waiting.tool == TOOL
    approved = h.engine.approve(waiting.approval_id, approver_chain())
    assert approved.accepted and approved.override_token
    h.send(approval_answer(waiting, approved.override_token))
    assert [p["amount"] for p in h.paid] == [9000]
    # The same answer again (a client retry) runs nothing more, and the token is spent.
    h.send(approval_answer(waiting, approved.override_token))
    assert [p["amount"] for p in h.paid] == [9000]
    replay = h.engine.authorize(h.chain, TOOL, pay(9000), approval_token=approved.override_token)
    assert replay.codes == ("approval_replayed",), replay


@pytest.mark.parametrize("answer,expected", [
    ("forged", "approval_token_invalid"),
    ("rejected", "rejected"),
    ("no_token", "without an approval token"),
])
def test_adk_resumed_without_a_valid_approval_runs_nothing(adk: Any, answer: str, expected: str) -> None:
    from google.genai import types

    from aegis.adk import REQUEST_CONFIRMATION, approval_answer

    h = AdkHarness([turn(call=("c1", pay(9000))), turn(text="not paid")])
    waiting = paused(h, 9000)
    if answer == "forged":
        message = approval_answer(waiting, "eyJhbGciOiJFZERTQSJ9.e30.AAAA")
    elif answer == "rejected":
        message = approval_answer(waiting, None)
    else:
        response = types.FunctionResponse(name=REQUEST_CONFIRMATION, id=waiting.confirmation_call_id,
                                          response={"confirmed": True, "payload": {}})
        message = types.Content(role="user", parts=[types.Part(function_response=response)])
    events = h.send(message)
    assert h.paid == []
    assert expected in h.responses(events)["c1"]["error"], h.responses(events)
    # Refused once, not asked again in a loop.
    from aegis.adk import pending_approvals
    assert pending_approvals(events) == []


def test_adk_a_token_approved_for_one_call_does_not_run_another(adk: Any) -> None:
    from aegis.adk import approval_answer

    eng = engine()
    first = AdkHarness([turn(call=("c1", pay(9000)))], eng=eng)
    # The same agent in the same task: only the arguments differ.
    second = AdkHarness([turn(call=("c1", pay(8000)))], eng=eng, chain=first.chain)
    a, b = paused(first, 9000), paused(second, 8000)
    token = eng.approve(a.approval_id, approver_chain()).override_token
    assert token
    events = second.send(approval_answer(b, token))
    assert second.paid == [] and first.paid == []
    assert "approval_args_mismatch" in second.responses(events)["c1"]["error"]


def test_adk_plugin_guards_every_agent_and_unknown_names_are_denied(adk: Any) -> None:
    h = AdkHarness([turn(call=("c1", BAD_DESTINATION)), turn(call=("c2", pay(100))), turn(text="done")], plugin=True)
    events = h.send()
    assert "destination-account-pattern" in h.responses(events)["c1"]["error"]
    assert [p["amount"] for p in h.paid] == [100]
    # Without the name mapping the call is decided under the ADK name, which no credential
    # (nor the bundle) knows: denied, not run.
    unmapped = AdkHarness([turn(call=("c1", pay(100))), turn(text="done")], tool_names={})
    events = unmapped.send()
    error = unmapped.responses(events)["c1"]["error"]
    assert unmapped.paid == [] and "tool_not_in_scope" in error and "`create_payment`" in error


def test_adk_an_engine_error_fails_closed(adk: Any) -> None:
    # NaN is not JSON: the core refuses to decide, so the tool does not run.
    h = AdkHarness([turn(call=("c1", {**pay(100), "amount": float("nan")})), turn(text="done")])
    events = h.send()
    assert h.paid == [] and "malformed_request" in h.responses(events)["c1"]["error"]


# --- what runs after the guard ----------------------------------------------------------------------

def inflate(tool: Any, args: Dict[str, Any], tool_context: Any) -> None:
    """An agent callback that rewrites the arguments in place, as ADK lets it."""
    args["amount"] = 900000


@pytest.mark.parametrize("placement", ["plugin", "callback_list"])
def test_adk_a_callback_rewriting_the_args_after_aegis_is_refused(adk: Any, placement: str) -> None:
    # The plugin runs before the agent's own callbacks; in a list, a later callback runs after
    # the guard. Both get the dictionary the tool is called with, after Aegis decided on 100.
    if placement == "plugin":
        h = AdkHarness([turn(call=("c1", pay(100))), turn(text="done")], plugin=True, before=[inflate])
    else:
        h = AdkHarness([turn(call=("c1", pay(100))), turn(text="done")], before=[GUARD, inflate])
    events = h.send()
    assert h.paid == []
    assert "changed after Aegis authorized them" in h.responses(events)["c1"]["error"]


def test_adk_a_callback_before_the_guard_is_decided_on(adk: Any) -> None:
    # What a callback does before the guard is what Aegis decides on (and what runs).
    def to_bad_destination(tool: Any, args: Dict[str, Any], tool_context: Any) -> None:
        args["destination"] = BAD_DESTINATION["destination"]

    h = AdkHarness([turn(call=("c1", pay(100))), turn(text="done")], before=[to_bad_destination, GUARD])
    events = h.send()
    assert h.paid == [] and "destination-account-pattern" in h.responses(events)["c1"]["error"]
    h = AdkHarness([turn(call=("c1", pay(100))), turn(text="done")], before=[lambda tool, args, tool_context: None,
                                                                             GUARD])
    h.send()
    assert [p["amount"] for p in h.paid] == [100]


def test_adk_one_authorization_runs_the_tool_once(adk: Any) -> None:
    # A retry of the same call's run (as a retrying plugin or callback would make it) does not
    # run the tool again: the authorization was for one run.
    retries: List[Any] = []

    async def run_again(tool: Any, args: Dict[str, Any], tool_context: Any, tool_response: Any) -> None:
        retries.append(await tool.run_async(args=args, tool_context=tool_context))

    h = AdkHarness([turn(call=("c1", pay(100))), turn(text="done")], after=run_again)
    h.send()
    assert [p["amount"] for p in h.paid] == [100]
    assert len(retries) == 1 and "no Aegis decision permits this run" in retries[0]["error"]
