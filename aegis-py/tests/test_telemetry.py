"""OpenTelemetry from Python: the example's host span and the engine's decision spans reach a
real OTLP/HTTP receiver on loopback (tests/otlp_receiver.py decodes the protobuf with the
collector's message definitions), and Aegis's spans are children of the host's."""

import json
import os
import subprocess
import sys
import time

from conftest import EXAMPLES, ROOT


def start_receiver(out_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "otlp_receiver.py"), str(out_path)],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def read_lines(path, want_spans, timeout=20.0):
    deadline = time.time() + timeout
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if sum(1 for x in lines if x["signal"] == "span") >= want_spans or time.time() > deadline:
            return lines
        time.sleep(0.1)


def test_aegis_spans_nest_under_the_host_span(tmp_path) -> None:
    out = tmp_path / "otlp.jsonl"
    receiver, endpoint = start_receiver(out)
    try:
        run = subprocess.run([sys.executable, str(EXAMPLES / "otel_spans.py")], cwd=EXAMPLES, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        assert run.returncode == 0, run.stderr
        assert "otel spans: ok" in run.stdout
        host_span_id = run.stdout.split("host span ")[1].split()[0]
        trace_id = run.stdout.split(" in trace ")[1].split()[0]
        # One host span, two decisions, and the bundle load the engine records at start.
        lines = read_lines(out, 4)
    finally:
        receiver.terminate()
    spans = [x for x in lines if x["signal"] == "span"]
    host = [s for s in spans if s["service"] == "payments-agent"]
    decisions = [s for s in spans if s["service"] == "aegis" and s["name"] == "aegis.authorize stripe.create_payment"]
    assert [h["span_id"] for h in host] == [host_span_id]
    assert sorted(d["attributes"]["aegis.decision"] for d in decisions) == ["allow", "deny"]
    for d in decisions:
        assert d["parent_span_id"] == host_span_id and d["trace_id"] == trace_id, d
        assert d["attributes"]["gen_ai.operation.name"] == "execute_tool"
        assert d["attributes"]["gen_ai.agent.id"] == "planner/finance-agent"
        assert d["attributes"]["aegis.task_id"].startswith("py-otel")
    metrics = {x["name"] for x in lines if x["signal"] == "metric"}
    assert "aegis.decisions" in metrics, metrics


def test_an_explicit_traceparent_wins_and_a_bad_one_is_ignored(tmp_path) -> None:
    import aegis
    from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, key, pay, unique_task

    out = tmp_path / "otlp.jsonl"
    receiver, endpoint = start_receiver(out)
    try:
        eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, approval_key=key(7),
                           telemetry={"otlp_endpoint": endpoint, "service_name": "aegis-py-test"})
        chain = finance_chain(unique_task("py-otel-explicit"))
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        eng.authorize(chain, TOOL, pay(50), traceparent=parent, tool_call_id="call_42")
        eng.authorize(chain, TOOL, pay(60), traceparent="not-a-traceparent")
        eng.flush_telemetry()
        lines = read_lines(out, 3)
    finally:
        receiver.terminate()
    decisions = [x for x in lines if x["signal"] == "span" and x["name"].startswith("aegis.authorize")]
    by_call = {d["attributes"].get("gen_ai.tool.call.id"): d for d in decisions}
    assert by_call["call_42"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert by_call["call_42"]["parent_span_id"] == "b7ad6b7169203331"
    assert by_call[None]["parent_span_id"] == "", "an invalid traceparent starts a new trace"


def test_a_bad_endpoint_is_refused_with_a_code() -> None:
    import aegis
    from payments_setup import BUNDLE, ISSUER, ISSUER_KEY

    try:
        aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, telemetry={"otlp_endpoint": "localhost:4318"})
    except aegis.AegisError as e:
        assert e.code == "malformed_request" and "not an http(s) url" in str(e)
    else:
        raise AssertionError("an endpoint that is not a url was accepted")


def test_the_host_span_is_found_however_opentelemetry_keeps_its_context(tmp_path, monkeypatch) -> None:
    """The binding reads OpenTelemetry's context variable and asks for a `traceparent` only while
    it holds something; where it cannot read it (another runtime context) it asks every call.
    Either way a decision inside the host's span nests under it and one outside starts a trace
    of its own; an engine told OpenTelemetry is absent passes nothing."""
    import aegis
    from opentelemetry.sdk.trace import TracerProvider
    from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, key, pay, unique_task

    tracer = TracerProvider().get_tracer("host")  # not the global provider: other tests keep theirs
    assert aegis._tracing()[0] and aegis._tracing()[1] is not None, "the default runtime context is read"
    out = tmp_path / "otlp.jsonl"
    receiver, endpoint = start_receiver(out)
    try:
        engines = {}
        for mode, tracing in (("peek", None), ("ask", (True, None)), ("off", (False, None))):
            if tracing is not None:
                monkeypatch.setattr(aegis, "_TRACING", tracing)
            engines[mode] = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, approval_key=key(7),
                                         telemetry={"otlp_endpoint": endpoint, "service_name": f"aegis-{mode}"})
        host = {}
        for mode, eng in engines.items():
            chain = finance_chain(unique_task(f"py-otel-{mode}"))
            with tracer.start_as_current_span("execute_tool") as span:
                eng.authorize(chain, TOOL, pay(10), tool_call_id="inside")
                eng.authorize_enforced(chain, TOOL, pay(11), tool_call_id="inside-enforced")
                host[mode] = format(span.get_span_context().span_id, "016x")
            eng.authorize(chain, TOOL, pay(12), tool_call_id="outside")
            eng.flush_telemetry()
        lines = read_lines(out, 9)
    finally:
        receiver.terminate()
    spans = {(x["service"], x["attributes"].get("gen_ai.tool.call.id")): x for x in lines
             if x["signal"] == "span" and x["name"].startswith("aegis.authorize")}
    for mode in ("peek", "ask"):
        for call in ("inside", "inside-enforced"):
            assert spans[(f"aegis-{mode}", call)]["parent_span_id"] == host[mode], (mode, call)
        assert spans[(f"aegis-{mode}", "outside")]["parent_span_id"] == "", mode
    for call in ("inside", "inside-enforced", "outside"):
        assert spans[("aegis-off", call)]["parent_span_id"] == "", call
