// A worker thread of bench_authorize.mjs: attaches to the engine the main thread shared, decides
// `iterations` calls in a task of its own when told to start, and reports how long that took.
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from '../aegis.js';
import { TOOL, financeChain, uniqueTask } from '../../examples/node/setup.mjs';

const eng = Engine.attach(workerData.handle);
const request = { chain: financeChain(uniqueTask('bench-worker')), tool: TOOL, args: workerData.args };
// Warm: the JIT has optimized the call path before the timing starts.
for (let i = 0; i < 2000; i++) eng.authorize(request);
parentPort.once('message', () => {
  const start = process.hrtime.bigint();
  let decision;
  for (let i = 0; i < workerData.iterations; i++) decision = eng.authorize(request);
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  parentPort.postMessage({ secs, outcome: decision?.outcome });
});
