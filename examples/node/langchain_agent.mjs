// @ts-check
// A LangChain.js agent (langchain 1.x createAgent) whose every tool call goes through Aegis. The
// chat model is scripted (no network): a 1200 payment runs, a 9000 one interrupts the graph for
// approval, the planner's self-approval is refused, the finance approver approves, the resumed
// run pays once.
import { createAgent, tool } from 'langchain';
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, ToolMessage } from '@langchain/core/messages';
import { Command, MemorySaver } from '@langchain/langgraph';
import { z } from 'zod';
import { aegisMiddleware } from '../../aegis-node/integrations/langchain.js';
import { TOOL, approverChain, check, engine, financeChain, pay, uniqueTask } from './setup.mjs';

/** A chat model that plays back scripted messages and accepts tools. */
class ScriptedModel extends BaseChatModel {
  /** @param {AIMessage[]} script */
  constructor(script) {
    super({});
    this.script = script;
  }
  _llmType() {
    return 'scripted';
  }
  bindTools() {
    return this;
  }
  async _generate() {
    const message = this.script.shift() ?? new AIMessage('done');
    return { generations: [{ text: String(message.content), message }] };
  }
}

/** @param {string} id @param {number} amount */
const call = (id, amount) => new AIMessage({ content: '', tool_calls: [{ name: TOOL, args: pay(amount), id }] });

/** @type {number[]} */
const paid = [];
const createPayment = tool(async ({ amount, currency, destination }) => {
  paid.push(amount);
  return `paid ${amount} ${currency} to ${destination}`;
}, { name: TOOL, description: 'Create a payment', schema: z.object({ amount: z.number(), currency: z.string(), destination: z.string() }) });

const eng = engine();
const chain = financeChain(uniqueTask('node-langchain'));
const agent = createAgent({
  model: /** @type {any} */ (new ScriptedModel([call('c1', 1200), call('c2', 9000), new AIMessage('both payments are done')])),
  tools: [createPayment],
  middleware: [aegisMiddleware(eng, chain)],
  checkpointer: new MemorySaver(),
});
const config = { configurable: { thread_id: 'payments-1' } };

/** @type {any} */
let result = await agent.invoke({ messages: [{ role: 'user', content: 'pay the two vendor invoices' }] }, config);
check(paid.join(',') === '1200', `paid ${paid}`);
const pending = result.__interrupt__?.[0]?.value;
check(pending?.type === 'aegis_approval', 'the 9000 payment interrupts for approval');
console.log('1. paid 1200; the agent is paused for approval', pending.approvalId);

check(!eng.approve(pending.approvalId, chain.slice(0, 1)).accepted, 'the planner may not approve');
console.log('2. the planner\'s self-approval is refused');
const token = eng.approve(pending.approvalId, approverChain()).overrideToken;
check(token !== null, 'the finance approver approves');
console.log('3. the finance approver approved');

result = await agent.invoke(new Command({ resume: { approvalToken: token } }), config);
check(paid.join(',') === '1200,9000', `paid ${paid}`);
const tools = result.messages.filter((/** @type {any} */ m) => ToolMessage.isInstance(m));
console.log('4. resumed:', tools[tools.length - 1].content);
// The resumed graph re-ran the interrupted step, which asked again before presenting the token;
// that duplicate request was superseded when the call ran, so none is left to approve.
check(eng.pendingApprovals().length === 0, `still pending: ${JSON.stringify(eng.pendingApprovals())}`);
const replay = eng.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: token ?? '' });
check(replay.outcome === 'deny' && replay.reasons[0].code === 'approval_replayed', JSON.stringify(replay));
console.log('5. the same token again:', replay.reasons[0].code);
console.log('langchain agent: ok');
