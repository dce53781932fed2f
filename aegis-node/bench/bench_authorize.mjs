// Per-call cost of `authorize` from Node beside the same call measured in Rust, as a ratio.
//   node aegis-node/bench/bench_authorize.mjs [iterations]
// Both sides run the same native build (debug after `npm run build`, release after
// `npm run build -- --release`) on the same warm request: the ratio is the cost of the binding.
import { TOOL, engine, financeChain } from '../../examples/node/setup.mjs';
import { main as peers } from './peers.mjs';

const iterations = Number(process.argv[2] ?? 20000);
const eng = engine();
const request = { chain: financeChain('bench-task'), tool: TOOL, args: { amount: 0, currency: 'eur', destination: 'acct_1032D82eZvKYlo2C' } };
for (let i = 0; i < 100; i++) eng.authorize(request);
const start = process.hrtime.bigint();
let decision;
for (let i = 0; i < iterations; i++) decision = eng.authorize(request);
const nodeSecs = Number(process.hrtime.bigint() - start) / 1e9 / iterations;
if (decision?.outcome !== 'allow') throw new Error(JSON.stringify(decision));
const rustSecs = eng.timeAuthorize(request, iterations);
console.log(`authorize, warm, ${iterations} calls`);
console.log(`  from Node: ${(nodeSecs * 1e6).toFixed(2).padStart(9)} µs per call`);
console.log(`  in Rust:   ${(rustSecs * 1e6).toFixed(2).padStart(9)} µs per call`);
console.log(`  ratio:     ${(nodeSecs / rustSecs).toFixed(2).padStart(9)}x`);
console.log();
// The peer in the same run: cedar-wasm on the same policies and schema.
await peers(iterations, Math.max(Math.floor(iterations / 4), 1000));
