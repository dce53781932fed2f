// The attacks of "identity nobody can name themselves into", tried through the binding: names a
// delegator writes, budget arithmetic, obligations under an approval, break-glass by one holder.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { SignJWT, importJWK } from 'jose';
import { AegisApprovalRequired, AegisError, KeyPair, delegate, inspect, issueRoot } from '../aegis.js';
import {
  FINANCE_KEY, ISSUER, ISSUER_KEY, PLANNER_KEY, TOOL, approverChain, engine, financeChain, key, pay, uniqueTask,
} from './helpers.mjs';

const native = createRequire(import.meta.url)('../index.js');
const CARD = '4242424242424242';

/** A root credential the issuer attests: a person (or an attested agent) of its own. */
const person = (agentId, agentKey, scope, roles = []) => issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId, agentKey,
  taskId: `desk-${agentId}`, intent: 'answer requests', scope, roles });

/**
 * `token` with `changes` to its claims, signed by hand with `signer` (as an attacker would, who
 * does not use Aegis's minting): the engine, not the issuing helper, must refuse it.
 */
async function forge(token, changes, signer) {
  const { header, claims } = inspect(token);
  const key = await importJWK({ ...signer.privateJwk, alg: 'EdDSA' }, 'EdDSA');
  return new SignJWT({ ...claims, ...changes }).setProtectedHeader(header).sign(key);
}

/** The TOOL entries of a task's ledger. */
const payments = (eng, task) => eng.ledger(task).filter((e) => e.tool === TOOL);

test('a planner holding aegis.approve cannot name a delegate into the finance approver', async () => {
  const eng = engine();
  const task = uniqueTask('sibling');
  const planner = issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'planner', agentKey: PLANNER_KEY, taskId: task,
    intent: 'pay the approved vendor invoices', scope: ['invoice.create', TOOL, 'aegis.approve'] });
  const finance = delegate({ parent: planner, parentKey: PLANNER_KEY, agentId: 'finance-agent', agentKey: FINANCE_KEY, scope: [TOOL] });
  const chain = [planner, finance];
  const asked = eng.authorize({ chain, tool: TOOL, args: pay(9000) });
  assert.equal(asked.outcome, 'approval_needed');
  const approvalId = asked.approvalId ?? '';
  assert.equal(eng.approval(approvalId)?.agentId, 'planner/finance-agent');

  // The sibling is `planner/finance-approver`, a delegate: never an approver, whatever its key.
  const fresh = delegate({ parent: planner, parentKey: PLANNER_KEY, agentId: 'finance-approver', agentKey: KeyPair.generate(), scope: ['aegis.approve'] });
  assert.equal(inspect(fresh).claims.sub, 'finance-approver'); // the name it wrote is not the id it gets
  // On its own key the "delegate" is the planner itself: it is not minted, and signed by hand
  // it is refused by the engine (a key appears once per chain).
  assert.throws(() => delegate({ parent: planner, parentKey: PLANNER_KEY, agentId: 'finance-approver', agentKey: PLANNER_KEY, scope: ['aegis.approve'] }),
    (e) => e instanceof AegisError && e.code === 'delegation_cycle');
  const ownKey = await forge(fresh, { cnf: { jwk: PLANNER_KEY.publicJwk } }, PLANNER_KEY);
  const attempts = [
    [[planner, fresh], 'approver_conflict'], // a fresh key: a delegate
    [[planner, ownKey], 'delegation_cycle'], // its own key (validly signed: refused for the key, below)
    [[planner], 'approver_conflict'], // the planner itself delegated to the requester
  ];
  for (const [approver, code] of attempts) {
    for (const resolve of [eng.approve.bind(eng), eng.reject.bind(eng)]) {
      const r = resolve(approvalId, approver);
      assert.deepEqual([r.accepted, r.overrideToken, r.reasons.map((x) => x.code)], [false, null, [code]], `${resolve.name}: ${code}`);
    }
  }
  assert.match(eng.approve(approvalId, [planner, fresh]).reasons[0].message, /`planner\/finance-approver` is a delegate/);
  assert.match(eng.approve(approvalId, [planner, ownKey]).reasons[0].message, /a key appears twice in the chain/);
  // A delegate's name cannot be written with the separator (not minted; refused signed by hand)...
  assert.throws(() => delegate({ parent: planner, parentKey: PLANNER_KEY, agentId: 'x/finance-approver', agentKey: KeyPair.generate(), scope: ['aegis.approve'] }),
    (e) => e instanceof AegisError && e.code === 'malformed_request');
  const slashed = await forge(fresh, { sub: 'x/finance-approver' }, PLANNER_KEY);
  assert.deepEqual(eng.approve(approvalId, [planner, slashed]).reasons.map((r) => [r.code, r.message]),
    [['malformed_token', 'link 1: `sub` `x/finance-approver` contains `/`']]);
  // ...and roles cannot be delegated (not minted; a hand-signed role claim is refused too).
  assert.throws(() => native.call('issue', JSON.stringify({ parent: planner, signing_key: PLANNER_KEY.privateJwk, agent_id: 'finance-approver',
    agent_key: KeyPair.generate().publicJwk, scope: ['aegis.approve'], ttl_secs: 60, roles: ['finance-approver'] })),
  (e) => JSON.parse(e.message).code === 'malformed_request');
  const roled = await forge(fresh, { roles: ['finance-approver'] }, PLANNER_KEY);
  assert.deepEqual(eng.approve(approvalId, [planner, roled]).reasons.map((r) => [r.code, r.link]), [['malformed_token', 1]]);
  assert.match(eng.approve(approvalId, [planner, roled]).reasons[0].message, /cannot carry roles/);

  // The payment was never allowed, and its approval is still waiting for a real approver.
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(9000) }).outcome, 'approval_needed');
  assert.deepEqual(eng.ledger(task), []); // no payment, and no refused approver left a duty behind
  assert.equal(eng.approval(approvalId)?.status, 'pending');
  const approved = eng.approve(approvalId, approverChain());
  assert.ok(approved.accepted && approved.overrideToken, JSON.stringify(approved.reasons));
  assert.equal(approved.approval.resolvedBy, 'finance-approver');
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: approved.overrideToken }).outcome, 'allow');
  assert.deepEqual(payments(eng, task).map((e) => e.agentId), ['planner/finance-agent']);
});

test('an approver is a root holding aegis.approve by name, the role, a live task and no key of the requester', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('approver'));
  const approvalId = eng.authorize({ chain, tool: TOOL, args: pay(9000) }).approvalId ?? '';
  const codes = (approver) => eng.approve(approvalId, approver).reasons.map((r) => r.code);
  const role = ['finance-approver'];
  // Roles are claims the issuer signs, sent only when there are some.
  assert.deepEqual(inspect(approverChain()[0]).claims.roles, role);
  assert.ok(!('roles' in inspect(person('nobody', key(34), ['aegis.approve'])).claims));
  assert.throws(() => person('typo', key(35), ['aegis.approve'], /** @type {any} */ ('finance-approver')), (e) => e.code === 'malformed_request');
  // Wildcards never cover Aegis's own actions.
  assert.deepEqual(codes([person('finance-approver', key(30), ['*'], role)]), ['tool_not_in_scope']);
  assert.deepEqual(codes([person('finance-approver', key(31), ['aegis.*'], role)]), ['tool_not_in_scope']);
  // The name alone is nothing: the role is what the issuer attests.
  assert.deepEqual(codes([person('finance-approver', key(32), ['aegis.approve'])]), ['no_matching_permit']);
  // A root holding the finance agent's key is the requester, whatever its name.
  assert.deepEqual(codes([person('finance-approver', FINANCE_KEY, ['aegis.approve'], role)]), ['approver_conflict']);
  // An approver whose own task ended is revoked.
  const ended = person('auditor', key(33), ['aegis.approve'], role);
  eng.endTask('desk-auditor');
  assert.deepEqual(codes([ended]), ['task_ended']);
  assert.equal(eng.approval(approvalId)?.status, 'pending');
  assert.ok(eng.approve(approvalId, approverChain()).accepted);
});

test('a negative amount after a 5000 payment does not make room in the budget', () => {
  const eng = engine();
  const task = uniqueTask('negative');
  const chain = financeChain(task);
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(5000) }).outcome, 'allow');
  const refund = eng.authorize({ chain, tool: TOOL, args: pay(-5000) });
  assert.deepEqual([refund.outcome, refund.reasons.map((r) => r.code)], ['deny', ['budget_amount_invalid']]);
  // A fraction never reaches the budget: the schema declares a Long.
  assert.deepEqual(eng.authorize({ chain, tool: TOOL, args: pay(0.5) }).reasons.map((r) => r.code), ['args_invalid']);
  // The budget is still spent: the next payment, however small, needs an approval.
  const next = eng.authorize({ chain, tool: TOOL, args: pay(1) });
  assert.deepEqual([next.outcome, next.reasons.map((r) => r.code)], ['approval_needed', ['budget_exceeded']]);
  assert.equal(payments(eng, task).length, 1);
});

test('an approved payment carrying a card number reaches the guarded tool with the card redacted', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('card'));
  const received = [];
  const createPayment = eng.guard({ tool: TOOL, chain }, async (a) => {
    received.push(a);
    return a.amount;
  });
  const args = { ...pay(9000), card_number: CARD };
  const waiting = await createPayment(args).then(() => assert.fail('the 9000 payment ran without an approval'), (e) => e);
  assert.ok(waiting instanceof AegisApprovalRequired, String(waiting));
  // The human sees the sanitized arguments; the approval is bound to the real ones.
  const pending = eng.approval(waiting.approvalId);
  assert.equal(pending?.args.card_number, '[REDACTED]');
  assert.ok(!JSON.stringify(pending?.raw).includes(CARD));
  const token = eng.approve(waiting.approvalId, approverChain()).overrideToken ?? '';
  // The token is bound to the resource too: the same call at another resource is refused.
  const elsewhere = eng.authorize({ chain, tool: TOOL, args, resource: { type: 'Tool', id: 'other' }, approvalToken: token });
  assert.deepEqual(elsewhere.reasons.map((r) => r.code), ['approval_args_mismatch']);
  const enforced = eng.authorizeEnforced({ chain, tool: TOOL, args, approvalToken: token });
  assert.equal(enforced.decision.outcome, 'sanitize');
  assert.equal(enforced.decision.sanitizedArgs?.card_number, '[REDACTED]');
  assert.deepEqual(enforced.enforcement, { action: 'run', args: { ...args, card_number: '[REDACTED]' } });
  // Through the guard (a second approval: the token above is spent).
  const again = await createPayment(args).then(() => assert.fail('ran without an approval'), (e) => e);
  const second = eng.approve(again.approvalId, approverChain()).overrideToken ?? '';
  assert.equal(await createPayment(args, { approvalToken: second }), 9000);
  assert.deepEqual(received, [{ ...args, card_number: '[REDACTED]' }]);
});

test('break-glass by one person plus its own delegate is refused; two distinct people open it', async () => {
  const eng = engine();
  const task = uniqueTask('break-glass');
  const chain = financeChain(task);
  const LEAD = key(40);
  const lead = person('oncall-lead', LEAD, ['aegis.break_glass']);
  const deputy = [lead, delegate({ parent: lead, parentKey: LEAD, agentId: 'deputy', agentKey: KeyPair.generate(), scope: ['aegis.break_glass'] })];
  // The deputy on the lead's own key is not minted; signed by hand it is refused by the engine.
  const sameKey = [lead, await forge(deputy[1], { cnf: { jwk: LEAD.publicJwk } }, LEAD)];
  const open = (approvers, agents = ['planner/finance-agent']) => eng.breakGlass({ agents, tools: [TOOL], tasks: [task],
    reason: 'payments incident INC-7', approvers, durationSecs: 300 });
  const refused = (approvers, why) => assert.throws(() => open(approvers),
    (e) => e instanceof AegisError && e.code === 'break_glass_refused' && why.test(e.message), String(why));
  refused([[lead], deputy], /approver_conflict.*`oncall-lead\/deputy` is a delegate/); // its own delegate, fresh key
  refused([[lead], sameKey], /delegation_cycle/); // its own delegate, its own key
  refused([[lead], [person('oncall-lead', key(41), ['aegis.break_glass'])]], /two distinct approvers/); // the same id
  refused([[lead], [person('oncall-second', LEAD, ['aegis.break_glass'])]], /two distinct approvers/); // the same key
  refused([[lead], [person('oncall-second', key(42), ['*'])]], /tool_not_in_scope/); // a wildcard grants no aegis.*
  refused([[lead]], /two distinct approvers/);
  assert.deepEqual(eng.openBreakGlass(), []);

  /** How a 5500 payment of `c` comes out: the forbid over 5000 asks for approval unless lifted. */
  const large = (c) => {
    const d = eng.authorize({ chain: c, tool: TOOL, args: pay(5500) });
    return [d.outcome, d.reasons.map((r) => r.policyId ?? r.code), d.breakGlassId];
  };
  const second = person('oncall-second', key(42), ['aegis.break_glass']);
  // A grant names attested ids: `finance-agent` alone covers nobody in this chain.
  const unattested = open([[lead], [second]], ['finance-agent']);
  assert.deepEqual(large(chain), ['approval_needed', ['large-payment-needs-approval'], null]);
  eng.closeBreakGlass(unattested.id, 'PIR-6');
  const grant = open([[lead], [second]]);
  assert.deepEqual([grant.agents, grant.tasks, grant.approvers], [['planner/finance-agent'], [task], ['oncall-lead', 'oncall-second']]);
  assert.deepEqual(eng.openBreakGlass().map((g) => g.id), [grant.id]);
  // It lifts the breakable forbid; the task's budget is still enforced (and asks on its own).
  assert.deepEqual(large(chain), ['approval_needed', ['budget_exceeded'], grant.id]);
  // It never reaches a chain of another task.
  assert.deepEqual(large(financeChain(uniqueTask('other'))), ['approval_needed', ['large-payment-needs-approval'], null]);
  eng.closeBreakGlass(grant.id, 'PIR-7');
  assert.deepEqual(eng.openBreakGlass(), []);
});
