"""MCP guard: a client session whose ``call_tool`` is authorized by Aegis first.

Wrap an ``mcp.ClientSession`` or an ``mcp.Client``::

    async with Client(server) as client:
        guarded = GuardedSession(client, engine, chain)
        await guarded.call_tool("stripe.create_payment", {"amount": 1200, ...})

The core's enforcement of the decision rules (:func:`aegis.args_to_run`): awaiting an approval
raises :class:`aegis.ApprovalRequired` (retry with ``approval_token=``), any other refusal raises
:class:`aegis.Denied`, and the server receives exactly the arguments the core says to run with
(the authorized ones, or their sanitized form). Everything else is passed through to the
wrapped session.

Install with ``pip install aegis-sod[mcp]``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from . import Engine, _thaw, args_to_run


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
        # The core's enforcement decides; the server receives exactly the arguments it names.
        enforced = self._engine.authorize_enforced(chain, name, authorized, approval_token=approval_token)
        final = _thaw(args_to_run(enforced))
        return await self._session.call_tool(name, final, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
