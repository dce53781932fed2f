// Warm `engine.authorize` calls from Node, then the same call inside Rust (`timeAuthorize`), in
// one process: the two sides `benches/scripts/instructions.sh` counts under callgrind, split by
// `--dump-before` at the Rust loop (one process: both sides on the same hash seeds).
//   node aegis-node/bench/call_loop.mjs N
import { TOOL, engine, financeChain } from '../../examples/node/setup.mjs';

const n = Number(process.argv[2]);
const eng = engine();
const request = { chain: financeChain('instructions'), tool: TOOL, args: { amount: 0, currency: 'eur', destination: 'acct_1032D82eZvKYlo2C' } };
// Warm: the chain verified, the JIT's optimized code for the call path made.
for (let i = 0; i < 3000; i++) eng.authorize(request);
// Dump 1 ends here (start-up and warm-up); dump 2 holds the Node calls, the last dump the Rust ones.
eng.timeAuthorize(request, 1);
for (let i = 0; i < n; i++) eng.authorize(request);
eng.timeAuthorize(request, n);
