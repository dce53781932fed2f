// @ts-check
// The payments story in plain Node: a guarded tool function, self-approval refused, a human
// approval (of the large-payment forbid and the task's budget at once), one-time redemption,
// replay refused. The finance agent is known by its attested id, `planner/finance-agent`.
import { AegisApprovalRequired, AegisDenied } from '../../aegis-node/aegis.js';
import { TOOL, approverChain, check, engine, financeChain, pay, uniqueTask } from './setup.mjs';

const eng = engine();
const task = uniqueTask('node-payments');
const chain = financeChain(task);
/** @type {number[]} */
const paid = [];

const createPayment = eng.guard({ tool: TOOL, chain }, /** @param {{amount: number, currency: string, destination: string}} a */ async (a) => {
  paid.push(a.amount);
  return `paid ${a.amount} ${a.currency} to ${a.destination}`;
});

console.log('1.', await createPayment(pay(1200)));

let approvalId = '';
try {
  await createPayment(pay(9000));
  throw new Error('the 9000 payment should need an approval');
} catch (e) {
  check(e instanceof AegisApprovalRequired, String(e));
  approvalId = e.approvalId;
  console.log('2. approval needed:', approvalId, '-', e.decision.reasons[0].message);
}
const pending = eng.approval(approvalId);
check(pending?.agentId === 'planner/finance-agent', JSON.stringify(pending));
// 1200 + 9000 is past the task's 5000 budget too: the one approval answers both.
check(pending.roles.join(',') === 'budget-approver,finance-approver', pending.roles.join(','));
console.log(`   asked by ${pending.agentId} on behalf of ${pending.initiator}; it lifts ${pending.lifts.join(', ')}`);

const refused = eng.approve(approvalId, chain.slice(0, 1));
check(!refused.accepted, 'the planner must not approve');
console.log('3. the planner may not approve (it holds no aegis.approve, and it delegated to the requester):', refused.reasons[0].code);
const itself = eng.approve(approvalId, chain);
check(!itself.accepted && itself.reasons[0].code === 'approver_conflict', JSON.stringify(itself.reasons));
console.log('   nor may the finance agent (a delegate is never an approver):', itself.reasons[0].code);

const approved = await eng.approveAsync(approvalId, approverChain(), 'invoice INV-2291 checked');
check(approved.accepted && approved.overrideToken !== null, 'the finance approver approves');
const token = approved.overrideToken ?? '';
console.log(`4. the finance approver approved after ${approved.approval.latencyMs} ms`);

console.log('5.', await createPayment(pay(9000), { approvalToken: token }));
try {
  await createPayment(pay(9000), { approvalToken: token });
  throw new Error('a replayed token must be refused');
} catch (e) {
  check(e instanceof AegisDenied, String(e));
  console.log('6. replay refused:', e.code);
}
check(paid.join(',') === '1200,9000', `paid ${paid}`);
const ledger = eng.ledger(task).map((e) => `${e.tool} by ${e.agentId}`);
check(ledger.join('; ') === `${TOOL} by planner/finance-agent; aegis.approve by finance-approver; ${TOOL} by planner/finance-agent`,
  ledger.join('; '));
console.log('7. the task\'s ledger:', ledger.join('; '));
console.log('payments story: ok');
