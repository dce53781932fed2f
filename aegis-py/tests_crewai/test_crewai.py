"""The CrewAI hooks against what an agent may try: a denied call, a sanitized one, an approval
retried with a forged, replayed or foreign token, a rejection, an engine error. Each must leave
the tool unrun, or run it once with exactly the arguments the core names.

CrewAI pins `mcp<2` and `openai<3`, so these tests and its example run in a venv of their own
(`target/pyenv-crewai`, made by the test command, with a `.pth` file pointing at
`aegis-py/python`), not beside the other integrations."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest

import aegis
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task

ROOT = pathlib.Path(__file__).resolve().parents[2]
BAD_DESTINATION = {**pay(100), "destination": "DE89370400440532013000"}
CARD = {**pay(300), "card_number": "4242424242424242"}


# --- CrewAI ---------------------------------------------------------------------------------------

@pytest.fixture
def crewai(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CREWAI_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")
    import crewai

    return crewai


def hook_context(args: Dict[str, Any]) -> Any:
    from crewai.hooks import ToolCallHookContext

    return ToolCallHookContext(tool_name="create_payment", tool_input=args, tool=None)  # type: ignore[arg-type]


def crewai_hooks(**options: Any) -> Tuple[Any, aegis.Engine, List[str]]:
    from aegis.crewai import AegisToolHooks

    eng = engine()
    chain = finance_chain(unique_task("py-crewai-test"))
    return AegisToolHooks(eng, chain, tool_names={"create_payment": TOOL}, **options), eng, chain


def blocked(hooks: Any, args: Dict[str, Any]) -> str:
    """Runs both hooks as CrewAI does for a blocked call (the after-hook gets a new context on
    the same input dict); returns what the model is told."""
    context = hook_context(args)
    assert hooks.before_tool_call(context) is False
    after = hook_context(context.tool_input)
    after.tool_result = "Tool execution blocked by hook. Tool: create_payment"
    told = hooks.after_tool_call(after)
    assert isinstance(told, str)
    return told


def test_crewai_deny_sanitize_and_explain(crewai: Any) -> None:
    hooks, _, _ = crewai_hooks()
    assert "destination-account-pattern" in blocked(hooks, dict(BAD_DESTINATION))
    card = dict(CARD)
    context = hook_context(card)
    assert hooks.before_tool_call(context) is None
    assert card["card_number"] == "[REDACTED]"  # rewritten in place: what CrewAI calls the tool with
    assert context.tool_input is card
    assert hooks.after_tool_call(context) is None  # an allowed call's result is left alone


def test_crewai_approval_blocks_then_the_approved_retry_runs_once(crewai: Any) -> None:
    hooks, eng, chain = crewai_hooks()
    told = blocked(hooks, pay(9000))
    (pending,) = eng.pending_approvals()
    assert pending.approval_id in told and "same call again" in told
    # A refused approval holds nothing; an accepted one holds the token for that call only.
    hooks.approved(eng.approve(pending.approval_id, chain[:1]))
    assert "needs a human approval" in blocked(hooks, pay(9000))
    hooks.approved(eng.approve(pending.approval_id, approver_chain()))
    assert "needs a human approval" in blocked(hooks, pay(9500))  # other arguments: not unlocked
    assert hooks.before_tool_call(hook_context(pay(9000))) is None
    assert "needs a human approval" in blocked(hooks, pay(9000))  # once


def test_crewai_console_approval_uses_crewai_human_input(crewai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from aegis.crewai import console_approval

    hooks, eng, _ = crewai_hooks(ask_human=console_approval)
    prompts: List[str] = []

    def person_at_the_console(answer: str) -> Any:
        def read(prompt: str = "") -> str:
            (pending,) = [p for p in eng.pending_approvals() if p.status == "pending"][-1:]
            prompts.append(pending.approval_id)
            if answer == "approve":
                token = eng.approve(pending.approval_id, approver_chain()).override_token
                assert token
                return token
            return answer
        return read

    monkeypatch.setattr("builtins.input", person_at_the_console("approve"))
    args = pay(9000)
    assert hooks.before_tool_call(hook_context(args)) is None and args == pay(9000)
    monkeypatch.setattr("builtins.input", person_at_the_console(""))
    assert "a human rejected this call" in blocked(hooks, pay(9100))
    monkeypatch.setattr("builtins.input", person_at_the_console("not-a-token"))
    assert "approval_token_invalid" in blocked(hooks, pay(9200))
    assert len(prompts) == 3


def test_crewai_hook_never_raises(crewai: Any) -> None:
    from aegis.crewai import AegisToolHooks

    def broken_chain(context: Any) -> List[str]:
        raise RuntimeError("credential store down")

    # CrewAI treats a hook that raises as one that allowed the call: this one blocks instead.
    hooks = AegisToolHooks(engine(), broken_chain)
    assert "credential store down" in blocked(hooks, pay(100))
    hooks, _, _ = crewai_hooks()
    assert "malformed_request" in blocked(hooks, {**pay(100), "amount": float("nan")})


def test_crewai_in_a_crew(crewai: Any) -> None:
    from crewai import Agent, Crew, Task
    from crewai.hooks import get_before_tool_call_hooks
    from crewai.llms.base_llm import BaseLLM
    from crewai.tools import tool

    paid: List[Dict[str, Any]] = []

    @tool("create_payment")
    def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> str:
        """Create a payment."""
        paid.append({"amount": amount, "card_number": card_number})
        return "paid"

    class Scripted(BaseLLM):
        script: List[Any]
        seen: List[Any] = []

        def supports_function_calling(self) -> bool:
            return True

        def get_input_tokens_count(self, messages: Any, tools: Any = None, response_model: Any = None) -> int:
            return 1

        def call(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            self.seen.append(json.loads(json.dumps(messages, default=str)))
            return self.script.pop(0)

    def call(n: int, args: Dict[str, Any]) -> List[Dict[str, Any]]:
        return [{"id": f"c{n}", "type": "function", "function": {"name": "create_payment", "arguments": json.dumps(args)}}]

    llm = Scripted(model="scripted", script=[call(1, BAD_DESTINATION), call(2, CARD), call(3, pay(9000)), "done"])
    agent = Agent(role="payer", goal="pay", backstory="pays", llm=llm, tools=[create_payment], cache=False)
    hooks, _, _ = crewai_hooks()
    before = len(get_before_tool_call_hooks())
    with hooks:
        Crew(agents=[agent], tasks=[Task(description="pay", expected_output="done", agent=agent)]).kickoff()
    assert len(get_before_tool_call_hooks()) == before  # unregistered on exit
    assert paid == [{"amount": 300, "card_number": "[REDACTED]"}]
    told = {m["tool_call_id"]: m["content"] for m in llm.seen[-1] if m.get("role") == "tool"}
    assert "destination-account-pattern" in told["c1"] and "needs a human approval" in told["c3"], told


def test_crewai_example_runs() -> None:
    examples = ROOT / "examples" / "python"
    out = subprocess.run([sys.executable, str(examples / "crewai_agent.py")], capture_output=True, text=True,
                         timeout=600, cwd=examples)
    assert out.returncode == 0 and "crewai agent: ok" in out.stdout, out.stdout + out.stderr
