// @ts-check
// An MCP server (@modelcontextprotocol/sdk) whose payment tool checks for itself: it runs only
// with a valid decision receipt for exactly the arguments it received. A guarded client gets its
// payment made; a client that skips Aegis, or replays a receipt with other arguments, gets nothing.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { z } from 'zod';
import { Engine } from '../../aegis-node/aegis.js';
import { RECEIPT_META_KEY, guardClient, requireReceipt } from '../../aegis-node/integrations/mcp.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, check, financeChain, key, pay, uniqueTask } from './setup.mjs';

const RECEIPTS = { issuer: 'aegis.example', audience: 'payments-mcp' };
const eng = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, receipts: { key: key(21), ...RECEIPTS } });
// What the server is configured with: the engine's public keys, nothing secret.
const jwks = eng.receiptJwks();

/** @type {number[]} */
const paid = [];
const server = new McpServer({ name: 'payments', version: '1.0.0' });
server.tool(TOOL, { amount: z.number(), currency: z.string(), destination: z.string() }, async (args, extra) => {
  requireReceipt(TOOL, args, extra, { jwks, ...RECEIPTS });
  paid.push(args.amount);
  return { content: [{ type: 'text', text: `paid ${args.amount} ${args.currency} to ${args.destination}` }] };
});

const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
await server.connect(serverTransport);
const client = new Client({ name: 'finance-agent', version: '1.0.0' });
await client.connect(clientTransport);
const chain = financeChain(uniqueTask('node-mcp-server'));

/** @param {any} result */
const text = (result) => result.content[0].text;
console.log('1. guarded call:', text(await guardClient(client, eng, chain).callTool({ name: TOOL, arguments: pay(1200) })));

const direct = await client.callTool({ name: TOOL, arguments: pay(700) });
check(direct.isError === true && text(direct).includes('receipt_invalid'), JSON.stringify(direct));
console.log('2. a call around Aegis is refused by the tool itself');

const decision = eng.authorize({ chain, tool: TOOL, args: pay(300) });
const swapped = await client.callTool({ name: TOOL, arguments: pay(30000), _meta: { [RECEIPT_META_KEY]: decision.receipt } });
check(swapped.isError === true && text(swapped).includes('receipt_mismatch'), JSON.stringify(swapped));
console.log('3. a receipt for 300 does not pay 30000');
await client.callTool({ name: TOOL, arguments: pay(300), _meta: { [RECEIPT_META_KEY]: decision.receipt } });
const again = await client.callTool({ name: TOOL, arguments: pay(300), _meta: { [RECEIPT_META_KEY]: decision.receipt } });
check(again.isError === true && text(again).includes('already used'), JSON.stringify(again));
console.log('4. the receipt pays 300 once');
check(paid.join(',') === '1200,300', JSON.stringify(paid));
await client.close();
console.log('mcp server guard: ok');
