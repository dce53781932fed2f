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

On the server side, :func:`require_receipt` makes a tool check for itself: the guarded session
sends the decision's receipt in the request's ``_meta`` (``RECEIPT_META_KEY``), and the tool,
before doing anything, verifies it offline against the engine's published keys for exactly the
name and arguments it received. A client that skips the guard, or changes the arguments after
the decision, gets nothing run.

Install with ``pip install aegis-sod[mcp]``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from . import AegisError, Engine, _thaw, args_to_run, verify_receipt

#: The ``_meta`` key a guarded call carries its decision receipt under.
RECEIPT_META_KEY = "dev.aegis/receipt"


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
        if enforced.decision.receipt:
            kwargs["meta"] = {**dict(kwargs.get("meta") or {}), RECEIPT_META_KEY: enforced.decision.receipt}
        return await self._session.call_tool(name, final, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def require_receipt(ctx: Any, jwks: Mapping[str, Any], *, tool: str, args: Mapping[str, Any], issuer: str,
                    audience: str) -> Dict[str, Any]:
    """For a tool of an MCP server (``ctx`` is its ``Context``): verifies the decision receipt the
    request carries in ``_meta`` against ``jwks`` for exactly ``tool`` (the handler's own name)
    and ``args`` (the arguments the handler is about to run, as it received them), and uses it
    up: the same receipt presented again is refused. Returns its claims. Raises a ``ToolError``
    naming ``receipt_invalid`` (none, not valid, used) or ``receipt_mismatch`` (another tool or
    other arguments); call it before acting."""
    request = ctx.request_context
    meta = dict(request.meta or {}) if request.meta is not None else dict(dict(request.params or {}).get("_meta") or {})
    receipt = str(meta.get(RECEIPT_META_KEY) or "")
    try:
        return verify_receipt(receipt, jwks, issuer=issuer, audience=audience, tool=tool, args=dict(args), consume=True)
    except AegisError as e:
        # A deliberate refusal: the client is told why (a crash would be reported as nothing).
        from mcp.server.mcpserver.exceptions import ToolError

        raise ToolError(f"[{e.code}] {e.message}") from e
