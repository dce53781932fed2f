// The HTTP receipt middleware in front of a node:http tool server: a call with its receipt
// reaches the tool with exactly the authorized arguments (and `req.body` is exactly them); a
// receipt missing, forged, tampered, reused, expired, for another audience, another tool or other
// arguments, a call whose names of the tool disagree with the route's, and a body smuggling
// members past the receipt (an MCP envelope around the authorized arguments) get 403
// `{ code, message }` and never reach the tool.
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { AegisError, Engine } from '../aegis.js';
import { RECEIPT_HEADER, receiptMiddleware } from '../integrations/http.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, financeChain, key, pay, uniqueTask } from './helpers.mjs';

const RECEIPTS = { issuer: 'aegis.test', audience: 'payments-http' };
const receiptsEngine = (seed = 31, receipts = RECEIPTS) =>
  new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, receipts: { key: key(seed), ...receipts } });
const eng = receiptsEngine();
const jwks = eng.receiptJwks();

/**
 * A tool server: `before(req)` stands in for what runs ahead of the middleware (a body parser),
 * `reached` records each call the tool received.
 */
async function toolServer(options, before = () => {}) {
  const middleware = receiptMiddleware({ jwks, ...RECEIPTS, tool: TOOL, ...options });
  const reached = [];
  const server = http.createServer((req, res) => {
    before(req);
    middleware(req, res, () => {
      reached.push({ body: req.body, aegis: req.aegis, frozen: Object.isFrozen(req.aegis.args) });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ran: req.aegis.args }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  const call = async ({ path = `/tools/${TOOL}`, receipt, body, headers = {}, method = 'POST' }) => {
    const h = { 'content-type': 'application/json', ...headers };
    if (receipt) h[RECEIPT_HEADER] = receipt;
    const response = await fetch(base + path, { method, headers: h, body: typeof body === 'string' ? body : body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null, reason: response.headers.get('aegis-reason') };
  };
  return { call, reached, close: () => new Promise((resolve) => server.close(resolve)) };
}

const receiptFor = (args, tool = TOOL, engine = eng, chain = financeChain(uniqueTask('http'))) => {
  const decision = engine.authorize({ chain, tool, args });
  assert.ok(decision.receipt, `${decision.outcome}: ${JSON.stringify(decision.reasons)}`);
  return decision.receipt;
};

test('a call with its receipt reaches the tool with exactly the authorized arguments, frozen', async (t) => {
  const srv = await toolServer({});
  t.after(srv.close);
  const out = await srv.call({ receipt: receiptFor(pay(1200)), body: pay(1200) });
  assert.deepEqual([out.status, out.body], [200, { ran: pay(1200) }]);
  assert.equal(srv.reached.length, 1);
  const [{ body, aegis, frozen }] = srv.reached;
  assert.deepEqual(body, pay(1200));
  assert.equal(body, aegis.args, 'req.body is exactly the verified arguments');
  assert.equal(frozen, true);
  assert.deepEqual([aegis.tool, aegis.receipt.tool, aegis.receipt.sub, aegis.receipt.aud], [TOOL, TOOL, 'planner/finance-agent', RECEIPTS.audience]);
});

test('attack: missing, forged, tampered and reused receipts are refused with 403 receipt_invalid', async (t) => {
  const srv = await toolServer({});
  t.after(srv.close);
  const refused = async (req, pattern) => {
    const out = await srv.call(req);
    assert.equal(out.status, 403, JSON.stringify(out));
    assert.equal(out.body.code, 'receipt_invalid');
    assert.equal(out.reason, 'receipt_invalid');
    assert.match(out.body.message, pattern);
  };
  await refused({ body: pay(10) }, /none presented/);
  // Signed by another engine's key, with the same issuer and audience.
  await refused({ receipt: receiptFor(pay(10), TOOL, receiptsEngine(32)), body: pay(10) }, /no key of the set verifies it/);
  // The payload changed behind the signature.
  const [h, p, s] = receiptFor(pay(10)).split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const tampered = [h, Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString('base64url'), s].join('.');
  await refused({ receipt: tampered, body: pay(10) }, /no key of the set verifies it/);
  await refused({ receipt: 'not-a-receipt', body: pay(10) }, /receipt/);
  const once = receiptFor(pay(20));
  assert.equal((await srv.call({ receipt: once, body: pay(20) })).status, 200);
  await refused({ receipt: once, body: pay(20) }, /already used/);
  assert.equal(srv.reached.length, 1);
});

test('attack: an expired receipt, or one for another audience, is refused', async (t) => {
  const later = await toolServer({ clock: () => Math.floor(Date.now() / 1000) + 3600 });
  const other = await toolServer({ audience: 'another-tool-server' });
  t.after(later.close);
  t.after(other.close);
  const expired = await later.call({ receipt: receiptFor(pay(10)), body: pay(10) });
  assert.deepEqual([expired.status, expired.body.code], [403, 'receipt_invalid']);
  assert.match(expired.body.message, /expired/);
  const elsewhere = await other.call({ receipt: receiptFor(pay(10)), body: pay(10) });
  assert.deepEqual([elsewhere.status, elsewhere.body.code], [403, 'receipt_invalid']);
  assert.match(elsewhere.body.message, /audience/);
  assert.equal(later.reached.length + other.reached.length, 0);
});

test('attack: a receipt for other arguments or another tool is refused with receipt_mismatch, and not used up', async (t) => {
  const srv = await toolServer({});
  t.after(srv.close);
  const receipt = receiptFor(pay(300));
  const swapped = await srv.call({ receipt, body: pay(30000) });
  assert.deepEqual([swapped.status, swapped.body.code], [403, 'receipt_mismatch']);
  const extra = await srv.call({ receipt, body: { ...pay(300), memo: 'and one more thing' } });
  assert.deepEqual([extra.status, extra.body.code], [403, 'receipt_mismatch']);
  // The planner drafts invoices: a receipt of its own, for another tool.
  const invoice = receiptFor({ customer: 'acme', amount: 300 }, 'invoice.create', eng, financeChain(uniqueTask('http-invoice')).slice(0, 1));
  const otherTool = await srv.call({ receipt: invoice, body: { customer: 'acme', amount: 300 } });
  assert.deepEqual([otherTool.status, otherTool.body.code], [403, 'receipt_mismatch']);
  assert.equal(srv.reached.length, 0);
  // A mismatch does not consume the receipt: the authorized call still goes through, once.
  assert.equal((await srv.call({ receipt, body: pay(300) })).status, 200);
});

test('the tool is the server\'s to name: the middleware is not built without `tool`, and headers may only agree with it', async (t) => {
  const unnamed = (e) => e instanceof AegisError && e.code === 'malformed_request' && /needs the tool it guards/.test(e.message);
  for (const tool of [undefined, '', {}, new Map(), { '/payments': '' }, 42]) {
    assert.throws(() => receiptMiddleware({ jwks, ...RECEIPTS, tool }), unnamed, String(tool));
  }
  assert.throws(() => receiptMiddleware({ jwks, ...RECEIPTS, tool: TOOL, mcp: 'yes' }), /`mcp`/);
  const fixed = await toolServer({ tool: TOOL });
  t.after(fixed.close);
  const disagree = await fixed.call({ receipt: receiptFor(pay(10)), body: pay(10), headers: { 'aegis-tool': 'invoice.create' } });
  assert.deepEqual([disagree.status, disagree.body.code, disagree.reason], [403, 'args_invalid', 'args_invalid']);
  const agree = await fixed.call({ path: '/anything', receipt: receiptFor(pay(10)), body: pay(10), headers: { 'aegis-tool': TOOL, 'mcp-name': TOOL } });
  assert.deepEqual([agree.status, agree.body], [200, { ran: pay(10) }]);
  assert.equal(fixed.reached.length, 1);
});

test('attack: a receipt for a harmless tool, sent to the payments route with a header naming that tool, is refused', async (t) => {
  const invoiceArgs = { customer: 'acme', amount: 300 };
  const invoiceReceipt = () => receiptFor(invoiceArgs, 'invoice.create', eng, financeChain(uniqueTask('http-invoice')).slice(0, 1));
  // One middleware in front of two routes: a map of route to tool; and a function of the path.
  const routes = await toolServer({ tool: { '/payments': TOOL, '/invoices': 'invoice.create' } });
  const byPath = await toolServer({ tool: (path) => (path === '/payments' ? TOOL : undefined) });
  t.after(routes.close);
  t.after(byPath.close);
  for (const srv of [routes, byPath]) {
    for (const header of ['aegis-tool', 'mcp-name']) {
      const smuggled = await srv.call({ path: '/payments', receipt: invoiceReceipt(), body: invoiceArgs, headers: { [header]: 'invoice.create' } });
      assert.deepEqual([smuggled.status, smuggled.body.code], [403, 'args_invalid'], header);
    }
    // Without the header, the route's tool is the payment one: the receipt is for another tool.
    const plain = await srv.call({ path: '/payments?tool=invoice.create', receipt: invoiceReceipt(), body: invoiceArgs });
    assert.deepEqual([plain.status, plain.body.code], [403, 'receipt_mismatch']);
    // A path no tool is configured for (another spelling included) reaches nothing.
    for (const path of ['/refunds', '/payments/', '/tools/invoice.create']) {
      const unknown = await srv.call({ path, receipt: invoiceReceipt(), body: invoiceArgs, headers: { 'aegis-tool': 'invoice.create' } });
      assert.deepEqual([unknown.status, unknown.body.code], [403, 'malformed_request'], path);
    }
  }
  assert.equal(routes.reached.length + byPath.reached.length, 0);
  // On its own route, the invoice receipt is good.
  const invoice = await routes.call({ path: '/invoices', receipt: invoiceReceipt(), body: invoiceArgs, headers: { 'aegis-tool': 'invoice.create' } });
  assert.deepEqual([invoice.status, invoice.body], [200, { ran: invoiceArgs }]);
});

/** An MCP `tools/call` request. */
const rpc = (name, args, extra = {}) => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args }, ...extra });
/** The attack: the authorized arguments in the envelope, and what the handler is meant to read beside them. */
const smuggling = (args) => rpc(TOOL, args, { amount: 900000, destination: 'acct_ATTACKERATTACKER0' });

test('attack: members beside the verified arguments never reach the tool (an MCP envelope around them, without `mcp`)', async (t) => {
  const srv = await toolServer({});
  t.after(srv.close);
  // Without `mcp` the body is the arguments, all of it: the envelope is not what the receipt is for.
  const out = await srv.call({ receipt: receiptFor(pay(10)), body: smuggling(pay(10)) });
  assert.deepEqual([out.status, out.body.code], [403, 'receipt_mismatch']);
  const bare = await srv.call({ receipt: receiptFor(pay(10)), body: rpc(TOOL, pay(10)) });
  assert.deepEqual([bare.status, bare.body.code], [403, 'receipt_mismatch']);
  assert.equal(srv.reached.length, 0);
});

test('mcp: a tools/call request passes rebuilt around exactly the verified arguments; anything else in the envelope is refused', async (t) => {
  const srv = await toolServer({ mcp: true });
  t.after(srv.close);
  const refused = async (body, code, pattern, headers = {}) => {
    const out = await srv.call({ path: '/mcp', receipt: receiptFor(pay(12)), body, headers });
    assert.deepEqual([out.status, out.body.code], [403, code], JSON.stringify(body));
    if (pattern) assert.match(out.body.message, pattern);
  };
  await refused(smuggling(pay(12)), 'malformed_request', /`amount`, which no receipt covers/);
  await refused({ ...rpc(TOOL, pay(12)), params: { name: TOOL, arguments: pay(12), amount: 900000 } }, 'malformed_request', /params hold `amount`/);
  await refused(rpc('invoice.create', pay(12)), 'args_invalid', /params\.name/);
  await refused(rpc(TOOL, pay(12)), 'args_invalid', /Mcp-Name/, { 'mcp-name': 'invoice.create' });
  await refused({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, 'malformed_request', /only MCP `tools\/call`/);
  await refused({ ...rpc(TOOL, pay(12)), jsonrpc: '1.0' }, 'malformed_request');
  await refused({ ...rpc(TOOL, pay(12)), id: null }, 'malformed_request', /`id`/);
  await refused({ ...rpc(TOOL, pay(12)), params: { name: TOOL, arguments: [pay(12)] } }, 'malformed_request', /not an object/);
  await refused([rpc(TOOL, pay(12))], 'malformed_request');
  await refused(pay(12), 'malformed_request');
  assert.equal(srv.reached.length, 0);

  const meta = { progressToken: 'p-1' };
  const ok = await srv.call({ path: '/mcp', receipt: receiptFor(pay(12)), body: { ...rpc(TOOL, pay(12)), params: { name: TOOL, arguments: pay(12), _meta: meta } },
    headers: { 'mcp-name': TOOL } });
  assert.deepEqual([ok.status, ok.body], [200, { ran: pay(12) }]);
  const [{ body }] = srv.reached;
  assert.deepEqual(body, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: TOOL, arguments: pay(12), _meta: meta } });
  assert.ok(Object.isFrozen(body) && Object.isFrozen(body.params) && Object.isFrozen(body.params.arguments));
});

test('bodies: not JSON is 400, too large is 413, a body parsed upstream (express.json) is what is checked', async (t) => {
  const small = await toolServer({ limit: 64 });
  t.after(small.close);
  const garbage = await small.call({ receipt: receiptFor(pay(10)), body: '{"amount": 10,' });
  assert.deepEqual([garbage.status, garbage.body.code], [400, 'malformed_request']);
  const big = await small.call({ receipt: receiptFor(pay(10)), body: { ...pay(10), memo: 'x'.repeat(200) } });
  assert.deepEqual([big.status, big.body.code], [413, 'malformed_request']);
  // Many chunks past the limit: still an answer, not a reset connection.
  const huge = await small.call({ receipt: receiptFor(pay(10)), body: { ...pay(10), memo: 'x'.repeat(4 * 1024 * 1024) } });
  assert.deepEqual([huge.status, huge.body.code], [413, 'malformed_request']);

  // As express does: a body parser left the parsed body (here: another one than was sent).
  const parsed = await toolServer({}, (req) => {
    req.body = pay(99);
  });
  t.after(parsed.close);
  const checked = await parsed.call({ path: '/anything', receipt: receiptFor(pay(99)), body: pay(1) });
  assert.deepEqual([checked.status, checked.body], [200, { ran: pay(99) }]);
  const mismatch = await parsed.call({ path: '/anything', receipt: receiptFor(pay(1)), body: pay(1) });
  assert.deepEqual([mismatch.status, mismatch.body.code], [403, 'receipt_mismatch']);
  assert.equal(small.reached.length, 0);
});

test('fail closed: a key set that cannot be had, or that holds a private key, lets nothing through', async (t) => {
  const failing = await toolServer({ jwks: async () => { throw new Error('the JWKS endpoint is down'); } });
  const leaky = await toolServer({ jwks: { keys: [key(31).privateJwk] } });
  t.after(failing.close);
  t.after(leaky.close);
  const down = await failing.call({ receipt: receiptFor(pay(10)), body: pay(10) });
  assert.deepEqual([down.status, down.body], [500, { code: 'internal', message: 'the receipt could not be checked' }]);
  const priv = await leaky.call({ receipt: receiptFor(pay(10)), body: pay(10) });
  assert.deepEqual([priv.status, priv.body.code], [403, 'receipt_invalid']);
  assert.match(priv.body.message, /private key/);
  assert.equal(failing.reached.length + leaky.reached.length, 0);
  assert.throws(() => receiptMiddleware({ jwks, issuer: RECEIPTS.issuer }), /audience/);
});

test('a sanitized decision\'s receipt authorizes the redacted arguments only', async (t) => {
  const srv = await toolServer({});
  t.after(srv.close);
  const args = { ...pay(10), card_number: '4111111111111111' };
  const decision = eng.authorize({ chain: financeChain(uniqueTask('http-sanitize')), tool: TOOL, args });
  assert.equal(decision.outcome, 'sanitize');
  const raw = await srv.call({ receipt: decision.receipt, body: args });
  assert.deepEqual([raw.status, raw.body.code], [403, 'receipt_mismatch']);
  const redacted = await srv.call({ receipt: decision.receipt, body: decision.sanitizedArgs });
  assert.deepEqual([redacted.status, redacted.body], [200, { ran: decision.sanitizedArgs }]);
});
