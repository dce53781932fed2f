"""LangChain / LangGraph guard: every tool call of an agent is authorized by Aegis first.

- :class:`AegisMiddleware` for ``langchain.agents.create_agent(..., middleware=[...])``.
- :func:`tool_call_wrapper` for ``langgraph.prebuilt.ToolNode(tools, wrap_tool_call=...)``.
- :func:`create_delegated_agent`, :class:`DelegatedMiddleware` and :func:`delegated_chain` for
  the sub-agents of a supervisor (subgraphs as nodes, or agents called as tools): each sub-agent
  acts on a delegation an :class:`aegis.delegation.Delegator` mints for it when work is passed
  to it, scoped to its own tools, so Aegis attests it as ``planner/finance-agent`` and
  segregation of duties holds across the whole chain. A graph compiled once serves many
  threads, users and tasks: give it the supervisor's delegator per run (a function of the
  invocation's ``RunnableConfig``, see :data:`DelegatorSource`) rather than one fixed
  :class:`~aegis.delegation.Delegator`, which acts for one task only.

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
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_config
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


#: Where the supervisor's :class:`Delegator` comes from: one fixed delegator (its chain, hence
#: its task, serves every invocation of the graph: right for a graph built per task), or a
#: function of the invocation's ``RunnableConfig`` returning the delegator of that run, e.g.
#: ``lambda config: delegators[config["configurable"]["thread_id"]]`` (the same one again when
#: the thread resumes after an approval, so the sub-agent presents the same delegation).
DelegatorSource = Union[Delegator, Callable[[RunnableConfig], Delegator]]


def _config_of(request: ToolCallRequest) -> Optional[RunnableConfig]:
    """The ``RunnableConfig`` of the invocation a tool call belongs to, as its runtime holds it
    (None: the current graph step's, from ``get_config()``)."""
    config = getattr(getattr(request, "runtime", None), "config", None)
    return config if isinstance(config, dict) else None  # type: ignore[return-value]


class _SubAgent:
    """Sub-agent `name` of a supervisor whose delegator comes from `source`, with `tools`: its
    own delegator, fixed or per invocation."""

    def __init__(self, source: DelegatorSource, name: str, tools: Sequence[ToolLike]) -> None:
        self.name, self.tools = name, _tool_names(tools)
        self.fixed: Optional[Delegator] = None
        self.source: Optional[Callable[[RunnableConfig], Delegator]] = None
        if isinstance(source, Delegator):
            self.fixed = source.child(name, self.tools)
        elif callable(source):
            if not name or "/" in name:  # what `Delegator.child` would say at the first run, said now
                raise ValueError(f"a sub-agent name is non-empty and has no `/`: {name!r}")
            self.source = source
        else:
            raise TypeError("the supervisor's delegator is a Delegator or a function of the run's config, "
                            f"not {type(source).__name__}")

    def delegator(self, config: Optional[RunnableConfig] = None) -> Delegator:
        """This sub-agent's delegator in the invocation `config` names (default: the current
        graph step's)."""
        if self.fixed is not None:
            return self.fixed
        assert self.source is not None
        parent = self.source(config if config is not None else get_config())
        if not isinstance(parent, Delegator):
            # Fail closed: no delegator for this run, so no chain, and nothing runs.
            raise TypeError(f"the delegator source of sub-agent {self.name!r} returned a "
                            f"{type(parent).__name__}, not a Delegator")
        return parent.child(self.name, self.tools)


def delegated_chain(delegator: DelegatorSource, name: str,
                    tools: Sequence[ToolLike]) -> Callable[[ToolCallRequest], List[str]]:
    """A chain source (for :func:`tool_call_wrapper` or :class:`AegisMiddleware`) for sub-agent
    `name` of a supervisor acting for `delegator` (a :data:`DelegatorSource`): the delegation
    minted for it (once per delegator, then cached and renewed), scoped to the names of `tools`
    its delegator holds."""
    sub = _SubAgent(delegator, name, tools)
    return lambda request: sub.delegator(_config_of(request)).chain


class DelegatedMiddleware(AegisMiddleware):
    """:class:`AegisMiddleware` for sub-agent `name` of a supervisor acting for `delegator`: when
    the sub-agent starts on the work passed to it, its delegation is minted (scoped to `tools`,
    appended to the supervisor's chain), and every tool call it makes is decided on that chain.

    `delegator` is a :data:`DelegatorSource`: a fixed :class:`Delegator` (then
    :attr:`delegator` is the sub-agent's own), or a function of the invocation's
    ``RunnableConfig``, asked at the start of every invocation and for every tool call, so one
    compiled graph acts for each run's task on that run's chain (then :attr:`delegator` is
    None: see :meth:`delegator_for`)."""

    def __init__(self, engine: Engine, delegator: DelegatorSource, name: str, tools: Sequence[ToolLike]) -> None:
        self._sub = _SubAgent(delegator, name, tools)
        self.delegator: Optional[Delegator] = self._sub.fixed
        sub = self._sub
        super().__init__(engine, lambda request: sub.delegator(_config_of(request)).chain)

    def delegator_for(self, config: Optional[RunnableConfig] = None) -> Delegator:
        """The sub-agent's delegator in the invocation `config` names (default: the current
        graph step's): :attr:`delegator` when it is fixed."""
        return self._sub.delegator(config)

    def before_agent(self, state: Any, runtime: Runtime[Any]) -> Optional[Dict[str, Any]]:
        # Minted (or renewed) as the work is handed over, for this invocation's delegator; an
        # error stops the sub-agent here.
        self._sub.delegator().chain
        return None


def create_delegated_agent(engine: Engine, delegator: DelegatorSource, name: str, model: Any, tools: Sequence[Any], *,
                           middleware: Sequence[AgentMiddleware] = (), **kwargs: Any) -> Any:
    """``langchain.agents.create_agent`` for sub-agent `name` of a supervisor acting for
    `delegator`: the graph is named `name` (add it as a node, or call it from a tool), and its
    tool calls are decided by Aegis on the delegation minted for it (:class:`DelegatedMiddleware`,
    placed innermost, so no other middleware changes a call after Aegis decided on it).

    `delegator` is a :data:`DelegatorSource`. A fixed :class:`Delegator` makes a graph that acts
    for that one task, whoever invokes it; for a graph compiled once and invoked for many
    threads or users, pass a function of the invocation's ``RunnableConfig`` returning that
    run's delegator (``lambda config: delegators[config["configurable"]["thread_id"]]``).
    `kwargs` go to ``create_agent`` (``checkpointer``, ``system_prompt``, ...)."""
    guard = DelegatedMiddleware(engine, delegator, name, tools)
    return create_agent(model, tools=list(tools), name=name, middleware=[*middleware, guard], **kwargs)
