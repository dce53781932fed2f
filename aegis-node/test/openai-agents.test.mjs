// The OpenAI Agents SDK integration and the Delegator, on scripted models (no network): allowed,
// denied, sanitized and approved calls through the SDK's own run loop, delegation at handoffs,
// and the attacks: sub-agent scope escalation, a replayed approval token, arguments swapped
// between approval and resume, an approval given in the run only, calls around the guardrail,
// one run's call acting on another run's decision or token (same call id, one shared agent),
// an unguarded agent used as a tool.
import test from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Agent, RunContext, RunState, Runner, Usage, handoff, run, setTracingDisabled, tool } from '@openai/agents';
import { SignJWT, importJWK } from 'jose';
import { z } from 'zod';
import { AegisError, KeyPair, delegate, inspect, issueRoot } from '../aegis.js';
import { Delegator } from '../integrations/delegation.js';
import { AegisAgentsGuard, GUARDRAIL_NAME, decisionOf } from '../integrations/openai-agents.js';
import { ACCOUNT, FINANCE_KEY, ISSUER, ISSUER_KEY, PLANNER_KEY, TOOL, approverChain, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

setTracingDisabled(true);

const SDK_TOOL = 'stripe_create_payment';
const NAMES = { [SDK_TOOL]: TOOL, invoice_create: 'invoice.create' };

/** The SDK's Model interface, playing back scripted turns (then a final message). */
class ScriptedModel {
  constructor(turns) {
    this.turns = turns;
  }
  async getResponse() {
    const output = this.turns.shift() ?? [say('done')];
    return { usage: new Usage(), output };
  }
  async *getStreamedResponse() {
    throw new Error('not streamed');
  }
}
/** A model making the same `calls` in every run (each run its own conversation), then a final message. */
class EachRunModel extends ScriptedModel {
  constructor(calls) {
    super([]);
    this.calls = calls;
  }
  async getResponse(request) {
    const answered = Array.isArray(request.input) && request.input.some((i) => i.type === 'function_call_result');
    return { usage: new Usage(), output: answered ? [say('done')] : this.calls };
  }
}
const callTool = (callId, args, name = SDK_TOOL) => ({ type: 'function_call', callId, name, arguments: JSON.stringify(args), status: 'completed' });
const say = (text) => ({ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text }] });

/** A payment tool recording what it ran with (and the decision it ran under). */
function paymentTool(ran, seen = []) {
  return tool({
    name: TOOL,
    description: 'Create a payment',
    parameters: z.object({ amount: z.number(), currency: z.string(), destination: z.string(), memo: z.string().optional(), card_number: z.string().optional() }),
    execute: async (args, _context, details) => {
      ran.push(args);
      seen.push({ toolCall: details?.toolCall, decision: decisionOf(details) });
      return `paid ${args.amount}`;
    },
  });
}
function invoiceTool(ran) {
  return tool({
    name: 'invoice.create', description: 'Draft an invoice', parameters: z.object({ customer: z.string(), amount: z.number() }),
    execute: async (args) => {
      ran.push(args);
      return `invoiced ${args.amount}`;
    },
  });
}
const financeAgent = (turns, tools) => new Agent({ name: 'finance-agent', model: new ScriptedModel(turns), tools });
/** What the model read for call `callId`. */
const outputOf = (result, callId) => result.newItems.find((i) => i.type === 'tool_call_output_item' && i.rawItem.callId === callId)?.output;
const plannerRoot = (task, scope = ['invoice.create', TOOL]) => issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'planner',
  agentKey: PLANNER_KEY, taskId: task, intent: 'pay the approved vendor invoices', scope });

/** Pauses on one payment of 9000, approved in Aegis: the run's result, the paused item, the token. */
async function pausedOn9000(eng, guard, agent) {
  const result = await run(agent, 'pay');
  assert.equal(result.interruptions.length, 1);
  const [item] = result.interruptions;
  const awaited = guard.approvalFor(item, result.state);
  assert.ok(awaited, 'an Aegis approval is awaited');
  const resolution = eng.approve(awaited.approvalId, approverChain());
  assert.ok(resolution.accepted, JSON.stringify(resolution.reasons));
  return { result, item, awaited, token: resolution.overrideToken };
}

test('an allowed call runs with exactly its arguments; a denied one never runs and the model reads why', async () => {
  const eng = engine();
  const ran = [];
  const seen = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = guard.agent(financeAgent([[callTool('c1', pay(1200)), callTool('c2', { ...pay(10), destination: 'nope' })]], [paymentTool(ran, seen)]),
    { chain: financeChain(uniqueTask('oa-allow')) });
  const result = await run(agent, 'pay');
  assert.deepEqual(ran, [pay(1200)]);
  assert.equal(outputOf(result, 'c1'), 'paid 1200');
  assert.match(outputOf(result, 'c2'), /^Aegis denied this call: policy_forbid \(destination-account-pattern\)/);
  // The two calls run concurrently: their guardrail results come in either order.
  assert.deepEqual(result.toolInputGuardrailResults.map((r) => `${r.guardrail.name}:${r.output.behavior.type}:${r.output.outputInfo.outcome}`).sort(),
    [`${GUARDRAIL_NAME}:allow:allow`, `${GUARDRAIL_NAME}:rejectContent:deny`]);
  // The tool learns the decision it runs under.
  assert.equal(seen[0].decision.outcome, 'allow');
  assert.match(seen[0].decision.decisionId, /^dec_/);
  assert.deepEqual(seen[0].decision.args, pay(1200));
  assert.equal(decisionOf({ toolCall: { callId: 'c1' } }), null);
});

test('approval_needed pauses the run; approved in Aegis and through RunState, the call runs once with the approved arguments', async () => {
  const eng = engine();
  const ran = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const chain = financeChain(uniqueTask('oa-approve'));
  const agent = guard.agent(financeAgent([[callTool('c1', pay(9000))], [say('paid')]], [paymentTool(ran)]), { chain });
  const result = await run(agent, 'pay');
  assert.deepEqual(ran, []);
  assert.equal(result.interruptions.length, 1);
  const [item] = result.interruptions;
  const awaited = guard.approvalFor(item, result.state);
  assert.deepEqual([awaited.tool, awaited.args, awaited.callId, awaited.decision.outcome], [TOOL, pay(9000), 'c1', 'approval_needed']);
  assert.deepEqual(eng.pendingApprovals().map((p) => [p.approvalId, p.agentId]), [[awaited.approvalId, 'planner/finance-agent']]);
  // The planner is above the requester: it cannot approve.
  assert.equal(eng.approve(awaited.approvalId, chain.slice(0, 1)).accepted, false);
  const { overrideToken } = eng.approve(awaited.approvalId, approverChain());
  guard.presentToken(item, overrideToken, result.state);
  result.state.approve(item);
  const resumed = await run(agent, result.state);
  assert.deepEqual(ran, [pay(9000)]);
  assert.equal(outputOf(resumed, 'c1'), 'paid 9000');
  assert.equal(resumed.finalOutput, 'paid');
  assert.equal(eng.pendingApprovals().length, 0);
  assert.equal(guard.approvalFor(item, resumed.state), null, 'nothing is awaited once the call ran');
});

test('with preApprovalInputGuardrails the run still pauses before anything runs, and runs once after approval', async () => {
  const eng = engine();
  const ran = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = guard.agent(financeAgent([[callTool('c1', pay(9000))]], [paymentTool(ran)]), { chain: financeChain(uniqueTask('oa-pre')) });
  const runner = new Runner({ toolExecution: { preApprovalInputGuardrails: true } });
  const result = await runner.run(agent, 'pay');
  assert.deepEqual([ran, result.interruptions.length], [[], 1]);
  assert.deepEqual(result.toolInputGuardrailResults.map((r) => r.output.outputInfo), [{ awaitingApproval: true }]);
  const [item] = result.interruptions;
  guard.presentToken(item, eng.approve(guard.approvalFor(item, result.state).approvalId, approverChain()).overrideToken, result.state);
  result.state.approve(item);
  await runner.run(agent, result.state);
  assert.deepEqual(ran, [pay(9000)]);
});

test('a tool\'s own needsApproval still pauses the run; the call is decided once, and no Aegis token is asked for an allow', async () => {
  const eng = engine();
  const task = uniqueTask('oa-own-approval');
  const ran = [];
  const own = tool({ name: TOOL, description: 'Create a payment', needsApproval: true,
    parameters: z.object({ amount: z.number(), currency: z.string(), destination: z.string() }),
    execute: async (args) => {
      ran.push(args);
      return 'paid';
    } });
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const chain = financeChain(task);
  // Added by hand rather than through `agent`: the same guard decides it.
  const agent = new Agent({ name: 'finance-agent', model: new ScriptedModel([[callTool('c1', pay(100))]]), tools: [guard.tool(own, chain)] });
  const result = await run(agent, 'pay');
  const [item] = result.interruptions;
  assert.equal(guard.approvalFor(item, result.state), null, 'Aegis allowed: no Aegis approval is awaited');
  assert.throws(() => guard.presentToken(item, '', result.state), (e) => e instanceof AegisError && e.code === 'approval_token_invalid');
  result.state.approve(item);
  await run(agent, result.state);
  assert.deepEqual(ran, [pay(100)]);
  assert.equal(eng.ledger(task).length, 1, 'one decision for one call');
  // An interruption of a tool no guard wraps is not this guard's to answer.
  const plain = new Agent({ name: 'plain', model: new ScriptedModel([[callTool('c2', pay(1))]]), tools: [own] });
  const unguarded = await run(plain, 'pay');
  assert.throws(() => guard.approvalFor(unguarded.interruptions[0], unguarded.state), /not a tool this guard decides/);
});

test('attack: an approval given in the run only (even alwaysApprove) runs nothing without an Aegis token', async () => {
  const eng = engine();
  const ran = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = guard.agent(financeAgent([[callTool('c1', pay(9000))], [callTool('c2', pay(9500))]], [paymentTool(ran)]),
    { chain: financeChain(uniqueTask('oa-sdk-only')) });
  const result = await run(agent, 'pay');
  const [item] = result.interruptions;
  const { approvalId } = guard.approvalFor(item, result.state);
  result.state.approve(item, { alwaysApprove: true });
  const resumed = await run(agent, result.state);
  assert.deepEqual(ran, []);
  assert.match(outputOf(resumed, 'c1'), new RegExp(`needs the human approval ${approvalId}, and no override token was presented`));
  // The next large payment is approved for the SDK already: Aegis still asks a human, and refuses meanwhile.
  assert.match(outputOf(resumed, 'c2'), /^Aegis: this call needs the human approval apr_/);
  assert.equal(eng.pendingApprovals().length, 2);
});

test('attack: an override token presented again, for a new call with the same arguments, is refused', async () => {
  const eng = engine();
  const ran = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = guard.agent(financeAgent([[callTool('c1', pay(9000))], [callTool('c2', pay(9000))]], [paymentTool(ran)]),
    { chain: financeChain(uniqueTask('oa-replay')) });
  const { result, item, token } = await pausedOn9000(eng, guard, agent);
  guard.presentToken(item, token, result.state);
  result.state.approve(item);
  const second = await run(agent, result.state);
  assert.deepEqual(ran, [pay(9000)]);
  assert.equal(second.interruptions.length, 1, 'the second payment pauses for its own approval');
  const [again] = second.interruptions;
  guard.presentToken(again, token, second.state);
  second.state.approve(again);
  const third = await run(agent, second.state);
  assert.deepEqual(ran, [pay(9000)], 'paid once');
  assert.match(outputOf(third, 'c2'), /approval_replayed/);
});

test('attack: arguments swapped in the stored run state between approval and resume are refused', async () => {
  const eng = engine();
  const ran = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = guard.agent(financeAgent([[callTool('c1', pay(9000))]], [paymentTool(ran)]), { chain: financeChain(uniqueTask('oa-swap')) });
  const { result, token } = await pausedOn9000(eng, guard, agent);
  const stored = result.state.toString();
  assert.ok(stored.includes(ACCOUNT));
  const tampered = await RunState.fromString(agent, stored.split(ACCOUNT).join('acct_EVILEVILEVIL0000'));
  const [item] = tampered.getInterruptions();
  assert.match(item.arguments, /acct_EVIL/);
  guard.presentToken(item, token, tampered);
  tampered.approve(item);
  const resumed = await run(agent, tampered);
  assert.deepEqual(ran, []);
  assert.match(outputOf(resumed, 'c1'), /approval_args_mismatch/);
});

test('a run resumed from its stored state by another guard redeems the token once', async () => {
  const eng = engine();
  const ran = [];
  const chain = financeChain(uniqueTask('oa-elsewhere'));
  const build = (guard) => guard.agent(financeAgent([[callTool('c1', pay(9000))]], [paymentTool(ran)]), { chain });
  const first = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const { result, token } = await pausedOn9000(eng, first, build(first));
  // Another process: a new guard, the same agents, the state from storage.
  const other = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = build(other);
  const state = await RunState.fromString(agent, result.state.toString());
  const [item] = state.getInterruptions();
  assert.equal(other.approvalFor(item, state), null, 'this guard did not see the pause');
  other.presentToken(item, token, state);
  state.approve(item);
  await run(agent, state);
  assert.deepEqual(ran, [pay(9000)]);
  assert.equal(eng.pendingApprovals().length, 0);
});

/**
 * One guarded agent serving two requests, as a server does: the chain of each request comes from
 * an AsyncLocalStorage. Alice's chain may pay; Mallory's is the planner's, with no payment scope.
 */
function twoRequests(eng, ran, model = new ScriptedModel([])) {
  const requests = new AsyncLocalStorage();
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const agent = guard.agent(new Agent({ name: 'finance-agent', model, tools: [paymentTool(ran)] }), { chain: () => requests.getStore() });
  const request = (task, chain) => ({ task, chain, run: new RunContext() });
  const alice = request(uniqueTask('oa-alice'), null);
  alice.chain = financeChain(alice.task);
  const mallory = request(uniqueTask('oa-mallory'), null);
  mallory.chain = [plannerRoot(mallory.task, ['invoice.create'])];
  /** Runs `fn` as `who`'s request. */
  const as = (who, fn) => requests.run(who.chain, fn);
  return { guard, agent, alice, mallory, as };
}

test('attack: a call of one run never acts on another run\'s decision for the same call id (hooks interleaved)', async () => {
  const eng = engine();
  const ran = [];
  const { agent, alice, mallory, as } = twoRequests(eng, ran);
  const [payment] = agent.tools;
  const [aegis] = payment.inputGuardrails;
  assert.equal(aegis.name, GUARDRAIL_NAME);
  // The model provider picked the same call id in both runs, for the same arguments.
  const toolCall = callTool('call_1', pay(10));
  // The SDK's order in each run is needsApproval, the guardrail, invoke; the two runs interleave.
  assert.equal(await as(mallory, () => payment.needsApproval(mallory.run, pay(10), 'call_1')), false, 'denied: nothing to pause for');
  assert.equal(await as(alice, () => payment.needsApproval(alice.run, pay(10), 'call_1')), false, 'allowed');
  const refused = await as(mallory, () => aegis.run({ context: mallory.run, agent, toolCall }));
  assert.equal(refused.behavior.type, 'rejectContent', 'Mallory\'s call is decided on her own chain, not on Alice\'s allow');
  assert.match(refused.behavior.message, /^Aegis denied this call/);
  assert.match(await as(mallory, () => payment.invoke(mallory.run, toolCall.arguments, { toolCall })), /not decided/);
  assert.deepEqual(ran, []);
  // Alice's call runs on her decision, once.
  assert.equal((await as(alice, () => aegis.run({ context: alice.run, agent, toolCall }))).behavior.type, 'allow');
  assert.equal(await as(alice, () => payment.invoke(alice.run, toolCall.arguments, { toolCall })), 'paid 10');
  assert.match(await as(alice, () => payment.invoke(alice.run, toolCall.arguments, { toolCall })), /not decided/);
  assert.deepEqual(ran, [pay(10)]);
  assert.deepEqual([eng.ledger(alice.task).length, eng.ledger(mallory.task).length], [1, 0]);

  // One run context shared by both requests (an application passing one RunContext to both
  // runs): a decision is used only for the chain it was made on, and a pass only by its chain.
  const shared = new RunContext();
  await as(mallory, () => payment.needsApproval(shared, pay(10), 'call_2'));
  await as(alice, () => payment.needsApproval(shared, pay(10), 'call_2'));
  const call2 = callTool('call_2', pay(10));
  assert.equal((await as(mallory, () => aegis.run({ context: shared, agent, toolCall: call2 }))).behavior.type, 'rejectContent');
  assert.equal((await as(alice, () => aegis.run({ context: shared, agent, toolCall: call2 }))).behavior.type, 'allow');
  assert.match(await as(mallory, () => payment.invoke(shared, call2.arguments, { toolCall: call2 })), /another credential chain/);
  assert.equal(await as(alice, () => payment.invoke(shared, call2.arguments, { toolCall: call2 })), 'paid 10', 'Mallory did not use Alice\'s pass up');
  assert.deepEqual(ran, [pay(10), pay(10)]);
});

test('attack: two paused runs with the same call id: each waits for its own approval, and a token serves only the run it was presented for', async () => {
  const eng = engine();
  const ran = [];
  // Both may pay, and both pay 9000: each pauses for an approval of its own.
  const { guard, agent, alice, as } = twoRequests(eng, ran, new EachRunModel([callTool('c1', pay(9000))]));
  const bob = { chain: financeChain(uniqueTask('oa-bob')) };
  const first = await as(alice, () => run(agent, 'pay'));
  const second = await as(bob, () => run(agent, 'pay'));
  const [aliceItem] = first.interruptions;
  const [bobItem] = second.interruptions;
  const aliceAwaits = guard.approvalFor(aliceItem, first.state);
  const bobAwaits = guard.approvalFor(bobItem, second.state);
  assert.notEqual(aliceAwaits.approvalId, bobAwaits.approvalId, 'each run names its own approval');
  assert.throws(() => guard.approvalFor(aliceItem), (e) => e instanceof AegisError && e.code === 'malformed_request', 'the run must be named');
  // A human approves Alice's payment; the token is presented for Alice's run.
  guard.presentToken(aliceItem, eng.approve(aliceAwaits.approvalId, approverChain()).overrideToken, first.state);
  // Bob approves his own run in the SDK and resumes first: no token was presented for it.
  second.state.approve(bobItem);
  const bobResumed = await as(bob, () => run(agent, second.state));
  assert.match(outputOf(bobResumed, 'c1'), /no override token was presented/);
  assert.deepEqual(ran, []);
  first.state.approve(aliceItem);
  const aliceResumed = await as(alice, () => run(agent, first.state));
  assert.equal(outputOf(aliceResumed, 'c1'), 'paid 9000');
  assert.deepEqual(ran, [pay(9000)]);
});

test('attack: an agent used as a tool is refused unless it is a guarded agent; a guarded one has its own calls decided', async () => {
  const eng = engine();
  const task = uniqueTask('oa-agent-tool');
  const ran = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: { ...NAMES, ask_finance: 'invoice.create' } });
  const finance = financeAgent([[callTool('f1', pay(10)), callTool('f2', { ...pay(10), destination: 'nope' })]], [paymentTool(ran)]);
  const asTool = (agent) => agent.asTool({ toolName: 'ask_finance', toolDescription: 'Ask the finance agent',
    parameters: z.object({ customer: z.string(), amount: z.number() }), inputBuilder: ({ params }) => `pay ${params.customer} ${params.amount}` });
  const planner = (tools) => new Agent({ name: 'planner', model: new ScriptedModel([[callTool('p1', { customer: 'acme', amount: 10 }, 'ask_finance')]]), tools });
  const chain = [plannerRoot(task)];
  const unguarded = (e) => e instanceof AegisError && e.code === 'malformed_request' && /runs an agent that is not guarded/.test(e.message);
  // The finance agent's payments would run with no decision at all: refused.
  assert.throws(() => guard.agent(planner([asTool(finance)]), { chain }), unguarded);
  assert.throws(() => guard.tool(asTool(finance), chain), unguarded);
  // Guarded by another guard, or a clone of a guarded agent (whose tools may be any): refused too.
  const financeChainOf = financeChain(task);
  assert.throws(() => guard.agent(planner([asTool(new AegisAgentsGuard(eng).agent(finance, { chain: financeChainOf }))]), { chain }), unguarded);
  const guardedFinance = guard.agent(finance, { chain: financeChainOf });
  assert.throws(() => guard.agent(planner([asTool(guardedFinance.clone({}))]), { chain }), unguarded);

  const result = await run(guard.agent(planner([asTool(guardedFinance)]), { chain }), 'pay acme');
  assert.deepEqual(ran, [pay(10)], 'the nested agent\'s allowed payment ran, its denied one did not');
  assert.match(outputOf(result, 'p1') ?? '', /./, 'the planner read the finance agent\'s answer');
  assert.deepEqual(eng.ledger(task).map((e) => [e.tool, e.agentId]), [['invoice.create', 'planner'], [TOOL, 'planner/finance-agent']],
    'the call of the agent tool and the nested agent\'s payment are both decided');

  // A pause in the nested run is the calling run's: named and answered with its `result.state`.
  const big = guard.agent(financeAgent([[callTool('f3', pay(9000))]], [paymentTool(ran)]), { chain: financeChainOf });
  const outer = guard.agent(planner([asTool(big)]), { chain });
  const paused = await run(outer, 'pay acme');
  const [item] = paused.interruptions;
  const awaited = guard.approvalFor(item, paused.state);
  assert.deepEqual([awaited?.args, item.agent.name], [pay(9000), 'finance-agent']);
  guard.presentToken(item, eng.approve(awaited.approvalId, approverChain()).overrideToken, paused.state);
  paused.state.approve(item);
  await run(outer, paused.state);
  assert.deepEqual(ran, [pay(10), pay(9000)]);
});

test('sanitize is honoured: the tool receives the redacted arguments, and no others', async () => {
  const eng = engine();
  const ran = [];
  const seen = [];
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const args = { ...pay(20), memo: 'card 4242 4242 4242 4242, thanks', card_number: '4111111111111111' };
  const agent = guard.agent(financeAgent([[callTool('c1', args)]], [paymentTool(ran, seen)]), { chain: financeChain(uniqueTask('oa-sanitize')) });
  await run(agent, 'pay');
  assert.equal(ran.length, 1);
  assert.equal(ran[0].card_number, '[REDACTED]');
  assert.equal(ran[0].memo, 'card [REDACTED:payment_card], thanks');
  assert.doesNotMatch(seen[0].toolCall.arguments, /4242|4111/);
  assert.equal(seen[0].decision.outcome, 'sanitize');
  assert.deepEqual(seen[0].decision.args, ran[0]);
});

test('handoff: the sub-agent acts on a delegation minted for it, so segregation of duties holds', async () => {
  const eng = engine();
  const task = uniqueTask('oa-handoff');
  const ran = [];
  const onHandoff = [];
  const finance = financeAgent([[callTool('f1', pay(1200))]], [paymentTool(ran)]);
  const planner = new Agent({
    name: 'planner',
    model: new ScriptedModel([[callTool('p1', { customer: 'acme', amount: 1200 }, 'invoice_create')], [callTool('p2', pay(1200))],
      [callTool('p3', {}, 'transfer_to_finance_agent')]]),
    tools: [invoiceTool(ran), paymentTool(ran)],
    // A Handoff entry keeps its own callback and tool name.
    handoffs: [handoff(finance, { onHandoff: () => onHandoff.push('finance') })],
  });
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const chain = [plannerRoot(task)];
  const result = await run(guard.agent(planner, { chain, key: PLANNER_KEY }), 'pay acme');
  assert.deepEqual(onHandoff, ['finance']);
  assert.deepEqual(ran, [{ customer: 'acme', amount: 1200 }, pay(1200)]);
  assert.match(outputOf(result, 'p2'), /executor-needs-parent/, 'the planner may not pay itself');
  assert.equal(outputOf(result, 'f1'), 'paid 1200');
  assert.deepEqual(eng.ledger(task).map((e) => [e.tool, e.agentId, e.lineage]),
    [['invoice.create', 'planner', []], [TOOL, 'planner/finance-agent', ['planner']]]);
  assert.equal(result.lastAgent.name, 'finance-agent');
});

test('attack: a sub-agent with tools its parent does not hold gets none of them (scope escalation)', async () => {
  const eng = engine();
  const task = uniqueTask('oa-escalate');
  const ran = [];
  // The planner holds payments only; its sub-agent also lists the invoice tool.
  const finance = financeAgent([[callTool('f1', { customer: 'acme', amount: 5 }, 'invoice_create'), callTool('f2', pay(10))]],
    [invoiceTool(ran), paymentTool(ran)]);
  const planner = new Agent({ name: 'planner', model: new ScriptedModel([[callTool('p1', {}, 'transfer_to_finance_agent')]]), handoffs: [finance] });
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const result = await run(guard.agent(planner, { chain: [plannerRoot(task, [TOOL])], key: PLANNER_KEY }), 'go');
  assert.deepEqual(ran, [pay(10)]);
  assert.match(outputOf(result, 'f1'), /tool_not_in_scope/);
  assert.deepEqual(eng.ledger(task).map((e) => e.agentId), ['planner/finance-agent']);

  // Asked for outright, a wider scope is narrowed by the core to what the planner holds...
  const delegator = new Delegator({ chain: [plannerRoot(task, [TOOL])], key: PLANNER_KEY });
  assert.deepEqual(delegator.childFor('finance-agent', { scope: [TOOL, 'invoice.create'] }).scope, [TOOL]);
  // ...minted by hand without narrowing, it is refused...
  assert.throws(() => delegate({ parent: delegator.chain[0], parentKey: PLANNER_KEY, agentId: 'greedy', agentKey: KeyPair.generate(),
    scope: [TOOL, 'invoice.create'] }), (e) => e instanceof AegisError && e.code === 'scope_widened');
  // ...and a delegation widened by hand, validly signed by the planner, is refused by the engine.
  const minted = delegator.childFor('finance-agent', { scope: [TOOL] });
  const { header, claims } = inspect(minted.chain[1]);
  const signer = await importJWK({ ...PLANNER_KEY.privateJwk, alg: 'EdDSA' }, 'EdDSA');
  const widened = await new SignJWT({ ...claims, scope: [TOOL, 'invoice.create'] }).setProtectedHeader(header).sign(signer);
  const forged = eng.authorize({ chain: [minted.chain[0], widened], tool: 'invoice.create', args: { customer: 'acme', amount: 5 } });
  assert.deepEqual([forged.outcome, forged.reasons[0].code], ['deny', 'scope_widened']);
  // A wildcard never covers Aegis's own actions: no delegate becomes an approver.
  const everything = new Delegator({ chain: [plannerRoot(task, ['*'])], key: PLANNER_KEY });
  assert.deepEqual(everything.childFor('approver', { scope: [TOOL, 'aegis.approve'] }).scope, [TOOL]);
});

test('a handoff needs the parent key, a cycle of handoffs goes back to the parent on its own chain, unguardable agents are refused', async () => {
  const eng = engine();
  const guard = new AegisAgentsGuard(eng, { toolNames: NAMES });
  const ran = [];
  const finance = financeAgent([[callTool('f1', {}, 'transfer_to_planner')]], [paymentTool(ran)]);
  const planner = new Agent({ name: 'planner', model: new ScriptedModel([[callTool('p1', {}, 'transfer_to_finance_agent')], [callTool('p2', pay(10))]]),
    tools: [paymentTool(ran)], handoffs: [finance] });
  finance.handoffs = [planner];
  const task = uniqueTask('oa-cycle');
  assert.throws(() => guard.agent(planner, { chain: [plannerRoot(task)] }), (e) => e instanceof AegisError && e.code === 'invalid_key');
  const guarded = guard.agent(planner, { chain: [plannerRoot(task)], key: PLANNER_KEY });
  const back = guarded.handoffs[0].handoffs[0];
  assert.equal(back, guarded, 'the planner under its finance agent is the planner itself');
  const result = await run(guarded, 'go');
  assert.match(outputOf(result, 'p2'), /executor-needs-parent/, 'back on the planner\'s chain: the planner still may not pay');
  assert.deepEqual(ran, []);

  const hosted = new Agent({ name: 'web', tools: [{ type: 'hosted_tool', name: 'web_search' }] });
  assert.throws(() => guard.agent(hosted, { chain: [plannerRoot(task)] }), (e) => e instanceof AegisError && e.code === 'malformed_request');
  const withMcp = new Agent({ name: 'mcp', mcpServers: [{ name: 'payments' }] });
  assert.throws(() => guard.agent(withMcp, { chain: [plannerRoot(task)] }), /MCP servers/);
});

test('fail closed: an engine error or an unknown enforcement runs nothing; invoke without the guardrail runs nothing', async () => {
  const ran = [];
  const failing = { authorizeEnforcedAsync: async () => { throw new AegisError('store_unavailable', 'the store is down'); } };
  const guard = new AegisAgentsGuard(/** @type {any} */ (failing), { toolNames: NAMES });
  const result = await run(guard.agent(financeAgent([[callTool('c1', pay(10))]], [paymentTool(ran)]), { chain: [] }), 'pay');
  assert.match(outputOf(result, 'c1'), /^Aegis could not decide this call \(store_unavailable\)/);

  const { decision } = engine().authorizeEnforced({ chain: financeChain(uniqueTask('oa-stub')), tool: TOOL, args: pay(10) });
  const unknown = { authorizeEnforcedAsync: async () => ({ decision, enforcement: { action: 'run_later', args: pay(10) } }) };
  const stubbed = new AegisAgentsGuard(/** @type {any} */ (unknown), { toolNames: NAMES });
  const refused = await run(stubbed.agent(financeAgent([[callTool('c1', pay(10))]], [paymentTool(ran)]), { chain: [] }), 'pay');
  assert.match(outputOf(refused, 'c1'), /^Aegis denied this call/);

  // The tool invoked directly, around the runner's guardrail: no decision, no run.
  const direct = new AegisAgentsGuard(engine(), { toolNames: NAMES }).tool(paymentTool(ran), financeChain(uniqueTask('oa-direct')));
  const out = await direct.invoke({}, JSON.stringify(pay(10)), { toolCall: callTool('c9', pay(10)) });
  assert.match(out, /not decided/);
  assert.deepEqual(ran, []);
});

test('Delegator: one fresh key and one delegation per sub-agent and scope, never past the parent, renewed near expiry', () => {
  const task = uniqueTask('delegator');
  let now = Math.floor(Date.now() / 1000);
  const root = issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'planner', agentKey: PLANNER_KEY, taskId: task, intent: 'pay',
    scope: ['invoice.create', 'stripe.*'], ttlSecs: 300, issuedAt: now });
  const delegator = new Delegator({ chain: [root], key: PLANNER_KEY, ttlSecs: 600, clock: () => now });
  assert.deepEqual([delegator.agentId, delegator.taskId], ['planner', task]);
  const first = delegator.childFor('finance-agent', { scope: [TOOL, TOOL] });
  assert.equal(first.agentId, 'planner/finance-agent');
  assert.deepEqual(first.scope, [TOOL]);
  assert.equal(first.chain[0], root);
  assert.notEqual(first.key.kid, PLANNER_KEY.kid);
  const claims = inspect(first.chain[1]).claims;
  assert.deepEqual([claims.sub, claims.iss, claims.exp], ['finance-agent', 'planner', inspect(root).claims.exp], 'clamped to the parent\'s life');
  assert.equal(delegator.childFor('finance-agent', { scope: [TOOL] }), first, 'cached');
  assert.notEqual(delegator.childFor('finance-agent', { scope: ['invoice.create'] }), first, 'another scope, another delegation');
  now += 280; // within renewWithinSecs (30) of expiry: minted anew, for what the parent has left
  const renewed = delegator.childFor('finance-agent', { scope: [TOOL] });
  assert.notEqual(renewed, first);
  assert.notEqual(renewed.key.kid, first.key.kid);
  assert.equal(renewed.expiresAt, inspect(root).claims.exp);
  now += 20; // the parent has expired: nothing left to give
  assert.throws(() => delegator.childFor('auditor', { scope: [TOOL] }), (e) => e instanceof AegisError && e.code === 'credential_expired');

  const fresh = new Delegator({ chain: [root], key: PLANNER_KEY, ttlSecs: 60, clock: () => Math.floor(Date.now() / 1000) });
  const a = fresh.childFor('finance-agent', { scope: [TOOL] });
  const grand = a.delegator().childFor('auditor', { scope: [TOOL] });
  assert.equal(grand.agentId, 'planner/finance-agent/auditor');
  assert.equal(grand.chain.length, 3);
  assert.deepEqual(a.delegator().childFor('reporter', { scope: ['invoice.create', TOOL] }).scope, [TOOL], 'no wider than its own delegator');

  assert.throws(() => new Delegator({ chain: [root], key: FINANCE_KEY }), (e) => e.code === 'invalid_key');
  assert.throws(() => fresh.childFor('a/b', { scope: [TOOL] }), (e) => e.code === 'malformed_request');
  assert.throws(() => new Delegator({ chain: [], key: PLANNER_KEY }), (e) => e.code === 'missing_credential');
  assert.throws(() => new Delegator({ chain: [root], key: KeyPair.generate().publicJwk }), (e) => e.code === 'invalid_key');
});
