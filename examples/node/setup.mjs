// @ts-check
// Shared setup for the Node payments examples: keys, an engine on the payments bundle, and the
// credential chains of the story (planner → planner/finance-agent; a separate finance approver,
// a root identity whose issuer attests its role).
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Engine, KeyPair, delegate, issueRoot } from '../../aegis-node/aegis.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUNDLE = path.join(ROOT, 'policies', 'payments');
export const ISSUER = 'https://issuer.aegis.example';
export const TOOL = 'stripe.create_payment';
export const ACCOUNT = 'acct_1032D82eZvKYlo2C';

/** @param {number} n */
export const key = (n) => KeyPair.fromSeed(new Uint8Array(32).fill(n));
export const ISSUER_KEY = key(1);
export const PLANNER_KEY = key(2);
export const FINANCE_KEY = key(3);
export const APPROVER_KEY = key(4);

/** @param {string} [store] */
export function engine(store) {
  return new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, store, approvalKey: key(7) });
}

/** @param {string} taskId @returns {string[]} */
export function financeChain(taskId) {
  const planner = issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'planner', agentKey: PLANNER_KEY, taskId,
    intent: 'pay the approved vendor invoices', scope: ['invoice.create', TOOL] });
  const finance = delegate({ parent: planner, parentKey: PLANNER_KEY, agentId: 'finance-agent', agentKey: FINANCE_KEY, scope: [TOOL] });
  return [planner, finance];
}

/**
 * The finance approver: a root identity of its own, whose issuer attests the
 * `finance-approver` role the bundle's `aegis.approve` policy asks for.
 * @returns {string[]}
 */
export function approverChain() {
  return [issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'finance-approver', agentKey: APPROVER_KEY,
    taskId: 'approvals-desk', intent: 'review payment approvals', scope: ['aegis.approve'], roles: ['finance-approver'] })];
}

/** @param {string} name */
export const uniqueTask = (name) => `${name}-${process.hrtime.bigint()}`;

/** @param {number} amount */
export const pay = (amount) => ({ amount, currency: 'eur', destination: ACCOUNT });

/** @param {boolean} condition @param {string} message @returns {asserts condition} */
export function check(condition, message) {
  if (!condition) throw new Error(message);
}
