// The Vercel AI SDK helper, the examples (plain, LangChain.js, MCP, OpenAI Agents SDK, HTTP), and strict type-checking.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { generateText, stepCountIs, tool } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { z } from 'zod';
import { AegisApprovalRequired, AegisDenied } from '../aegis.js';
import { aegisTool } from '../integrations/ai.js';
import { aegisMiddleware } from '../integrations/langchain.js';
import { guardClient } from '../integrations/mcp.js';
import { ROOT, TOOL, approverChain, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

/** An AI SDK payment tool guarded by Aegis; `approve` stands in for the human answering the SDK's approval request. */
function paymentTool(eng, chain, ran, approve) {
  return aegisTool(eng, chain, TOOL, tool({
    description: 'Create a payment',
    inputSchema: z.object({ amount: z.number(), currency: z.string(), destination: z.string() }),
    execute: async (input) => {
      ran.push(input.amount);
      return `paid ${input.amount}`;
    },
  }), { approve });
}

test('AI SDK: approval_needed goes through the SDK approval flow; deny never executes', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('ai'));
  const ran = [];
  const approvals = [];
  const payment = paymentTool(eng, chain, ran, (approvalId) => {
    approvals.push(approvalId);
    return eng.approve(approvalId, approverChain()).overrideToken ?? undefined;
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

test('AI SDK: generateText with a scripted model runs allowed calls, reports denied ones, and pauses for approval', async () => {
  const eng = engine();
  const task = uniqueTask('ai-generate');
  const chain = financeChain(task);
  const ran = [];
  const payment = paymentTool(eng, chain, ran, (approvalId) => eng.approve(approvalId, approverChain()).overrideToken ?? undefined);
  const usage = { inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: 1, text: 1, reasoning: 0 } };
  const calls = (...list) => ({
    content: list.map(([id, args]) => ({ type: 'tool-call', toolCallId: id, toolName: 'pay', input: JSON.stringify(args) })),
    finishReason: { unified: 'tool-calls', raw: undefined }, usage, warnings: [],
  });
  const model = new MockLanguageModelV3({
    doGenerate: [
      calls(['c1', pay(1200)], ['c2', { ...pay(100), destination: 'nope' }]),
      calls(['c3', pay(9000)]),
      { content: [{ type: 'text', text: 'done' }], finishReason: { unified: 'stop', raw: undefined }, usage, warnings: [] },
    ],
  });
  const tools = { pay: payment };
  const first = await generateText({ model, tools, prompt: 'pay the invoices', stopWhen: stepCountIs(5) });
  assert.deepEqual(ran, [1200]);
  const denied = first.steps[0].content.find((p) => p.type === 'tool-error');
  assert.ok(denied && denied.toolCallId === 'c2' && denied.error instanceof AegisDenied, JSON.stringify(first.steps[0].content));
  const request = first.content.find((p) => p.type === 'tool-approval-request');
  assert.ok(request && request.toolCall.toolCallId === 'c3', JSON.stringify(first.content));
  assert.equal(eng.pendingApprovals().length, 1);

  // The user approves in the SDK's flow; the SDK runs the tool, which redeems Aegis's approval.
  const messages = [
    { role: 'user', content: 'pay the invoices' },
    ...first.response.messages,
    { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: request.approvalId, approved: true }] },
  ];
  const second = await generateText({ model, tools, messages, stopWhen: stepCountIs(5) });
  assert.deepEqual(ran, [1200, 9000]);
  assert.equal(second.text, 'done');
  assert.equal(eng.pendingApprovals().length, 0);
  // The ledger records the attested id: the finance agent as named under its delegator.
  assert.deepEqual(eng.ledger(task).filter((e) => e.tool === TOOL).map((e) => e.agentId), ['planner/finance-agent', 'planner/finance-agent']);
});

test('integrations act only on the core enforcement: run with exactly its args, refuse an unknown action', async () => {
  const eng = engine();
  // An allow decision, paired with enforcements a stub engine hands out.
  const { decision } = eng.authorizeEnforced({ chain: financeChain(uniqueTask('stub')), tool: TOOL, args: pay(10) });
  const stub = (enforcement) => /** @type {any} */ ({ authorizeEnforcedAsync: async () => ({ decision, enforcement }) });
  const unknown = stub({ action: 'run_later', args: pay(10) });
  const narrowed = stub({ action: 'run', args: { amount: 1 } });
  const ran = [];
  const record = async (a) => {
    ran.push(a);
    return 'ran';
  };

  const aiTool = aegisTool(unknown, [], TOOL, { execute: record });
  assert.equal(await aiTool.needsApproval(pay(10), {}), false);
  await assert.rejects(aiTool.execute(pay(10), {}), (e) => e instanceof AegisDenied);
  assert.equal(await aegisTool(narrowed, [], TOOL, { execute: record }).execute(pay(10), {}), 'ran');

  await assert.rejects(guardClient({ callTool: record }, unknown, []).callTool({ name: TOOL, arguments: pay(10) }),
    (e) => e instanceof AegisDenied);
  await guardClient({ callTool: async (p) => record(p.arguments) }, narrowed, []).callTool({ name: TOOL, arguments: pay(10) });

  const toolCall = { name: TOOL, args: pay(10), id: 'c1' };
  const refused = await aegisMiddleware(unknown, []).wrapToolCall({ toolCall }, async (r) => record(r.toolCall.args));
  assert.equal(refused.status, 'error');
  await aegisMiddleware(narrowed, []).wrapToolCall({ toolCall }, async (r) => record(r.toolCall.args));

  assert.deepEqual(ran, [{ amount: 1 }, { amount: 1 }, { amount: 1 }]);
});

const examples = path.join(ROOT, 'examples', 'node');
for (const [script, marker] of [['payments.mjs', 'payments story: ok'], ['langchain_agent.mjs', 'langchain agent: ok'], ['mcp_client.mjs', 'mcp client: ok'],
  ['mcp_server_guard.mjs', 'mcp server guard: ok'], ['openai_agents_agent.mjs', 'openai agents: ok'], ['http_tool_guard.mjs', 'http tool guard: ok']]) {
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
