// The Vercel AI SDK helper, the examples (plain, LangChain.js, MCP), and strict type-checking.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { tool } from 'ai';
import { z } from 'zod';
import { AegisApprovalRequired, AegisDenied } from '../aegis.js';
import { aegisTool } from '../integrations/ai.js';
import { ROOT, TOOL, approverChain, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

test('AI SDK: a wrapped tool executes only what Aegis allows', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('ai'));
  const ran = [];
  const payment = aegisTool(eng, chain, TOOL, tool({
    description: 'Create a payment',
    inputSchema: z.object({ amount: z.number(), currency: z.string(), destination: z.string() }),
    execute: async (input) => {
      ran.push(input.amount);
      return `paid ${input.amount}`;
    },
  }));
  const opts = { toolCallId: 'c1', messages: [] };
  assert.equal(await payment.execute(pay(1200), opts), 'paid 1200');
  await assert.rejects(payment.execute({ ...pay(10), destination: 'nope' }, opts), (e) => e instanceof AegisDenied);
  let approvalId = '';
  await assert.rejects(payment.execute(pay(9000), opts), (e) => {
    approvalId = e.approvalId;
    return e instanceof AegisApprovalRequired;
  });
  const token = eng.approve(approvalId, approverChain()).overrideToken;
  assert.equal(await payment.execute(pay(9000), { ...opts, experimental_context: { aegisApprovalToken: token } }), 'paid 9000');
  assert.deepEqual(ran, [1200, 9000]);
});

const examples = path.join(ROOT, 'examples', 'node');
for (const [script, marker] of [['payments.mjs', 'payments story: ok'], ['langchain_agent.mjs', 'langchain agent: ok'], ['mcp_client.mjs', 'mcp client: ok']]) {
  test(`example ${script} runs`, () => {
    const out = execFileSync(process.execPath, [path.join(examples, script)], { cwd: examples, encoding: 'utf8' });
    assert.ok(out.includes(marker), out);
  });
}

test('tsc --noEmit (strict) passes on the examples', () => {
  const tsc = path.join(ROOT, 'aegis-node', 'node_modules', '.bin', 'tsc');
  execFileSync(tsc, ['-p', path.join(examples, 'tsconfig.json')], { encoding: 'utf8' });
});

test('the benchmark script runs', () => {
  const out = execFileSync(process.execPath, [path.join(ROOT, 'aegis-node', 'bench', 'bench_authorize.mjs'), '50'], { encoding: 'utf8' });
  assert.ok(out.includes('ratio:'), out);
});
