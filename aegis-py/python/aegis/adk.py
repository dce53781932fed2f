"""Google ADK guard: every tool call of an ADK agent is authorized by Aegis first.

- :class:`AegisToolGuard` is a ``before_tool_callback`` for ``LlmAgent(before_tool_callback=...)``.
- :class:`AegisPlugin` does the same for every agent of a runner (``Runner(plugins=[...])``).

The core's enforcement of the decision rules (:func:`aegis.args_to_run`):

- refused: the tool does not run; the model gets ``{"error": ...}`` naming the reasons;
- run: the tool runs with exactly the arguments the core names: ADK hands the callback the
  dictionary the tool is then called with, and the guard rewrites it in place (so a ``sanitize``
  decision's redactions are what the tool receives). The tool checks it at the last moment:
  the guard records the arguments it authorized for that call (its ``ToolContext``) and makes
  the tool's ``run_async`` run only with exactly those, once. A callback that runs after the
  guard and changes the dictionary (an agent's own ``before_tool_callback`` runs after
  :class:`AegisPlugin`, as does a later one in a list) gets the call refused
  (``{"error": ...}``), the tool unrun; so does a second run of the same call;
- awaiting an approval: the guard asks for ADK's tool confirmation
  (``tool_context.request_confirmation``), which pauses the run with an
  ``adk_request_confirmation`` call carrying the approval id (:func:`pending_approvals` lists
  them). A human approves with ``engine.approve(approval_id, approver_chain)``, and the run is
  resumed with :func:`approval_answer` (the confirmation, with the override token in its
  payload): ADK calls the tool again, the guard presents the token, and the call runs once with
  the arguments that were approved. An answer without a token, or a rejection, runs nothing.

The check is installed on the tool object the guard sees (its ``run_async``); from then on
that object runs only calls a guard authorized, so a tool instance shared with an agent no
guard covers does not run there either.

Install with ``pip install aegis-sod[adk]``.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from google.adk.plugins.base_plugin import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from . import AegisError, ApprovalRequired, Denied, Engine, _thaw, args_to_run

#: The function ADK calls to ask the client for a tool confirmation (its protocol name).
REQUEST_CONFIRMATION = "adk_request_confirmation"
#: The ``type`` of the confirmation payload the guard asks for an approval with.
APPROVAL_REQUEST = "aegis_approval"

ChainSource = Union[Sequence[str], Callable[[ToolContext], Sequence[str]]]


def _explain(refused: Union[Denied, ApprovalRequired]) -> str:
    reasons = "; ".join(f"{r.code}" + (f" ({r.policy_id})" if r.policy_id else "") + f": {r.message}"
                        for r in refused.decision.reasons)
    return f"Aegis denied this call: {reasons or refused.message}"


# The arguments a guard authorized, by the call's ToolContext (the object ADK hands both the
# callbacks and the tool's run): weak, so a call that never runs leaves nothing behind.
_AUTHORIZED: "weakref.WeakKeyDictionary[ToolContext, str]" = weakref.WeakKeyDictionary()
_AUTHORIZED_LOCK = threading.Lock()
# Marks a tool object whose `run_async` checks `_AUTHORIZED`.
_CHECKED = "_aegis_checks_authorized_args"


def _canonical(args: Mapping[str, Any]) -> str:
    # Key order aside, the same arguments only if they serialize the same (1, 1.0 and True
    # differ); a value JSON cannot hold raises (no authorized call holds one).
    return json.dumps(args, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_at_run(tool: BaseTool) -> None:
    """Makes ``tool`` run only with the arguments a guard authorized for the call, once: its
    ``run_async`` (the last step before the tool, after every callback) is wrapped on the
    instance. Raises if the tool object cannot take the wrapper."""
    if getattr(tool, _CHECKED, False):
        return
    run = tool.run_async

    async def run_async(*, args: Dict[str, Any], tool_context: ToolContext) -> Any:
        with _AUTHORIZED_LOCK:
            authorized = _AUTHORIZED.pop(tool_context, None)
        if authorized is None:
            return {"error": f"Aegis: `{tool.name}` did not run: no Aegis decision permits this run (a call "
                             "runs once, and only after the guard authorized it)"}
        try:
            same = _canonical(args) == authorized
        except (TypeError, ValueError):
            same = False
        if not same:
            return {"error": f"Aegis: `{tool.name}` did not run: its arguments were changed after Aegis "
                             "authorized them (by a callback that ran after the guard)"}
        result: Awaitable[Any] = run(args=args, tool_context=tool_context)
        return await result

    setattr(tool, "run_async", run_async)
    setattr(tool, _CHECKED, True)


class AegisToolGuard:
    """A ``before_tool_callback`` that authorizes every tool call with Aegis before it runs.

    ``chain`` is the caller's credential chain, or a function of the ``ToolContext`` returning
    it (e.g. read from ``tool_context.state``). ``tool_names`` maps ADK tool names to the
    bundle's tool names where they differ (ADK names a function tool after the function, and
    Gemini function names cannot hold every character a bundle's names do); a tool it does not
    list is authorized under its own name, so a tool the bundle does not know is denied."""

    def __init__(self, engine: Engine, chain: ChainSource, *, tool_names: Optional[Mapping[str, str]] = None) -> None:
        self._engine = engine
        self._chain = chain
        self._tool_names = dict(tool_names or {})

    def __call__(self, tool: BaseTool, args: Dict[str, Any], tool_context: ToolContext) -> Optional[Dict[str, Any]]:
        """Returns None to let the tool run (with ``args`` rewritten to what the core names), or
        the response the model gets instead of running it."""
        name = self._tool_names.get(tool.name, tool.name)
        chain = self._chain(tool_context) if callable(self._chain) else self._chain
        confirmation = tool_context.tool_confirmation
        token: Optional[str] = None
        if confirmation is not None:
            if not confirmation.confirmed:
                return {"error": "a human rejected this call"}
            payload = confirmation.payload
            found = payload.get("approval_token") if isinstance(payload, Mapping) else None
            token = found if isinstance(found, str) and found else None
        try:
            # A plain JSON copy, taken once: exactly this is authorized (and nothing the tool
            # sees later can differ from it, since `args` is replaced by what the core names).
            authorized: Dict[str, Any] = json.loads(json.dumps(args))
        except (TypeError, ValueError) as e:
            return {"error": f"Aegis could not decide on this call: its arguments are not JSON ({e})"}
        try:
            final = args_to_run(self._engine.authorize_enforced(
                chain, name, authorized, approval_token=token, tool_call_id=tool_context.function_call_id))
        except ApprovalRequired as pending:
            if confirmation is not None:
                # Resumed without a usable token: asking again could loop; the call stays refused.
                return {"error": f"approval {pending.approval_id} is needed; the run was resumed without "
                                 "an approval token"}
            tool_context.request_confirmation(
                hint=f"Aegis: approval {pending.approval_id} is needed before {name} may run. A person "
                     "with the approver role approves it and answers with the override token "
                     "(payload {\"approval_token\": ...}).",
                payload={"type": APPROVAL_REQUEST, "approval_id": pending.approval_id, "tool": name,
                         "args": authorized, "reasons": [r.message for r in pending.decision.reasons]},
            )
            # The pause is not a result for the model to answer (ADK's own confirmation gate
            # does the same): otherwise the model is called again and may retry the call.
            tool_context.actions.skip_summarization = True
            return {"error": f"awaiting approval {pending.approval_id}"}
        except Denied as refused:
            return {"error": _explain(refused)}
        except AegisError as e:
            # Fail closed: an engine that cannot decide runs nothing.
            return {"error": f"Aegis could not decide on this call: [{e.code}] {e.message}"}
        run = _thaw(final)
        try:
            # The tool checks, when it runs, that it runs with exactly this (see the module).
            _check_at_run(tool)
            with _AUTHORIZED_LOCK:
                _AUTHORIZED[tool_context] = _canonical(run)
        except (AttributeError, TypeError, ValueError) as e:
            return {"error": f"Aegis could not decide on this call: the tool's run cannot be bound to the "
                             f"decision ({type(e).__name__}: {e})"}
        # ADK calls the tool with this very dictionary: it now holds exactly what the core named.
        args.clear()
        args.update(run)
        return None


class AegisPlugin(BasePlugin):
    """A runner plugin that guards every tool call of every agent with :class:`AegisToolGuard`.
    Plugins run before the agents' own ``before_tool_callback``, which get the same argument
    dictionary: a call one of them changes after the plugin decided is refused when the tool
    is about to run (see the module)."""

    def __init__(self, engine: Engine, chain: ChainSource, *, tool_names: Optional[Mapping[str, str]] = None,
                 name: str = "aegis") -> None:
        super().__init__(name=name)
        self._guard = AegisToolGuard(engine, chain, tool_names=tool_names)

    async def before_tool_callback(self, *, tool: BaseTool, tool_args: Dict[str, Any],
                                   tool_context: ToolContext) -> Optional[Dict[str, Any]]:
        return self._guard(tool, tool_args, tool_context)


@dataclass(frozen=True)
class PendingToolApproval:
    """A paused call waiting for a human: ``confirmation_call_id`` is the id of ADK's
    ``adk_request_confirmation`` call to answer, ``function_call_id`` the tool call's id."""

    confirmation_call_id: str
    function_call_id: str
    approval_id: str
    tool: str
    args: Mapping[str, Any]
    reasons: Sequence[str]


def pending_approvals(events: Iterable[Any]) -> List[PendingToolApproval]:
    """The Aegis approvals a run paused on, from its events (``runner.run_async(...)``)."""
    found: List[PendingToolApproval] = []
    for event in events:
        for call in event.get_function_calls():
            if call.name != REQUEST_CONFIRMATION or not call.id:
                continue
            original = dict(call.args or {}).get("originalFunctionCall") or {}
            payload = (dict(call.args or {}).get("toolConfirmation") or {}).get("payload")
            if not isinstance(payload, Mapping) or payload.get("type") != APPROVAL_REQUEST:
                continue
            found.append(PendingToolApproval(call.id, str(original.get("id") or ""), str(payload["approval_id"]),
                                             str(payload["tool"]), dict(payload.get("args") or {}),
                                             tuple(payload.get("reasons") or ())))
    return found


def approval_answer(pending: PendingToolApproval, approval_token: Optional[str]) -> types.Content:
    """The message that resumes a paused run: the human's answer to ``pending``, confirmed with
    the override token ``engine.approve`` returned, or rejected when ``approval_token`` is None."""
    answer: Dict[str, Any] = {"confirmed": approval_token is not None}
    if approval_token is not None:
        answer["payload"] = {"approval_token": approval_token}
    response = types.FunctionResponse(name=REQUEST_CONFIRMATION, id=pending.confirmation_call_id, response=answer)
    return types.Content(role="user", parts=[types.Part(function_response=response)])
