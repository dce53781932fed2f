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

Runs: one guard (and one guarded agent) serves many runs at once, and the model provider chooses
call ids, which repeat across runs (and a stored run state carries them). So what the hooks leave
for each other is kept per run, then by call id, and a decision is acted on only for the chain
presented when it is acted on and for the same arguments: a decision made in another run, on
another chain or for other arguments is never used (the call is decided anew). The SDK hands
``needs_approval`` the run's context wrapper, and the guardrail and the invoker a tool context
derived from it that shares its tool state; ``result.to_state()`` copies the wrapper, and the
guard's mark on it, so the run resumed from that state is the same run. A state restored with
``RunState.from_string`` starts a run of its own: its paused calls are decided anew (with the
token :meth:`AegisGuard.approve` hands over). One ``RunContextWrapper`` passed as ``context`` to
two runs makes them one run, to the SDK (which then shares its approvals between them) as to the
guard: pass the application's context object instead, and the SDK wraps it once per run.

Approving: a human approves in Aegis (``engine.approve(approval_id, approver_chain)``, where
``guard.approval_id(item, state)`` names the approval an interruption waits for), then
``guard.approve(state, item, override_token=token)`` hands the token to the guard and approves
the item in the SDK run state; ``Runner.run(agent, state)`` resumes, and the call runs once.
Approving in the SDK without a token runs nothing: Aegis still awaits its approval. Rejecting is
``guard.reject(state, item)`` (or ``state.reject(item)``).

Agents as tools (``guard.agent(sub, delegator).as_tool(...)``): the sub-agent runs in a nested run
of its own, whose calls its own guarded tools decide. When one of them pauses for an approval,
the outer call keeps its pass until the nested run finishes (the SDK resumes it by invoking the
outer tool again, without its guardrails), and it is not decided a second time.

Handoffs: :meth:`AegisGuard.agent` guards an agent and every agent its handoffs reach. Each
sub-agent acts on a delegation minted for it by an :class:`aegis.delegation.Delegator` (scoped to
its own tools and those of the agents it hands off to, appended to the delegating agent's chain)
when work is handed off to it, so Aegis attests it as ``planner/finance-agent`` and segregation
of duties holds across the chain.

Install with ``pip install "aegis-sod[openai-agents]"``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import threading
import weakref
from typing import (Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple,
                    Union)

from agents import (Agent, FunctionTool, Handoff, RunContextWrapper, RunState, ToolApprovalItem,
                    ToolGuardrailFunctionOutput, ToolInputGuardrail, ToolInputGuardrailData, handoff)
from agents.agent_tool_state import get_agent_tool_state_scope, peek_agent_tool_run_result
from agents.tool_context import ToolContext

from . import AegisError, ApprovalRequired, Denied, Enforced, Engine, PendingApproval, _thaw, args_to_run
from .delegation import Delegator

__all__ = ["AegisGuard", "ChainSource"]

#: Where a guarded tool's credential chain comes from: the chain itself, a :class:`Delegator`
#: (its current chain), or a function of the SDK run context returning it.
ChainSource = Union[Sequence[str], Delegator, Callable[[RunContextWrapper[Any]], Sequence[str]]]

_Key = Tuple[str, str]  # (SDK tool name, call id): one tool call of a run
_Chain = Tuple[str, ...]

GUARDRAIL_NAME = "aegis"

#: The attribute marking a run's context wrapper with its :class:`_RunId`.
_RUN_ATTR = "_aegis_run_id"


class _RunId:
    """One SDK run, as guards tell runs apart: set on the run's context wrapper, and carried with
    it into the run state the SDK copies it to (``result.to_state()``), so the run resumed from
    that state is the same run. A copy of a run (deep or not) is the same run."""

    __slots__ = ("__weakref__",)

    def __copy__(self) -> "_RunId":
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> "_RunId":
        return self


@dataclasses.dataclass
class _Decided:
    """Aegis's decision on one call, made when the SDK asked whether it needs approval and
    consumed by the guardrail of that same call."""

    args: str  # the canonical JSON of the arguments decided on
    chain: Optional[_Chain]  # the chain decided on (None: there was none to decide on)
    enforced: Optional[Enforced]
    error: Optional[AegisError]
    interrupting: bool  # whether the SDK was told to pause for an approval
    pre_passed: bool = False


@dataclasses.dataclass(frozen=True)
class _Pass:
    """A call Aegis lets run: for these arguments, on this chain, with the arguments `final`
    the core's enforcement names."""

    args: str
    chain: _Chain
    final: Mapping[str, Any]


@dataclasses.dataclass
class _Run:
    """What one guard keeps for one run, by call: decisions between ``needs_approval`` and the
    guardrail, override tokens handed over for paused calls, and the passes of agent tools whose
    nested run paused (kept until the nested run finishes)."""

    decided: Dict[_Key, _Decided] = dataclasses.field(default_factory=dict)
    tokens: Dict[_Key, str] = dataclasses.field(default_factory=dict)
    held: Dict[_Key, _Pass] = dataclasses.field(default_factory=dict)


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


def _canonical_raw(raw: Optional[str]) -> Optional[str]:
    """The canonical JSON of raw call arguments, or None when they are not a JSON object."""
    try:
        return _canonical(_parse_args(raw or ""))
    except ValueError:
        return None


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


def _nested_run_paused(ctx: Any) -> bool:
    """Whether the nested run an agent tool's call started is paused on interruptions: what the
    SDK checks after invoking the tool, to resume it later by invoking the tool again."""
    tool_call = getattr(ctx, "tool_call", None)
    if tool_call is None:
        return False
    pending = peek_agent_tool_run_result(tool_call, scope_id=get_agent_tool_state_scope(ctx))
    return bool(getattr(pending, "interruptions", None))


def _owner(state: RunState[Any], item: ToolApprovalItem) -> Tuple[RunState[Any], ToolApprovalItem]:
    """The run state an interruption belongs to: `state`, or the state of the nested agent-tool
    run that paused on it (where the SDK's ``state.approve`` records the approval too)."""
    find = getattr(state, "_find_nested_approval_state", None)
    nested = find(item) if callable(find) else None
    if isinstance(nested, tuple) and len(nested) == 2 and isinstance(nested[0], RunState) \
            and isinstance(nested[1], ToolApprovalItem):
        return nested[0], nested[1]
    return state, item


class AegisGuard:
    """Guards the function tools of OpenAI Agents SDK agents with one :class:`aegis.Engine`.

    `actions` maps SDK tool names to Aegis tool names where they differ (SDK function names
    cannot hold dots: ``{"create_payment": "stripe.create_payment"}``). The guard keeps, per run
    and then per call, the decision made before the SDK asked for an approval and the override
    token a human's approval yielded until the resumed run presents it, so the run is resumed
    with the same guard (or, in another process, after :meth:`approve` on a new one). Safe to
    share between runs: a decision is used only in the run it was made in, on the chain it was
    made on, for the arguments it was made for."""

    def __init__(self, engine: Engine, *, actions: Optional[Mapping[str, str]] = None) -> None:
        self._engine = engine
        self._actions: Dict[str, str] = dict(actions or {})
        self._lock = threading.Lock()
        # Per run (dies with the run's context wrappers and states).
        self._runs: "weakref.WeakKeyDictionary[_RunId, _Run]" = weakref.WeakKeyDictionary()
        # The run's own context wrapper, by the id of the tool state it shares with the tool
        # contexts the SDK derives from it (how a guardrail or an invoker finds its run).
        self._owners: Dict[int, "weakref.ReferenceType[RunContextWrapper[Any]]"] = {}
        # The pass a guardrail left for the invoker of the same call: the SDK hands both the same
        # tool context, so nothing else (another run, another call with the same id) can take it.
        self._passes: "weakref.WeakKeyDictionary[Any, _Pass]" = weakref.WeakKeyDictionary()
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

    # --- runs ---------------------------------------------------------------------------------

    def _run_of(self, ctx: Any, *, register: bool = False) -> Optional[_Run]:
        """What this guard keeps for the run `ctx` belongs to, or None when it keeps nothing.

        `ctx` is the run's own context wrapper (what ``needs_approval`` receives, or a run
        state's) when `register`: it is then marked (once) and indexed, so the tool contexts the
        SDK derives from it find it by the tool state they share with it. Anything that is not
        an SDK context belongs to no run."""
        tool_state = getattr(ctx, "_tool_invocations", None)
        if not isinstance(tool_state, dict):
            return None
        with self._lock:
            ref = self._owners.get(id(tool_state))
            owner = ref() if ref is not None else None
            if owner is not None and getattr(owner, "_tool_invocations", None) is not tool_state:
                owner = None  # the id was reused: another run's tool state
            if owner is not None and owner is not ctx:
                run_id = getattr(owner, _RUN_ATTR, None)
            else:
                run_id = getattr(ctx, _RUN_ATTR, None)
                if not isinstance(run_id, _RunId):
                    if not register:
                        return None
                    run_id = _RunId()
                    try:
                        setattr(ctx, _RUN_ATTR, run_id)
                    except (AttributeError, TypeError):
                        return None
                if register and owner is None:
                    self._owners[id(tool_state)] = weakref.ref(ctx, _forget(self._owners, id(tool_state)))
            if not isinstance(run_id, _RunId):
                return None
            run = self._runs.get(run_id)
            if run is None and register:
                run = self._runs[run_id] = _Run()
            return run

    # --- tools --------------------------------------------------------------------------------

    def tool(self, tool: FunctionTool, chain: ChainSource, *, action: Optional[str] = None) -> FunctionTool:
        """A copy of `tool` whose every call is authorized by Aegis on `chain` as Aegis tool
        `action` (default: :meth:`action_of`). The tool's own guardrails run first; its own
        ``needs_approval``, if any, still applies to calls Aegis lets run."""
        if not isinstance(tool, FunctionTool):
            raise TypeError(f"Aegis guards function tools; {type(tool).__name__} runs outside this process")
        is_agent_tool = bool(getattr(tool, "_is_agent_tool", False))
        if is_agent_tool and not self._is_guarded(getattr(tool, "_agent_instance", None)):
            raise TypeError(f"tool {tool.name!r} runs an agent that is not guarded: build it from "
                            "guard.agent(...).as_tool(...) so its own tools are decided too")
        if isinstance(chain, str):
            raise TypeError("`chain` is a sequence of credentials, not one string")
        name = tool.name
        aegis_tool = action or self.action_of(tool)
        invoke = tool.on_invoke_tool
        own_needs_approval = tool.needs_approval
        engine = self._engine

        def current_chain(ctx: RunContextWrapper[Any]) -> _Chain:
            if isinstance(chain, Delegator):
                return tuple(chain.chain)
            return tuple(chain(ctx) if callable(chain) else chain)

        async def needs_approval(ctx: RunContextWrapper[Any], params: Dict[str, Any], call_id: str) -> bool:
            # The SDK asks this once per call, before any guardrail, with the run's own context
            # wrapper: the one decision on the call, kept in that run.
            key = (name, call_id)
            run = self._run_of(ctx, register=True)
            canonical = _canonical(params)
            held = run.held.pop(key, None) if run is not None else None
            decided_on: Optional[_Chain] = None
            try:
                decided_on = current_chain(ctx)
                if held is not None and held.args == canonical and held.chain == decided_on:
                    # The call already holds a pass: its nested agent run paused and now resumes.
                    # Deciding again would ask Aegis a second time for the same call.
                    assert run is not None
                    run.held[key] = held
                    return False
                enforced = engine.authorize_enforced(list(decided_on), aegis_tool, params, tool_call_id=call_id)
            except AegisError as error:
                # Fail closed: the guardrail rejects the call with this error.
                if run is not None:
                    run.decided[key] = _Decided(canonical, decided_on, None, error, False)
                return False
            action = enforced.enforcement.action
            interrupting = action == "await_approval" or (
                action == "run" and await _own_approval(own_needs_approval, ctx, params, call_id))
            if run is not None:
                run.decided[key] = _Decided(canonical, decided_on, enforced, None, interrupting)
                if held is not None and held.args == canonical and action == "run" and not interrupting:
                    # The chain was renewed while the nested run was paused: it resumes on the
                    # pass of this decision, made on the chain in force now.
                    run.held[key] = _Pass(canonical, decided_on, args_to_run(enforced))
            return interrupting

        def guardrail(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
            ctx = data.context
            key = (name, ctx.tool_call_id)
            run = self._run_of(ctx)
            self._passes.pop(ctx, None)
            decided = None
            if run is not None:
                # A call whose guardrails run is not resuming a nested run: no earlier pass of
                # the same call id carries over to it.
                run.held.pop(key, None)
                decided = run.decided.pop(key, None)
            if decided is not None and run is not None and decided.interrupting and not decided.pre_passed \
                    and _pre_approval_guardrails(ctx):
                # The SDK runs guardrails once more before it pauses: nothing runs now.
                decided.pre_passed = True
                run.decided[key] = decided
                return ToolGuardrailFunctionOutput.allow({"aegis": "awaiting approval"})
            try:
                args = _parse_args(ctx.tool_arguments)
            except ValueError as malformed:
                return ToolGuardrailFunctionOutput.reject_content(f"Aegis refused this call: {malformed}")
            canonical = _canonical(args)
            try:
                presented = current_chain(ctx)
            except AegisError as error:
                return _could_not_decide(error)
            # The decision made for this call in this run is acted on only for the arguments and
            # the chain it was made on; otherwise (or when none was made) the call is decided now.
            fresh = decided is not None and decided.args == canonical and decided.chain == presented
            if fresh and decided is not None and decided.error is not None:
                return _could_not_decide(decided.error)
            if fresh and decided is not None and decided.enforced is not None \
                    and decided.enforced.enforcement.action != "await_approval":
                enforced = decided.enforced
            else:
                # Resumed after an approval in the SDK (or the SDK did not ask): decide now,
                # presenting the human's override token when one was handed over to this run.
                token = run.tokens.pop(key, None) if run is not None else None
                try:
                    enforced = engine.authorize_enforced(list(presented), aegis_tool, args, approval_token=token,
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
            self._passes[ctx] = _Pass(canonical, presented, final)
            return ToolGuardrailFunctionOutput.allow(
                {"decision_id": enforced.decision.decision_id, "outcome": enforced.decision.outcome})

        async def on_invoke_tool(ctx: ToolContext[Any], raw_args: str) -> Any:
            try:
                authorized = self._passes.pop(ctx, None)
            except TypeError:  # not an object a guardrail could have left a pass for
                authorized = None
            key = (name, str(getattr(ctx, "tool_call_id", "")))
            run = self._run_of(ctx) if is_agent_tool else None
            if authorized is None and run is not None:
                # The SDK resumes a paused nested run by invoking the agent tool again, without
                # its guardrails: the call runs on the pass it holds, on the same chain.
                held = run.held.pop(key, None)
                try:
                    if held is not None and held.chain == current_chain(ctx):
                        authorized = held
                except AegisError:
                    pass
            if authorized is None or authorized.args != _canonical_raw(raw_args):
                # Fail closed: only a call Aegis let through, unchanged, runs.
                return "Aegis did not authorize this call; it was not run."
            try:
                # Exactly the arguments the core's enforcement names (sanitized ones included).
                return await invoke(ctx, json.dumps(_thaw(authorized.final)))
            finally:
                if run is not None and _nested_run_paused(ctx):
                    # Kept until the nested run finishes; it dies with the run.
                    run.held[key] = authorized

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

        A sub-agent reached by a handoff acts for ``delegator.child(sub.name, <Aegis names>)``:
        its delegation is minted when work is handed to it (then cached), scoped to the tools
        that the delegating agent holds among its own tools and those of the agents it hands off
        to in turn (transitively, so that planner → triage → payer leaves the payer its tools:
        each delegation is narrowed from the one above it). A handoff back to an agent above it
        returns to that agent's copy (and chain), and widens no scope; an agent reached along two
        paths gets one copy per path, each on the chain of its path. Tools Aegis cannot guard
        (hosted tools, MCP servers, unguarded agents-as-tools) raise `TypeError`."""
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

    def _scope_of(self, agent: Agent[Any], seen: Set[int]) -> List[str]:
        """The Aegis names of the tools `agent` calls and of those the agents it hands off to
        call, transitively: what its delegation must cover for every agent below it to get its
        own tools. Each agent counts once; `seen` holds the agents above it, to which a handoff
        returns on their own chains. An agent a handoff picks only at run time is unknown here:
        its tools are left out, and denied (`tool_not_in_scope`)."""
        if id(agent) in seen:
            return []
        seen.add(id(agent))
        names = [self.action_of(t) for t in self._tools_of(agent)]
        for item in agent.handoffs:
            target = item if isinstance(item, Agent) else (
                item._agent_ref() if isinstance(item, Handoff) and item._agent_ref is not None else None)
            if isinstance(target, Agent):
                names.extend(self._scope_of(target, seen))
        return list(dict.fromkeys(names))

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
        sub = delegator.child(target.name, self._scope_of(target, set(path)))
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

    def approval_id(self, item: ToolApprovalItem, state: Optional[RunState[Any]] = None) -> Optional[str]:
        """The Aegis approval the interruption `item` waits for, or None (the run was paused by
        the tool's own ``needs_approval``, or by another guard, or its arguments are not those
        the approval was asked for).

        `state` is the run state the item will be approved in (``result.to_state()``): the
        approval is looked up in that run (or in the nested agent-tool run that paused on it).
        Without it, every run this guard keeps is searched, and when two of them wait on
        different approvals for this same call id and arguments, `ValueError` is raised rather
        than one of them guessed."""
        key = self._key_of(item)
        args = _canonical_raw(item.arguments)
        if state is not None:
            owner, owned = _owner(state, item)
            key, args = self._key_of(owned), _canonical_raw(owned.arguments)
            run = self._run_of(owner._context)
            runs = [run] if run is not None else []
        else:
            with self._lock:
                runs = list(self._runs.values())
        found = set()
        for run in runs:
            decided = run.decided.get(key)
            if decided is None or decided.enforced is None or decided.args != args \
                    or decided.enforced.enforcement.action != "await_approval":
                continue
            approval_id = decided.enforced.enforcement.approval_id or decided.enforced.decision.approval_id
            if approval_id:
                found.add(approval_id)
        if len(found) > 1:
            raise ValueError(f"several runs wait on approvals for call {key[1]!r} of {key[0]!r}: pass the run "
                             "state the interruption is approved in (`state=result.to_state()`)")
        return next(iter(found), None)

    def pending(self, item: ToolApprovalItem, state: Optional[RunState[Any]] = None) -> Optional[PendingApproval]:
        """The Aegis approval the interruption `item` waits for (see :meth:`approval_id`), as the
        engine holds it: who asked (`agent_id`, attested), for what, why."""
        approval_id = self.approval_id(item, state)
        return None if approval_id is None else self._engine.approval(approval_id)

    def approve(self, state: RunState[Any], item: ToolApprovalItem, *, override_token: Optional[str] = None) -> None:
        """Approves the interruption `item` in the SDK run `state`, handing over the override
        token a human's approval in Aegis yielded (``engine.approve(...).override_token``) to
        that run only (or to the nested agent-tool run that paused on it): the resumed run
        presents it, and the call runs once, with exactly the approved arguments."""
        owner, owned = _owner(state, item)
        key = self._key_of(owned)
        # Both runs resume: the outer one (whose agent-tool call holds its pass) and the one the
        # call paused in, which presents the token.
        self._run_of(state._context, register=True)
        run = self._run_of(owner._context, register=True)
        if override_token is not None:
            if run is None:
                raise TypeError("this run state has no SDK context to hand the token to")
            run.tokens[key] = override_token
        state.approve(item)

    def reject(self, state: RunState[Any], item: ToolApprovalItem, *, message: Optional[str] = None) -> None:
        """Rejects the interruption `item` in the SDK run `state`: the model is told `message`
        (default: that a human rejected the call) and nothing runs."""
        owner, owned = _owner(state, item)
        key = self._key_of(owned)
        approval_id = self.approval_id(item, state)
        self._run_of(state._context, register=True)
        run = self._run_of(owner._context, register=True)
        if run is not None:
            run.decided.pop(key, None)
            run.tokens.pop(key, None)
        default = "a human rejected this call" + (f" (approval {approval_id})" if approval_id else "")
        state.reject(item, rejection_message=message or default)


def _forget(owners: Dict[int, Any], key: int) -> Callable[[Any], None]:
    """A weakref callback dropping the index entry `key` once its context wrapper is gone."""

    def forget(ref: Any) -> None:
        if owners.get(key) is ref:
            del owners[key]

    return forget


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
