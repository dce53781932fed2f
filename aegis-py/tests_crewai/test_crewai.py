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
import threading
from typing import Any, Dict, List, Optional, Tuple

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


def payment_tool(paid: List[Dict[str, Any]], fail: bool = False) -> Any:
    """A payments tool recording every run; with `fail`, it records the payment and then
    raises (a gateway timeout after the money moved: what CrewAI retries)."""
    from crewai.tools import tool

    @tool("create_payment")
    def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> str:
        """Create a payment."""
        paid.append({"amount": amount, "card_number": card_number})
        if fail:
            raise TimeoutError("the gateway timed out (the payment went through)")
        return "paid"

    return create_payment


class Harness:
    """Hooks on a fresh engine and task, and the payments tool they guard."""

    def __init__(self, **options: Any) -> None:
        from aegis.crewai import AegisToolHooks

        self.engine = options.pop("eng", None) or engine()
        self.chain = options.pop("chain", None) or finance_chain(unique_task("py-crewai-test"))
        self.hooks = AegisToolHooks(self.engine, self.chain, tool_names={"create_payment": TOOL}, **options)
        self.paid: List[Dict[str, Any]] = []
        self.tool = self.hooks.guard_tool(payment_tool(self.paid))
        # What CrewAI hands the hooks as `context.tool`.
        self.structured = self.tool.to_structured_tool()

    def context(self, args: Dict[str, Any]) -> Any:
        from crewai.hooks import ToolCallHookContext

        return ToolCallHookContext(tool_name="create_payment", tool_input=args, tool=self.structured)

    def run(self, context: Any) -> Any:
        """Runs the tool as CrewAI's ReAct path does after the before-hook: with the input dict."""
        return self.structured.invoke(input=context.tool_input)


def blocked(h: Harness, args: Dict[str, Any]) -> str:
    """Runs both hooks as CrewAI does for a blocked call (the after-hook gets a new context on
    the same input dict); returns what the model is told."""
    context = h.context(args)
    assert h.hooks.before_tool_call(context) is False
    after = h.context(context.tool_input)
    after.tool_result = "Tool execution blocked by hook. Tool: create_payment"
    told = h.hooks.after_tool_call(after)
    assert isinstance(told, str)
    return told


def react_llm(script: List[str]) -> Any:
    """A scripted LLM without native tool calling: CrewAI's ReAct path (text actions)."""
    from crewai.llms.base_llm import BaseLLM

    class ReAct(BaseLLM):
        script: List[str]
        seen: List[str] = []

        def supports_function_calling(self) -> bool:
            return False

        def get_input_tokens_count(self, messages: Any, tools: Any = None, response_model: Any = None) -> int:
            return 1

        def call(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            self.seen.append(json.dumps(messages, default=str))
            return self.script.pop(0) if self.script else "Thought: done\nFinal Answer: done"

    return ReAct(model="react", script=script)


def action(args: Dict[str, Any]) -> str:
    return "Thought: pay it\nAction: create_payment\nAction Input: " + json.dumps(args)


def kickoff(agent: Any) -> str:
    from crewai import Crew, Task

    return str(Crew(agents=[agent], tasks=[Task(description="pay", expected_output="done", agent=agent)]).kickoff())


def test_crewai_deny_sanitize_and_explain(crewai: Any) -> None:
    h = Harness()
    assert "destination-account-pattern" in blocked(h, dict(BAD_DESTINATION))
    card = dict(CARD)
    context = h.context(card)
    assert h.hooks.before_tool_call(context) is None
    assert card["card_number"] == "[REDACTED]"  # rewritten in place: what CrewAI calls the tool with
    assert context.tool_input is card
    assert h.run(context) == "paid" and h.paid == [{"amount": 300, "card_number": "[REDACTED]"}]
    assert h.hooks.after_tool_call(context) is None  # an allowed call's result is left alone


def test_crewai_approval_blocks_then_the_approved_retry_runs_once(crewai: Any) -> None:
    h = Harness()
    told = blocked(h, pay(9000))
    (pending,) = h.engine.pending_approvals()
    assert pending.approval_id in told and "same call again" in told
    # A refused approval holds nothing; an accepted one holds the token for that call only.
    h.hooks.approved(h.engine.approve(pending.approval_id, h.chain[:1]))
    assert "needs a human approval" in blocked(h, pay(9000))
    h.hooks.approved(h.engine.approve(pending.approval_id, approver_chain()))
    assert "needs a human approval" in blocked(h, pay(9500))  # other arguments: not unlocked
    assert h.hooks.before_tool_call(h.context(pay(9000))) is None
    assert "needs a human approval" in blocked(h, pay(9000))  # once


def test_crewai_console_approval_uses_crewai_human_input(crewai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from aegis.crewai import console_approval

    h = Harness(ask_human=console_approval)
    eng = h.engine
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
    assert h.hooks.before_tool_call(h.context(args)) is None and args == pay(9000)
    monkeypatch.setattr("builtins.input", person_at_the_console(""))
    assert "a human rejected this call" in blocked(h, pay(9100))
    monkeypatch.setattr("builtins.input", person_at_the_console("not-a-token"))
    assert "approval_token_invalid" in blocked(h, pay(9200))
    assert len(prompts) == 3


def test_crewai_hook_never_raises(crewai: Any) -> None:
    def broken_chain(context: Any) -> List[str]:
        raise RuntimeError("credential store down")

    # CrewAI treats a hook that raises as one that allowed the call: this one blocks instead.
    h = Harness(chain=broken_chain)
    assert "credential store down" in blocked(h, pay(100))
    h = Harness()
    assert "malformed_request" in blocked(h, {**pay(100), "amount": float("nan")})


# --- the tool checks too: one decision, one run -------------------------------------------------------

def test_crewai_a_guarded_tool_runs_once_per_decision(crewai: Any) -> None:
    from aegis import ReceiptInvalid, ReceiptMismatch

    h = Harness()
    # No decision at all (a call these hooks never saw): the tool does not run.
    with pytest.raises(ReceiptInvalid):
        h.tool.run(**pay(100))
    context = h.context(pay(100))
    assert h.hooks.before_tool_call(context) is None
    # Another argument set than the one permitted (a hook after Aegis rewrote it): refused.
    with pytest.raises(ReceiptMismatch):
        h.structured.invoke(input=pay(101))
    assert h.run(context) == "paid"
    # CrewAI's retry of the same call (again the same input, no hook in between): refused.
    with pytest.raises(ReceiptInvalid):
        h.run(context)
    assert h.hooks.after_tool_call(context) is None
    assert [p["amount"] for p in h.paid] == [100]
    # A permit the tool did not spend (CrewAI answered from its cache) ends with its call.
    cached = h.context(pay(102))
    assert h.hooks.before_tool_call(cached) is None
    h.hooks.after_tool_call(h.context(cached.tool_input))
    with pytest.raises(ReceiptInvalid):
        h.run(cached)
    assert [p["amount"] for p in h.paid] == [100]


def test_crewai_identical_calls_in_flight_each_run_once(crewai: Any) -> None:
    h = Harness()
    first, second = h.context(pay(200)), h.context(pay(200))
    assert h.hooks.before_tool_call(first) is None and h.hooks.before_tool_call(second) is None
    # The second call's tool runs and ends first: the first call still runs, once.
    h.run(second)
    h.hooks.after_tool_call(second)
    h.run(first)
    h.hooks.after_tool_call(first)
    assert [p["amount"] for p in h.paid] == [200, 200]


def test_crewai_hooks_registered_twice_decide_and_permit_once(crewai: Any) -> None:
    from aegis import ReceiptInvalid

    h = Harness()
    context = h.context(pay(300))
    # Globally and in a scope (or nested blocks): CrewAI calls the hook twice for one call.
    assert h.hooks.before_tool_call(context) is None and h.hooks.before_tool_call(context) is None
    h.run(context)
    with pytest.raises(ReceiptInvalid):
        h.run(context)
    refused = h.context(dict(BAD_DESTINATION))
    assert h.hooks.before_tool_call(refused) is False and h.hooks.before_tool_call(refused) is False
    assert [p["amount"] for p in h.paid] == [300]
    with h.hooks, h.hooks:
        from crewai.hooks.dispatch import InterceptionPoint, get_scoped_hooks
        assert get_scoped_hooks(InterceptionPoint.PRE_TOOL_CALL).count(h.hooks.before_tool_call) == 1
    assert get_scoped_hooks(InterceptionPoint.PRE_TOOL_CALL) == []


def test_crewai_an_unguarded_tool_is_refused(crewai: Any) -> None:
    from crewai.hooks import ToolCallHookContext

    h = Harness()
    plain = payment_tool(h.paid).to_structured_tool()
    context = ToolCallHookContext(tool_name="create_payment", tool_input=pay(100), tool=plain)
    assert h.hooks.before_tool_call(context) is False
    assert "not guarded" in str(h.hooks.after_tool_call(context))
    # Named in `unguarded_tools`, it is decided (and its retries are not bound).
    h = Harness(unguarded_tools=["create_payment"])
    context = ToolCallHookContext(tool_name="create_payment", tool_input=pay(100), tool=plain)
    assert h.hooks.before_tool_call(context) is None


def test_crewai_the_react_retry_of_a_failing_tool_runs_it_once(crewai: Any) -> None:
    from crewai import Agent

    from aegis.crewai import AegisToolHooks

    eng = engine()
    chain = finance_chain(unique_task("py-crewai-retry"))
    hooks = AegisToolHooks(eng, chain, tool_names={"create_payment": TOOL})
    paid: List[Dict[str, Any]] = []
    # The payment goes through, then the tool raises: CrewAI invokes it again with the
    # unfiltered arguments and retries `use()`, none of it through the hooks.
    llm = react_llm([action(pay(9000)), "Thought: done\nFinal Answer: waiting",
                     action(pay(9000)), "Thought: done\nFinal Answer: done"])
    agent = Agent(role="payer", goal="pay", backstory="pays", llm=llm, cache=False, max_iter=4,
                  tools=hooks.guard_tools([payment_tool(paid, fail=True)]))
    with hooks:
        kickoff(agent)
    (pending,) = eng.pending_approvals()
    assert paid == []
    hooks.approved(eng.approve(pending.approval_id, approver_chain()))
    with hooks:
        kickoff(agent)
    # One approval, one decision, one run (unguarded: six).
    assert [p["amount"] for p in paid] == [9000], paid


def test_crewai_a_hook_rewriting_the_input_after_aegis_is_caught_at_the_tool(crewai: Any) -> None:
    from crewai import Agent
    from crewai.hooks.dispatch import InterceptionPoint, register_scoped

    h = Harness()
    llm = react_llm([action(pay(100))])
    agent = Agent(role="payer", goal="pay", backstory="pays", llm=llm, cache=False, max_iter=2, tools=[h.tool])

    def inflate(context: Any) -> None:
        context.tool_input["amount"] = 900000  # runs after Aegis (a later scoped hook)

    with h.hooks:
        register_scoped(InterceptionPoint.PRE_TOOL_CALL, inflate)
        kickoff(agent)
    assert h.paid == []
    assert "not the ones Aegis permitted" in llm.seen[-1], llm.seen[-1]


def test_crewai_hooks_decide_only_their_own_scope_and_tools(crewai: Any) -> None:
    from crewai import Agent
    from crewai.hooks import get_before_tool_call_hooks

    a, b = Harness(), Harness()
    before = len(get_before_tool_call_hooks())

    def agent_of(h: Harness, amount: int) -> Any:
        return Agent(role="payer", goal="pay", backstory="pays", llm=react_llm([action(pay(amount))]), cache=False,
                     max_iter=2, tools=[h.tool])

    # Both guards active: b's tool is decided by b alone (a's engine never sees the call).
    with a.hooks, b.hooks:
        kickoff(agent_of(b, 9000))
    assert [p.tool for p in b.engine.pending_approvals()] == [TOOL] and a.engine.pending_approvals() == []
    assert len(get_before_tool_call_hooks()) == before  # scoped: nothing left registered globally
    # A crew kicked off in another thread (not from the block) is not decided by a's hooks, and
    # a's guarded tool does not run without them.
    ran: List[str] = []
    elsewhere = agent_of(a, 9000)
    with a.hooks:
        worker = threading.Thread(target=lambda: ran.append(kickoff(elsewhere)))
        worker.start()
        worker.join(60)
    assert ran and a.paid == [] and a.engine.pending_approvals() == []
    assert "no Aegis decision permits this run" in elsewhere.llm.seen[-1], elsewhere.llm.seen[-1]
    with a.hooks:
        kickoff(agent_of(a, 100))
    assert [p["amount"] for p in a.paid] == [100]


def test_crewai_a_held_token_is_for_its_own_agent_and_task(crewai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from crewai.hooks import ToolCallHookContext

    from aegis.crewai import AegisToolHooks

    eng = engine()
    mine, theirs = finance_chain(unique_task("py-crewai-mine")), finance_chain(unique_task("py-crewai-theirs"))
    # One guard for two agents, each in its own task (the chain chosen by the agent's role).
    hooks = AegisToolHooks(eng, lambda c: theirs if c.agent.role == "theirs" else mine,
                           tool_names={"create_payment": TOOL})
    paid: List[Dict[str, Any]] = []
    tool = hooks.guard_tool(payment_tool(paid)).to_structured_tool()

    def call(role: str, amount: int) -> Tuple[Optional[bool], Optional[str]]:
        context = ToolCallHookContext(tool_name="create_payment", tool_input=pay(amount), tool=tool,
                                      agent=SimpleNamespace(role=role))
        allowed = hooks.before_tool_call(context)
        if allowed is None:
            tool.invoke(input=context.tool_input)
        return allowed, hooks.after_tool_call(context)

    def approve(amount: int) -> None:
        (pending,) = [p for p in eng.pending_approvals() if p.status == "pending" and p.args["amount"] == amount]
        hooks.approved(eng.approve(pending.approval_id, approver_chain()))

    assert call("mine", 9000)[0] is False
    approve(9000)
    # The identical call of the other agent's task does not take the token (it would be refused
    # as another task's and lost): it waits for an approval of its own.
    allowed, told = call("theirs", 9000)
    assert allowed is False and "needs a human approval" in str(told), told
    assert call("mine", 9000) == (None, None) and [p["amount"] for p in paid] == [9000]

    # A chain whose identity the guard cannot read: the token for the same call is tried, the
    # core refuses it as another task's, and it is put back for its own call.
    monkeypatch.setattr("aegis.crewai._chain_identity", lambda chain: None)
    assert call("mine", 7000)[0] is False
    approve(7000)
    allowed, told = call("theirs", 7000)
    assert allowed is False and "needs a human approval" in str(told), told  # decided without it
    assert call("mine", 7000) == (None, None) and [p["amount"] for p in paid] == [9000, 7000]


def test_crewai_in_a_crew(crewai: Any) -> None:
    from crewai import Agent, Crew, Task
    from crewai.hooks import get_before_tool_call_hooks
    from crewai.llms.base_llm import BaseLLM

    paid: List[Dict[str, Any]] = []

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
    h = Harness()
    agent = Agent(role="payer", goal="pay", backstory="pays", llm=llm, tools=h.hooks.guard_tools([payment_tool(paid)]),
                  cache=False)
    before = len(get_before_tool_call_hooks())
    with h.hooks:
        Crew(agents=[agent], tasks=[Task(description="pay", expected_output="done", agent=agent)]).kickoff()
    assert len(get_before_tool_call_hooks()) == before  # never registered globally
    assert paid == [{"amount": 300, "card_number": "[REDACTED]"}]
    told = {m["tool_call_id"]: m["content"] for m in llm.seen[-1] if m.get("role") == "tool"}
    assert "destination-account-pattern" in told["c1"] and "needs a human approval" in told["c3"], told


def test_crewai_example_runs() -> None:
    examples = ROOT / "examples" / "python"
    out = subprocess.run([sys.executable, str(examples / "crewai_agent.py")], capture_output=True, text=True,
                         timeout=600, cwd=examples)
    assert out.returncode == 0 and "crewai agent: ok" in out.stdout, out.stdout + out.stderr
