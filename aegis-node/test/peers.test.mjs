// The peer bench compares equivalent decisions: cedar-wasm, given the payments bundle's policies
// and the request Aegis builds, decides as Aegis does (bench/peers.mjs times the allowed call).
import test from 'node:test';
import assert from 'node:assert/strict';
import { LARGE, SMALL, aegisSide, cedarCall, cedarDecide, loadCedar, prepareCedar } from '../bench/peers.mjs';

test('cedar-wasm and Aegis allow the small payment and refuse the same ones', async () => {
  const { cedar, error } = await loadCedar();
  assert.ok(cedar, `@cedar-policy/cedar-wasm (a dev dependency) does not load: ${error?.message}`);
  prepareCedar(cedar);
  const { chain, eng, request } = aegisSide();
  const cases = [
    ['small', SMALL, null],
    ['over the hard cap', LARGE, 'payment-hard-cap'],
    // The manifest's predicate, which the bench computes for Cedar as Aegis does.
    ['to a malformed account', { ...SMALL, destination: 'acct_1032' }, 'destination-account-pattern'],
  ];
  for (const [name, args, forbid] of cases) {
    for (const schema of [true, false]) {
      assert.equal(cedarDecide(cedar, cedarCall(chain, args, { schema })), forbid ? 'deny' : 'allow', `cedar-wasm, ${name}, schema: ${schema}`);
    }
    const decision = eng.authorize(request(args));
    assert.equal(decision.outcome === 'allow', !forbid, `Aegis, ${name}: ${decision.outcome}`);
    if (forbid) assert.ok(decision.reasons.some((r) => r.policyId === forbid), `Aegis, ${name}: ${JSON.stringify(decision.reasons)}`);
  }
});
