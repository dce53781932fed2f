"""LangChain / LangGraph guard: every tool call of an agent is authorized by Aegis first.

- :class:`AegisMiddleware` for ``langchain.agents.create_agent(..., middleware=[...])``.
- :func:`tool_call_wrapper` for ``langgraph.prebuilt.ToolNode(tools, wrap_tool_call=...)``.
- :func:`create_delegated_agent`, :class:`DelegatedMiddleware` and :func:`delegated_chain` for
  the sub-agents of a supervisor (subgraphs as nodes, or agents called as tools): each sub-agent
  acts on a delegation an :class:`aegis.delegation.Delegator` mints for it when work is passed
  to it, scoped to its own tools, so Aegis attests it as ``planner/finance-agent`` and
  segregation of duties holds across the whole chain.

Aegis's core decides whether the tool runs (its enforcement of the decision). When refused,
the tool does not run and the model gets a ``ToolMessage`` with ``status="error"``. When a human
must approve, the graph is interrupted (LangGraph ``interrupt()``) with the approval id; resume
with ``Command(resume={"approval_token": token})`` after a human approved (the call then runs
once, with the override token), or ``Command(resume={"rejected": True})``.
Interrupts need a checkpointer, as with any human-in-the-loop graph.

Install with ``pip install aegis-sod[langchain]``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from . import ApprovalRequired, Denied, Engine, _thaw, args_to_run
from .delegation import Delegator

ChainSource = Union[Sequence[str], Callable[[ToolCallRequest], Sequence[str]]]
Handler = Callable[[ToolCallRequest], Union[ToolMessage, Command[Any]]]


def _error(request: ToolCallRequest, text: str) -> ToolMessage:
    call = request.tool_call
    return ToolMessage(content=text, tool_call_id=call["id"], name=call["name"], status="error")


def _explain(refused: Union[Denied, ApprovalRequired]) -> str:
    reasons = "; ".join(f"{r.code}" + (f" ({r.policy_id})" if r.policy_id else "") + f": {r.message}"
                        for r in refused.decision.reasons)
    return f"Aegis denied this call: {reasons or refused.message}"


def _ask_human(pending: ApprovalRequired, tool: str, args: Mapping[str, Any]) -> Optional[str]:
    """Interrupts the graph for an approval; the override token it is resumed with, if any."""
    answer = interrupt({
        "type": "aegis_approval",
        "approval_id": pending.approval_id,
        "tool": tool,
        "args": args,
        "reasons": [r.message for r in pending.decision.reasons],
    })
    token = answer.get("approval_token") if isinstance(answer, Mapping) else None
    return token if isinstance(token, str) and token else None


def tool_call_wrapper(engine: Engine, chain: ChainSource) -> Callable[[ToolCallRequest, Handler], Union[ToolMessage, Command[Any]]]:
    """A ``wrap_tool_call`` function for ``ToolNode``; ``chain`` is the caller's credential chain
    (or a function of the request returning it, e.g. read from the graph state).

    The core's enforcement decides (:func:`aegis.args_to_run`): the tool runs with exactly the
    arguments it names, or not at all."""

    def wrap(request: ToolCallRequest, handler: Handler) -> Union[ToolMessage, Command[Any]]:
        call = request.tool_call
        current = chain(request) if callable(chain) else chain
        # A plain JSON copy, taken once: exactly this is authorized.
        authorized: Dict[str, Any] = json.loads(json.dumps(dict(call.get("args") or {})))
        try:
            try:
                final = args_to_run(engine.authorize_enforced(current, call["name"], authorized))
            except ApprovalRequired as pending:
                token = _ask_human(pending, call["name"], authorized)
                if token is None:
                    return _error(request, f"a human rejected this call (approval {pending.approval_id})")
                final = args_to_run(engine.authorize_enforced(current, call["name"], authorized, approval_token=token))
        except (Denied, ApprovalRequired) as refused:
            return _error(request, _explain(refused))
        return handler(request.override(tool_call={**call, "args": _thaw(final)}))

    return wrap


class AegisMiddleware(AgentMiddleware):
    """Agent middleware that authorizes every tool call with Aegis before it runs."""

    def __init__(self, engine: Engine, chain: ChainSource) -> None:
        super().__init__()
        self._wrap = tool_call_wrapper(engine, chain)

    def wrap_tool_call(self, request: ToolCallRequest, handler: Handler) -> Union[ToolMessage, Command[Any]]:
        return self._wrap(request, handler)


# --- supervisors and their sub-agents --------------------------------------------------------

ToolLike = Union[BaseTool, Callable[..., Any], str]


def _tool_names(tools: Sequence[ToolLike]) -> List[str]:
    """The names the agent's tools are called by (what Aegis decides on and scopes)."""
    if isinstance(tools, str):
        raise TypeError("`tools` is a sequence of tools, not one name")
    names: List[str] = []
    for tool in tools:
        if isinstance(tool, str):
            names.append(tool)
        elif isinstance(tool, BaseTool):
            names.append(tool.name)
        elif callable(tool) and isinstance(getattr(tool, "__name__", None), str):
            names.append(tool.__name__)  # create_agent names a plain function's tool after it
        else:
            raise TypeError(f"cannot tell the name of tool {tool!r}: pass a BaseTool, a function or its name")
    return names


def delegated_chain(delegator: Delegator, name: str,
                    tools: Sequence[ToolLike]) -> Callable[[ToolCallRequest], List[str]]:
    """A chain source (for :func:`tool_call_wrapper` or :class:`AegisMiddleware`) for sub-agent
    `name` of a supervisor acting for `delegator`: the delegation minted for it (once, then
    cached and renewed), scoped to the names of `tools` its delegator holds."""
    sub = delegator.child(name, _tool_names(tools))
    return lambda _request: sub.chain


class DelegatedMiddleware(AegisMiddleware):
    """:class:`AegisMiddleware` for sub-agent `name` of a supervisor acting for `delegator`: when
    the sub-agent starts on the work passed to it, its delegation is minted (scoped to `tools`,
    appended to the supervisor's chain), and every tool call it makes is decided on that chain."""

    def __init__(self, engine: Engine, delegator: Delegator, name: str, tools: Sequence[ToolLike]) -> None:
        self.delegator = delegator.child(name, _tool_names(tools))
        sub = self.delegator
        super().__init__(engine, lambda _request: sub.chain)

    def before_agent(self, state: Any, runtime: Runtime[Any]) -> Optional[Dict[str, Any]]:
        # Minted (or renewed) as the work is handed over; an error stops the sub-agent here.
        self.delegator.chain
        return None


def create_delegated_agent(engine: Engine, delegator: Delegator, name: str, model: Any, tools: Sequence[Any], *,
                           middleware: Sequence[AgentMiddleware] = (), **kwargs: Any) -> Any:
    """``langchain.agents.create_agent`` for sub-agent `name` of a supervisor acting for
    `delegator`: the graph is named `name` (add it as a node, or call it from a tool), and its
    tool calls are decided by Aegis on the delegation minted for it (:class:`DelegatedMiddleware`,
    placed innermost, so no other middleware changes a call after Aegis decided on it).
    `kwargs` go to ``create_agent`` (``checkpointer``, ``system_prompt``, ...)."""
    guard = DelegatedMiddleware(engine, delegator, name, tools)
    return create_agent(model, tools=list(tools), name=name, middleware=[*middleware, guard], **kwargs)
