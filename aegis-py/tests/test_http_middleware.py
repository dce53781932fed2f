"""The receipt-checking HTTP middleware (`aegis.http`), served for real: the WSGI one by the
stdlib's `wsgiref` server, the ASGI one by uvicorn (when installed; the ASGI callable is driven by
hand otherwise, and for the cases a plain HTTP client cannot make). Every attack must leave the
tool unrun and get 403 with the core's stable code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import aegis
from aegis.http import CLAIMS_KEY, AsgiReceiptMiddleware, WsgiReceiptMiddleware, tools_under
from payments_setup import (BUNDLE, FINANCE_KEY, ISSUER, ISSUER_KEY, PLANNER_KEY, PLANNER_SCOPE, TOOL, finance_chain,
                            pay, unique_task)

RECEIPTS = {"issuer": "aegis.example", "audience": "payments-http"}
RECEIPT_KEY = aegis.KeyPair.from_seed(bytes([31]) * 32)


def receipt_engine(key: aegis.KeyPair = RECEIPT_KEY, fixed_time: Optional[int] = None, **receipts: Any) -> aegis.Engine:
    config = {"key": key.private_jwk, **RECEIPTS, **receipts}
    return aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, receipts=config, fixed_time=fixed_time)


ENGINE = receipt_engine()
JWKS = ENGINE.receipt_jwks()
assert JWKS is not None


def receipt_for(args: Dict[str, Any], tool: str = TOOL, engine: aegis.Engine = ENGINE,
                chain: Optional[List[str]] = None) -> str:
    if chain is None:
        # The finance agent pays; invoices are the planner's (its root credential's scope).
        chain = finance_chain(unique_task("py-http"))
        chain = chain if tool == TOOL else chain[:1]
    decision = engine.authorize(chain, tool, args)
    assert decision.allowed and decision.receipt, decision
    return decision.receipt


# --- the tool, and two real servers ---------------------------------------------------------------

class Tool:
    """What the tool received: the raw body and the receipt's claims the middleware left."""

    def __init__(self) -> None:
        self.calls: List[Tuple[bytes, Dict[str, Any]]] = []

    def wsgi(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        self.calls.append((body, environ[CLAIMS_KEY] if environ["PATH_INFO"] != "/healthz" else {}))
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps({"ran": True}).encode()]

    async def asgi(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.calls.append((body, scope.get(CLAIMS_KEY, {})))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"ran": True}).encode()})


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    import uvicorn  # installed with mcp (its server transports)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def middleware(kind: str, recorder: Tool, **options: Any) -> Any:
    options = {"tool": TOOL, **RECEIPTS, **options}
    if kind == "wsgi":
        return WsgiReceiptMiddleware(recorder.wsgi, JWKS, **options)
    return AsgiReceiptMiddleware(recorder.asgi, JWKS, **options)


@pytest.fixture(params=["wsgi", "asgi"])
def served(request: pytest.FixtureRequest) -> Iterator[Callable[..., Tuple[str, Tool]]]:
    """Starts the middleware (with `options`) over a recording tool on a real server."""
    with contextlib.ExitStack() as running:

        def start(**options: Any) -> Tuple[str, Tool]:
            tool = Tool()
            app = middleware(request.param, tool, **options)
            url = running.enter_context(serve_wsgi(app) if request.param == "wsgi" else serve_asgi(app))
            return url, tool

        yield start


def post(url: str, body: Any, receipt: Optional[str] = None, headers: Optional[Dict[str, str]] = None,
         raw: Optional[bytes] = None) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
    if receipt is not None:
        request.add_header("Aegis-Receipt", receipt)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def refused(result: Tuple[int, Dict[str, Any], Dict[str, str]], code: str, status: int = 403) -> str:
    got_status, body, headers = result
    assert (got_status, body["code"]) == (status, code), result
    assert headers.get("aegis-reason", headers.get("Aegis-Reason")) == code, headers
    return str(body["message"])


# --- the attacks ----------------------------------------------------------------------------------

def test_a_valid_receipt_runs_the_tool_with_the_body_intact(served: Any) -> None:
    url, tool = served()
    args = pay(1200)
    receipt = receipt_for(args)
    raw = b'{ "destination": "acct_1032D82eZvKYlo2C", "amount": 1200,\n "currency": "eur" }'
    status, body, _ = post(url + "/pay", None, receipt, raw=raw)
    assert (status, body) == (200, {"ran": True})
    assert len(tool.calls) == 1
    received, claims = tool.calls[0]
    assert received == raw  # byte for byte, whatever its key order and spacing
    assert claims["tool"] == TOOL and claims["sub"] == "planner/finance-agent" and claims["aud"] == "payments-http"


def test_no_receipt_is_refused(served: Any) -> None:
    url, tool = served()
    message = refused(post(url, pay(1200)), "receipt_invalid")
    assert "none presented" in message
    assert refused(post(url, pay(1200), receipt=""), "receipt_invalid")
    assert tool.calls == []


def test_a_forged_receipt_is_refused(served: Any) -> None:
    url, tool = served()
    # Same issuer and audience, same claims: only the key is not the engine's.
    forger = receipt_engine(aegis.KeyPair.from_seed(bytes([32]) * 32))
    message = refused(post(url, pay(1200), receipt_for(pay(1200), engine=forger)), "receipt_invalid")
    assert "no key of the set verifies it" in message
    refused(post(url, pay(1200), "eyJhbGciOiJub25lIn0.e30."), "receipt_invalid")
    assert tool.calls == []


def test_a_receipt_for_other_arguments_is_refused(served: Any) -> None:
    url, tool = served()
    receipt = receipt_for(pay(300))
    refused(post(url, pay(30000), receipt), "receipt_mismatch")
    refused(post(url, {**pay(300), "memo": "extra"}, receipt), "receipt_mismatch")
    # A refused mismatch does not use the receipt up: the call it was issued for still runs.
    assert post(url, pay(300), receipt)[0] == 200
    assert len(tool.calls) == 1


def test_a_receipt_is_used_once(served: Any) -> None:
    url, tool = served()
    receipt = receipt_for(pay(500))
    assert post(url, pay(500), receipt)[0] == 200
    assert "already used" in refused(post(url, pay(500), receipt), "receipt_invalid")
    assert len(tool.calls) == 1


def test_an_expired_receipt_is_refused(served: Any) -> None:
    url, tool = served()
    then = int(time.time()) - 3600
    planner = aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=unique_task("py-http-old"),
                               intent="pay", scope=list(PLANNER_SCOPE), issued_at=then)
    finance = aegis.delegate(planner, PLANNER_KEY, "finance-agent", FINANCE_KEY, scope=[TOOL], issued_at=then)
    # An engine whose clock reads an hour ago signs a receipt that expired 59 minutes ago.
    past = receipt_engine(fixed_time=then, ttl_secs=60)
    message = refused(post(url, pay(1200), receipt_for(pay(1200), engine=past, chain=[planner, finance])),
                      "receipt_invalid")
    assert "expired" in message
    assert tool.calls == []


def test_a_receipt_for_another_tool_or_audience_is_refused(served: Any) -> None:
    url, tool = served()
    invoice = {"customer": "cus_1", "amount": 1200}
    refused(post(url, invoice, receipt_for(invoice, tool="invoice.create")), "receipt_mismatch")
    elsewhere = receipt_engine(audience="ledger-http")
    assert "audience" in refused(post(url, pay(1200), receipt_for(pay(1200), engine=elsewhere)), "receipt_invalid")
    assert tool.calls == []


def test_a_sanitized_call_runs_only_with_the_redacted_arguments(served: Any) -> None:
    url, tool = served()
    raw_args = {**pay(300), "card_number": "4242424242424242"}
    chain = finance_chain(unique_task("py-http-card"))
    enforced = ENGINE.authorize_enforced(chain, TOOL, raw_args)
    assert enforced.decision.outcome == "sanitize" and enforced.decision.receipt
    runs = dict(enforced.enforcement.args or {})
    assert runs["card_number"] == "[REDACTED]"
    # The receipt binds what the tool must run: the card number itself is refused.
    refused(post(url, raw_args, enforced.decision.receipt), "receipt_mismatch")
    assert post(url, runs, enforced.decision.receipt)[0] == 200
    assert json.loads(tool.calls[0][0]) == runs


def test_what_the_receipt_cannot_cover_is_refused(served: Any) -> None:
    url, tool = served(max_body=512)
    receipt = receipt_for(pay(700))
    # A query string, a second receipt, duplicate keys (parsers differ on which one wins), an
    # integer RFC 8785 cannot tell from its neighbours, a body that is not an object, a large body.
    refused(post(url + "/?amount=70000", pay(700), receipt), "receipt_mismatch")
    refused(post(url, pay(700), receipt + "," + receipt), "receipt_invalid")
    dup = b'{"amount": 700, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C", "amount": 70000}'
    refused(post(url, None, receipt, raw=dup), "malformed_request", 400)
    big = b'{"amount": 9007199254740993, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"}'
    refused(post(url, None, receipt, raw=big), "malformed_request", 400)
    refused(post(url, [pay(700)], receipt), "malformed_request", 400)
    refused(post(url, None, receipt, raw=b'{"amount": NaN}'), "malformed_request", 400)
    refused(post(url, {**pay(700), "memo": "x" * 600}, receipt), "malformed_request", 413)
    assert tool.calls == []
    assert post(url, pay(700), receipt)[0] == 200  # none of the above used it up


def test_the_tool_comes_from_the_route(served: Any) -> None:
    url, tool = served(tool=tools_under("/tools/"), exempt=["/healthz"])
    receipt = receipt_for(pay(800))
    refused(post(url + "/tools/invoice.create", pay(800), receipt), "receipt_mismatch")
    assert "no tool" in refused(post(url + "/elsewhere", pay(800), receipt), "malformed_request")
    refused(post(url + "/tools/a/b", pay(800), receipt), "malformed_request")
    assert post(url + "/tools/" + TOOL, pay(800), receipt)[0] == 200
    assert post(url + "/healthz", {})[0] == 200  # exempt: no receipt asked
    assert len(tool.calls) == 2


def test_every_place_naming_the_tool_must_agree(served: Any) -> None:
    url, tool = served(tool=tools_under("/tools/"))
    path = url + "/tools/" + TOOL
    receipt = receipt_for(pay(600))
    # The app may dispatch on a header or an MCP body: none may name another tool than the route.
    refused(post(path, pay(600), receipt, headers={"Aegis-Tool": "invoice.create"}), "args_invalid")
    refused(post(path, pay(600), receipt, headers={"Mcp-Name": "invoice.create"}), "args_invalid")
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "invoice.create", "arguments": pay(600)}}
    refused(post(path, rpc, receipt), "args_invalid")
    refused(post(path, {**rpc, "method": "tools/list"}, receipt), "malformed_request")
    assert tool.calls == []
    # An MCP `tools/call` body is checked on its `params.arguments`, and reaches the app whole.
    good = {**rpc, "params": {"name": TOOL, "arguments": pay(600)}}
    assert post(path, good, receipt, headers={"Mcp-Name": TOOL})[0] == 200
    assert json.loads(tool.calls[0][0]) == good
    # Where the route names no tool, a header naming the very tool of the receipt does not
    # make it one: the app may route that path anywhere.
    receipt = receipt_for(pay(650))
    assert "no tool is configured for `/call`" in refused(post(url + "/call", pay(650), receipt,
                                                                headers={"Aegis-Tool": TOOL}), "malformed_request")
    assert len(tool.calls) == 1


def test_only_dispatch_paths_let_the_request_name_the_tool(served: Any) -> None:
    # An MCP endpoint: one path, the tool named by the JSON-RPC body (and `Mcp-Name`).
    url, tool = served(tool=tools_under("/tools/"), dispatch_paths=["/mcp"])
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": TOOL, "arguments": pay(610)}}
    receipt = receipt_for(pay(610))
    # Everywhere else (a catch-all, a forgotten route) the same request runs nothing.
    for path in ("/", "/call", "/mcp/", "/v1/mcp", "/tools/"):
        refused(post(url + path, rpc, receipt, headers={"Mcp-Name": TOOL}), "malformed_request")
    assert tool.calls == []
    assert post(url + "/mcp", rpc, receipt, headers={"Mcp-Name": TOOL})[0] == 200
    # At the dispatch path every name must still agree, and one must be given.
    receipt = receipt_for(pay(620))
    other = {**rpc, "params": {"name": TOOL, "arguments": pay(620)}}
    refused(post(url + "/mcp", other, receipt, headers={"Mcp-Name": "invoice.create"}), "args_invalid")
    refused(post(url + "/mcp", pay(620), receipt), "malformed_request")
    # The configured route keeps its own tool.
    assert post(url + "/tools/" + TOOL, pay(620), receipt)[0] == 200
    assert len(tool.calls) == 2


def test_the_mapping_route_source(served: Any) -> None:
    url, tool = served(tool={"/pay": TOOL, "/invoice": "invoice.create"})
    invoice = {"customer": "cus_9", "amount": 10}
    refused(post(url + "/pay", invoice, receipt_for(invoice, tool="invoice.create")), "receipt_mismatch")
    assert post(url + "/invoice", invoice, receipt_for(invoice, tool="invoice.create"))[0] == 200
    # A path the mapping does not list reaches the app all the same (here every path does):
    # the request's own `Aegis-Tool` or MCP body must not choose the tool it is checked for.
    receipt = receipt_for(invoice, tool="invoice.create")
    refused(post(url + "/v1/pay", invoice, receipt, headers={"Aegis-Tool": "invoice.create"}), "malformed_request")
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "invoice.create", "arguments": invoice}}
    refused(post(url + "/pay/", rpc, receipt), "malformed_request")
    assert len(tool.calls) == 1


ROUTES = {"/pay": TOOL, "/invoice": "invoice.create"}
INVOICE = {"customer": "cus_9", "amount": 10}


def test_asgi_under_a_starlette_mount_checks_the_route_path() -> None:
    # Starlette keeps the mount's prefix in `scope["path"]` (`/v1/pay`) and puts it in
    # `root_path`: the mapping is matched on `/pay`, as the router dispatches.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    ran: List[str] = []

    def handler(name: str) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            ran.append(name)
            return JSONResponse({"ran": name})
        return endpoint

    inner = Starlette(routes=[Route("/pay", handler("pay"), methods=["POST"]),
                              Route("/invoice", handler("invoice"), methods=["POST"]),
                              Route("/{rest:path}", handler("catch-all"), methods=["POST"])])
    app = Starlette(routes=[Mount("/v1", AsgiReceiptMiddleware(inner, JWKS, tool=ROUTES, **RECEIPTS))])
    with serve_asgi(app) as url:
        # The attack: an invoice receipt, the header naming invoice.create, sent to the pay route.
        refused(post(url + "/v1/pay", INVOICE, receipt_for(INVOICE, tool="invoice.create"),
                     headers={"Aegis-Tool": "invoice.create"}), "args_invalid")
        refused(post(url + "/v1/pay", INVOICE, receipt_for(INVOICE, tool="invoice.create")), "receipt_mismatch")
        # A route the mapping forgot (the catch-all) runs nothing, whatever the request names.
        refused(post(url + "/v1/refund", INVOICE, receipt_for(INVOICE, tool="invoice.create"),
                     headers={"Aegis-Tool": "invoice.create"}), "malformed_request")
        assert ran == []
        assert post(url + "/v1/invoice", INVOICE, receipt_for(INVOICE, tool="invoice.create"))[0] == 200
        assert post(url + "/v1/pay", pay(40), receipt_for(pay(40)))[0] == 200
    assert ran == ["invoice", "pay"]


def test_wsgi_under_a_mount_checks_path_info() -> None:
    # A WSGI mount moves its prefix from PATH_INFO to SCRIPT_NAME (PEP 3333), as werkzeug's
    # DispatcherMiddleware does: the mapping is matched on what is left.
    tool = Tool()
    guarded = WsgiReceiptMiddleware(tool.wsgi, JWKS, tool=ROUTES, **RECEIPTS)

    def mounted(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/v1/"):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/v1", path[len("/v1"):]
        return guarded(environ, start_response)

    with serve_wsgi(mounted) as url:
        refused(post(url + "/v1/pay", INVOICE, receipt_for(INVOICE, tool="invoice.create"),
                     headers={"Aegis-Tool": "invoice.create"}), "args_invalid")
        refused(post(url + "/v1/refund", INVOICE, receipt_for(INVOICE, tool="invoice.create"),
                     headers={"Aegis-Tool": "invoice.create"}), "malformed_request")
        assert tool.calls == []
        assert post(url + "/v1/invoice", INVOICE, receipt_for(INVOICE, tool="invoice.create"))[0] == 200
    assert len(tool.calls) == 1


def test_route_path_follows_the_asgi_root_path() -> None:
    from aegis.http import route_path

    assert route_path({"path": "/v1/pay", "root_path": "/v1"}) == "/pay"
    assert route_path({"path": "/v1", "root_path": "/v1"}) == ""
    assert route_path({"path": "/v1pay", "root_path": "/v1"}) == "/v1pay"  # not a segment boundary
    assert route_path({"path": "/pay", "root_path": "/v1"}) == "/pay"
    assert route_path({"path": "/pay"}) == "/pay"


# --- what the body is read as -----------------------------------------------------------------------

def test_a_body_not_sent_as_json_is_refused(served: Any) -> None:
    url, tool = served()
    args = {**pay(100), "memo": "&amount=900000&x="}
    receipt = receipt_for(args)
    # The receipt's arguments, sent as a form: an app reading the form would find amount=900000.
    compact = json.dumps(args, separators=(",", ":")).encode()
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain",
                         "application/json; charset=utf-16", "application/jsonp", "json"):
        message = refused(post(url, None, receipt, raw=compact, headers={"Content-Type": content_type}),
                          "malformed_request", 415)
        assert "JSON" in message or "UTF-8" in message, message
    refused(post(url, None, receipt, raw=compact, headers={"Content-Encoding": "gzip"}), "malformed_request", 415)
    assert tool.calls == []
    # JSON, with or without a UTF-8 charset, and a `+json` type: the receipt's call runs (once).
    assert post(url, None, receipt, raw=compact, headers={"Content-Type": "application/vnd.api+json"})[0] == 200
    receipt = receipt_for(pay(101))
    assert post(url, pay(101), receipt, headers={"Content-Type": "Application/JSON; charset=UTF-8"})[0] == 200
    assert len(tool.calls) == 2


def test_the_form_attack_on_a_form_reading_app() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    read: List[Dict[str, Any]] = []

    async def pay_from_form(request: Request) -> JSONResponse:
        read.append(dict(await request.form()))
        return JSONResponse({"ran": True})

    app = AsgiReceiptMiddleware(Starlette(routes=[Route("/pay", pay_from_form, methods=["POST"])]), JWKS,
                                tool=TOOL, **RECEIPTS)
    args = {**pay(100), "memo": "&amount=900000&x="}
    raw = json.dumps(args, separators=(",", ":")).encode()
    with serve_asgi(app) as url:
        refused(post(url + "/pay", None, receipt_for(args), raw=raw,
                     headers={"Content-Type": "application/x-www-form-urlencoded"}), "malformed_request", 415)
    assert read == []


def test_asgi_a_body_without_content_type_is_refused_an_empty_one_is_not() -> None:
    tool = Tool()
    app = middleware("asgi", tool)
    receipt = receipt_for(pay(900))
    no_type = [h for h in http_scope(receipt=receipt)["headers"] if h[0] != b"content-type"]
    scope = {**http_scope(receipt=receipt), "headers": no_type}
    sent = drive(app, scope, [{"type": "http.request", "body": json.dumps(pay(900)).encode()}])
    assert sent[0]["status"] == 415 and json.loads(sent[1]["body"])["code"] == "malformed_request"
    # An empty body is `{}` whatever the type: it goes on to the receipt check (another call here).
    sent = drive(app, scope, [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 403 and json.loads(sent[1]["body"])["code"] == "receipt_mismatch"
    assert tool.calls == []


# --- the ASGI callable driven by hand (what an HTTP client cannot send) ------------------------------

def drive(app: Any, scope: Dict[str, Any], messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Calls an ASGI app with `messages` as what the server receives; returns what it sent."""
    sent: List[Dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> Dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a real server blocks until the client goes away
        raise AssertionError("unreachable")

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return sent


def http_scope(path: str = "/", receipt: Optional[str] = None) -> Dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if receipt is not None:
        headers.append((b"aegis-receipt", receipt.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
            "raw_path": path.encode(), "query_string": b"", "headers": headers}


def test_asgi_body_in_several_messages_is_checked_whole() -> None:
    tool = Tool()
    app = middleware("asgi", tool)
    body = json.dumps(pay(900)).encode()
    receipt = receipt_for(pay(900))
    chunks = [{"type": "http.request", "body": body[:10], "more_body": True},
              {"type": "http.request", "body": body[10:], "more_body": False}]
    sent = drive(app, http_scope(receipt=receipt), chunks)
    assert sent[0]["status"] == 200 and tool.calls[0][0] == body
    # The same receipt, the body cut short in a way that still parses: another call, refused.
    short = [{"type": "http.request", "body": b"{}", "more_body": False}]
    sent = drive(app, http_scope(receipt=receipt_for(pay(900))), short)
    assert sent[0]["status"] == 403 and json.loads(sent[1]["body"])["code"] == "receipt_mismatch"
    assert len(tool.calls) == 1


def test_asgi_websockets_and_disconnects_run_nothing() -> None:
    tool = Tool()
    app = middleware("asgi", tool)
    sent = drive(app, {**http_scope(), "type": "websocket"}, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008}]
    sent = drive(app, http_scope(receipt=receipt_for(pay(100))), [{"type": "http.disconnect"}])
    assert sent == [] and tool.calls == []


def test_a_key_set_must_be_given_as_a_mapping() -> None:
    with pytest.raises(TypeError):
        WsgiReceiptMiddleware(Tool().wsgi, json.dumps(JWKS), tool=TOOL, **RECEIPTS)  # type: ignore[arg-type]
