// Policy as code from Node, through the core's one operation table: the bundle's own tests,
// lints, a dry run of an audit log under a candidate, signed bundles, and the control plane's
// two-administrator rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine, adminProof, auditKeygen, bundleSign, bundleVerify, delegate, issueRoot, policyDryRun, policyLint, policyTest } from '../aegis.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, financeChain, key, pay, uniqueTask } from './helpers.mjs';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-node-policy-'));

function copyBundle(dir) {
  fs.cpSync(BUNDLE, dir, { recursive: true });
  return dir;
}

test('the bundle passes its own tests; lints name file and line', () => {
  const report = policyTest(BUNDLE);
  assert.ok(report.cases.length >= 10);
  assert.deepEqual(report.cases.filter((c) => c.failures.length > 0), []);
  const found = policyLint(BUNDLE);
  assert.deepEqual(found.map((f) => [f.code, f.file]), [['tool_without_forbid', 'payments.cedarschema']]);
});

test('a dry run names the call a removed SoD forbid would let through', () => {
  const dir = tmp();
  const keys = auditKeygen('aegis.example/node-dry-run', { seed: new Uint8Array(32).fill(4) });
  const logDir = path.join(dir, 'log');
  const engine = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7),
    audit: { dir: logDir, signingKey: keys.signerKey } });
  const taskId = uniqueTask('node-dry-run');
  const planner = issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: 'planner', agentKey: key(2), taskId,
    intent: 'pay', scope: ['invoice.create', TOOL] });
  const clerk = [planner, delegate({ parent: planner, parentKey: key(2), agentId: 'clerk', agentKey: key(9), scope: ['invoice.create', TOOL] })];
  assert.equal(engine.authorize({ chain: clerk, tool: 'invoice.create', args: { customer: 'acme', amount: 5 } }).outcome, 'allow');
  const refused = engine.authorize({ chain: clerk, tool: TOOL, args: pay(100) });
  assert.equal(refused.outcome, 'deny');
  engine.auditCheckpoint();

  assert.deepEqual(policyDryRun(BUNDLE, [logDir]).changes, []);
  const candidate = copyBundle(path.join(dir, 'candidate'));
  const matrix = path.join(candidate, 'sod.yaml');
  const text = fs.readFileSync(matrix, 'utf8');
  const start = text.indexOf('  - id: drafter-does-not-pay');
  const end = text.indexOf('  - id: approver-does-not-pay');
  fs.writeFileSync(matrix, text.slice(0, start) + text.slice(end));
  const flipped = policyDryRun(candidate, [logDir]);
  assert.deepEqual(flipped.changes.map((c) => [c.decision_id, c.from, c.to, c.opens]), [[refused.decisionId, 'deny', 'allow', true]]);
});

test('signed bundles only', () => {
  const signer = key(50);
  const dir = copyBundle(path.join(tmp(), 'signed'));
  assert.throws(() => new Engine({ bundleDir: dir, trustedIssuers: { [ISSUER]: ISSUER_KEY }, bundleKeys: [signer] }),
    (e) => e.code === 'bundle_signature_invalid');
  bundleSign(dir, signer);
  assert.equal(bundleVerify(dir, [signer]).signedBy, signer.kid);
  assert.throws(() => bundleVerify(dir, [key(51)]), (e) => e.code === 'bundle_signature_invalid');
  const engine = new Engine({ bundleDir: dir, trustedIssuers: { [ISSUER]: ISSUER_KEY }, bundleKeys: [signer] });
  fs.writeFileSync(path.join(dir, 'late.cedar'), 'forbid (principal, action, resource);\n');
  assert.throws(() => engine.reloadBundle(dir), (e) => e.code === 'bundle_signature_invalid');
});

test('one administrator cannot switch Aegis to log-only', () => {
  const engine = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, requireTwoAdmins: true });
  const admin = (name, n) => ({ chain: [issueRoot({ issuer: ISSUER, issuerKey: ISSUER_KEY, agentId: name, agentKey: key(n),
    taskId: 'admins', intent: 'operate aegis', scope: ['aegis.admin'] })], key: key(n) });
  const v = engine.policyVersion;
  const sign = (who, action) => ({ chain: who.chain, proof: adminProof(who.key, action, v) });
  const [alice, bob] = [admin('alice', 60), admin('bob', 61)];
  const shadow = { action: 'set_mode', mode: 'shadow' };
  assert.throws(() => engine.admin({ action: shadow, policy_version: v, requested_by: sign(alice, shadow), approved_by: sign(alice, shadow) }),
    (e) => e.code === 'admin_conflict');
  assert.throws(() => engine.reloadBundle(BUNDLE), (e) => e.code === 'admin_approval_required');
  assert.equal(engine.controlStatus().mode, 'enforce');
  const out = engine.admin({ action: shadow, policy_version: v, requested_by: sign(alice, shadow), approved_by: sign(bob, shadow) });
  assert.deepEqual([out.mode, out.requested_by, out.approved_by], ['shadow', 'alice', 'bob']);
  const d = engine.authorize({ chain: financeChain(uniqueTask('node-shadow')).slice(0, 1), tool: TOOL, args: pay(10) });
  assert.equal(d.outcome, 'allow');
  assert.equal(d.wouldBlock, true);
});
