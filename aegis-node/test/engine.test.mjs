// The engine from Node: typed decisions, errors with codes, guards, async forms, stores.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import {
  AegisApprovalRequired, AegisDenied, AegisError, ERROR_CODES, Engine, KeyPair, VERDICT_CODES, argsToRun, delegate, enforce,
  errorCodes, reasonCodes, slackMessage, verifyReceipt,
} from '../aegis.js';
import { BUNDLE, ISSUER, ISSUER_KEY, PLANNER_KEY, TOOL, approverChain, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

test('errors carry the stable code and details, sync and async alike', async () => {
  assert.ok(errorCodes().includes('approval_replayed'));
  // The generated code lists agree with the native build.
  assert.deepEqual(errorCodes(), [...ERROR_CODES]);
  assert.deepEqual(reasonCodes(), [...VERDICT_CODES, ...ERROR_CODES]);
  assert.throws(() => new Engine({ bundleDir: os.tmpdir(), trustedIssuers: { [ISSUER]: ISSUER_KEY } }),
    (e) => e instanceof AegisError && e.code === 'invalid_bundle' && !e.message.startsWith('{') && e.details.file === null);
  // Details from the core's error JSON: the file and line of a broken policy.
  const broken = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-bundle-'));
  fs.cpSync(BUNDLE, broken, { recursive: true });
  const lines = fs.readFileSync(path.join(broken, 'limits.cedar'), 'utf8').split('\n').length;
  fs.appendFileSync(path.join(broken, 'limits.cedar'), 'permit (principal, action, resource) when { nope };\n');
  assert.throws(() => new Engine({ bundleDir: broken, trustedIssuers: { [ISSUER]: ISSUER_KEY } }),
    (e) => e.code === 'invalid_bundle' && e.details.file === 'limits.cedar' && e.details.line === lines);
  await assert.rejects(engine().reloadBundleAsync(broken), (e) => e instanceof AegisError && e.details.line === lines);
  const eng = engine();
  assert.throws(() => eng.approve('apr_nope', approverChain()), (e) => e.code === 'approval_not_found');
  await assert.rejects(eng.approveAsync('apr_nope', approverChain()), (e) => e instanceof AegisError && e.code === 'approval_not_found');
  assert.throws(() => eng.authorize({ chain: financeChain('t'), tool: TOOL, args: /** @type {any} */ ([pay(1)]) }),
    (e) => e instanceof AegisError && e.code === 'malformed_request');
  // Arguments are checked against the schema's declared types before any policy: a number Cedar
  // could not hold, a fraction, a string amount or an undeclared argument deny with args_invalid.
  for (const args of [{ ...pay(1), amount: 1e300 }, { ...pay(1), amount: 1.5 }, { ...pay(1), amount: '9000' }, { ...pay(1), extra: 1 },
    { ...pay(1), extra: null }]) {
    const d = eng.authorize({ chain: financeChain(uniqueTask('args')), tool: TOOL, args });
    assert.deepEqual([d.outcome, d.reasons.map((r) => r.code)], ['deny', ['args_invalid']], JSON.stringify(args));
  }
  assert.throws(() => delegate({ parent: financeChain('t')[0], parentKey: PLANNER_KEY, agentId: 'x', agentKey: KeyPair.generate(), scope: ['payroll.run'] }),
    (e) => e.code === 'scope_widened');
  assert.throws(() => new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, store: 'redis://127.0.0.1:1/0' }),
    (e) => e.code === 'store_unavailable');
  // Store URLs are parsed by the core.
  assert.throws(() => new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, store: 'ftp://x' }),
    (e) => e instanceof AegisError && e.code === 'malformed_request');
  assert.throws(() => new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, maxBreakGlassSecs: 'x' }),
    (e) => e.code === 'malformed_request');
  assert.ok(new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, store: 'memory', maxBreakGlassSecs: 600 }).policyVersion);
});

test('guards follow only the core enforcement; an unknown action refuses', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('enforce'));
  const allowed = eng.authorizeEnforced({ chain, tool: TOOL, args: pay(10) });
  assert.deepEqual(allowed.enforcement, { action: 'run', args: pay(10) });
  assert.deepEqual(enforce(allowed.decision, pay(10)), allowed.enforcement);
  const sanitized = eng.authorizeEnforced({ chain, tool: TOOL, args: { ...pay(10), card_number: '4242424242424242' } });
  assert.equal(argsToRun(sanitized).card_number, '[REDACTED]');
  const waiting = eng.authorizeEnforced({ chain, tool: TOOL, args: pay(9000) });
  assert.equal(waiting.enforcement.action, 'await_approval');
  assert.throws(() => argsToRun(waiting), (e) => e instanceof AegisApprovalRequired && e.approvalId === waiting.decision.approvalId);
  const refused = eng.authorizeEnforced({ chain, tool: TOOL, args: { ...pay(10), destination: 'nope' } });
  assert.equal(refused.enforcement.action, 'refuse');
  assert.throws(() => argsToRun(refused), (e) => e instanceof AegisDenied && e.code === refused.decision.reasons[0].code);
  // Whatever the outcome says, an enforcement this package does not know never runs the tool.
  const unknown = /** @type {any} */ ({ decision: allowed.decision, enforcement: { action: 'run_later', args: pay(10) } });
  assert.throws(() => argsToRun(unknown), (e) => e instanceof AegisDenied);
});

test('decisions are frozen plain objects discriminated by outcome', () => {
  const d = engine().authorize({ chain: financeChain(uniqueTask('t')), tool: TOOL, args: pay(1200) });
  assert.equal(d.outcome, 'allow');
  assert.equal(d.reasons[0].policyId, 'payments-by-task-agents');
  assert.match(d.policyVersion, /^payments@1\.0\.0\+/);
  assert.ok(Object.isFrozen(d) && Object.isFrozen(d.reasons[0]));
  const k = KeyPair.fromSeed(new Uint8Array(32).fill(9));
  assert.ok(!util.inspect(k).includes(k.privateJwk.d) && !JSON.stringify(k).includes(k.privateJwk.d));
});

test('the guarded function gets a frozen snapshot of exactly the authorized args', async () => {
  const eng = engine();
  const args = { ...pay(1200), memo: 'INV-1' };
  const seen = [];
  const createPayment = eng.guard({ tool: TOOL, chain: financeChain(uniqueTask('t')) }, async (a) => {
    args.amount = 999999; // the caller's object changes after the check...
    args.memo = 'INV-EVIL';
    seen.push([a.amount, a.memo, Object.isFrozen(a)]);
    return 'ok';
  });
  const pending = createPayment(args);
  args.amount = 5; // ...or right after the call started
  assert.equal(await pending, 'ok');
  assert.deepEqual(seen, [[1200, 'INV-1', true]]);
  // An argument the schema does not declare is refused before the tool runs.
  await assert.rejects(createPayment({ ...pay(10), meta: { invoice: 'INV-2' } }), (e) => e instanceof AegisDenied && e.code === 'args_invalid');
  assert.equal(seen.length, 1);
  // Nested values the core says to run with are frozen copies too.
  const { decision } = eng.authorizeEnforced({ chain: financeChain(uniqueTask('t')), tool: TOOL, args: pay(10) });
  const nested = { meta: { invoice: 'INV-3' } };
  const run = argsToRun({ decision, enforcement: { action: 'run', args: nested } });
  nested.meta.invoice = 'INV-EVIL';
  assert.ok(Object.isFrozen(run.meta) && /** @type {any} */ (run.meta).invoice === 'INV-3');
});

test('guard: sanitize, deny, approval and single redemption', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('t'));
  const cards = [];
  const createPayment = eng.guard({ tool: TOOL, chain: () => chain }, async (a) => {
    cards.push(a.card_number ?? '');
    return a.amount;
  });
  await createPayment({ ...pay(100), card_number: '4242424242424242' });
  assert.deepEqual(cards, ['[REDACTED]']);
  await assert.rejects(createPayment({ ...pay(100), destination: 'nope' }),
    (e) => e instanceof AegisDenied && e.decision.reasons[0].policyId === 'destination-account-pattern');
  let approvalId = '';
  await assert.rejects(createPayment(pay(9000)), (e) => {
    approvalId = e.approvalId;
    return e instanceof AegisApprovalRequired;
  });
  const token = eng.approve(approvalId, approverChain()).overrideToken;
  assert.equal(await createPayment(pay(9000), { approvalToken: token }), 9000);
  await assert.rejects(createPayment(pay(9000), { approvalToken: token }), (e) => e.code === 'approval_replayed');
});

test('async forms run off the JS thread and agree with the sync ones', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('async'));
  const decisions = await Promise.all(Array.from({ length: 20 }, () => eng.authorizeAsync({ chain, tool: TOOL, args: pay(10) })));
  assert.deepEqual(new Set(decisions.map((d) => d.outcome)), new Set(['allow']));
  assert.equal(new Set(decisions.map((d) => d.decisionId)).size, 20);
  assert.match(await eng.reloadBundleAsync(BUNDLE), /^payments@/);
  await assert.rejects(eng.reloadBundleAsync(os.tmpdir()), (e) => e.code === 'invalid_bundle');
});

test('a token redeemed concurrently is accepted once', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('race'));
  const id = eng.authorize({ chain, tool: TOOL, args: pay(9000) }).approvalId;
  const token = eng.approve(id, approverChain()).overrideToken;
  const outcomes = await Promise.all(Array.from({ length: 8 }, () => eng.authorizeAsync({ chain, tool: TOOL, args: pay(9000), approvalToken: token })));
  assert.deepEqual(outcomes.map((d) => d.outcome).sort(), ['allow', ...Array(7).fill('deny')]);
});

/** A promise of the next `count` values `push` is called with; fails after 5 s (the timer keeps the loop alive). */
function collect(count) {
  const seen = [];
  let push = (_v) => {};
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.length} of ${count} arrived`)), 5000);
    push = (v) => {
      seen.push(v);
      if (seen.length === count) {
        clearTimeout(timer);
        resolve(seen);
      }
    };
  });
  return { push: (v) => push(v), done };
}

test('notifier, pending approvals, Slack message, ledger, budget, end_task', async () => {
  const notified = collect(1);
  const eng = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, notifier: notified.push });
  const task = uniqueTask('state');
  const chain = financeChain(task);
  const d = eng.authorize({ chain, tool: TOOL, args: pay(9000) });
  // The core calls the notifier after storing the approval, on the JS thread, asynchronously.
  assert.deepEqual((await notified.done).map((p) => [p.approvalId, p.status]), [[d.approvalId, 'pending']]);
  const [pending] = eng.pendingApprovals();
  // 9000 is over the forbid's 5000 and over the task's 5000 budget: one approval answers both.
  assert.deepEqual(pending.roles, ['budget-approver', 'finance-approver']);
  assert.deepEqual(pending.lifts, ['budget:task_payments', 'large-payment-needs-approval']);
  assert.equal(pending.agentId, 'planner/finance-agent');
  assert.deepEqual(pending.lineage, ['planner']);
  assert.ok(slackMessage(pending).blocks.some((b) => b.type === 'actions'));
  // Splitting the 9000 does not get around it: past the budget, each part asks for an approval.
  const parts = [3000, 3000, 3000].map((a) => eng.authorize({ chain, tool: TOOL, args: pay(a) }));
  assert.deepEqual(parts.map((d) => [d.outcome, d.reasons.map((r) => r.code)]),
    [['allow', ['policy_permit']], ['approval_needed', ['budget_exceeded']], ['approval_needed', ['budget_exceeded']]]);
  assert.deepEqual(eng.approval(parts[1].approvalId ?? '')?.lifts, ['budget:task_payments']);
  assert.deepEqual(eng.ledger(task).map((e) => [e.tool, e.agentId, e.lineage]), [[TOOL, 'planner/finance-agent', ['planner']]]);
  eng.endTask(task);
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(1) }).reasons[0].code, 'task_ended');
});

test('two engines share one SQLite store', () => {
  const store = `sqlite:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-node-')), 'aegis.db')}`;
  const a = engine(store);
  const b = engine(store);
  const chain = financeChain(uniqueTask('shared'));
  const id = a.authorize({ chain, tool: TOOL, args: pay(9000) }).approvalId;
  assert.deepEqual(b.pendingApprovals().map((p) => p.approvalId), [id]);
  const token = b.approve(id, approverChain()).overrideToken;
  assert.equal(a.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: token }).outcome, 'allow');
  assert.equal(b.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: token }).reasons[0].code, 'approval_replayed');
});

test('a throwing notifier becomes a process warning, never an exception', async () => {
  const warned = collect(1);
  const onWarning = (w) => warned.push(w);
  process.on('warning', onWarning);
  try {
    const eng = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, notifier: () => {
      throw new Error('pager down');
    } });
    const d = eng.authorize({ chain: financeChain(uniqueTask('notify')), tool: TOOL, args: pay(9000) });
    assert.ok(d.approvalId);
    const [w] = await warned.done;
    assert.equal(w.name, 'AegisNotifierWarning');
    assert.match(w.message, /pager down/);
  } finally {
    process.off('warning', onWarning);
  }
});

test('a tool checks the decision receipt offline', () => {
  const eng = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY },
    receipts: { key: KeyPair.fromSeed(Buffer.alloc(32, 11)), issuer: 'aegis.example', audience: 'payments-api' } });
  const jwks = eng.receiptJwks();
  assert.equal(jwks?.keys.length, 1);
  const chain = financeChain(uniqueTask('receipt'));
  const d = eng.authorize({ chain, tool: TOOL, args: pay(1200) });
  assert.equal(d.outcome, 'allow');
  const check = { issuer: 'aegis.example', audience: 'payments-api', tool: TOOL };
  assert.equal(verifyReceipt(d.receipt ?? '', jwks, { ...check, args: pay(1200) }).jti, d.decisionId);
  assert.throws(() => verifyReceipt(d.receipt ?? '', jwks, { ...check, args: pay(1201) }), (e) => e.code === 'receipt_mismatch');
  assert.throws(() => verifyReceipt(d.receipt ?? '', { keys: [KeyPair.generate().publicJwk] }, { ...check, args: pay(1200) }),
    (e) => e.code === 'receipt_invalid');
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(9000) }).receipt, null);
  assert.equal(engine().receiptJwks(), null);
});
