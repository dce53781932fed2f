// Wycheproof's and CCTV's Ed25519 suites through the Node binding: the same key loader and
// strict verifier every credential goes through; the counts must match the Rust run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const aegis = require('../aegis.js');
const vectors = new URL('../../tests/vectors/external/', import.meta.url);
const hex = (s) => Buffer.from(s, 'hex');

test('wycheproof ed25519: all 151 agree', () => {
  const suite = JSON.parse(readFileSync(new URL('wycheproof/ed25519_test.json', vectors), 'utf8'));
  let total = 0;
  const disagree = [];
  for (const group of suite.testGroups) {
    for (const t of group.tests) {
      total += 1;
      const { valid } = aegis.verifySignature(hex(group.publicKey.pk), hex(t.msg), hex(t.sig));
      if (valid !== (t.result === 'valid')) disagree.push(t.tcId);
    }
  }
  assert.equal(total, 151);
  assert.deepEqual(disagree, []);
});

test('cctv ed25519: the same 43 of 914 accepted', () => {
  const cases = JSON.parse(readFileSync(new URL('cctv/ed25519vectors.json', vectors), 'utf8'));
  assert.equal(cases.length, 914);
  const accepted = cases.filter((c) => aegis.verifySignature(hex(c.key), Buffer.from(c.msg), hex(c.sig)).valid);
  assert.equal(accepted.length, 43);
});
