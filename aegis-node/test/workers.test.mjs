// One engine shared with worker threads: the same state (ledgers, single-use tokens) from every
// thread, through an unguessable handle.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { AegisError, Engine } from '../aegis.js';
import { TOOL, approverChain, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

/** Runs `source` (an ES module body, given `eng`, `request` and `token` as globals) in a worker
 * attached to `handle`, and returns what it posts back. */
function inWorker(handle, request, source) {
  const code = `
    import { parentPort, workerData } from 'node:worker_threads';
    import { Engine } from ${JSON.stringify(new URL('../aegis.js', import.meta.url).href)};
    const { handle, request } = workerData;
    let result;
    try {
      const eng = Engine.attach(handle);
      ${source}
    } catch (e) {
      result = { error: e.code ?? e.constructor.name };
    }
    parentPort.postMessage(result);`;
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData: { handle, request } });
  return new Promise((resolve, reject) => {
    worker.once('message', (m) => worker.terminate().then(() => resolve(m)));
    worker.once('error', reject);
  });
}

test('a worker decides on the shared engine: its commits are the main thread\'s ledger', async () => {
  const eng = engine();
  const task = uniqueTask('workers');
  const request = { chain: financeChain(task), tool: TOOL, args: pay(10) };
  const outcome = await inWorker(eng.shareHandle(), request, 'result = eng.authorize(request).outcome;');
  assert.equal(outcome, 'allow');
  assert.equal(eng.ledger(task).length, 1);
  assert.equal(eng.shareHandle(), eng.shareHandle(), 'one handle per engine');
});

test('a token redeemed in a worker is spent for the main thread too', async () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('workers-token'));
  const asked = eng.authorize({ chain, tool: TOOL, args: pay(9000) });
  assert.equal(asked.outcome, 'approval_needed');
  const token = eng.approve(asked.approvalId, approverChain()).overrideToken;
  const request = { chain, tool: TOOL, args: pay(9000), approvalToken: token };
  assert.equal(await inWorker(eng.shareHandle(), request, 'result = eng.authorize(request).outcome;'), 'allow');
  const again = eng.authorize(request);
  assert.deepEqual([again.outcome, again.reasons.map((r) => r.code)], ['deny', ['approval_replayed']]);
});

test('a handle no engine made is refused with a code', async () => {
  assert.throws(() => Engine.attach('aegis-engine-00000000000000000000000000000000'),
    (e) => e instanceof AegisError && e.code === 'malformed_request');
  assert.throws(() => Engine.attach(/** @type {any} */ (42)), TypeError);
  const request = { chain: [], tool: TOOL, args: {} };
  assert.deepEqual(await inWorker('aegis-engine-guess', request, 'result = "attached";'), { error: 'malformed_request' });
});
