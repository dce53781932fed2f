"""CrewAI guard: every tool call of a crew is authorized by Aegis first, through CrewAI's
tool-call hooks (``PRE_TOOL_CALL`` / ``POST_TOOL_CALL``), and every permitted call runs once,
checked by the tool itself::

    hooks = AegisToolHooks(engine, chain, tool_names={"create_payment": "stripe.create_payment"})
    agent = Agent(..., tools=hooks.guard_tools([create_payment]))
    with hooks:                     # the hooks decide the tool calls made inside this block
        crew.kickoff()

The core's enforcement of the decision rules (:func:`aegis.args_to_run`):

- refused: the before-hook returns ``False`` (CrewAI then does not run the tool) and the
  after-hook replaces CrewAI's "blocked by hook" text with the reasons, so the model is told why;
- run: the tool runs with exactly the arguments the core names: the hook rewrites
  ``context.tool_input`` in place, the dictionary CrewAI then calls the tool with (a
  ``sanitize`` decision's redactions are what the tool receives), and issues the tool a
  one-shot permit for exactly those arguments;
- awaiting an approval, two ways:

  * by default the call is blocked and the model is told the approval id and to make the same
    call again once a person approved. A person with the approver role approves
    (``engine.approve(approval_id, approver_chain)``) and the host hands the result to
    :meth:`AegisToolHooks.approved`, which holds the override token for exactly that call, by
    that agent in that task: its next identical call presents it and runs once. This suits
    crews that run unattended.
  * with ``ask_human=console_approval`` the hook uses CrewAI's own human-input mechanism
    (``ToolCallHookContext.request_human_input``): the run waits at the console for the
    override token of the approval it shows, then the call runs once with it; an empty answer
    rejects the call.

Why the tool checks too (:meth:`AegisToolHooks.guard_tool`): CrewAI runs the hooks once per
call but may run the tool several times for it (a tool that raises is invoked again with the
unfiltered arguments and retried up to three times, none through the hooks), and a hook
registered after this one, or one that raised (CrewAI takes that as allowing), could change or
skip what was decided. A guarded tool runs only by spending a permit the before-hook issued
for these very arguments (compared as the tool's argument schema reads them); every other run
raises :class:`aegis.ReceiptInvalid` (no permit: a retry, a call no hook of this guard decided)
or :class:`aegis.ReceiptMismatch` (the arguments changed after the decision), and the tool does
not run. A call to a tool that is not guarded is refused by the hook (``unguarded_tools`` lists
the CrewAI names allowed to run without: their retries are not bound).

Scope: ``with hooks:`` registers the hooks in CrewAI's execution-scoped hook registry (a
context variable), so they decide only the tool calls made inside the block (and in the threads
CrewAI starts from it, which copy the context); a crew kicked off in another thread is not
decided by them. :meth:`AegisToolHooks.register` registers them globally instead, for every
crew of the process. Either way the hooks decide only calls to their own guarded tools (and to
unguarded ones): a call to a tool another :class:`AegisToolHooks` guards is left to that one.
CrewAI runs scoped hooks after global ones and swallows an exception raised by a hook as if
the hook allowed the call; this hook therefore never raises (any error blocks the call).

Install with ``pip install aegis-sod[crewai]``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
from collections import OrderedDict
from typing import (Any, Callable, Collection, ContextManager, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

from crewai.hooks import (
    ToolCallHookContext,
    register_after_tool_call_hook,
    register_before_tool_call_hook,
    unregister_after_tool_call_hook,
    unregister_before_tool_call_hook,
)
from crewai.hooks.dispatch import InterceptionPoint, get_scoped_hooks, scoped_hooks
from crewai.tools import BaseTool
from crewai.tools.base_tool import Tool

from . import (AegisError, ApprovalRequired, ApprovalResolution, Denied, Engine, ReceiptInvalid, ReceiptMismatch,
               _thaw, args_to_run, call_digest)
from . import inspect_chain

ChainSource = Union[Sequence[str], Callable[[ToolCallHookContext], Sequence[str]]]
#: Asks a person for the override token of ``pending`` (for ``tool`` with ``args``); None rejects.
AskHuman = Callable[[ToolCallHookContext, ApprovalRequired, str, Mapping[str, Any]], Optional[str]]

# Refusals waiting for their after-hook; a crew that stops between the two hooks leaves its
# entry behind, so only the most recent ones are kept (the same for calls between the hooks).
_MAX_PENDING_REFUSALS = 1024
# Distinct argument sets a guarded tool holds permits for at once (a crew that stops between
# the hooks leaves a permit behind; the oldest go first).
_MAX_PERMITS_PER_TOOL = 1024
# Refusals of a held token that mean it was not this call's: it stays held for its own call.
_FOREIGN_TOKEN_CODES = frozenset({"approval_wrong_agent", "approval_wrong_task", "approval_args_mismatch"})


def _explain(refused: Union[Denied, ApprovalRequired]) -> str:
    reasons = "; ".join(f"{r.code}" + (f" ({r.policy_id})" if r.policy_id else "") + f": {r.message}"
                        for r in refused.decision.reasons)
    return f"Aegis denied this call: {reasons or refused.message}"


def _awaiting(pending: ApprovalRequired) -> str:
    why = "; ".join(r.message for r in pending.decision.reasons) or pending.message
    return (f"Aegis: this call needs a human approval ({pending.approval_id}): {why}. It did not run. "
            "Once a person has approved it, make the same call again with the same arguments.")


def _canonical(value: Any) -> str:
    # Key order aside, two argument sets are the same only if they serialize the same (1, 1.0
    # and True differ); a value JSON cannot hold is compared by its repr.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _chain_identity(chain: Sequence[str]) -> Optional[Tuple[str, str]]:
    """The (agent id, task id) the core attests for an Aegis credential chain, as the core names
    it without verifying (`inspect_chain`); None when a link is not an Aegis credential (an
    external issuer's token). The core still verifies everything."""
    try:
        named = inspect_chain(chain)
    except (AegisError, TypeError):
        return None
    return named.agent_id, named.task_id


def console_approval(context: ToolCallHookContext, pending: ApprovalRequired, tool: str,
                     args: Mapping[str, Any]) -> Optional[str]:
    """An ``ask_human`` that waits at the console (CrewAI's ``request_human_input``) for the
    override token of the approval; an empty answer rejects the call."""
    reasons = "; ".join(r.message for r in pending.decision.reasons)
    answer = context.request_human_input(
        prompt=f"Aegis: {tool} {json.dumps(dict(args))} needs approval {pending.approval_id} ({reasons}). "
               "A person with the approver role approves it and gives you the override token.",
        default_message="Override token (empty rejects the call):",
    )
    token = answer.strip() if isinstance(answer, str) else ""
    return token or None


class _Slot:
    """Permits for one argument set of one guarded tool: ``unspent`` runs allowed, ``open``
    calls between their two hooks (a permit outliving every open call is dropped)."""

    __slots__ = ("unspent", "open")

    def __init__(self) -> None:
        self.unspent = 0
        self.open = 0


class _Permits:
    """The permits of one guarded tool (shared by its copies: CrewAI copies tools)."""

    def __init__(self, hooks: "AegisToolHooks", name: str, schema: Any) -> None:
        self.hooks = hooks
        self.name = name
        self.schema = schema
        # Canonical JSON of the arguments the hook authorized -> its permits.
        self.slots: "OrderedDict[str, _Slot]" = OrderedDict()

    def normal(self, args: Mapping[str, Any]) -> str:
        """``args`` as the tool receives them: CrewAI validates the arguments against the
        tool's schema (coercing, filling defaults, dropping unknown keys) before calling it."""
        if self.schema is not None and getattr(self.schema, "model_fields", None):
            try:
                return _canonical(self.schema.model_validate(dict(args)).model_dump())
            except Exception:  # noqa: BLE001  not the schema's: compared as given
                pass
        return _canonical(dict(args))


class _GuardedRun:
    """What a guarded tool runs instead of its own function: spends a permit, then runs it."""

    def __init__(self, permits: _Permits, run: Callable[..., Any]) -> None:
        self.permits = permits
        self._run = run

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            # CrewAI calls tools with keyword arguments; positional ones could not be compared.
            raise ReceiptMismatch(f"Aegis: `{self.permits.name}` did not run: a guarded tool takes keyword "
                                  "arguments only")
        self.permits.hooks._spend(self.permits, kwargs)
        return self._run(**kwargs)


def _guard_of(tool: Any) -> Optional[_Permits]:
    """The permits of the guarded tool behind a hook context's tool (CrewAI hands the hooks the
    ``CrewStructuredTool`` it made of the agent's tool), or None for a tool not guarded."""
    for candidate in (getattr(tool, "_original_tool", None), tool):
        if candidate is None:
            continue
        for run in (getattr(candidate, "func", None), vars(candidate).get("_run") if hasattr(candidate, "__dict__")
                    else None):
            if isinstance(run, _GuardedRun):
                return run.permits
    return None


class AegisToolHooks:
    """CrewAI tool-call hooks that authorize every tool call with Aegis before it runs, and
    the tool guard that makes each permitted call run once (:meth:`guard_tool`).

    ``chain`` is the caller's credential chain, or a function of the hook context returning
    it (e.g. by ``context.agent.role``). ``tool_names`` maps CrewAI's tool names (sanitized:
    lowercase, ``_`` for other characters) to the bundle's where they differ; a tool it does
    not list is authorized under CrewAI's name, so a tool the bundle does not know is denied.
    ``ask_human`` (e.g. :func:`console_approval`) asks a person for an approval's override
    token while the call waits; without it an approval blocks the call until it is retried
    after :meth:`approved`. ``unguarded_tools`` names CrewAI tools that may run without
    :meth:`guard_tool` (tools CrewAI makes itself); any other unguarded tool is refused."""

    def __init__(self, engine: Engine, chain: ChainSource, *, tool_names: Optional[Mapping[str, str]] = None,
                 ask_human: Optional[AskHuman] = None, unguarded_tools: Collection[str] = ()) -> None:
        self._engine = engine
        self._chain = chain
        self._tool_names = dict(tool_names or {})
        self._ask_human = ask_human
        self._unguarded = frozenset(unguarded_tools)
        self._lock = threading.Lock()
        # (call digest, agent id, task id) of an accepted approval -> its override token.
        self._tokens: Dict[Tuple[str, str, str], str] = {}
        # id(tool_input) -> (tool_input, message): CrewAI hands the after-hook the same dict.
        self._refusals: "OrderedDict[int, Tuple[Dict[str, Any], str]]" = OrderedDict()
        # id(tool_input) -> (tool_input, permits, canonical args) for a permitted call between its hooks.
        self._open: "OrderedDict[int, Tuple[Dict[str, Any], _Permits, str]]" = OrderedDict()
        # The execution scopes `with hooks:` entered, innermost last (per context: per thread and task).
        self._scopes: "contextvars.ContextVar[Tuple[ContextManager[Any], ...]]" = contextvars.ContextVar(
            f"aegis_crewai_scopes_{id(self)}", default=())

    # --- the tools ----------------------------------------------------------------------------

    def guard_tool(self, tool: BaseTool) -> BaseTool:
        """A copy of ``tool`` that runs only with a permit these hooks issued for exactly its
        arguments, once per permit; otherwise it raises (:class:`aegis.ReceiptInvalid`, or
        :class:`aegis.ReceiptMismatch` for other arguments) and does not run. A function tool
        (``@tool``) is guarded at its function; another ``BaseTool`` at its ``_run`` and
        ``_arun``. Give the agents the copies."""
        if not isinstance(tool, BaseTool):
            raise TypeError(f"guard_tool takes a CrewAI BaseTool, not {type(tool).__name__}")
        owner = _guard_of(tool)
        if owner is not None:
            if owner.hooks is self:
                return tool
            raise ValueError(f"`{tool.name}` is already guarded by another AegisToolHooks")
        permits = _Permits(self, tool.name, tool.args_schema)
        if isinstance(tool, Tool):
            # `Tool.run`, `_run` and `_arun` all end in `func`: the one place every path passes.
            return tool.model_copy(update={"func": _GuardedRun(permits, tool.func)})
        guarded = tool.model_copy()
        # Instance attributes: CrewAI binds `_run` when it builds its structured tool.
        object.__setattr__(guarded, "_run", _GuardedRun(permits, tool._run))
        object.__setattr__(guarded, "_arun", _GuardedRun(permits, tool._arun))
        return guarded

    def guard_tools(self, tools: Iterable[BaseTool]) -> List[BaseTool]:
        """:meth:`guard_tool` of each tool."""
        return [self.guard_tool(t) for t in tools]

    def _spend(self, permits: _Permits, kwargs: Mapping[str, Any]) -> None:
        """Spends a permit for this run of a guarded tool, or raises (the tool does not run)."""
        received = permits.normal(kwargs)
        with self._lock:
            pending = [(canon, slot) for canon, slot in permits.slots.items() if slot.unspent > 0]
        for canon, _ in pending:
            if permits.normal(json.loads(canon)) != received:
                continue
            with self._lock:
                slot = permits.slots.get(canon)
                if slot is not None and slot.unspent > 0:
                    slot.unspent -= 1
                    self._prune(permits, canon, slot)
                    return
        if pending:
            raise ReceiptMismatch(f"Aegis: `{permits.name}` did not run: its arguments are not the ones Aegis "
                                  "permitted (changed after the decision)")
        raise ReceiptInvalid(f"Aegis: `{permits.name}` did not run: no Aegis decision permits this run (a "
                             "permitted call runs once; a retry, or a call these hooks did not decide, is refused)")

    # --- approvals ----------------------------------------------------------------------------

    def approved(self, resolution: ApprovalResolution) -> None:
        """Holds the override token of an accepted approval for the call it approved: the next
        call with that tool and those arguments by the same agent in the same task presents it
        (once). A refused approval is ignored (nothing is held)."""
        if resolution.accepted and resolution.override_token:
            approval = resolution.approval
            with self._lock:
                self._tokens[(approval.call_digest, approval.agent_id, approval.task_id)] = resolution.override_token

    # --- the hooks ----------------------------------------------------------------------------

    def before_tool_call(self, context: ToolCallHookContext) -> Optional[bool]:
        """The ``PRE_TOOL_CALL`` hook: None lets the call run (its input rewritten to what the
        core names, a permit issued for it), False blocks it."""
        try:
            return self._decide(context)
        except Exception as e:  # noqa: BLE001  CrewAI would take an exception as "allowed"
            return self._refuse(context, f"Aegis could not decide on this call: {type(e).__name__}: {e}")

    def after_tool_call(self, context: ToolCallHookContext) -> Optional[str]:
        """The ``POST_TOOL_CALL`` hook: for a call this guard blocked, the text the model gets
        instead of CrewAI's "blocked by hook" (the reasons, or the approval to wait for). For a
        permitted call, a permit the tool did not spend (a cached result) is withdrawn."""
        key = id(context.tool_input)
        with self._lock:
            entry = self._refusals.pop(key, None)
            opened = self._open.pop(key, None)
            if opened is not None and opened[0] is context.tool_input:
                _, permits, canon = opened
                slot = permits.slots.get(canon)
                if slot is not None:
                    slot.open -= 1
                    # Permits are interchangeable among identical calls: keep one per call still open.
                    slot.unspent = min(slot.unspent, max(slot.open, 0))
                    self._prune(permits, canon, slot)
        if entry is not None and entry[0] is context.tool_input:
            return entry[1]
        return None

    @contextlib.contextmanager
    def scope(self) -> Iterator["AegisToolHooks"]:
        """The hooks, for the tool calls made inside the block only: registered in CrewAI's
        execution-scoped registry (after the global hooks, beside the scoped ones already
        there), gone when the block ends."""
        hooks = {point: list(get_scoped_hooks(point)) for point in InterceptionPoint}
        for point, hook in ((InterceptionPoint.PRE_TOOL_CALL, self.before_tool_call),
                            (InterceptionPoint.POST_TOOL_CALL, self.after_tool_call)):
            if hook not in hooks[point]:  # already there in an enclosing block
                hooks[point].append(hook)
        with scoped_hooks(hooks):
            yield self

    def register(self) -> "AegisToolHooks":
        """Registers both hooks globally, for every crew of the process (they still decide
        only calls to their own guarded tools and to unguarded ones)."""
        register_before_tool_call_hook(self.before_tool_call)
        register_after_tool_call_hook(self.after_tool_call)
        return self

    def unregister(self) -> None:
        """Removes both global hooks."""
        unregister_before_tool_call_hook(self.before_tool_call)
        unregister_after_tool_call_hook(self.after_tool_call)

    def __enter__(self) -> "AegisToolHooks":
        scope = self.scope()
        scope.__enter__()
        self._scopes.set(self._scopes.get() + (scope,))
        return self

    def __exit__(self, *exc: Any) -> None:
        scopes = self._scopes.get()
        if scopes:
            self._scopes.set(scopes[:-1])
            scopes[-1].__exit__(*exc)

    # --- deciding -----------------------------------------------------------------------------

    def _decide(self, context: ToolCallHookContext) -> Optional[bool]:
        with self._lock:
            # Registered twice (globally and in a scope, or nested blocks): one decision and one
            # permit per call, whatever the number of times the hook sees it.
            for table, verdict in ((self._open, None), (self._refusals, False)):
                seen = table.get(id(context.tool_input))
                if seen is not None and seen[0] is context.tool_input:
                    return verdict
        permits = _guard_of(context.tool)
        if permits is not None and permits.hooks is not self:
            return None  # another guard's tool: its own hooks decide, and it runs only on their permit
        if permits is None and context.tool_name not in self._unguarded:
            return self._refuse(context, f"Aegis: `{context.tool_name}` is not guarded "
                                         "(AegisToolHooks.guard_tool): CrewAI could run it again without a "
                                         "decision, so it does not run")
        name = self._tool_names.get(context.tool_name, context.tool_name)
        chain = list(self._chain(context) if callable(self._chain) else self._chain)
        # A plain JSON copy, taken once: exactly this is authorized.
        authorized: Dict[str, Any] = json.loads(json.dumps(dict(context.tool_input or {})))
        try:
            final = self._authorize(context, chain, name, authorized)
        except ApprovalRequired as pending:
            return self._refuse(context, _awaiting(pending))
        except Denied as refused:
            return self._refuse(context, _explain(refused))
        except AegisError as e:
            return self._refuse(context, f"Aegis could not decide on this call: [{e.code}] {e.message}")
        if isinstance(final, str):
            return self._refuse(context, final)
        run = _thaw(final)
        # CrewAI calls the tool with this very dictionary (it must be changed in place).
        context.tool_input.clear()
        context.tool_input.update(run)
        if permits is not None:
            self._issue(context.tool_input, permits, _canonical(run))
        return None

    def _authorize(self, context: ToolCallHookContext, chain: List[str], name: str,
                   authorized: Dict[str, Any]) -> Union[Mapping[str, Any], str]:
        """The arguments to run with; raises as :func:`aegis.args_to_run` does, or returns the
        message for a call a human rejected."""
        held = self._take_token(name, authorized, chain)
        if held is not None:
            key, token = held
            try:
                return args_to_run(self._engine.authorize_enforced(chain, name, authorized, approval_token=token))
            except Denied as refused:
                if not _FOREIGN_TOKEN_CODES.intersection(refused.decision.codes):
                    raise  # spent, expired, replayed...: dropped
                # Another agent's or task's token for the same call: not used up; decide without it.
                self._put_back(key, token)
            except ApprovalRequired:
                raise
            except AegisError:
                self._put_back(key, token)  # the engine could not decide: the token was not spent
                raise
        try:
            return args_to_run(self._engine.authorize_enforced(chain, name, authorized))
        except ApprovalRequired as pending:
            if self._ask_human is None:
                raise
            answer = self._ask_human(context, pending, name, authorized)
            if answer is None:
                return f"a human rejected this call (approval {pending.approval_id})"
            return args_to_run(self._engine.authorize_enforced(chain, name, authorized, approval_token=answer))

    def _take_token(self, tool: str, args: Mapping[str, Any],
                    chain: Sequence[str]) -> Optional[Tuple[Tuple[str, str, str], str]]:
        with self._lock:
            if not self._tokens:
                return None
        digest = call_digest(tool, args)
        who = _chain_identity(chain)
        with self._lock:
            if who is not None:
                key: Optional[Tuple[str, str, str]] = (digest,) + who
            else:
                # A chain this guard cannot read the identity of: a token for the same call is
                # tried, and put back if the core finds it is another agent's or task's.
                key = next((k for k in self._tokens if k[0] == digest), None)
            token = self._tokens.pop(key, None) if key is not None else None
        return None if key is None or token is None else (key, token)

    def _put_back(self, key: Tuple[str, str, str], token: str) -> None:
        with self._lock:
            self._tokens.setdefault(key, token)

    def _issue(self, tool_input: Dict[str, Any], permits: _Permits, canon: str) -> None:
        """One permit for one run of the tool with these arguments, until the after-hook."""
        with self._lock:
            slot = permits.slots.get(canon)
            if slot is None:
                slot = permits.slots[canon] = _Slot()
            permits.slots.move_to_end(canon)
            slot.unspent += 1
            slot.open += 1
            self._open[id(tool_input)] = (tool_input, permits, canon)
            while len(self._open) > _MAX_PENDING_REFUSALS:
                _, (_, stale, stale_canon) = self._open.popitem(last=False)
                stale_slot = stale.slots.get(stale_canon)
                if stale_slot is not None:
                    stale_slot.open -= 1
                    stale_slot.unspent = min(stale_slot.unspent, max(stale_slot.open, 0))
                    self._prune(stale, stale_canon, stale_slot)
            while len(permits.slots) > _MAX_PERMITS_PER_TOOL:
                permits.slots.popitem(last=False)

    @staticmethod
    def _prune(permits: _Permits, canon: str, slot: _Slot) -> None:
        # Called with the lock held.
        if slot.unspent <= 0 and slot.open <= 0 and permits.slots.get(canon) is slot:
            del permits.slots[canon]

    def _refuse(self, context: ToolCallHookContext, message: str) -> bool:
        tool_input = context.tool_input
        if isinstance(tool_input, dict):
            with self._lock:
                self._refusals[id(tool_input)] = (tool_input, message)
                while len(self._refusals) > _MAX_PENDING_REFUSALS:
                    self._refusals.popitem(last=False)
        return False
