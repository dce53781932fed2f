// @ts-check
// A payment tool served over plain node:http, behind Aegis: it runs only with a valid decision
// receipt (`Aegis-Receipt`, what `aegis serve` forwards with each allowed call) for exactly the
// arguments in the body, once, and the handler reads exactly those arguments. A call with its
// receipt pays; a call without one, a receipt for other arguments, a receipt presented twice and
// a receipt for another tool (even with a header naming that tool) get 403 with `{ code, message }`.
import http from 'node:http';
import { Engine } from '../../aegis-node/aegis.js';
import { RECEIPT_HEADER, receiptMiddleware } from '../../aegis-node/integrations/http.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, check, financeChain, key, pay, uniqueTask } from './setup.mjs';

const RECEIPTS = { issuer: 'aegis.example', audience: 'payments-http' };
const eng = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, receipts: { key: key(22), ...RECEIPTS } });
// What the tool server is configured with: the engine's public keys (`/.well-known/jwks.json`),
// and the tool this route serves: the server names it, never the caller.
const guard = receiptMiddleware({ jwks: eng.receiptJwks(), ...RECEIPTS, tool: TOOL });

/** @type {number[]} */
const paid = [];
const server = http.createServer((/** @type {import('../../aegis-node/integrations/http.js').ReceiptRequest} */ req, res) => {
  guard(req, res, () => {
    // Only reached with a verified receipt: `req.body` (and `req.aegis.args`) are exactly the
    // authorized arguments, nothing else the caller sent.
    const verified = req.aegis;
    check(verified !== undefined && req.body === verified.args, 'the middleware says what it verified');
    const args = /** @type {{ amount: number, currency: string, destination: string }} */ (req.body);
    paid.push(args.amount);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ paid: args.amount, decision: verified.receipt.jti }));
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
const address = server.address();
check(address !== null && typeof address === 'object', 'the server listens');
const url = `http://127.0.0.1:${address.port}/payments`;

/**
 * POSTs `args` to the tool, with `receipt` as `Aegis-Receipt` when given.
 * @param {object} args @param {string | null} [receipt] @param {Record<string, string>} [extra] more headers
 */
async function callTool(args, receipt, extra = {}) {
  /** @type {Record<string, string>} */
  const headers = { 'content-type': 'application/json', ...extra };
  if (receipt) headers[RECEIPT_HEADER] = receipt;
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(args) });
  return { status: response.status, body: await response.json() };
}

const chain = financeChain(uniqueTask('node-http-tool'));
// What the gate does for each proxied call: decide, and forward the receipt of an allow.
const allowed = eng.authorize({ chain, tool: TOOL, args: pay(1200) });
check(allowed.outcome === 'allow' && allowed.receipt !== null, JSON.stringify(allowed));
const made = await callTool(pay(1200), allowed.receipt);
check(made.status === 200 && made.body.paid === 1200, JSON.stringify(made));
console.log('1. a call with its receipt pays:', JSON.stringify(made.body));

const around = await callTool(pay(700));
check(around.status === 403 && around.body.code === 'receipt_invalid', JSON.stringify(around));
console.log('2. a call around Aegis (no receipt):', around.status, around.body.code, '-', around.body.message);

const small = eng.authorize({ chain, tool: TOOL, args: pay(300) });
const swapped = await callTool(pay(30000), small.receipt);
check(swapped.status === 403 && swapped.body.code === 'receipt_mismatch', JSON.stringify(swapped));
console.log('3. a receipt for 300 with a body of 30000:', swapped.status, swapped.body.code);

const again = await callTool(pay(1200), allowed.receipt);
check(again.status === 403 && again.body.code === 'receipt_invalid' && again.body.message.includes('already used'), JSON.stringify(again));
console.log('4. the first receipt presented again:', again.status, again.body.code, '-', again.body.message);

// The planner may draft invoices: a receipt for `invoice.create`, sent to the payments route
// with a header naming that tool, does not make this route an invoice tool.
const invoiceArgs = { customer: 'acme', amount: 1200 };
const invoice = eng.authorize({ chain: chain.slice(0, 1), tool: 'invoice.create', args: invoiceArgs });
const renamed = await callTool(invoiceArgs, invoice.receipt, { 'aegis-tool': 'invoice.create' });
check(renamed.status === 403 && renamed.body.code === 'args_invalid', JSON.stringify(renamed));
console.log('5. a receipt for invoice.create, with `Aegis-Tool: invoice.create`:', renamed.status, renamed.body.code, '-', renamed.body.message);

check(paid.join(',') === '1200', `paid: ${paid}`);
server.close();
console.log('http tool guard: ok');
