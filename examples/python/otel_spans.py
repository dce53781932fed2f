"""Aegis spans under the host's span: the agent traces its tool call with the OpenTelemetry SDK,
Aegis decides inside it, and both export over OTLP/HTTP to the same collector, where the
decision's span is a child of the tool call's.

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python examples/python/otel_spans.py

(any OTLP/HTTP collector: the OpenTelemetry Collector, Jaeger, or `tests/otlp_receiver.py`).
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import aegis
from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, key, pay, unique_task


def main() -> None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318").rstrip("/")
    provider = TracerProvider(resource=Resource.create({"service.name": "payments-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("payments-agent")

    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, approval_key=key(7),
                       telemetry={"otlp_endpoint": endpoint, "service_name": "aegis"})
    chain = finance_chain(unique_task("py-otel"))
    with tracer.start_as_current_span("execute_tool stripe.create_payment") as span:
        # No trace argument: the binding passes the current span's context (W3C traceparent).
        allowed = eng.authorize(chain, TOOL, pay(120))
        denied = eng.authorize(chain, TOOL, {**pay(120), "destination": "acct_attacker"})
        trace_id = format(span.get_span_context().trace_id, "032x")
        span_id = format(span.get_span_context().span_id, "016x")
    print("host span", span_id, "in trace", trace_id)
    print("decisions:", allowed.outcome, denied.outcome, "(both traced)")
    # The engine exports its spans now; the SDK flushes the host's.
    eng.flush_telemetry()
    provider.shutdown()
    print("otel spans: ok")


if __name__ == "__main__":
    main()
