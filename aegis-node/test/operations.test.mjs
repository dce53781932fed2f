// Every operation of the core's table has a wrapper in the typed API: an operation added to the
// core fails this test until it is wrapped here (and declared in aegis.d.ts).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as aegis from '../aegis.js';
import { ROOT } from './helpers.mjs';

const native = createRequire(import.meta.url)('../index.js');

/** Operation name -> the wrappers that must exist: `Engine#method`, `KeyPair.static`, `KeyPair#getter`, `function`. */
const WRAPPERS = {
  authorize: ['Engine#authorize', 'Engine#authorizeAsync'],
  authorize_enforced: ['Engine#authorizeEnforced', 'Engine#authorizeEnforcedAsync'],
  approve: ['Engine#approve', 'Engine#approveAsync'],
  reject: ['Engine#reject', 'Engine#rejectAsync'],
  pending_approvals: ['Engine#pendingApprovals', 'Engine#pendingApprovalsAsync'],
  receipt_jwks: ['Engine#receiptJwks'],
  verify_receipt: ['verifyReceipt'],
  request_batch: ['Engine#requestBatch', 'Engine#requestBatchAsync'],
  approval: ['Engine#approval'],
  ledger: ['Engine#ledger'],
  end_task: ['Engine#endTask'],
  break_glass: ['Engine#breakGlass'],
  open_break_glass: ['Engine#openBreakGlass'],
  close_break_glass: ['Engine#closeBreakGlass'],
  reload_bundle: ['Engine#reloadBundle', 'Engine#reloadBundleAsync'],
  update_jwks: ['Engine#updateJwks', 'Engine#updateJwksAsync'],
  policy_version: ['Engine#policyVersion'],
  time_authorize: ['Engine#timeAuthorize'],
  audit_checkpoint: ['Engine#auditCheckpoint'],
  flush_telemetry: ['Engine#flushTelemetry'],
  admin: ['Engine#admin'],
  control_status: ['Engine#controlStatus'],
  admin_proof: ['adminProof'],
  bundle_sign: ['bundleSign'],
  bundle_verify: ['bundleVerify'],
  policy_test: ['policyTest'],
  policy_lint: ['policyLint'],
  policy_dry_run: ['policyDryRun'],
  audit_keygen: ['auditKeygen'],
  audit_verify: ['auditVerify'],
  generate_key: ['KeyPair.generate', 'KeyPair.fromSeed'],
  public_jwk: ['KeyPair#publicJwk'],
  issue: ['issueRoot', 'delegate'],
  inspect: ['inspect'],
  inspect_chain: ['inspectChain'],
  create_proof: ['createProof'],
  verify_signature: ['verifySignature'],
  call_digest: ['callDigest'],
  slack_message: ['slackMessage'],
  enforce: ['enforce'],
  json_pointer: ['jsonPointer'],
  error_codes: ['errorCodes'],
  reason_codes: ['reasonCodes'],
  operations: ['operations'],
};

/** Whether `wrapper` exists in the JS API, as a function or (`#` members) a getter. */
function exists(wrapper) {
  const [, owner, sep, member] = /^(?:(\w+)([#.]))?(\w+)$/.exec(wrapper) ?? [];
  if (!owner) return typeof aegis[member] === 'function';
  const target = sep === '#' ? aegis[owner].prototype : aegis[owner];
  const desc = Object.getOwnPropertyDescriptor(target, member);
  return Boolean(desc && (typeof desc.value === 'function' || typeof desc.get === 'function'));
}

test('every operation of the core has a wrapper, declared in aegis.d.ts', () => {
  const ops = JSON.parse(native.call('operations', '{}'));
  assert.ok(ops.length > 20);
  const dts = fs.readFileSync(path.join(ROOT, 'aegis-node', 'aegis.d.ts'), 'utf8');
  const missing = [];
  for (const { name, needs_engine: needsEngine } of ops) {
    const wrappers = WRAPPERS[name];
    if (!wrappers) {
      missing.push(`${name}: no wrapper listed in WRAPPERS`);
      continue;
    }
    for (const w of wrappers) {
      if (w.startsWith('Engine#') !== needsEngine) missing.push(`${name}: ${w} is ${needsEngine ? 'not ' : ''}an Engine method`);
      if (!exists(w)) missing.push(`${name}: ${w} does not exist`);
      const member = w.split(/[#.]/).pop();
      if (!new RegExp(`\\b(?:function |readonly |static )?${member}\\b[(:<]`).test(dts)) missing.push(`${name}: ${member} not in aegis.d.ts`);
    }
  }
  assert.deepEqual(missing, []);
  assert.deepEqual(Object.keys(WRAPPERS).filter((name) => !ops.some((o) => o.name === name)), [], 'wrappers of operations the core no longer has');
  assert.deepEqual(aegis.operations().map((o) => o.name), ops.map((o) => o.name));
});

test('an unknown operation is an AegisError-shaped error from the native module', () => {
  assert.throws(() => native.call('no_such_op', '{}'), (e) => JSON.parse(e.message).code === 'unknown_operation');
});

test('verifySignature is the core\'s strict Ed25519 check', () => {
  const issuer = aegis.KeyPair.fromSeed(new Uint8Array(32).fill(1));
  const token = aegis.issueRoot({ issuer: 'https://issuer.example', issuerKey: issuer, agentId: 'planner', agentKey: aegis.KeyPair.generate(),
    taskId: 't', intent: 'x', scope: ['invoice.create'] });
  const [header, payload, sig] = token.split('.');
  const publicKey = Buffer.from(issuer.publicJwk.x, 'base64url');
  const message = Buffer.from(`${header}.${payload}`);
  const signature = Buffer.from(sig, 'base64url');
  assert.deepEqual(aegis.verifySignature(publicKey, message, signature), { valid: true, keyError: null });
  assert.equal(aegis.verifySignature(publicKey, Buffer.concat([message, Buffer.from('!')]), signature).valid, false);
  const other = Buffer.from(aegis.KeyPair.generate().publicJwk.x, 'base64url');
  assert.deepEqual(aegis.verifySignature(other, message, signature), { valid: false, keyError: null });
  // A small-order key (the identity point) is refused as a key, whatever the signature.
  const weak = new Uint8Array(32);
  weak[0] = 1;
  assert.deepEqual(aegis.verifySignature(weak, message, signature), { valid: false, keyError: 'invalid_key' });
});

test('engine-free wrappers: jsonPointer, enforce with a hand-made decision', () => {
  assert.deepEqual(aegis.jsonPointer('{"a":[1,{"b":"x"}]}', '/a/1/b'), 'x');
  assert.throws(() => aegis.jsonPointer('{"a":1,"a":2}', '/a'), (e) => e instanceof aegis.AegisError && e.code === 'malformed_request');
  const decision = /** @type {const} */ ({
    outcome: 'deny', reasons: [{ code: 'policy_forbid', message: 'no', policyId: 'p', link: null }], decisionId: 'd',
    policyVersion: 'v', wouldBlock: false, approvalId: null, sanitizedArgs: null, breakGlassId: null,
  });
  assert.deepEqual(aegis.enforce(decision, { a: 1 }), { action: 'refuse', code: 'policy_forbid', message: 'no' });
  assert.deepEqual(aegis.enforce({ ...decision, outcome: 'allow', reasons: [] }, { a: 1 }), { action: 'run', args: { a: 1 } });
});
