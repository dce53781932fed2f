// @ts-check
// Aegis spans under the host's span: the agent traces its tool call with the OpenTelemetry SDK,
// Aegis decides inside it, and both export over OTLP/HTTP to the same collector, where each
// decision's span is a child of the tool call's.
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 node examples/node/otel_spans.mjs
//
// (any OTLP/HTTP collector: the OpenTelemetry Collector, Jaeger, or tests/otlp_receiver.py).
import { trace } from '@opentelemetry/api';
import { NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { Engine } from '../../aegis-node/aegis.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, financeChain, key, pay, uniqueTask } from './setup.mjs';

const endpoint = (process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://127.0.0.1:4318').replace(/\/$/, '');
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'payments-agent' }),
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }))],
});
// Registers the W3C propagator and the async context the binding reads the active span from.
provider.register();
const tracer = trace.getTracer('payments-agent');

const engine = new Engine({
  bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7),
  telemetry: { otlpEndpoint: endpoint, serviceName: 'aegis' },
});
const chain = financeChain(uniqueTask('node-otel'));
await tracer.startActiveSpan(`execute_tool ${TOOL}`, async (span) => {
  // No trace argument: the binding passes the active span's context (W3C traceparent).
  const allowed = engine.authorize({ chain, tool: TOOL, args: pay(120) });
  const denied = await engine.authorizeAsync({ chain, tool: TOOL, args: { ...pay(120), destination: 'acct_attacker' } });
  const { traceId, spanId } = span.spanContext();
  console.log('host span', spanId, 'in trace', traceId);
  console.log('decisions:', allowed.outcome, denied.outcome, '(both traced)');
  span.end();
});
// The engine exports its spans now; the SDK flushes the host's.
engine.flushTelemetry();
await provider.shutdown();
console.log('otel spans: ok');
