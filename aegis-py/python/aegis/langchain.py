"""LangChain / LangGraph guard: every tool call of an agent is authorized by Aegis first.

- :class:`AegisMiddleware` for ``langchain.agents.create_agent(..., middleware=[...])``.
- :func:`tool_call_wrapper` for ``langgraph.prebuilt.ToolNode(tools, wrap_tool_call=...)``.

On ``deny`` the tool does not run and the model gets a ``ToolMessage`` with ``status="error"``.
On ``approval_needed`` the graph is interrupted (LangGraph ``interrupt()``) with the approval id;
resume with ``Command(resume={"approval_token": token})`` after a human approved (the call then
runs once, with the override token), or ``Command(resume={"rejected": True})``.
Interrupts need a checkpointer, as with any human-in-the-loop graph.

Install with ``pip install aegis[langchain]``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, interrupt

from . import Decision, Engine

ChainSource = Union[Sequence[str], Callable[[ToolCallRequest], Sequence[str]]]
Handler = Callable[[ToolCallRequest], Union[ToolMessage, Command[Any]]]


def _error(request: ToolCallRequest, text: str) -> ToolMessage:
    call = request.tool_call
    return ToolMessage(content=text, tool_call_id=call["id"], name=call["name"], status="error")


def _explain(decision: Decision) -> str:
    reasons = "; ".join(f"{r.code}" + (f" ({r.policy_id})" if r.policy_id else "") + f": {r.message}" for r in decision.reasons)
    return f"Aegis denied this call: {reasons}"


def tool_call_wrapper(engine: Engine, chain: ChainSource) -> Callable[[ToolCallRequest, Handler], Union[ToolMessage, Command[Any]]]:
    """A ``wrap_tool_call`` function for ``ToolNode``; ``chain`` is the caller's credential chain
    (or a function of the request returning it, e.g. read from the graph state)."""

    def wrap(request: ToolCallRequest, handler: Handler) -> Union[ToolMessage, Command[Any]]:
        call = request.tool_call
        current = chain(request) if callable(chain) else chain
        args: Mapping[str, Any] = call.get("args") or {}
        # Serialized once: exactly these bytes are authorized, and exactly these run.
        authorized = json.loads(json.dumps(dict(args)))
        decision = engine.authorize(current, call["name"], authorized)
        if decision.outcome == "approval_needed":
            answer = interrupt({
                "type": "aegis_approval",
                "approval_id": decision.approval_id,
                "tool": call["name"],
                "args": authorized,
                "reasons": [r.message for r in decision.reasons],
            })
            token: Optional[str] = answer.get("approval_token") if isinstance(answer, Mapping) else None
            if not token:
                return _error(request, f"a human rejected this call (approval {decision.approval_id})")
            decision = engine.authorize(current, call["name"], authorized, approval_token=token)
        if not decision.allowed:
            return _error(request, _explain(decision))
        final = dict(decision.sanitized_args) if decision.sanitized_args is not None else authorized
        return handler(request.override(tool_call={**call, "args": json.loads(json.dumps(final, default=_plain))}))

    return wrap


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


class AegisMiddleware(AgentMiddleware):
    """Agent middleware that authorizes every tool call with Aegis before it runs."""

    def __init__(self, engine: Engine, chain: ChainSource) -> None:
        super().__init__()
        self._wrap = tool_call_wrapper(engine, chain)

    def wrap_tool_call(self, request: ToolCallRequest, handler: Handler) -> Union[ToolMessage, Command[Any]]:
        return self._wrap(request, handler)
