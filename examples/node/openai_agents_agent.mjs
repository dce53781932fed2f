// @ts-check
// An OpenAI Agents SDK run (@openai/agents) whose every tool call goes through Aegis. The model is
// scripted (no network): the planner drafts an invoice (allowed), tries to pay it itself (denied:
// whoever initiates a task does not execute its payments), hands off to the finance agent, which
// acts on a delegation the guard mints for it (`planner/finance-agent`), pays 1200
// (allowed), and pays 9000, which pauses the run; the finance approver approves in Aegis, the
// user approves through RunState, and the resumed run pays once.
import { Agent, Usage, run, setTracingDisabled, tool } from '@openai/agents';
import { z } from 'zod';
import { issueRoot } from '../../aegis-node/aegis.js';
import { AegisAgentsGuard } from '../../aegis-node/integrations/openai-agents.js';
import { ISSUER, ISSUER_KEY, PLANNER_KEY, TOOL, approverChain, check, engine, pay, uniqueTask } from './setup.mjs';

setTracingDisabled(true); // no trace export: this example makes no network call

/** @typedef {import('@openai/agents').Model} Model */
/**
 * A model that plays back scripted turns (the SDK's Model interface).
 * @implements {Model}
 */
class ScriptedModel {
  /** @param {import('@openai/agents').AgentOutputItem[][]} turns */
  constructor(turns) {
    this.turns = turns;
  }
  /** @returns {Promise<import('@openai/agents').ModelResponse>} */
  async getResponse() {
    const output = this.turns.shift() ?? [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'done' }] }];
    return { usage: new Usage(), output };
  }
  /** @returns {AsyncIterable<import('@openai/agents').StreamEvent>} */
  async *getStreamedResponse() {
    throw new Error('the scripted model does not stream');
  }
}

/** A function call the model makes. @param {string} callId @param {string} name @param {object} args @returns {import('@openai/agents').AgentOutputItem} */
const callTool = (callId, name, args) => ({ type: 'function_call', callId, name, arguments: JSON.stringify(args), status: 'completed' });
/** @param {string} text @returns {import('@openai/agents').AgentOutputItem} */
const say = (text) => ({ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text }] });

/** @type {string[]} */
const done = [];
const createPayment = tool({
  name: TOOL, // the SDK calls it `stripe_create_payment`; the guard maps it back (`toolNames`)
  description: 'Create a payment',
  parameters: z.object({ amount: z.number(), currency: z.string(), destination: z.string() }),
  execute: async ({ amount, currency, destination }) => {
    done.push(`paid ${amount}`);
    return `paid ${amount} ${currency} to ${destination}`;
  },
});
const createInvoice = tool({
  name: 'invoice.create',
  description: 'Draft an invoice',
  parameters: z.object({ customer: z.string(), amount: z.number() }),
  execute: async ({ customer, amount }) => {
    done.push(`invoiced ${amount}`);
    return `invoice for ${customer}: ${amount}`;
  },
});

const finance = new Agent({
  name: 'finance-agent',
  instructions: 'You make the payments of the task.',
  model: new ScriptedModel([[callTool('f1', 'stripe_create_payment', pay(1200))], [callTool('f2', 'stripe_create_payment', pay(9000))], [say('both payments are done')]]),
  tools: [createPayment],
});
const planner = new Agent({
  name: 'planner',
  instructions: 'You plan the task and hand payments to the finance agent.',
  model: new ScriptedModel([
    [callTool('p1', 'invoice_create', { customer: 'acme', amount: 1200 })],
    [callTool('p2', 'stripe_create_payment', pay(1200))],
    [callTool('p3', 'transfer_to_finance_agent', {})],
  ]),
  tools: [createInvoice, createPayment],
  handoffs: [finance],
});

const eng = engine();
const task = uniqueTask('node-openai-agents');
// The planner's root credential; its key lets the guard delegate to the finance agent.
const plannerChain = [issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'planner', agentKey: PLANNER_KEY, taskId: task,
  intent: 'pay the approved vendor invoices', scope: ['invoice.create', TOOL] })];
const guard = new AegisAgentsGuard(eng, { toolNames: { stripe_create_payment: TOOL, invoice_create: 'invoice.create' } });
const agent = guard.agent(planner, { chain: plannerChain, key: PLANNER_KEY });

let result = await run(agent, 'pay the vendor invoice of acme');
/** The output the model read for call `callId`. @param {string} callId */
const outputOf = (callId) => {
  const item = result.newItems.find((i) => i.type === 'tool_call_output_item' && 'callId' in i.rawItem && i.rawItem.callId === callId);
  return item && 'output' in item ? String(item.output) : undefined;
};
check(done.join(',') === 'invoiced 1200,paid 1200', `ran: ${done}`);
console.log('1. the planner drafted the invoice:', outputOf('p1'));
check(outputOf('p2')?.includes('policy_forbid') === true, `the planner's own payment: ${outputOf('p2')}`);
console.log('2. the planner paying itself is refused; the model read:', outputOf('p2'));
console.log('3. handed off; the finance agent paid 1200 on its delegation:', outputOf('f1'));
check(result.interruptions.length === 1, `interruptions: ${result.interruptions.length}`);
const [paused] = result.interruptions;
const awaited = guard.approvalFor(paused, result.state);
check(awaited !== null && awaited.args.amount === 9000, 'the 9000 payment waits for an Aegis approval');
console.log('4. the run paused on the 9000 payment, approval', awaited.approvalId);

check(!eng.approve(awaited.approvalId, plannerChain).accepted, 'the planner may not approve');
const token = eng.approve(awaited.approvalId, approverChain()).overrideToken;
check(token !== null, 'the finance approver approves');
guard.presentToken(paused, token, result.state); // for this run's paused call only
result.state.approve(paused);
result = await run(agent, result.state);
check(done.join(',') === 'invoiced 1200,paid 1200,paid 9000', `ran: ${done}`);
console.log('5. approved in Aegis and in the run; resumed:', outputOf('f2'), '-', result.finalOutput);

const payments = eng.ledger(task).filter((e) => e.tool === TOOL).map((e) => e.agentId);
check(payments.join(',') === 'planner/finance-agent,planner/finance-agent', `payments by: ${payments}`);
console.log('6. the ledger: every payment by', payments[0], '- the invoice by', eng.ledger(task)[0].agentId);
console.log('openai agents: ok');
