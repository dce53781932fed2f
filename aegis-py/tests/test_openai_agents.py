"""The OpenAI Agents SDK guard (`aegis.openai_agents`): Aegis decides every function-tool call,
approvals go through the SDK's interruptions and run state, handoffs mint delegations; and the
attacks on each step fail (scope escalation, token replay, arguments swapped in the run state,
a delegation spliced onto another task, a decision of one run used in another)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("agents")

from agents import (Agent, FunctionTool, RunConfig, RunContextWrapper, Runner, RunState,  # noqa: E402
                    ToolExecutionConfig, ToolGuardrailFunctionOutput, ToolInputGuardrail, ToolInputGuardrailData,
                    WebSearchTool, function_tool, handoff, set_tracing_disabled)
from agents.tool_context import ToolContext  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import aegis  # noqa: E402
from aegis.delegation import Delegator  # noqa: E402
from aegis.openai_agents import AegisGuard  # noqa: E402
from openai_agents_agent import ScriptedModel, call, outputs_seen, say  # noqa: E402
from payments_setup import (ACCOUNT, FINANCE_AGENT, ISSUER, ISSUER_KEY, PLANNER_KEY, PLANNER_SCOPE, TOOL,  # noqa: E402
                            approver_chain, engine, finance_chain, pay, unique_task)

NOT_RUN = "Aegis did not authorize this call; it was not run."

set_tracing_disabled(True)
ACTIONS = {"create_payment": TOOL, "create_invoice": "invoice.create", "export_ledger": "ledger.export"}
OTHER_ACCOUNT = "acct_ATTACKER0000000001"


class Tools:
    """The tools of one test and what each was called with."""

    def __init__(self) -> None:
        self.paid: List[Dict[str, Any]] = []
        self.invoices: List[str] = []
        self.exports: List[str] = []
        paid, invoices, exports = self.paid, self.invoices, self.exports

        @function_tool
        def create_payment(amount: int, currency: str, destination: str, card_number: Optional[str] = None,
                           memo: Optional[str] = None) -> str:
            """Create a payment."""
            paid.append({"amount": amount, "destination": destination, "card_number": card_number, "memo": memo})
            return f"paid {amount}"

        @function_tool
        def create_invoice(customer: str, amount: int) -> str:
            """Draft an invoice."""
            invoices.append(customer)
            return f"invoice for {customer}"

        @function_tool
        def export_ledger(period: str) -> str:
            """Export the ledger."""
            exports.append(period)
            return "ledger"

        self.create_payment, self.create_invoice, self.export_ledger = create_payment, create_invoice, export_ledger


def run(agent: Agent[Any], input: Any, **kwargs: Any) -> Any:
    return asyncio.run(Runner.run(agent, input, **kwargs))


def planner_root(task: str, scope: Any = PLANNER_SCOPE) -> str:
    return aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=task, intent="pay invoices",
                            scope=list(scope))


def finance_agent(tools: Tools, turns: List[List[Any]], *extra: FunctionTool) -> Agent[Any]:
    return Agent(name="finance-agent", model=ScriptedModel(turns), tools=[tools.create_payment, *extra])


def guarded_finance(eng: aegis.Engine, tools: Tools, turns: List[List[Any]], task: str) -> tuple:
    """A finance agent guarded on the story's chain (planner → finance-agent)."""
    guard = AegisGuard(eng, actions=ACTIONS)
    agent = Agent(name="finance-agent", model=ScriptedModel(turns), tools=[guard.tool(tools.create_payment,
                                                                                      finance_chain(task))])
    return guard, agent


def pause_for_9000(eng: aegis.Engine, tools: Tools, task: str, then: Optional[List[List[Any]]] = None) -> tuple:
    guard, agent = guarded_finance(eng, tools, [[call("call_9", "create_payment", pay(9000))],
                                                *(then or [[say("done")]])], task)
    result = run(agent, "pay")
    assert tools.paid == [] and len(result.interruptions) == 1, result.interruptions
    return guard, agent, result, result.interruptions[0]


def seen(agent: Agent[Any]) -> List[str]:
    assert isinstance(agent.model, ScriptedModel)
    return outputs_seen(agent.model)


# --- one agent -----------------------------------------------------------------------------------


def test_an_allowed_call_runs_and_a_denied_one_is_rejected_with_a_message_the_model_sees() -> None:
    eng, tools = engine(), Tools()
    guard, agent = guarded_finance(eng, tools, [
        [call("call_1", "create_payment", pay(1200)),
         call("call_2", "create_payment", {**pay(300), "destination": "DE89370400440532013000"})],
        [say("done")]], unique_task("oa-deny"))
    result = run(agent, "pay")
    assert [p["amount"] for p in tools.paid] == [1200]
    outputs = seen(agent)
    assert outputs[0] == "paid 1200"
    assert outputs[1].startswith("Aegis denied this call: policy_forbid (destination-account-pattern)"), outputs
    rejected = [r for r in result.tool_input_guardrail_results if r.output.behavior["type"] == "reject_content"]
    assert len(rejected) == 1 and rejected[0].guardrail.get_name() == "aegis"
    assert rejected[0].output.output_info["code"] == "policy_forbid"
    assert result.interruptions == []


def test_an_approved_call_resumes_through_the_run_state_and_runs_once() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-approve")
    guard, agent, result, item = pause_for_9000(eng, tools, task)
    approval_id = guard.approval_id(item)
    pending = guard.pending(item)
    assert approval_id and pending is not None and pending.approval_id == approval_id
    assert pending.agent_id == FINANCE_AGENT and dict(pending.args) == pay(9000)
    approved = eng.approve(approval_id, approver_chain())
    assert approved.accepted and approved.override_token
    state = result.to_state()
    guard.approve(state, item, override_token=approved.override_token)
    result = run(agent, state)
    assert [p["amount"] for p in tools.paid] == [9000] and result.final_output == "done"
    assert [e.tool for e in eng.ledger(task)] == ["aegis.approve", TOOL]
    assert eng.pending_approvals() == []


def test_approving_only_in_the_sdk_runs_nothing() -> None:
    eng, tools = engine(), Tools()
    guard, agent, result, item = pause_for_9000(eng, tools, unique_task("oa-sdk-only"))
    state = result.to_state()
    state.approve(item, always_approve=True)  # no human approved in Aegis
    run(agent, state)
    assert tools.paid == []
    assert "needs a human approval in Aegis" in seen(agent)[-1], seen(agent)


def test_a_rejected_call_does_not_run() -> None:
    eng, tools = engine(), Tools()
    guard, agent, result, item = pause_for_9000(eng, tools, unique_task("oa-reject"))
    approval_id = guard.approval_id(item)
    state = result.to_state()
    guard.reject(state, item)
    run(agent, state)
    assert tools.paid == [] and seen(agent)[-1] == f"a human rejected this call (approval {approval_id})"


def test_replaying_the_approval_token_is_refused() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-replay")
    guard, agent, result, item = pause_for_9000(eng, tools, task, then=[
        [say("done")], [call("call_10", "create_payment", pay(9000))], [say("again")]])
    token = eng.approve(guard.approval_id(item) or "", approver_chain()).override_token
    assert token
    state = result.to_state()
    guard.approve(state, item, override_token=token)
    run(agent, state)
    assert [p["amount"] for p in tools.paid] == [9000]
    # The same payment asked for again, approved in the SDK with the used token: refused.
    again = run(agent, "pay it again")
    assert len(again.interruptions) == 1
    state = again.to_state()
    guard.approve(state, again.interruptions[0], override_token=token)
    run(agent, state)
    assert [p["amount"] for p in tools.paid] == [9000]
    assert "approval_replayed" in seen(agent)[-1], seen(agent)


def test_a_token_for_one_call_does_not_approve_another() -> None:
    eng, tools = engine(), Tools()
    guard, agent = guarded_finance(eng, tools, [
        [call("call_a", "create_payment", pay(9000)), call("call_b", "create_payment", pay(9500))],
        [say("done")]], unique_task("oa-cross"))
    result = run(agent, "pay")
    first, second = result.interruptions
    token_a = eng.approve(guard.approval_id(first) or "", approver_chain()).override_token
    state = result.to_state()
    guard.approve(state, first, override_token=token_a)
    guard.approve(state, second, override_token=token_a)  # the token of the other call
    run(agent, state)
    assert [p["amount"] for p in tools.paid] == [9000]
    assert any("approval_args_mismatch" in o for o in seen(agent)), seen(agent)


def test_arguments_swapped_in_the_run_state_after_approval_are_refused() -> None:
    from agents._tool_invocation import tool_invocation_identity

    def fingerprint(args: Dict[str, Any]) -> str:
        """The SDK's (unkeyed) fingerprint of the call, as whoever holds the state recomputes it."""
        identity = tool_invocation_identity({"type": "function_call", "call_id": "call_9", "name": "create_payment",
                                             "arguments": json.dumps(args)})
        assert identity is not None
        return identity[2]

    eng, tools = engine(), Tools()
    guard, agent, result, item = pause_for_9000(eng, tools, unique_task("oa-swap"))
    token = eng.approve(guard.approval_id(item) or "", approver_chain()).override_token
    # Whoever holds the serialized run state rewrites the destination of the approved call, and
    # the SDK's fingerprint of it (which alone would have caught a careless rewrite).
    swapped_args = {**pay(9000), "destination": OTHER_ACCOUNT}
    serialized = result.to_state().to_string()
    assert fingerprint(pay(9000)) in serialized
    tampered = serialized.replace(ACCOUNT, OTHER_ACCOUNT).replace(fingerprint(pay(9000)), fingerprint(swapped_args))
    state = asyncio.run(RunState.from_string(agent, tampered))
    [swapped] = state.get_interruptions()
    assert json.loads(swapped.arguments or "{}")["destination"] == OTHER_ACCOUNT
    guard.approve(state, swapped, override_token=token)
    run(agent, state)
    assert tools.paid == []
    assert "approval_args_mismatch" in seen(agent)[-1], seen(agent)


def test_a_sanitized_call_runs_with_the_redacted_arguments() -> None:
    eng, tools = engine(), Tools()
    card = {**pay(100), "card_number": "4242424242424242", "memo": "card 4242 4242 4242 4242, thanks"}
    guard, agent = guarded_finance(eng, tools, [[call("call_s", "create_payment", card)], [say("done")]],
                                   unique_task("oa-sanitize"))
    run(agent, "pay")
    assert tools.paid == [{"amount": 100, "destination": ACCOUNT, "card_number": "[REDACTED]",
                           "memo": "card [REDACTED:payment_card], thanks"}]


def test_an_engine_error_fails_closed() -> None:
    eng, tools = engine(), Tools()
    guard = AegisGuard(eng, actions=ACTIONS)
    broken = guard.tool(tools.create_payment, lambda _ctx: [123])  # type: ignore[list-item]
    agent = Agent(name="finance-agent", model=ScriptedModel([[call("call_e", "create_payment", pay(10))],
                                                              [say("done")]]), tools=[broken])
    run(agent, "pay")
    assert tools.paid == []
    assert seen(agent)[-1].startswith("Aegis could not decide on this call (malformed_request)"), seen(agent)


def test_the_guardrails_running_before_the_pause_do_not_decide_twice() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-pre")
    config = RunConfig(tool_execution=ToolExecutionConfig(pre_approval_tool_input_guardrails=True))
    guard, agent = guarded_finance(eng, tools, [[call("call_p", "create_payment", pay(9000))], [say("done")]], task)
    result = run(agent, "pay", run_config=config)
    [item] = result.interruptions
    # One approval asked for, not a second one by the guardrail's run before the pause.
    assert [p.approval_id for p in eng.pending_approvals()] == [guard.approval_id(item)]
    token = eng.approve(guard.approval_id(item) or "", approver_chain()).override_token
    state = result.to_state()
    guard.approve(state, item, override_token=token)
    run(agent, state, run_config=config)
    assert [p["amount"] for p in tools.paid] == [9000]
    assert eng.pending_approvals() == []


def test_a_tool_called_outside_the_guard_runs_nothing() -> None:
    eng, tools = engine(), Tools()
    guarded = AegisGuard(eng, actions=ACTIONS).tool(tools.create_payment, finance_chain(unique_task("oa-direct")))

    class Context:
        tool_call_id = "call_direct"

    # Invoked directly (no decision was made for this call): the wrapped tool refuses.
    out = asyncio.run(guarded.on_invoke_tool(Context(), json.dumps(pay(10))))  # type: ignore[arg-type]
    assert out == NOT_RUN and tools.paid == []


def test_tools_aegis_cannot_guard_are_refused() -> None:
    eng, tools = engine(), Tools()
    guard = AegisGuard(eng, actions=ACTIONS)
    delegator = Delegator([planner_root(unique_task("oa-types"))], PLANNER_KEY)
    with pytest.raises(TypeError):
        guard.agent(Agent(name="browser", tools=[WebSearchTool()]), delegator)
    nested = Agent(name="helper", tools=[tools.create_payment])
    with pytest.raises(TypeError):
        guard.agent(Agent(name="planner", tools=[nested.as_tool("helper", "helps")]), delegator)
    # An agent-as-tool whose agent this guard guards is accepted.
    inner = guard.agent(nested, delegator.child("helper", [TOOL]))
    guard.agent(Agent(name="planner", tools=[inner.as_tool("helper", "helps")]), delegator)


# --- runs sharing one guard ------------------------------------------------------------------------


def mallory_chain() -> List[str]:
    """A chain that may not pay: the planner's own root, without the payments tool in scope."""
    return [planner_root(unique_task("oa-mallory"), ["invoice.create"])]


def test_a_decision_made_in_one_run_is_never_used_in_another() -> None:
    # Two runs of one guarded agent, each with a call `call_1` to pay the same 100. Mallory's
    # chain may not pay, Alice's may. The SDK is made to interleave them the bad way: Mallory's
    # call is decided (denied), then Alice's (allowed), then Mallory's reaches Aegis's guardrail.
    eng, tools = engine(), Tools()
    alice_task = unique_task("oa-alice")
    guard = AegisGuard(eng, actions=ACTIONS)
    events: Dict[str, asyncio.Event] = {}

    async def interleave(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        # The tool's own guardrail: it runs after the call was decided, before Aegis's guardrail.
        if data.context.context["who"] == "mallory":
            events["mallory_decided"].set()
            await events["alice_decided"].wait()
        else:
            events["alice_decided"].set()
            await events["mallory_done"].wait()
        return ToolGuardrailFunctionOutput.allow(None)

    tools.create_payment.tool_input_guardrails = [ToolInputGuardrail(guardrail_function=interleave)]
    payment = guard.tool(tools.create_payment, lambda ctx: ctx.context["chain"])

    def payer() -> Agent[Any]:
        return Agent(name="finance-agent", model=ScriptedModel([[call("call_1", "create_payment", pay(100))],
                                                                [say("done")]]), tools=[payment])

    mallory, alice = payer(), payer()

    async def both() -> List[Any]:
        events.update({name: asyncio.Event() for name in ("mallory_decided", "alice_decided", "mallory_done")})

        async def mallory_run() -> Any:
            try:
                return await Runner.run(mallory, "pay", context={"who": "mallory", "chain": mallory_chain()})
            finally:
                events["mallory_done"].set()

        async def alice_run() -> Any:
            await events["mallory_decided"].wait()
            return await Runner.run(alice, "pay", context={"who": "alice", "chain": finance_chain(alice_task)})

        return list(await asyncio.gather(mallory_run(), alice_run()))

    asyncio.run(asyncio.wait_for(both(), timeout=60))
    assert [p["amount"] for p in tools.paid] == [100], tools.paid  # Alice's payment, once
    assert seen(mallory)[-1].startswith("Aegis denied this call: tool_not_in_scope"), seen(mallory)
    assert seen(alice)[-1] == "paid 100", seen(alice)
    assert [(e.tool, e.agent_id) for e in eng.ledger(alice_task)] == [(TOOL, FINANCE_AGENT)]


def test_the_hooks_of_one_call_act_only_on_its_runs_decision_and_chain() -> None:
    # The same attack, the hooks driven by hand in the bad order; then a chain source that hands
    # out another chain between the decision and the guardrail, within one run.
    eng, tools = engine(), Tools()
    presented = {"mallory": mallory_chain(), "alice": finance_chain(unique_task("oa-hooks"))}
    guard = AegisGuard(eng, actions=ACTIONS)
    payment = guard.tool(tools.create_payment, lambda ctx: presented[ctx.context])
    agent = Agent(name="finance-agent", tools=[payment])
    [aegis_guardrail] = payment.tool_input_guardrails or []
    raw = call("call_1", "create_payment", pay(100))
    assert callable(payment.needs_approval)

    def guardrail(ctx: ToolContext[Any]) -> Any:
        return asyncio.run(aegis_guardrail.run(ToolInputGuardrailData(context=ctx, agent=agent))).behavior

    mallory_run, alice_run = RunContextWrapper(context="mallory"), RunContextWrapper(context="alice")
    assert asyncio.run(payment.needs_approval(mallory_run, pay(100), "call_1")) is False  # denied
    assert asyncio.run(payment.needs_approval(alice_run, pay(100), "call_1")) is False  # allowed
    mallory_call = ToolContext.from_agent_context(mallory_run, "call_1", tool_call=raw)
    refused = guardrail(mallory_call)
    assert refused["type"] == "reject_content" and "tool_not_in_scope" in refused["message"], refused
    assert asyncio.run(payment.on_invoke_tool(mallory_call, raw.arguments)) == NOT_RUN and tools.paid == []

    # Within Alice's run: her call was decided on her chain; the source now hands out Mallory's.
    presented["alice"] = presented["mallory"]
    alice_call = ToolContext.from_agent_context(alice_run, "call_1", tool_call=raw)
    refused = guardrail(alice_call)
    assert refused["type"] == "reject_content" and "tool_not_in_scope" in refused["message"], refused
    assert asyncio.run(payment.on_invoke_tool(alice_call, raw.arguments)) == NOT_RUN and tools.paid == []


def test_approvals_and_tokens_stay_with_the_run_that_paused() -> None:
    # Two runs of one guarded agent pause on the same call id and arguments, each for its task.
    eng, tools = engine(), Tools()
    guard = AegisGuard(eng, actions=ACTIONS)
    payment = guard.tool(tools.create_payment, lambda ctx: ctx.context)
    tasks = {who: unique_task(f"oa-paused-{who}") for who in ("alice", "bob")}
    agents = {who: Agent(name="finance-agent", tools=[payment], model=ScriptedModel([
        [call("call_9", "create_payment", pay(9000))], [say("done")]])) for who in tasks}
    results = {who: run(agents[who], "pay", context=finance_chain(tasks[who])) for who in tasks}
    items = {who: results[who].interruptions[0] for who in tasks}
    states = {who: results[who].to_state() for who in tasks}
    with pytest.raises(ValueError):
        guard.approval_id(items["alice"])  # which run's? Not guessed.
    ids = {who: guard.approval_id(items[who], states[who]) for who in tasks}
    assert ids["alice"] and ids["bob"] and ids["alice"] != ids["bob"]
    token = eng.approve(ids["alice"] or "", approver_chain()).override_token
    guard.approve(states["alice"], items["alice"], override_token=token)
    guard.approve(states["bob"], items["bob"])  # approved in the SDK only
    run(agents["bob"], states["bob"])
    assert tools.paid == [] and "needs a human approval in Aegis" in seen(agents["bob"])[-1]
    run(agents["alice"], states["alice"])
    assert [p["amount"] for p in tools.paid] == [9000]
    assert [e.tool for e in eng.ledger(tasks["alice"])] == ["aegis.approve", TOOL] and eng.ledger(tasks["bob"]) == []


# --- agents as tools -------------------------------------------------------------------------------


class Invoice(BaseModel):
    customer: str
    amount: int


def test_an_agent_tool_resumes_after_an_approval_in_its_nested_run_and_is_decided_once() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-nested")
    # The planner settles an invoice through the finance agent, called as a tool (decided as
    # `invoice.create` on the planner's chain); the finance agent's 9000 pauses its nested run.
    guard = AegisGuard(eng, actions={**ACTIONS, "settle": "invoice.create"})
    delegator = Delegator([planner_root(task)], PLANNER_KEY)
    finance = guard.agent(finance_agent(tools, [[call("call_9", "create_payment", pay(9000))], [say("paid")]]),
                          delegator.child("finance-agent", [TOOL]))
    planner = guard.agent(Agent(name="planner", model=ScriptedModel([
        [call("call_s", "settle", {"customer": "ACME", "amount": 9000})], [say("settled")], [say("again")]]),
        tools=[finance.as_tool("settle", "Settle an invoice.", parameters=Invoice)]), delegator)
    result = run(planner, "settle ACME")
    [item] = result.interruptions
    state = result.to_state()
    pending = guard.pending(item, state)
    assert pending is not None and pending.agent_id == FINANCE_AGENT and tools.paid == []
    approved = eng.approve(pending.approval_id, approver_chain())
    guard.approve(state, item, override_token=approved.override_token)
    result = run(planner, state)
    assert [p["amount"] for p in tools.paid] == [9000] and result.final_output == "settled"
    # The outer call was decided once (not again when the nested run resumed), the payment once.
    assert [(e.tool, e.agent_id) for e in eng.ledger(task)] == [
        ("invoice.create", "planner"), ("aegis.approve", "finance-approver"), (TOOL, FINANCE_AGENT)]
    # The pass the outer call held while its nested run was paused did not outlive that run.
    assert all(not r.held and not r.tokens for r in guard._runs.values())
    # The same state resumed again (a replay of the paused run): nothing runs twice.
    run(planner, state)
    assert [p["amount"] for p in tools.paid] == [9000] and len(eng.ledger(task)) == 3


def test_an_agent_tool_whose_nested_call_is_rejected_resumes_without_running_it() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-nested-reject")
    guard = AegisGuard(eng, actions={**ACTIONS, "settle": "invoice.create"})
    delegator = Delegator([planner_root(task)], PLANNER_KEY)
    finance = guard.agent(finance_agent(tools, [[call("call_9", "create_payment", pay(9000))], [say("not paid")]]),
                          delegator.child("finance-agent", [TOOL]))
    planner = guard.agent(Agent(name="planner", model=ScriptedModel([
        [call("call_s", "settle", {"customer": "ACME", "amount": 9000})], [say("left unpaid")]]),
        tools=[finance.as_tool("settle", "Settle an invoice.", parameters=Invoice)]), delegator)
    result = run(planner, "settle ACME")
    [item] = result.interruptions
    state = result.to_state()
    approval_id = guard.approval_id(item, state)
    guard.reject(state, item)
    result = run(planner, state)
    assert tools.paid == [] and result.final_output == "left unpaid"
    assert seen(finance)[-1] == f"a human rejected this call (approval {approval_id})", seen(finance)


# --- handoffs ------------------------------------------------------------------------------------


def handoff_story(eng: aegis.Engine, tools: Tools, task: str, finance_turns: List[List[Any]],
                  *extra: FunctionTool, planner_scope: Any = PLANNER_SCOPE) -> tuple:
    guard = AegisGuard(eng, actions=ACTIONS)
    finance = finance_agent(tools, finance_turns, *extra)
    planner = Agent(name="planner", model=ScriptedModel([[call("call_h", "transfer_to_finance_agent", {})]]),
                    tools=[tools.create_invoice], handoffs=[finance])
    delegator = Delegator([planner_root(task, planner_scope)], PLANNER_KEY)
    return guard, guard.agent(planner, delegator), delegator


def test_a_handoff_mints_the_sub_agents_delegation_and_it_calls_its_own_tools() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-handoff")
    guard, planner, delegator = handoff_story(eng, tools, task, [
        [call("call_1", "create_payment", pay(1200))], [say("paid")]])
    assert delegator.children() and "finance-agent" in delegator.children()
    result = run(planner, "pay")
    assert [p["amount"] for p in tools.paid] == [1200] and result.final_output == "paid"
    sub = guard.delegator_of(result.last_agent)
    assert sub is delegator.children()["finance-agent"]
    assert sub.agent_id == FINANCE_AGENT and sub.scope == (TOOL,)
    chain = sub.chain
    assert chain[0] == delegator.chain[0] and len(chain) == 2
    assert [(e.tool, e.agent_id, e.lineage) for e in eng.ledger(task)] == [(TOOL, FINANCE_AGENT, ("planner",))]
    assert eng.ledger(task)[0].key == sub.key.kid != PLANNER_KEY.kid


def test_a_sub_agent_calling_a_tool_outside_its_delegators_scope_is_denied() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-escalate")
    guard, planner, delegator = handoff_story(eng, tools, task, [
        [call("call_x", "export_ledger", {"period": "2026-Q3"})], [say("tried")]], tools.export_ledger)
    result = run(planner, "export")
    assert tools.exports == []
    sub = guard.delegator_of(result.last_agent)
    assert sub is not None and "ledger.export" not in sub.scope
    output = seen(result.last_agent)[-1]
    assert output.startswith("Aegis denied this call: tool_not_in_scope"), output


def test_the_sub_agent_cannot_approve_its_own_call_nor_can_its_delegator() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-sod")
    # The planner even holds `aegis.approve`; the finance agent's delegation never does.
    guard, planner, delegator = handoff_story(eng, tools, task, [
        [call("call_9", "create_payment", pay(9000))], [say("paid")]],
        planner_scope=[*PLANNER_SCOPE, "aegis.approve"])
    result = run(planner, "pay")
    [item] = result.interruptions
    approval_id = guard.approval_id(item)
    sub = guard.delegator_of(result.last_agent)
    assert approval_id and sub is not None and "aegis.approve" not in sub.scope
    for chain in (sub.chain, delegator.chain):
        refused = eng.approve(approval_id, chain)
        assert not refused.accepted and refused.reasons[0].code == "approver_conflict", refused
    # A delegation the planner mints for itself to approve through is a delegate too.
    approver = delegator.child("approver", ["aegis.approve"])
    refused = eng.approve(approval_id, approver.chain)
    assert not refused.accepted and refused.reasons[0].code == "approver_conflict", refused
    approved = eng.approve(approval_id, approver_chain())
    state = result.to_state()
    guard.approve(state, item, override_token=approved.override_token)
    result = run(planner, state)
    assert [p["amount"] for p in tools.paid] == [9000] and result.final_output == "paid"


def test_the_delegator_itself_may_not_pay_and_a_sub_agent_may_not_draft_then_pay() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-duties")
    guard = AegisGuard(eng, actions=ACTIONS)
    clerk = Agent(name="clerk", model=ScriptedModel([
        [call("call_i", "create_invoice", {"customer": "ACME", "amount": 100})],
        [call("call_p", "create_payment", pay(100))], [say("done")]]),
        tools=[tools.create_invoice, tools.create_payment])
    planner = Agent(name="planner", model=ScriptedModel([
        [call("call_0", "create_payment", pay(100))], [call("call_h", "transfer_to_clerk", {})]]),
        tools=[tools.create_payment], handoffs=[clerk])
    result = run(guard.agent(planner, Delegator([planner_root(task)], PLANNER_KEY)), "bill and pay")
    assert tools.invoices == ["ACME"] and tools.paid == []
    # The guarded copies share the scripted models: the planner's was told why it may not pay.
    assert "executor-differs-from-initiator" in seen(planner)[0], seen(planner)
    assert "drafter-does-not-pay" in seen(result.last_agent)[-1], seen(result.last_agent)
    assert [(e.tool, e.agent_id) for e in eng.ledger(task)] == [("invoice.create", "planner/clerk")]


def test_a_custom_handoff_and_a_handoff_back_keep_each_agents_chain() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-back")
    guard = AegisGuard(eng, actions=ACTIONS)
    handed: List[str] = []
    finance = Agent(name="finance-agent", model=ScriptedModel([
        [call("call_1", "create_payment", pay(100))], [call("call_b", "transfer_to_planner", {})]]),
        tools=[tools.create_payment])
    planner = Agent(name="planner", model=ScriptedModel([
        [call("call_h", "to_finance", {})], [call("call_i", "create_invoice", {"customer": "ACME", "amount": 1})],
        [say("all done")]]), tools=[tools.create_invoice],
        handoffs=[handoff(finance, tool_name_override="to_finance", on_handoff=lambda _ctx: handed.append("x"))])
    finance.handoffs = [planner]
    result = run(guard.agent(planner, Delegator([planner_root(task)], PLANNER_KEY)), "pay then bill")
    assert handed == ["x"] and result.final_output == "all done"
    assert [(e.tool, e.agent_id) for e in eng.ledger(task)] == [(TOOL, FINANCE_AGENT), ("invoice.create", "planner")]


def test_a_sub_agents_delegation_spliced_onto_another_task_is_refused() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-splice")
    guard, planner, delegator = handoff_story(eng, tools, task, [
        [call("call_1", "create_payment", pay(100))], [say("paid")]])
    run(planner, "pay")
    sub_link = delegator.children()["finance-agent"].chain[-1]
    other = planner_root(unique_task("oa-splice-other"))
    spliced = eng.authorize([other, sub_link], TOOL, pay(100))
    assert spliced.outcome == "deny" and spliced.codes == ("parent_mismatch",), spliced
    # The task ended: the cached delegation dies with it, and the guarded sub-agent runs nothing.
    eng.end_task(task)
    tools2 = Tools()
    guard2 = AegisGuard(eng, actions=ACTIONS)
    finance = finance_agent(tools2, [[call("call_2", "create_payment", pay(100))], [say("tried")]])
    result = run(guard2.agent(finance, delegator.children()["finance-agent"]), "pay")
    assert tools2.paid == [] and "task_ended" in seen(result.last_agent)[-1]


def test_a_sub_agent_two_handoffs_down_gets_its_tools() -> None:
    eng, tools, task = engine(), Tools(), unique_task("oa-two-down")
    guard = AegisGuard(eng, actions=ACTIONS)
    payer = Agent(name="payer", model=ScriptedModel([[call("call_1", "create_payment", pay(1200))], [say("paid")]]),
                  tools=[tools.create_payment])
    triage = Agent(name="triage", model=ScriptedModel([[call("call_t", "transfer_to_payer", {})]]), handoffs=[payer])
    planner = Agent(name="planner", model=ScriptedModel([[call("call_h", "transfer_to_triage", {})]]),
                    tools=[tools.create_invoice], handoffs=[triage])
    triage.handoffs.append(planner)  # a handoff back up widens nothing
    delegator = Delegator([planner_root(task)], PLANNER_KEY)
    result = run(guard.agent(planner, delegator), "pay")
    assert [p["amount"] for p in tools.paid] == [1200] and result.final_output == "paid"
    middle = delegator.children()["triage"]
    assert middle.scope == (TOOL,)  # its own tools (none) and the payer's, not the planner's
    sub = guard.delegator_of(result.last_agent)
    assert sub is middle.children()["payer"] and sub.scope == (TOOL,)
    assert [(e.tool, e.agent_id) for e in eng.ledger(task)] == [(TOOL, "planner/triage/payer")]
