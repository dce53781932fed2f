"""Receipt-checking middleware for a tool served over plain HTTP (ASGI and WSGI).

An engine built with ``receipts`` signs a receipt for every call it permits, binding the tool
and the digest of the arguments the tool must run (the redacted ones for ``sanitize``);
``aegis serve`` forwards it to the tool in the ``Aegis-Receipt`` header. The middleware makes
the tool check for itself, offline, against the engine's published keys (its JWK Set, e.g.
``engine.receipt_jwks()`` or ``aegis serve``'s ``/.well-known/jwks.json``)::

    app = AsgiReceiptMiddleware(app, jwks, issuer="aegis.example", audience="payments-http",
                                tool="stripe.create_payment")          # or WsgiReceiptMiddleware

Before the app sees a request, the middleware reads the receipt from ``Aegis-Receipt``, the
tool and the arguments as ``aegis serve``'s gate does, and verifies the receipt
(:func:`aegis.verify_receipt`): signed by a key of the set, by ``issuer``, for ``audience``,
unexpired, for exactly this tool and these arguments, and not used before in this process
(``single_use``).

- The tool: the configuration decides it, from the route path (one name for every path, a
  mapping of exact paths to names, or :func:`tools_under` for the ``/tools/<name>`` routes).
  The route path is the one the app routes on: ASGI's ``scope["path"]`` without
  ``scope["root_path"]`` (a Starlette ``Mount("/v1", ...)`` hands the middleware ``/v1/pay``
  with ``root_path`` ``/v1``: the route is ``/pay``), WSGI's ``PATH_INFO``. ``Mcp-Name``,
  ``Aegis-Tool`` and an MCP ``tools/call`` body's ``params.name`` may only agree with it (the
  app may dispatch on any of them). A path the mapping or function names no tool for is
  refused, whatever the request names: the app may still route it to a handler (a catch-all,
  a forgotten route), and a client must not choose which tool its receipt is checked against.
  The one exception is ``dispatch_paths``: exact route paths (an MCP endpoint, ``/mcp``) where
  the request itself names the tool, in those places, all agreeing.
- The arguments: the JSON body (an MCP ``tools/call`` request's ``params.arguments``); an empty
  body is ``{}``. A body is read as JSON only when the request says it is JSON
  (``Content-Type: application/json`` or ``*/*+json``, UTF-8, not ``Content-Encoding``d): an
  app reading a form or another encoding would read other arguments out of the same bytes.

Otherwise the request is refused with the core's JSON error ``{"code", "message"}``, the code
also in the ``Aegis-Reason`` header: 403 ``receipt_invalid`` (no receipt, forged, expired,
another issuer or audience, already used), 403 ``receipt_mismatch`` (another tool, other
arguments, or a query string the receipt does not cover), 403 ``args_invalid`` (two tools
named), 403 ``malformed_request`` (no tool configured for the path, a JSON-RPC request other
than ``tools/call``), 400 ``malformed_request`` (a body that is not one JSON object, duplicate
keys, NaN, an integer beyond ±2^53), 415 ``malformed_request`` (a body not sent as JSON), 413 (a
body larger than ``max_body``). A request that passes reaches the app with its body intact, the
receipt's claims in ``scope["aegis.receipt"]`` (ASGI) or ``environ["aegis.receipt"]`` (WSGI).

The tool must take its arguments from the JSON body only: nothing else is bound by the receipt.
Single use is per process (``verify_receipt(consume=True)``): behind several worker processes a
receipt can be presented once to each, within its lifetime.

Needs nothing beyond this package.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import (Any, Awaitable, Callable, Collection, Dict, Iterable, List, Mapping, MutableMapping, Optional,
                    Sequence, Tuple, Union)

from . import AegisError, verify_receipt

#: The header a call carries its decision receipt in (the one ``aegis serve`` forwards).
RECEIPT_HEADER = "Aegis-Receipt"
#: Where the verified receipt's claims are left for the app (ASGI scope, WSGI environ).
CLAIMS_KEY = "aegis.receipt"

#: The tool a request calls: one name for every request, a mapping of exact paths to names, or
#: a function of the path (None: the path names none).
ToolSource = Union[str, Mapping[str, str], Callable[[str], Optional[str]]]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]

# RFC 8785 (and the core) cannot tell integers apart beyond this; the app would see the exact one.
_MAX_SAFE_INTEGER = 2 ** 53


def tools_under(prefix: str = "/tools/") -> Callable[[str], Optional[str]]:
    """A tool source reading the tool from the path segment after ``prefix``, as ``aegis
    serve``'s gate does (``/tools/stripe.create_payment``); a path with more segments, or
    outside ``prefix``, names none."""

    def tool_of(path: str) -> Optional[str]:
        if not path.startswith(prefix):
            return None
        name = path[len(prefix):].strip("/")
        return name if name and "/" not in name else None

    return tool_of


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: the HTTP status and the core's error code and message."""

    status: int
    code: str
    message: str

    def body(self) -> bytes:
        """The core's JSON error."""
        return json.dumps({"code": self.code, "message": self.message}).encode()

    def headers(self) -> List[Tuple[str, str]]:
        """The response headers: JSON, its length, and the code in ``Aegis-Reason``."""
        body = self.body()
        return [("content-type", "application/json"), ("content-length", str(len(body))), ("aegis-reason", self.code)]


_REASONS = {400: "Bad Request", 403: "Forbidden", 413: "Payload Too Large", 415: "Unsupported Media Type"}


def route_path(scope: Mapping[str, Any]) -> str:
    """The path an ASGI app routes on: ``scope["path"]`` without ``scope["root_path"]`` (the
    prefix a mount or a proxy consumed), as Starlette's router reads it. A path that does not
    start with the root path at a segment boundary is taken as it is."""
    path = str(scope.get("path") or "")
    root = str(scope.get("root_path") or "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root):] if path[len(root)] == "/" else path


def _not_json_reason(values: Sequence[str]) -> Optional[str]:
    """Why a body with these ``Content-Type`` values is not one to read as JSON, or None."""
    if len(values) != 1:
        return "no `Content-Type`" if not values else "`Content-Type` is sent more than once"
    media, *params = [part.strip() for part in values[0].split(";")]
    media = media.lower()
    kind, _, subtype = media.partition("/")
    if not kind or not (media == "application/json" or subtype.endswith("+json")):
        return f"`Content-Type: {values[0]}` is not JSON"
    for param in params:
        name, _, value = param.partition("=")
        # The check reads UTF-8: an app honouring another charset would decode other text.
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"the charset of `Content-Type: {values[0]}` is not UTF-8"
    return None


class ReceiptCheck:
    """The check both middlewares make (usable on its own by another framework's hook)."""

    def __init__(self, jwks: Mapping[str, Any], *, issuer: str, audience: str, tool: ToolSource,
                 single_use: bool = True, max_body: int = 1 << 20, exempt: Collection[str] = (),
                 allow_query: bool = False, dispatch_paths: Collection[str] = ()) -> None:
        """``jwks`` is the engine's receipt JWK Set (public keys only), ``issuer`` and
        ``audience`` what its receipts must name, ``tool`` where the tool's name comes from.
        ``exempt`` lists exact route paths served without a receipt (a health check);
        everything else needs one. ``allow_query`` lets a query string through (the tool must
        then ignore it). ``dispatch_paths`` lists exact route paths where the request names the
        tool (``Mcp-Name``, ``Aegis-Tool``, an MCP body) because ``tool`` names none there."""
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), (list, tuple)):
            raise TypeError("`jwks` is a JWK Set as a mapping (`{\"keys\": [...]}`)")
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.tool = tool
        self.single_use = single_use
        self.max_body = max_body
        self.exempt = frozenset(exempt)
        self.allow_query = allow_query
        self.dispatch_paths = frozenset(dispatch_paths)

    def tool_for(self, path: str) -> Optional[str]:
        """The tool served at the route path ``path``, as configured (None: none is)."""
        if isinstance(self.tool, str):
            return self.tool
        if isinstance(self.tool, Mapping):
            return self.tool.get(path)
        return self.tool(path)

    def check(self, path: str, query: str, headers: Mapping[str, Sequence[str]],
              body: bytes) -> Union[Dict[str, Any], Refusal]:
        """The receipt's claims when the call may run, or the refusal. ``path`` is the route
        path (:func:`route_path` for ASGI, ``PATH_INFO`` for WSGI); ``headers`` maps lowercase
        names to every value the request carries (``content-type`` and ``content-encoding``
        included)."""
        receipts = list(headers.get("aegis-receipt") or ())
        if len(receipts) > 1:
            return Refusal(403, "receipt_invalid", f"receipt: more than one `{RECEIPT_HEADER}` header")
        call = self._call_of(path, headers, body)
        if isinstance(call, Refusal):
            return call
        tool, args = call
        if query and not self.allow_query:
            return Refusal(403, "receipt_mismatch", "receipt: the query string is not covered by the receipt")
        try:
            return verify_receipt(receipts[0] if receipts else "", self.jwks, issuer=self.issuer,
                                  audience=self.audience, tool=tool, args=args, consume=self.single_use)
        except AegisError as e:
            status = 400 if e.code == "malformed_request" else 403
            return Refusal(status, e.code, e.message)

    def _call_of(self, path: str, headers: Mapping[str, Sequence[str]],
                 body: bytes) -> Union[Tuple[str, Dict[str, Any]], Refusal]:
        """The tool and the arguments: the configured tool, every place that names one agreeing."""
        configured = self.tool_for(path) or None  # an empty name names no tool either
        if configured is None and path not in self.dispatch_paths:
            # The app may route this path to a handler all the same (a mount, a catch-all, a
            # route the configuration forgot): what the client names must not pick the tool.
            return Refusal(403, "malformed_request",
                           f"no tool is configured for `{path}`: the request may not name one here "
                           "(list the path in `dispatch_paths` if it dispatches on the request)")
        names = [configured]
        for header in ("mcp-name", "aegis-tool"):
            values = [v for v in headers.get(header) or () if v.strip()]
            if len(values) > 1:
                return Refusal(403, "malformed_request", f"the `{header}` header is sent more than once")
            names += [v.strip() for v in values]
        if body:
            encodings = [v.strip() for v in headers.get("content-encoding") or () if v.strip()]
            if any(e.lower() != "identity" for e in encodings):
                return Refusal(415, "malformed_request", f"the body is sent with `Content-Encoding: "
                                                         f"{', '.join(encodings)}`: the receipt covers it as JSON")
            not_json = _not_json_reason([v for v in headers.get("content-type") or () if v.strip()])
            if not_json is not None:
                # An app reading a form (or text) would take other arguments from these bytes.
                return Refusal(415, "malformed_request", f"the body must be sent as JSON: {not_json}")
        parsed = _json_of(body)
        if isinstance(parsed, Refusal):
            return parsed
        args = {} if parsed is None else parsed
        if isinstance(parsed, dict) and "jsonrpc" in parsed and "method" in parsed:
            params = parsed.get("params")
            if parsed["method"] != "tools/call":
                return Refusal(403, "malformed_request", "only MCP `tools/call` requests are calls of a tool")
            if not isinstance(params, dict) or not isinstance(params.get("name"), str):
                return Refusal(403, "malformed_request", "`tools/call` without `params.name`")
            names.append(params["name"])
            args = params.get("arguments", {})
        if not isinstance(args, dict):
            return Refusal(400, "malformed_request", "the arguments are not a JSON object")
        named = [n for n in names if n]
        if not named:
            return Refusal(403, "malformed_request", f"no tool is named at `{path}`")
        other = next((n for n in named if n != named[0]), None)
        if other is not None:
            return Refusal(403, "args_invalid", f"the call names two tools, `{named[0]}` and `{other}`")
        return named[0], args


def _reject_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    # Parsers differ on which of two equal keys wins: the tool must not see a value the check did not.
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key `{key}`")
        out[key] = value
    return out


def _safe_integer(text: str) -> int:
    value = int(text)
    if abs(value) > _MAX_SAFE_INTEGER:
        raise ValueError(f"the integer `{text}` is beyond ±2^53, where RFC 8785 cannot tell it from its neighbours")
    return value


def _json_of(body: bytes) -> Union[Dict[str, Any], None, Refusal]:
    """The body as one JSON object, read strictly (None for an empty body)."""
    if not body.strip():
        return None
    try:
        parsed = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_reject_constant,
                            parse_int=_safe_integer)
    except (UnicodeDecodeError, ValueError) as e:
        return Refusal(400, "malformed_request", f"the body is not JSON: {e}")
    if not isinstance(parsed, dict):
        return Refusal(400, "malformed_request", "the body is not a JSON object")
    return parsed


class AsgiReceiptMiddleware:
    """ASGI middleware: an HTTP request reaches ``app`` only with a valid receipt for exactly
    its tool and JSON body (see the module). Lifespan events pass through; a WebSocket, whose
    messages no receipt covers, is refused unless its path is exempt."""

    def __init__(self, app: AsgiApp, jwks: Mapping[str, Any], *, issuer: str, audience: str, tool: ToolSource,
                 single_use: bool = True, max_body: int = 1 << 20, exempt: Collection[str] = (),
                 allow_query: bool = False, dispatch_paths: Collection[str] = ()) -> None:
        self.app = app
        self.receipts = ReceiptCheck(jwks, issuer=issuer, audience=audience, tool=tool, single_use=single_use,
                                     max_body=max_body, exempt=exempt, allow_query=allow_query,
                                     dispatch_paths=dispatch_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        # What the app routes on: under a mount, `path` still holds the mount's prefix.
        path = route_path(scope)
        if kind == "lifespan" or (kind in ("http", "websocket") and path in self.receipts.exempt):
            await self.app(scope, receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await receive()  # websocket.connect; a close before accepting is a 403 (ASGI spec)
                await send({"type": "websocket.close", "code": 1008})
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.receipts.max_body:
                await _asgi_refuse(send, Refusal(413, "malformed_request",
                                                 f"the body is larger than {self.receipts.max_body} bytes"))
                return
        headers: Dict[str, List[str]] = {}
        for name, value in scope.get("headers") or []:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        query = bytes(scope.get("query_string") or b"").decode("latin-1")
        verdict = self.receipts.check(path, query, headers, bytes(body))
        if isinstance(verdict, Refusal):
            await _asgi_refuse(send, verdict)
            return
        replayed = False

        async def replay() -> Message:
            # The app reads the very body that was checked, then the connection's own events.
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app({**scope, CLAIMS_KEY: verdict}, replay, send)


async def _asgi_refuse(send: Send, refusal: Refusal) -> None:
    headers = [(k.encode(), v.encode()) for k, v in refusal.headers()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": refusal.body(), "more_body": False})


class WsgiReceiptMiddleware:
    """WSGI middleware: a request reaches ``app`` only with a valid receipt for exactly its
    tool and JSON body (see the module). The body is read whole (``CONTENT_LENGTH``, or to the
    end where the server marks the input terminated) and handed on as ``wsgi.input``."""

    def __init__(self, app: WsgiApp, jwks: Mapping[str, Any], *, issuer: str, audience: str, tool: ToolSource,
                 single_use: bool = True, max_body: int = 1 << 20, exempt: Collection[str] = (),
                 allow_query: bool = False, dispatch_paths: Collection[str] = ()) -> None:
        self.app = app
        self.receipts = ReceiptCheck(jwks, issuer=issuer, audience=audience, tool=tool, single_use=single_use,
                                     max_body=max_body, exempt=exempt, allow_query=allow_query,
                                     dispatch_paths=dispatch_paths)

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # The route path: PEP 3333 already keeps the mount point (`SCRIPT_NAME`) out of it.
        path = str(environ.get("PATH_INFO") or "")
        if path in self.receipts.exempt:
            return self.app(environ, start_response)
        body = self._body(environ)
        if isinstance(body, Refusal):
            return _wsgi_refuse(start_response, body)
        # A server joins a repeated header with commas; a receipt (a compact JWS) or a tool name
        # holds none, so a comma means the header was sent more than once.
        headers = {name: [v.strip() for v in str(environ[key]).split(",")]
                   for name, key in (("aegis-receipt", "HTTP_AEGIS_RECEIPT"), ("mcp-name", "HTTP_MCP_NAME"),
                                     ("aegis-tool", "HTTP_AEGIS_TOOL"), ("content-type", "CONTENT_TYPE"),
                                     ("content-encoding", "HTTP_CONTENT_ENCODING")) if key in environ}
        verdict = self.receipts.check(path, str(environ.get("QUERY_STRING") or ""), headers, body)
        if isinstance(verdict, Refusal):
            return _wsgi_refuse(start_response, verdict)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[CLAIMS_KEY] = verdict
        return self.app(environ, start_response)

    def _body(self, environ: Dict[str, Any]) -> Union[bytes, Refusal]:
        limit = self.receipts.max_body
        too_large = Refusal(413, "malformed_request", f"the body is larger than {limit} bytes")
        stream = environ.get("wsgi.input")
        length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
        if length_text:
            try:
                length = int(length_text)
            except ValueError:
                return Refusal(400, "malformed_request", "Content-Length is not a number")
            if length < 0:
                return Refusal(400, "malformed_request", "Content-Length is negative")
            if length > limit:
                return too_large
            data = _read(stream, length)
            if len(data) != length:
                return Refusal(400, "malformed_request", "the body is shorter than its Content-Length")
            return data
        if environ.get("wsgi.input_terminated"):
            data = _read(stream, limit + 1)
            return too_large if len(data) > limit else data
        # PEP 3333: without a length the app may read no body either.
        return b""


def _read(stream: Any, size: int) -> bytes:
    out = bytearray()
    while stream is not None and len(out) < size:
        chunk = stream.read(size - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _wsgi_refuse(start_response: StartResponse, refusal: Refusal) -> List[bytes]:
    start_response(f"{refusal.status} {_REASONS.get(refusal.status, 'Forbidden')}", refusal.headers())
    return [refusal.body()]
