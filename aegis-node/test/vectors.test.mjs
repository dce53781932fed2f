// The shared vectors in tests/vectors/ through the Node API; they must agree with Rust.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Engine, KeyPair } from '../aegis.js';
import { ROOT } from './helpers.mjs';

const vectors = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'vectors', 'decisions.json'), 'utf8'));

function engine() {
  const cfg = vectors.engine;
  const trustedIssuers = Object.fromEntries(cfg.trusted_issuers.map((i) => [i.issuer, i.jwk]));
  return new Engine({ bundleDir: path.join(ROOT, cfg.bundle_dir), trustedIssuers, fixedTime: cfg.fixed_time });
}

test('every vector decides as in Rust', () => {
  assert.ok(vectors.cases.length >= 30);
  const failures = [];
  for (const c of vectors.cases) {
    const d = engine().authorize({ chain: c.request.chain, tool: c.request.tool, args: c.request.args });
    const got = {
      outcome: d.outcome,
      codes: d.reasons.map((r) => r.code),
      policy_ids: d.reasons.filter((r) => r.policyId).map((r) => r.policyId).sort(),
      would_block: d.wouldBlock,
    };
    try {
      assert.deepEqual(got, c.expect);
    } catch {
      failures.push(`${c.name}: expected ${JSON.stringify(c.expect)}, got ${JSON.stringify(got)}`);
    }
    assert.equal(d.approvalId !== null, d.outcome === 'approval_needed');
    assert.equal(d.sanitizedArgs !== null, d.outcome === 'sanitize');
  }
  assert.deepEqual(failures, []);
});

test('vector keys derive from their seeds', () => {
  for (const k of vectors.keys) {
    const pair = KeyPair.fromSeed(Buffer.from(k.seed_hex, 'hex'));
    assert.equal(pair.kid, k.kid);
    assert.equal(pair.publicJwk.x, k.x);
  }
});
