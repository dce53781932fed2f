"""OpenAI Agents SDK guard: every function-tool call of an agent is authorized by Aegis first.

:class:`AegisGuard` wraps the SDK's ``FunctionTool`` objects (:meth:`AegisGuard.tool`) or whole
agents with their handoffs (:meth:`AegisGuard.agent`). Each wrapped tool gets:

- ``needs_approval``: Aegis decides on the call once, with the arguments the model sent. When the
  core says to await a human approval, the SDK pauses the run with an interruption
  (``result.interruptions``).
- a tool input guardrail: a refused call is rejected with a message the model sees
  (``reject_content``), and the tool does not run. After an approval, this is where the resumed
  run presents the human's override token to Aegis.
- an invoker that runs the tool with exactly the arguments the core's enforcement names (the
  sanitized ones when a policy redacts), and nothing when Aegis did not say to run.

Approving: a human approves in Aegis (``engine.approve(approval_id, approver_chain)``, where
``guard.approval_id(item)`` names the approval an interruption waits for), then
``guard.approve(state, item, override_token=token)`` hands the token to the guard and approves
the item in the SDK run state; ``Runner.run(agent, state)`` resumes, and the call runs once.
Approving in the SDK without a token runs nothing: Aegis still awaits its approval. Rejecting is
``state.reject(item)`` (or ``guard.reject``).

Handoffs: :meth:`AegisGuard.agent` guards an agent and every agent its handoffs reach. Each
sub-agent acts on a delegation minted for it by an :class:`aegis.delegation.Delegator` (scoped to
its own tools, appended to the delegating agent's chain) when work is handed off to it, so Aegis
attests it as ``planner/finance-agent`` and segregation of duties holds across the chain.

Install with ``pip install "aegis-sod[openai-agents]"``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import weakref
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from agents import (Agent, FunctionTool, Handoff, RunContextWrapper, RunState, ToolApprovalItem,
                    ToolGuardrailFunctionOutput, ToolInputGuardrail, ToolInputGuardrailData, handoff)
from agents.tool_context import ToolContext

from . import AegisError, ApprovalRequired, Denied, Enforced, Engine, PendingApproval, _thaw, args_to_run
from .delegation import Delegator

__all__ = ["AegisGuard", "ChainSource"]

#: Where a guarded tool's credential chain comes from: the chain itself, a :class:`Delegator`
#: (its current chain), or a function of the SDK run context returning it.
ChainSource = Union[Sequence[str], Delegator, Callable[[RunContextWrapper[Any]], Sequence[str]]]

_Key = Tuple[str, str]  # (SDK tool name, call id): one tool call of a run

GUARDRAIL_NAME = "aegis"


@dataclasses.dataclass
class _Decided:
    """Aegis's decision on one call, made when the SDK asked whether it needs approval and
    consumed by the guardrail of that same call."""

    args: str  # the canonical JSON of the arguments decided on
    enforced: Optional[Enforced]
    error: Optional[AegisError]
    interrupting: bool  # whether the SDK was told to pause for an approval
    pre_passed: bool = False


def _canonical(args: Any) -> str:
    return json.dumps(_thaw(args), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(value: str) -> Any:
    raise ValueError(f"not JSON: {value}")


def _parse_args(raw: str) -> Dict[str, Any]:
    """The call's arguments as the SDK's approval check reads them: a JSON object (NaN and
    Infinity are not JSON); anything else raises `ValueError`."""
    parsed = json.loads(raw or "{}", parse_constant=_reject_constant)
    if not isinstance(parsed, dict):
        raise ValueError("the arguments are not a JSON object")
    return parsed


def _explain(refused: Union[Denied, ApprovalRequired]) -> str:
    reasons = "; ".join(f"{r.code}" + (f" ({r.policy_id})" if r.policy_id else "") + f": {r.message}"
                        for r in refused.decision.reasons)
    return f"Aegis denied this call: {reasons or refused.message}"


def _could_not_decide(error: AegisError) -> ToolGuardrailFunctionOutput:
    # Fail closed: an error where a decision was expected rejects the call.
    return ToolGuardrailFunctionOutput.reject_content(
        f"Aegis could not decide on this call ({error.code}): {error.message}", {"code": error.code})


def _pre_approval_guardrails(ctx: ToolContext[Any]) -> bool:
    """Whether the run asks the SDK to run input guardrails before pausing for an approval."""
    execution = getattr(ctx.run_config, "tool_execution", None)
    return bool(getattr(execution, "pre_approval_tool_input_guardrails", False))


class AegisGuard:
    """Guards the function tools of OpenAI Agents SDK agents with one :class:`aegis.Engine`.

    `actions` maps SDK tool names to Aegis tool names where they differ (SDK function names
    cannot hold dots: ``{"create_payment": "stripe.create_payment"}``). The guard keeps, per
    call, the decision made before the SDK asked for an approval and the override token a
    human's approval yielded until the resumed run presents it, so the run is resumed with the
    same guard (or, in another process, after :meth:`approve` on a new one). Safe to share
    between runs: calls are told apart by their call ids."""

    def __init__(self, engine: Engine, *, actions: Optional[Mapping[str, str]] = None) -> None:
        self._engine = engine
        self._actions: Dict[str, str] = dict(actions or {})
        self._decided: Dict[_Key, _Decided] = {}
        self._tokens: Dict[_Key, str] = {}
        self._runnable: Dict[_Key, Tuple[str, Mapping[str, Any]]] = {}
        # Guarded agents (clones) and the delegator each acts for; held strongly, so an id is
        # never reused while the guard lives.
        self._agents: Dict[int, Tuple[Agent[Any], Delegator]] = {}

    @property
    def engine(self) -> Engine:
        """The engine that decides."""
        return self._engine

    def action_of(self, tool: FunctionTool) -> str:
        """The Aegis tool name of an SDK tool (see `actions`)."""
        return self._actions.get(tool.name, tool.name)

    # --- tools --------------------------------------------------------------------------------

    def tool(self, tool: FunctionTool, chain: ChainSource, *, action: Optional[str] = None) -> FunctionTool:
        """A copy of `tool` whose every call is authorized by Aegis on `chain` as Aegis tool
        `action` (default: :meth:`action_of`). The tool's own guardrails run first; its own
        ``needs_approval``, if any, still applies to calls Aegis lets run."""
        if not isinstance(tool, FunctionTool):
            raise TypeError(f"Aegis guards function tools; {type(tool).__name__} runs outside this process")
        if getattr(tool, "_is_agent_tool", False) and not self._is_guarded(getattr(tool, "_agent_instance", None)):
            raise TypeError(f"tool {tool.name!r} runs an agent that is not guarded: build it from "
                            "guard.agent(...).as_tool(...) so its own tools are decided too")
        if isinstance(chain, str):
            raise TypeError("`chain` is a sequence of credentials, not one string")
        name = tool.name
        aegis_tool = action or self.action_of(tool)
        invoke = tool.on_invoke_tool
        own_needs_approval = tool.needs_approval
        engine = self._engine

        def current_chain(ctx: RunContextWrapper[Any]) -> List[str]:
            if isinstance(chain, Delegator):
                return chain.chain
            return list(chain(ctx) if callable(chain) else chain)

        async def needs_approval(ctx: RunContextWrapper[Any], params: Dict[str, Any], call_id: str) -> bool:
            # The SDK asks this once per call, before any guardrail: the one decision on it.
            key = (name, call_id)
            self._runnable.pop(key, None)
            try:
                enforced = engine.authorize_enforced(current_chain(ctx), aegis_tool, params, tool_call_id=call_id)
            except AegisError as error:
                # Fail closed: the guardrail rejects the call with this error.
                self._decided[key] = _Decided(_canonical(params), None, error, False)
                return False
            action = enforced.enforcement.action
            interrupting = action == "await_approval" or (
                action == "run" and await _own_approval(own_needs_approval, ctx, params, call_id))
            self._decided[key] = _Decided(_canonical(params), enforced, None, interrupting)
            return interrupting

        def guardrail(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
            ctx = data.context
            key = (name, ctx.tool_call_id)
            self._runnable.pop(key, None)
            decided = self._decided.pop(key, None)
            if decided is not None and decided.interrupting and not decided.pre_passed \
                    and _pre_approval_guardrails(ctx):
                # The SDK runs guardrails once more before it pauses: nothing runs now.
                decided.pre_passed = True
                self._decided[key] = decided
                return ToolGuardrailFunctionOutput.allow({"aegis": "awaiting approval"})
            try:
                args = _parse_args(ctx.tool_arguments)
            except ValueError as malformed:
                return ToolGuardrailFunctionOutput.reject_content(f"Aegis refused this call: {malformed}")
            canonical = _canonical(args)
            fresh = decided is not None and decided.args == canonical
            if fresh and decided is not None and decided.error is not None:
                return _could_not_decide(decided.error)
            if fresh and decided is not None and decided.enforced is not None \
                    and decided.enforced.enforcement.action != "await_approval":
                enforced = decided.enforced
            else:
                # Resumed after an approval in the SDK (or the SDK did not ask): decide now,
                # presenting the human's override token when one was handed over.
                try:
                    enforced = engine.authorize_enforced(current_chain(ctx), aegis_tool, args,
                                                         approval_token=self._tokens.pop(key, None),
                                                         tool_call_id=ctx.tool_call_id)
                except AegisError as error:
                    return _could_not_decide(error)
            try:
                final = args_to_run(enforced)
            except ApprovalRequired as pending:
                return ToolGuardrailFunctionOutput.reject_content(
                    f"Aegis: this call needs a human approval in Aegis (approval {pending.approval_id}); "
                    "it was not run", {"approval_id": pending.approval_id})
            except Denied as refused:
                return ToolGuardrailFunctionOutput.reject_content(
                    _explain(refused), {"decision_id": refused.decision.decision_id, "code": refused.code})
            self._runnable[key] = (canonical, final)
            return ToolGuardrailFunctionOutput.allow(
                {"decision_id": enforced.decision.decision_id, "outcome": enforced.decision.outcome})

        async def on_invoke_tool(ctx: ToolContext[Any], raw_args: str) -> Any:
            authorized = self._runnable.pop((name, ctx.tool_call_id), None)
            try:
                same = authorized is not None and authorized[0] == _canonical(_parse_args(raw_args))
            except ValueError:
                same = False
            if authorized is None or not same:
                # Fail closed: only a call the guardrail let through, unchanged, runs.
                return "Aegis did not authorize this call; it was not run."
            # Exactly the arguments the core's enforcement names (sanitized ones included).
            return await invoke(ctx, json.dumps(_thaw(authorized[1])))

        # A copy (the SDK's own, which keeps subclasses intact); the original stays unguarded.
        guarded = copy.copy(tool)
        guarded.on_invoke_tool = on_invoke_tool
        guarded.needs_approval = needs_approval
        # The guardrail goes last, so the tool's own guardrails can still refuse a call before
        # Aegis hands it its arguments.
        guarded.tool_input_guardrails = [*(tool.tool_input_guardrails or []),
                                         ToolInputGuardrail(guardrail_function=guardrail, name=GUARDRAIL_NAME)]
        return guarded

    # --- agents and handoffs ------------------------------------------------------------------

    def agent(self, agent: Agent[Any], delegator: Delegator) -> Agent[Any]:
        """A copy of `agent` whose function tools are decided on `delegator`'s chain, and whose
        handoffs lead to guarded copies of their agents, recursively.

        A sub-agent reached by a handoff acts for ``delegator.child(sub.name, <its tools' Aegis
        names>)``: its delegation is minted when work is handed to it (then cached), scoped to
        its own tools that the delegating agent holds. A handoff back to an agent above it
        returns to that agent's copy (and chain); an agent reached along two paths gets one copy
        per path, each on the chain of its path. Tools Aegis cannot guard (hosted tools, MCP
        servers, unguarded agents-as-tools) raise `TypeError`."""
        return self._guard_agent(agent, delegator, {})

    def delegator_of(self, agent: Agent[Any]) -> Optional[Delegator]:
        """The delegator a guarded agent acts for (None for an agent this guard did not make)."""
        entry = self._agents.get(id(agent))
        return entry[1] if entry is not None and entry[0] is agent else None

    def _is_guarded(self, agent: Any) -> bool:
        return agent is not None and self.delegator_of(agent) is not None

    def _tools_of(self, agent: Agent[Any]) -> List[FunctionTool]:
        if agent.mcp_servers:
            raise TypeError(f"agent {agent.name!r} lists MCP servers, whose tools would bypass Aegis: "
                            "guard their sessions with aegis.mcp instead")
        for tool in agent.tools:
            if not isinstance(tool, FunctionTool):
                raise TypeError(f"agent {agent.name!r} has a {type(tool).__name__}, which Aegis cannot guard")
        return [t for t in agent.tools if isinstance(t, FunctionTool)]

    def _guard_agent(self, agent: Agent[Any], delegator: Delegator,
                     above: Dict[int, Agent[Any]]) -> Agent[Any]:
        tools = self._tools_of(agent)
        guarded = agent.clone(tools=[], handoffs=[])
        self._agents[id(guarded)] = (guarded, delegator)
        path = {**above, id(agent): guarded}
        guarded.tools = [self.tool(t, delegator) for t in tools]
        guarded.handoffs = [self._guard_handoff(h, delegator, path) for h in agent.handoffs]
        return guarded

    def _sub_agent(self, target: Agent[Any], delegator: Delegator,
                   path: Dict[int, Agent[Any]]) -> Tuple[Agent[Any], Delegator]:
        """The guarded copy of `target` reached from the agent acting for `delegator`."""
        above = path.get(id(target))
        if above is not None:
            # A handoff back up the path: that agent resumes on its own chain.
            sub = self.delegator_of(above)
            assert sub is not None
            return above, sub
        sub = delegator.child(target.name, [self.action_of(t) for t in self._tools_of(target)])
        return self._guard_agent(target, sub, path), sub

    def _guard_handoff(self, item: Union[Agent[Any], Handoff[Any, Any]], delegator: Delegator,
                       path: Dict[int, Agent[Any]]) -> Handoff[Any, Any]:
        if isinstance(item, Agent):
            target, sub = self._sub_agent(item, delegator, path)

            def mint(_ctx: RunContextWrapper[Any]) -> None:
                # The delegation is minted (or renewed) as the work is handed over.
                sub.chain

            return handoff(target, on_handoff=mint)
        if not isinstance(item, Handoff):
            raise TypeError(f"a handoff is an Agent or a Handoff, not {type(item).__name__}")
        original = item.on_invoke_handoff
        copies: Dict[int, Tuple[Agent[Any], Delegator]] = {}
        declared = item._agent_ref() if item._agent_ref is not None else None
        if isinstance(declared, Agent):
            copies[id(declared)] = self._sub_agent(declared, delegator, path)

        async def invoke(ctx: RunContextWrapper[Any], input_json: str) -> Agent[Any]:
            target = await original(ctx, input_json)
            if not isinstance(target, Agent):
                raise TypeError(f"handoff {item.tool_name!r} returned a {type(target).__name__}, not an Agent")
            if id(target) not in copies:
                # A handoff that picks its agent at run time: guard the one it picked.
                copies[id(target)] = self._sub_agent(target, delegator, path)
            guarded, sub = copies[id(target)]
            sub.chain
            return guarded

        wrapped: Handoff[Any, Any] = copy.copy(item)
        wrapped.on_invoke_handoff = invoke
        if declared is not None:
            wrapped._agent_ref = weakref.ref(copies[id(declared)][0])
        return wrapped

    # --- approvals ----------------------------------------------------------------------------

    @staticmethod
    def _key_of(item: ToolApprovalItem) -> _Key:
        call_id = getattr(item.raw_item, "call_id", None) or getattr(item, "call_id", None)
        if not isinstance(call_id, str) or not item.tool_name:
            raise TypeError("this interruption is not a function-tool call Aegis guards")
        return (item.tool_name, call_id)

    def approval_id(self, item: ToolApprovalItem) -> Optional[str]:
        """The Aegis approval the interruption `item` waits for, or None (the run was paused by
        the tool's own ``needs_approval``, or by another guard)."""
        decided = self._decided.get(self._key_of(item))
        if decided is None or decided.enforced is None or decided.enforced.enforcement.action != "await_approval":
            return None
        return decided.enforced.enforcement.approval_id or decided.enforced.decision.approval_id

    def pending(self, item: ToolApprovalItem) -> Optional[PendingApproval]:
        """The Aegis approval the interruption `item` waits for, as the engine holds it: who
        asked (`agent_id`, attested), for what, why."""
        approval_id = self.approval_id(item)
        return None if approval_id is None else self._engine.approval(approval_id)

    def approve(self, state: RunState[Any], item: ToolApprovalItem, *, override_token: Optional[str] = None) -> None:
        """Approves the interruption `item` in the SDK run `state`, handing over the override
        token a human's approval in Aegis yielded (``engine.approve(...).override_token``): the
        resumed run presents it, and the call runs once, with exactly the approved arguments."""
        key = self._key_of(item)
        if override_token is not None:
            self._tokens[key] = override_token
        state.approve(item)

    def reject(self, state: RunState[Any], item: ToolApprovalItem, *, message: Optional[str] = None) -> None:
        """Rejects the interruption `item` in the SDK run `state`: the model is told `message`
        (default: that a human rejected the call) and nothing runs."""
        key = self._key_of(item)
        approval_id = self.approval_id(item)
        self._decided.pop(key, None)
        self._tokens.pop(key, None)
        default = "a human rejected this call" + (f" (approval {approval_id})" if approval_id else "")
        state.reject(item, rejection_message=message or default)


async def _own_approval(setting: Union[bool, Callable[[RunContextWrapper[Any], Dict[str, Any], str], Awaitable[bool]]],
                        ctx: RunContextWrapper[Any], params: Dict[str, Any], call_id: str) -> bool:
    """The tool's own ``needs_approval`` for a call Aegis lets run (the SDK also accepts a
    function that is not a coroutine)."""
    if isinstance(setting, bool):
        return setting
    answer: Any = setting(ctx, params, call_id)
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)
