// The audit log from Node: every decision recorded, checkpoints signed, tampering named.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { AegisError, Engine, auditKeygen, auditVerify } from '../aegis.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, engine, financeChain, key, pay, uniqueTask } from './helpers.mjs';

const LOG_NAME = 'aegis.test/node';

function auditedEngine(dir, keys, extra = {}) {
  return new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7),
    audit: { dir, signingKey: keys.signerKey, ...extra } });
}

const segments = (dir) => fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().map((f) => path.join(dir, f));
const records = (dir) => segments(dir).flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));

test('decisions are recorded and the log verifies under a pinned key and a kept checkpoint', () => {
  const keys = auditKeygen(LOG_NAME, { seed: new Uint8Array(32).fill(5) });
  assert.ok(keys.verifierKey.startsWith(`${LOG_NAME}+`));
  assert.ok(!util.inspect(keys).includes(keys.signerKey) && !JSON.stringify(keys).includes(keys.signerKey));
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-audit-')), 'log');
  const exported = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-cps-'));
  const eng = auditedEngine(dir, keys, { exportCheckpointsTo: exported });
  const task = uniqueTask('audit');
  assert.equal(eng.authorize({ chain: financeChain(task), tool: TOOL, args: pay(10) }).outcome, 'allow');
  assert.equal(eng.authorize({ chain: financeChain(task), tool: TOOL, args: pay(9000) }).outcome, 'approval_needed');
  const cp = eng.auditCheckpoint();
  assert.deepEqual(records(dir).map((r) => [r.kind, r.outcome ?? null]),
    [['bundle.loaded', null], ['decision', 'allow'], ['approval.opened', null], ['decision', 'approval_needed']]);
  assert.equal(cp.size, 4);
  assert.ok(fs.readdirSync(exported).length >= 1);
  const report = auditVerify(dir, { verifierKey: keys.verifierKey, trustedCheckpoints: [cp.note] });
  assert.ok(report.intact && !report.keyFromLog && report.firstBad === null, JSON.stringify(report));
  assert.deepEqual(report.trusted, [4]);
  assert.equal(report.records, 4);
});

test('an edited record is named; another key and a misspelt option are refused', () => {
  const keys = auditKeygen(LOG_NAME, { seed: new Uint8Array(32).fill(5) });
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-audit-')), 'log');
  const eng = auditedEngine(dir, keys);
  const task = uniqueTask('audit');
  for (const amount of [10, 20, 30]) assert.equal(eng.authorize({ chain: financeChain(task), tool: TOOL, args: pay(amount) }).outcome, 'allow');
  const cp = eng.auditCheckpoint();
  const [segment] = segments(dir);
  const text = fs.readFileSync(segment, 'utf8');
  fs.writeFileSync(segment, text.replace('"amount":20', '"amount":2'));
  const bad = auditVerify(dir, { verifierKey: keys.verifierKey, trustedCheckpoints: [cp.note] });
  assert.ok(!bad.intact && bad.firstBad.seq === 2, JSON.stringify(bad));
  fs.writeFileSync(segment, text);
  assert.ok(auditVerify(dir, { verifierKey: keys.verifierKey }).intact);
  const other = auditKeygen(LOG_NAME, { seed: new Uint8Array(32).fill(6) });
  assert.ok(!auditVerify(dir, { verifierKey: other.verifierKey }).intact);
  const unpinned = auditVerify(dir);
  assert.ok(unpinned.intact && unpinned.keyFromLog && unpinned.trusted.length === 0);
  assert.throws(() => auditedEngine(dir, keys, { checkpointEvry: 5 }), (e) => e instanceof AegisError && e.code === 'malformed_request');
  assert.throws(() => engine().auditCheckpoint(), (e) => e.code === 'audit_unavailable');
});
