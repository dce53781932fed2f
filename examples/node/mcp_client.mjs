// @ts-check
// An MCP client (@modelcontextprotocol/sdk) whose callTool is authorized by Aegis first, against
// an in-memory MCP server. Card numbers reach the server redacted, approved calls included.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { z } from 'zod';
import { AegisApprovalRequired, AegisDenied } from '../../aegis-node/aegis.js';
import { guardClient } from '../../aegis-node/integrations/mcp.js';
import { TOOL, approverChain, check, engine, financeChain, pay, uniqueTask } from './setup.mjs';

/** @type {{amount: number, card: string}[]} */
const received = [];
const server = new McpServer({ name: 'payments', version: '1.0.0' });
server.tool(TOOL, { amount: z.number(), currency: z.string(), destination: z.string(), card_number: z.string().optional() },
  async ({ amount, currency, destination, card_number }) => {
    received.push({ amount, card: card_number ?? '' });
    return { content: [{ type: 'text', text: `paid ${amount} ${currency} to ${destination}` }] };
  });

const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
await server.connect(serverTransport);
const client = new Client({ name: 'finance-agent', version: '1.0.0' });
await client.connect(clientTransport);

const eng = engine();
const chain = financeChain(uniqueTask('node-mcp'));
const guarded = guardClient(client, eng, chain);

/** @param {any} result */
const text = (result) => result.content[0].text;
console.log('1.', text(await guarded.callTool({ name: TOOL, arguments: pay(1200) })));
await guarded.callTool({ name: TOOL, arguments: { ...pay(800), card_number: '4242424242424242' } });
check(received[1].card === '[REDACTED]', 'the card number reaches the server redacted');
console.log('2. the server received the card number redacted');

const large = { ...pay(9000), card_number: '4242424242424242' };
let approvalId = '';
try {
  await guarded.callTool({ name: TOOL, arguments: large });
} catch (e) {
  check(e instanceof AegisApprovalRequired, String(e));
  approvalId = e.approvalId;
}
// The approver is shown the call with the card already redacted.
check(eng.approval(approvalId)?.args.card_number === '[REDACTED]', 'the pending approval stores sanitized args');
const token = eng.approve(approvalId, approverChain()).overrideToken ?? '';
console.log('3. after approval:', text(await guarded.callTool({ name: TOOL, arguments: large }, undefined, { approvalToken: token })));
check(received[2].card === '[REDACTED]', 'an approved call keeps its obligations: the card is redacted');
try {
  await guarded.callTool({ name: TOOL, arguments: { ...pay(100), destination: 'nope' } });
} catch (e) {
  check(e instanceof AegisDenied, String(e));
  console.log('4. denied before reaching the server:', e.decision.reasons[0].policyId);
}
check(received.map((r) => r.amount).join(',') === '1200,800,9000', JSON.stringify(received));
await client.close();
console.log('mcp client: ok');
