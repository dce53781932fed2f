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

test('AI SDK: approval_needed goes through the SDK approval flow; deny never executes', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('ai'));
  const ran = [];
  const approvals = [];
  const payment = aegisTool(eng, chain, TOOL, tool({
    description: 'Create a payment',
    inputSchema: z.object({ amount: z.number(), currency: z.string(), destination: z.string() }),
    execute: async (input) => {
      ran.push(input.amount);
      return `paid ${input.amount}`;
    },
  }), {
    // Stands in for the human answering the SDK's approval request.
    approve: (approvalId) => {
      approvals.push(approvalId);
      return eng.approve(approvalId, approverChain()).overrideToken ?? undefined;
    },
  });
  const opts = (id) => ({ toolCallId: id, messages: [] });
  // As the SDK does: ask needsApproval, then execute.
  assert.equal(await payment.needsApproval(pay(1200), opts('c1')), false);
  assert.equal(await payment.execute(pay(1200), opts('c1')), 'paid 1200');
  assert.equal(await payment.needsApproval(pay(9000), opts('c2')), true);
  assert.equal(await payment.execute(pay(9000), opts('c2')), 'paid 9000');
  assert.equal(approvals.length, 1);
  assert.equal(await payment.needsApproval({ ...pay(10), destination: 'nope' }, opts('c3')), false);
  await assert.rejects(payment.execute({ ...pay(10), destination: 'nope' }, opts('c3')), (e) => e instanceof AegisDenied);
  // Without an approver the approval surfaces as an error the app can act on.
  const unattended = aegisTool(eng, chain, TOOL, { execute: async () => 'ran' });
  await assert.rejects(unattended.execute(pay(7000), opts('c4')), (e) => e instanceof AegisApprovalRequired);
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
