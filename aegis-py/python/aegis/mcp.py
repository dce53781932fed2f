"""MCP guard: a client session whose ``call_tool`` is authorized by Aegis first.

Wrap an ``mcp.ClientSession`` or an ``mcp.Client``::

    async with Client(server) as client:
        guarded = GuardedSession(client, engine, chain)
        await guarded.call_tool("stripe.create_payment", {"amount": 1200, ...})

Deny raises :class:`aegis.Denied`; approval needed raises :class:`aegis.ApprovalRequired`
(retry with ``approval_token=``). The server receives exactly the authorized (or sanitized)
arguments. Everything else is passed through to the wrapped session.

Install with ``pip install aegis[mcp]``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from . import ApprovalRequired, Denied, Engine, _thaw


class GuardedSession:
    """Authorizes every ``call_tool`` with Aegis before the server sees it."""

    def __init__(self, session: Any, engine: Engine, chain: Union[Sequence[str], Callable[[], Sequence[str]]]) -> None:
        self._session = session
        self._engine = engine
        self._chain = chain

    async def call_tool(self, name: str, arguments: Optional[Mapping[str, Any]] = None, *args: Any,
                        approval_token: Optional[str] = None, **kwargs: Any) -> Any:
        chain = self._chain() if callable(self._chain) else self._chain
        authorized: Dict[str, Any] = json.loads(json.dumps(dict(arguments or {})))
        decision = self._engine.authorize(chain, name, authorized, approval_token=approval_token)
        if decision.outcome == "approval_needed":
            raise ApprovalRequired(decision)
        if not decision.allowed:
            raise Denied(decision)
        final = _thaw(decision.sanitized_args) if decision.sanitized_args is not None else authorized
        return await self._session.call_tool(name, final, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
