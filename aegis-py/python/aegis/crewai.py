"""CrewAI guard: every tool call of a crew is authorized by Aegis first, through CrewAI's
tool-call hooks (``PRE_TOOL_CALL`` / ``POST_TOOL_CALL``, the ``@before_tool_call`` and
``@after_tool_call`` registries)::

    hooks = AegisToolHooks(engine, chain, tool_names={"stripe_create_payment": "stripe.create_payment"})
    with hooks:                     # registers both hooks; `hooks.register()` keeps them
        crew.kickoff()

The core's enforcement of the decision rules (:func:`aegis.args_to_run`):

- refused: the before-hook returns ``False`` (CrewAI then does not run the tool) and the
  after-hook replaces CrewAI's "blocked by hook" text with the reasons, so the model is told why;
- run: the tool runs with exactly the arguments the core names: the hook rewrites
  ``context.tool_input`` in place, the dictionary CrewAI then calls the tool with (a
  ``sanitize`` decision's redactions are what the tool receives);
- awaiting an approval, two ways:

  * by default the call is blocked and the model is told the approval id and to make the same
    call again once a person approved. A person with the approver role approves
    (``engine.approve(approval_id, approver_chain)``) and the host hands the result to
    :meth:`AegisToolHooks.approved`, which holds the override token for exactly that call: the
    next identical call presents it and runs once. This suits crews that run unattended.
  * with ``ask_human=console_approval`` the hook uses CrewAI's own human-input mechanism
    (``ToolCallHookContext.request_human_input``): the run waits at the console for the
    override token of the approval it shows, then the call runs once with it; an empty answer
    rejects the call.

CrewAI runs hooks in registration order (global hooks, then crew-scoped ones) and swallows an
exception raised by a hook as if the hook allowed the call; this hook therefore never raises
(any error blocks the call), and must be registered after any hook that rewrites tool input:
a later hook could change what the tool runs with after Aegis decided.

Install with ``pip install aegis-sod[crewai]``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from crewai.hooks import (
    ToolCallHookContext,
    register_after_tool_call_hook,
    register_before_tool_call_hook,
    unregister_after_tool_call_hook,
    unregister_before_tool_call_hook,
)

from . import AegisError, ApprovalRequired, ApprovalResolution, Denied, Engine, _thaw, args_to_run, call_digest

ChainSource = Union[Sequence[str], Callable[[ToolCallHookContext], Sequence[str]]]
#: Asks a person for the override token of ``pending`` (for ``tool`` with ``args``); None rejects.
AskHuman = Callable[[ToolCallHookContext, ApprovalRequired, str, Mapping[str, Any]], Optional[str]]

# Refusals waiting for their after-hook; a crew that stops between the two hooks leaves its
# entry behind, so only the most recent ones are kept.
_MAX_PENDING_REFUSALS = 1024


def _explain(refused: Union[Denied, ApprovalRequired]) -> str:
    reasons = "; ".join(f"{r.code}" + (f" ({r.policy_id})" if r.policy_id else "") + f": {r.message}"
                        for r in refused.decision.reasons)
    return f"Aegis denied this call: {reasons or refused.message}"


def _awaiting(pending: ApprovalRequired) -> str:
    why = "; ".join(r.message for r in pending.decision.reasons) or pending.message
    return (f"Aegis: this call needs a human approval ({pending.approval_id}): {why}. It did not run. "
            "Once a person has approved it, make the same call again with the same arguments.")


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


class AegisToolHooks:
    """CrewAI tool-call hooks that authorize every tool call with Aegis before it runs.

    ``chain`` is the caller's credential chain, or a function of the hook context returning
    it (e.g. by ``context.agent.role``). ``tool_names`` maps CrewAI's tool names (sanitized:
    lowercase, ``_`` for other characters) to the bundle's where they differ; a tool it does
    not list is authorized under CrewAI's name, so a tool the bundle does not know is denied.
    ``ask_human`` (e.g. :func:`console_approval`) asks a person for an approval's override
    token while the call waits; without it an approval blocks the call until it is retried
    after :meth:`approved`."""

    def __init__(self, engine: Engine, chain: ChainSource, *, tool_names: Optional[Mapping[str, str]] = None,
                 ask_human: Optional[AskHuman] = None) -> None:
        self._engine = engine
        self._chain = chain
        self._tool_names = dict(tool_names or {})
        self._ask_human = ask_human
        self._lock = threading.Lock()
        self._tokens: Dict[str, str] = {}
        # id(tool_input) -> (tool_input, message): CrewAI hands the after-hook the same dict.
        self._refusals: "OrderedDict[int, Tuple[Dict[str, Any], str]]" = OrderedDict()

    def approved(self, resolution: ApprovalResolution) -> None:
        """Holds the override token of an accepted approval for the call it approved: the next
        call with that tool and those arguments presents it (once). A refused approval is
        ignored (nothing is held)."""
        if resolution.accepted and resolution.override_token:
            with self._lock:
                self._tokens[resolution.approval.call_digest] = resolution.override_token

    def before_tool_call(self, context: ToolCallHookContext) -> Optional[bool]:
        """The ``PRE_TOOL_CALL`` hook: None lets the call run (its input rewritten to what the
        core names), False blocks it."""
        try:
            return self._decide(context)
        except Exception as e:  # noqa: BLE001  CrewAI would take an exception as "allowed"
            return self._refuse(context, f"Aegis could not decide on this call: {type(e).__name__}: {e}")

    def after_tool_call(self, context: ToolCallHookContext) -> Optional[str]:
        """The ``POST_TOOL_CALL`` hook: for a call this guard blocked, the text the model gets
        instead of CrewAI's "blocked by hook" (the reasons, or the approval to wait for)."""
        with self._lock:
            entry = self._refusals.pop(id(context.tool_input), None)
        if entry is not None and entry[0] is context.tool_input:
            return entry[1]
        return None

    def register(self) -> "AegisToolHooks":
        """Registers both hooks globally (for every crew of the process)."""
        register_before_tool_call_hook(self.before_tool_call)
        register_after_tool_call_hook(self.after_tool_call)
        return self

    def unregister(self) -> None:
        """Removes both hooks."""
        unregister_before_tool_call_hook(self.before_tool_call)
        unregister_after_tool_call_hook(self.after_tool_call)

    def __enter__(self) -> "AegisToolHooks":
        return self.register()

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    def _decide(self, context: ToolCallHookContext) -> Optional[bool]:
        name = self._tool_names.get(context.tool_name, context.tool_name)
        chain = self._chain(context) if callable(self._chain) else self._chain
        # A plain JSON copy, taken once: exactly this is authorized.
        authorized: Dict[str, Any] = json.loads(json.dumps(dict(context.tool_input or {})))
        token = self._take_token(name, authorized)
        try:
            try:
                final = args_to_run(self._engine.authorize_enforced(chain, name, authorized, approval_token=token))
            except ApprovalRequired as pending:
                if token is not None or self._ask_human is None:
                    raise
                token = self._ask_human(context, pending, name, authorized)
                if token is None:
                    return self._refuse(context, f"a human rejected this call (approval {pending.approval_id})")
                final = args_to_run(self._engine.authorize_enforced(chain, name, authorized, approval_token=token))
        except ApprovalRequired as pending:
            return self._refuse(context, _awaiting(pending))
        except Denied as refused:
            return self._refuse(context, _explain(refused))
        except AegisError as e:
            return self._refuse(context, f"Aegis could not decide on this call: [{e.code}] {e.message}")
        # CrewAI calls the tool with this very dictionary (it must be changed in place).
        context.tool_input.clear()
        context.tool_input.update(_thaw(final))
        return None

    def _take_token(self, tool: str, args: Mapping[str, Any]) -> Optional[str]:
        with self._lock:
            if not self._tokens:
                return None
        digest = call_digest(tool, args)
        with self._lock:
            return self._tokens.pop(digest, None)

    def _refuse(self, context: ToolCallHookContext, message: str) -> bool:
        tool_input = context.tool_input
        if isinstance(tool_input, dict):
            with self._lock:
                self._refusals[id(tool_input)] = (tool_input, message)
                while len(self._refusals) > _MAX_PENDING_REFUSALS:
                    self._refusals.popitem(last=False)
        return False
