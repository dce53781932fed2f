// OpenTelemetry from Node: the example's host span and the engine's decision spans reach a real
// OTLP/HTTP receiver on loopback (tests/otlp_receiver.py decodes the protobuf with the
// collector's message definitions), and Aegis's spans are children of the host's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Engine } from '../aegis.js';
import { ROOT, BUNDLE, ISSUER, ISSUER_KEY, TOOL, financeChain, key, pay, uniqueTask } from './helpers.mjs';

// The receiver runs on the Python venv the test command builds first (opentelemetry-proto).
const PYTHON = path.join(ROOT, 'target', 'pyenv', 'bin', 'python');

async function startReceiver() {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-otlp-')), 'otlp.jsonl');
  const proc = spawn(PYTHON, [path.join(ROOT, 'tests', 'otlp_receiver.py'), out], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = await once(createInterface({ input: proc.stdout }), 'line');
  return { proc, out, endpoint: `http://127.0.0.1:${port.trim()}` };
}

async function readLines(out, wantSpans) {
  for (let i = 0; i < 200; i++) {
    const lines = fs.existsSync(out) ? fs.readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    if (lines.filter((l) => l.signal === 'span').length >= wantSpans) return lines;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`fewer than ${wantSpans} spans arrived at ${out}`);
}

test('the example: Aegis spans nest under the host span', async () => {
  const receiver = await startReceiver();
  try {
    const stdout = execFileSync(process.execPath, [path.join(ROOT, 'examples', 'node', 'otel_spans.mjs')], {
      cwd: path.join(ROOT, 'examples', 'node'), encoding: 'utf8', env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint },
    });
    assert.ok(stdout.includes('otel spans: ok'), stdout);
    const [, hostSpanId, traceId] = /host span (\w+) in trace (\w+)/.exec(stdout);
    const lines = await readLines(receiver.out, 4);
    const spans = lines.filter((l) => l.signal === 'span');
    const host = spans.filter((s) => s.service === 'payments-agent');
    const decisions = spans.filter((s) => s.service === 'aegis' && s.name === `aegis.authorize ${TOOL}`);
    assert.deepEqual(host.map((h) => h.span_id), [hostSpanId]);
    assert.deepEqual(decisions.map((d) => d.attributes['aegis.decision']).sort(), ['allow', 'deny']);
    for (const d of decisions) {
      assert.equal(d.parent_span_id, hostSpanId);
      assert.equal(d.trace_id, traceId);
      assert.equal(d.attributes['gen_ai.agent.id'], 'planner/finance-agent');
      assert.equal(d.attributes['gen_ai.operation.name'], 'execute_tool');
    }
  } finally {
    receiver.proc.kill();
  }
});

test('an explicit traceparent and a tool call id; a bad endpoint is refused with a code', async () => {
  const receiver = await startReceiver();
  try {
    const engine = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7),
      telemetry: { otlpEndpoint: receiver.endpoint, serviceName: 'aegis-node-test' } });
    const chain = financeChain(uniqueTask('node-otel-explicit'));
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    engine.authorize({ chain, tool: TOOL, args: pay(50), traceparent, toolCallId: 'call_7' });
    engine.flushTelemetry();
    const lines = await readLines(receiver.out, 2);
    const span = lines.find((l) => l.signal === 'span' && l.attributes['gen_ai.tool.call.id'] === 'call_7');
    assert.equal(span.trace_id, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(span.parent_span_id, 'b7ad6b7169203331');
  } finally {
    receiver.proc.kill();
  }
  assert.throws(() => new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, telemetry: { otlpEndpoint: 'localhost:4318' } }),
    (e) => e.code === 'malformed_request' && /not an http\(s\) url/.test(e.message));
});
