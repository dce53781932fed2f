// Per-call cost of `authorize` from Node beside the same call measured in Rust, as a ratio; two
// worker threads on one shared engine against one; then the peer (cedar-wasm).
//   node aegis-node/bench/bench_authorize.mjs [iterations]
// Both sides run the same native build (debug after `npm run build`, release after
// `npm run build -- --release`) on the same warm request: the ratio is the cost of the binding.
import { Worker } from 'node:worker_threads';
import { TOOL, engine, financeChain } from '../../examples/node/setup.mjs';
import { main as peers } from './peers.mjs';

const iterations = Number(process.argv[2] ?? 20000);
const eng = engine();
const request = { chain: financeChain('bench-task'), tool: TOOL, args: { amount: 0, currency: 'eur', destination: 'acct_1032D82eZvKYlo2C' } };
// Warm: the JIT has optimized the call path before the timing starts.
for (let i = 0; i < 2000; i++) eng.authorize(request);
/** Seconds per call from Node. */
function nodeSecs() {
  const start = process.hrtime.bigint();
  let decision;
  for (let i = 0; i < iterations; i++) decision = eng.authorize(request);
  const secs = Number(process.hrtime.bigint() - start) / 1e9 / iterations;
  if (decision?.outcome !== 'allow') throw new Error(JSON.stringify(decision));
  return secs;
}
// Node and Rust in alternation, five times: the median round (by ratio) is reported, with the
// spread, so that one slow moment of the host does not decide the figure.
const rounds = [];
for (let round = 0; round < 5; round++) {
  const node = nodeSecs();
  const rust = eng.timeAuthorize(request, iterations);
  rounds.push({ node, rust, ratio: node / rust });
}
rounds.sort((a, b) => a.ratio - b.ratio);
const median = rounds[2];
console.log(`authorize, warm, ${iterations} calls, median of 5 rounds`);
console.log(`  from Node: ${(median.node * 1e6).toFixed(2).padStart(9)} µs per call`);
console.log(`  in Rust:   ${(median.rust * 1e6).toFixed(2).padStart(9)} µs per call`);
console.log(`  ratio:     ${median.ratio.toFixed(2).padStart(9)}x  (rounds: ${rounds.map((r) => r.ratio.toFixed(2)).join(', ')}; goal: at most 1.25x)`);

/** Decisions per second with `n` worker threads on the shared engine, each in its own task. */
async function workersRate(n) {
  const handle = eng.shareHandle();
  const workers = Array.from({ length: n }, () =>
    new Worker(new URL('./worker.mjs', import.meta.url), { workerData: { handle, iterations, args: request.args } }));
  // Each worker warms up, then waits; all start together once every one is ready.
  await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
    w.once('online', resolve);
    w.once('error', reject);
  })));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = process.hrtime.bigint();
  const done = workers.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }));
  workers.forEach((w) => w.postMessage('start'));
  const results = await Promise.all(done);
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  await Promise.all(workers.map((w) => w.terminate()));
  if (results.some((r) => r.outcome !== 'allow')) throw new Error(JSON.stringify(results));
  return (n * iterations) / secs;
}
// One and two workers in alternation, three times: the median pair (by ratio) is reported, with
// the spread, so that one slow moment of the host does not decide the figure.
const pairs = [];
for (let round = 0; round < 3; round++) {
  const one = await workersRate(1);
  const two = await workersRate(2);
  pairs.push({ one, two, ratio: two / one });
}
pairs.sort((a, b) => a.ratio - b.ratio);
const { one, two } = pairs[1];
console.log(`worker threads, one shared engine (memory store), ${iterations} calls per worker, median of 3 rounds`);
console.log(`  1 worker:  ${one.toFixed(0).padStart(9)} decisions/s`);
console.log(`  2 workers: ${two.toFixed(0).padStart(9)} decisions/s`);
console.log(`  ratio:     ${(two / one).toFixed(2).padStart(9)}x  (rounds: ${pairs.map((p) => p.ratio.toFixed(2)).join(', ')})`);
console.log();
// The peer in the same run: cedar-wasm on the same policies and schema.
await peers(iterations, Math.max(Math.floor(iterations / 4), 1000));
