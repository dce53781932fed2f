// `authorize` hands plain arguments to the core as JavaScript values (no JSON text): it must decide
// exactly as the JSON text path does for every value, and send anything unusual as text.
import test from 'node:test';
import assert from 'node:assert/strict';
import { AegisError } from '../aegis.js';
import { ACCOUNT, TOOL, approverChain, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

/** The same own properties behind a prototype: never plain, so the whole request goes as text
 * (`JSON.stringify` writes exactly the own enumerable properties). */
class TextOnly {}
const asText = (args) => Object.assign(new TextOnly(), args);

const nested = (levels) => {
  let v = 'x';
  for (let i = 0; i < levels; i++) v = [v];
  return v;
};

const ARGUMENTS = [
  pay(10),
  { ...pay(10), memo: 'INV-1 ünïcödé ✓ 😀' },
  { ...pay(10), card_number: '4242424242424242' },  // sanitize: the redacted arguments come back
  { ...pay(10), amount: 12.0 },
  { ...pay(10), amount: 12.5 },
  { ...pay(10), amount: -0 },
  { ...pay(10), amount: 2 ** 40 },
  { ...pay(10), amount: -(2 ** 40) },
  { ...pay(10), amount: 2 ** 53 },
  { ...pay(10), amount: 2 ** 53 + 2 },              // past 2^53: text
  { ...pay(10), amount: 2 ** 64 },
  { ...pay(10), amount: 1e21 },
  { ...pay(10), amount: 1e-7 },
  { ...pay(10), amount: Number.NaN },               // JSON writes null
  { ...pay(10), amount: Infinity },
  { ...pay(10), amount: true },
  { ...pay(10), amount: null },
  { ...pay(10), amount: undefined },                // JSON skips it
  { ...pay(10), memo: undefined },
  { ...pay(10), memo: '\ud800' },                   // a lone surrogate
  { ...pay(10), ['\udc00']: 'x' },
  { ...pay(10), memo: ['a', ['b', { c: null }]] },
  { ...pay(10), memo: [1, undefined, () => 1] },    // JSON writes null for both
  { ...pay(10), memo: new Date(0) },                // toJSON
  { ...pay(10), memo: { toJSON: () => 'INV-2' } },
  { ...pay(10), memo: new Map([['a', 1]]) },
  { ...pay(10), memo: asText({ a: 1 }) },
  { ...pay(10), memo: Object.assign(Object.create(null), { a: 1 }) },
  { ...pay(10), memo: Symbol('s') },
  { ...pay(10), memo: () => 1 },
  { ...pay(10), 2: 'two', 1: 'one', b: 'b', a: 'a' },
  { ...pay(10), memo: nested(124) },
  { ...pay(10), memo: nested(125) },                // the deepest the text path reads
  { ...pay(10), memo: nested(126) },
  { ...pay(10), memo: nested(300) },
  { ...pay(10), memo: 10n },                        // JSON refuses a BigInt
  { currency: 'eur', destination: ACCOUNT },
  {},
];

const outcome = (fn) => {
  try {
    const r = fn();
    const strip = (d) => ({ ...d, decisionId: undefined, receipt: d.receipt !== null });
    return r.decision ? { decision: strip(r.decision), enforcement: r.enforcement } : strip(r);
  } catch (e) {
    return { error: e instanceof AegisError ? e.code : e.constructor.name };
  }
};

test('the native conversion decides as the text path, value by value', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('fast'));
  for (const args of ARGUMENTS) {
    const label = String(Object.entries(args).map(([k, v]) => `${k}=${typeof v}`));
    assert.deepEqual(outcome(() => eng.authorize({ chain, tool: TOOL, args })),
      outcome(() => eng.authorize({ chain, tool: TOOL, args: asText(args) })), label);
    assert.deepEqual(outcome(() => eng.authorizeEnforced({ chain, tool: TOOL, args })),
      outcome(() => eng.authorizeEnforced({ chain, tool: TOOL, args: asText(args) })), label);
  }
});

test('the depth limit is where the text path puts it', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('deep'));
  const at = (n) => outcome(() => eng.authorize({ chain, tool: TOOL, args: { ...pay(10), memo: nested(n) } }));
  assert.equal(at(125).outcome, 'deny');
  assert.deepEqual(at(126), { error: 'malformed_request' });
});

test('an approval asked on one path is bound to the same arguments on the other', () => {
  const eng = engine();
  for (const askFast of [true, false]) {
    const chain = financeChain(uniqueTask('bind'));
    const big = { ...pay(9000), memo: 'INV-77' };
    const via = (fast, args, approvalToken) => eng.authorize({ chain, tool: TOOL, args: fast ? args : asText(args), approvalToken });
    const asked = via(askFast, big);
    assert.equal(asked.outcome, 'approval_needed');
    const token = eng.approve(asked.approvalId, approverChain()).overrideToken;
    assert.ok(token);
    assert.notEqual(via(!askFast, { ...big, amount: 9001 }, token).outcome, 'allow');
    assert.equal(via(!askFast, big, token).outcome, 'allow');
  }
});

test('a chain array changed in place is decided as the chain it now holds', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('mutated'));
  const request = { chain, tool: TOOL, args: pay(10) };
  assert.equal(eng.authorize(request).outcome, 'allow');
  // The planner's own root (it holds the tool, but the matrix keeps the initiator from paying),
  // then the finance agent's chain again, then one token too many.
  const [planner, finance] = chain;
  chain.length = 1;
  const asRoot = eng.authorize(request);
  assert.deepEqual(outcome(() => asRoot), outcome(() => eng.authorize({ ...request, args: asText(pay(10)) })));
  assert.equal(asRoot.outcome, 'deny');
  chain.push(finance);
  assert.equal(eng.authorize(request).outcome, 'allow');
  chain[1] = 'x'.repeat(40);
  const forged = eng.authorize(request);
  assert.equal(forged.outcome, 'deny');
  assert.deepEqual(outcome(() => forged), outcome(() => eng.authorize({ ...request, args: asText(pay(10)) })));
  chain[1] = finance;
  chain[0] = planner;
  assert.equal(eng.authorize(request).outcome, 'allow');
  // A string that is not well formed goes as text, and is refused there.
  chain[1] = '\ud800';
  assert.deepEqual(outcome(() => eng.authorize(request)), outcome(() => eng.authorize({ ...request, args: asText(pay(10)) })));
});

test('more distinct reasons than the engine keeps ids for are each returned as they are', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('reasons'));
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 150; i++) {
      // Each unknown tool's refusal names it: a reason list of its own.
      const tool = i % 3 === 0 ? TOOL : `tool.${i}`;
      const fast = outcome(() => eng.authorize({ chain, tool, args: pay(10) }));
      assert.deepEqual(fast, outcome(() => eng.authorize({ chain, tool, args: asText(pay(10)) })), tool);
      if (tool !== TOOL) assert.match(fast.reasons[0].message, new RegExp(`\`${tool.replace('.', '\\.')}\``));
    }
  }
});

test('a sparse chain is decided as the text path decides it', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('odd-chains'));
  const sparse = [chain[0], , chain[1]]; // eslint-disable-line no-sparse-arrays
  const fast = outcome(() => eng.authorize({ chain: sparse, tool: TOOL, args: pay(10) }));
  assert.deepEqual(fast, outcome(() => eng.authorize({ chain: sparse, tool: TOOL, args: asText(pay(10)) })));
  assert.notEqual(fast.outcome, 'allow', JSON.stringify(fast));
});

test('a warm decision sent as a number carries the reasons and policy version it was decided with', async () => {
  const { cpSync, mkdtempSync, appendFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { BUNDLE, ISSUER, ISSUER_KEY, key } = await import('./helpers.mjs');
  const dir = mkdtempSync(path.join(tmpdir(), 'aegis-packed-'));
  cpSync(BUNDLE, dir, { recursive: true });
  const { Engine } = await import('../aegis.js');
  const eng = new Engine({ bundleDir: dir, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7) });
  const chain = financeChain(uniqueTask('packed'));
  const first = eng.authorize({ chain, tool: TOOL, args: pay(10) });
  // The same decision again (sent packed), then others with other reasons, then the first kind.
  const calls = [pay(10), pay(9000), pay(10), { ...pay(10), destination: 'acct_elsewhere' }, pay(10)];
  for (const args of calls) {
    const same = (d) => ({ ...d, approvalId: d.approvalId !== null });
    assert.deepEqual(same(outcome(() => eng.authorize({ chain, tool: TOOL, args }))),
      same(outcome(() => eng.authorize({ chain, tool: TOOL, args: asText(args) }))), JSON.stringify(args));
  }
  // A new policy version: the next decision must carry it, not the one sent before.
  appendFileSync(path.join(dir, 'permits.cedar'), '\n// a comment: a new version\n');
  const version = eng.reloadBundle(dir);
  assert.notEqual(version, first.policyVersion);
  for (let i = 0; i < 3; i++) {
    const d = eng.authorize({ chain, tool: TOOL, args: pay(10) });
    assert.equal(d.policyVersion, version);
    assert.deepEqual(d.reasons, first.reasons);
    assert.notEqual(d.decisionId, first.decisionId);
  }
});

test('a tape out of place is refused by the native side with a clean error', async () => {
  const native = (await import('../index.js')).default;
  const { BUNDLE, ISSUER, ISSUER_KEY } = await import('./helpers.mjs');
  // The native engine itself, configured as `aegis.js` configures it.
  const raw = new native.Engine(JSON.stringify({ bundle_dir: BUNDLE, trusted_issuers: [{ issuer: ISSUER, jwk: ISSUER_KEY.publicJwk }] }));
  const chain = financeChain(uniqueTask('tape'));
  const handle = native.chain(chain);
  const decider = raw.decider();
  // A call of TOOL with `{}`, on a tape longer than the part in use.
  const good = native.authorize(decider, handle, new Float64Array([4, TOOL.length, 6, 0, 99, 99]), TOOL);
  assert.equal(good.outcome ?? 'packed', 'deny', 'an empty object is read (and decided: no amount)');
  for (const [tape, text] of [
    [[99, 1, 6, 0], 'p'], [[2, 1], 'p'], [[4, 1, 6, 1], 'p'], [[6, 1, 6, 1, 1, 4], 'pa'], [[8, 1, 6, 1, 1, 4, 5], 'pab'],
    [[4, 1, 7, 0], 'p'], [[4, 1, 5, 0], 'p'], [[7, 1, 6, 1, 1, 3, NaN], 'pa'], [[4, 1, 6, -1], 'p'], [[4, 2, 6, 0], 'p'],
  ]) {
    assert.throws(() => native.authorize(decider, handle, new Float64Array(tape), text),
      (e) => JSON.parse(e.message).code === 'malformed_request', JSON.stringify(tape));
  }
});

test('a call naming an engine or a chain the native side does not hold is refused, never decided', async () => {
  const native = (await import('../index.js')).default;
  const { BUNDLE, ISSUER, ISSUER_KEY } = await import('./helpers.mjs');
  const raw = new native.Engine(JSON.stringify({ bundle_dir: BUNDLE, trusted_issuers: [{ issuer: ISSUER, jwk: ISSUER_KEY.publicJwk }] }));
  const decider = raw.decider();
  const handle = native.chain(financeChain(uniqueTask('held')));
  const tape = () => new Float64Array([4, TOOL.length, 6, 0]);
  const refused = (d, c, why) => assert.throws(() => native.authorize(d, c, tape(), TOOL),
    (e) => JSON.parse(e.message).code === 'malformed_request', why);
  assert.equal(native.authorize(decider, handle, tape(), TOOL).outcome ?? 'packed', 'deny', 'held: decided');
  for (const made of [0, -1, 1.5, NaN, Infinity, 2 ** 60, handle + 1e9]) {
    refused(decider, made, `chain ${made}`);
    refused(made, handle, `engine ${made}`);
  }
  // The decider's number is not a chain's, nor the chain's a decider's.
  refused(handle, decider, 'swapped');
  // A number handed out on another thread names nothing here.
  const { Worker } = await import('node:worker_threads');
  const fromWorker = await new Promise((resolve, reject) => {
    const w = new Worker(`const { parentPort, workerData } = require('node:worker_threads');
      const native = require(workerData.index);
      parentPort.postMessage(native.chain(workerData.chain));`,
    { eval: true, workerData: { index: new URL('../index.js', import.meta.url).pathname, chain: financeChain(uniqueTask('other-thread')) } });
    w.once('message', resolve);
    w.once('error', reject);
  });
  assert.equal(typeof fromWorker, 'number');
  refused(decider, fromWorker, 'a chain of another thread');
  // Released: refused from then on, and releasing twice is harmless.
  native.releaseChain(handle);
  native.releaseChain(handle);
  refused(decider, handle, 'a released chain');
  const again = native.chain(financeChain(uniqueTask('held-again')));
  assert.notEqual(again, handle, 'a number is never handed out twice');
  native.releaseDecider(decider);
  refused(decider, again, 'a released engine object');
  assert.equal(native.authorizeEnforced(raw.decider(), again, tape(), TOOL).outcome, 'deny', 'a new number for the same engine');
});

test('chains and engine objects are released once collected, and an array changed in place gets a new chain', async () => {
  const native = (await import('../index.js')).default;
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const settle = async () => {
    for (let i = 0; i < 4; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  await settle();
  const before = native.heldCounts();
  const tokens = financeChain(uniqueTask('released'));
  (() => {
    const engines = Array.from({ length: 5 }, () => engine());
    for (let i = 0; i < 40; i++) {
      const d = engines[i % 5].authorize({ chain: [...tokens], tool: TOOL, args: pay(10) });
      assert.equal(d.outcome, 'allow');
    }
    const during = native.heldCounts();
    assert.ok(during.deciders >= before.deciders + 5, JSON.stringify(during));
    assert.ok(during.chains >= before.chains + 40, JSON.stringify(during));
  })();
  await settle();
  const after = native.heldCounts();
  assert.ok(after.deciders <= before.deciders, `engine objects released: ${JSON.stringify({ before, after })}`);
  assert.ok(after.chains <= before.chains, `chains released: ${JSON.stringify({ before, after })}`);

  // One array, changed in place call after call: each change gets a chain of its own (the call
  // is decided on the tokens the array holds then), and the replaced ones are released.
  const eng = engine();
  const chain = [...tokens];
  const other = approverChain(uniqueTask('released-other'));
  for (let i = 0; i < 20; i++) {
    chain.splice(0, chain.length, ...(i % 2 === 0 ? other : tokens));
    const d = eng.authorize({ chain, tool: TOOL, args: pay(10) });
    assert.equal(d.outcome, i % 2 === 0 ? 'deny' : 'allow', `call ${i}`);
  }
  await settle();
  assert.ok(native.heldCounts().chains <= before.chains + 1, JSON.stringify(native.heldCounts()));
});

test('a getter that changes the chain in place, decides on it and collects garbage leaves the outer call on its own chain', async () => {
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const eng = engine();
  const finance = financeChain(uniqueTask('swap-outer'));
  const approver = approverChain(uniqueTask('swap-inner'));
  const chain = [...finance];
  let inner;
  const args = {
    currency: 'eur',
    destination: ACCOUNT,
    get amount() {
      // The outer call has read its chain; this one replaces the array's entry (and its handle).
      chain.splice(0, chain.length, ...approver);
      inner = eng.authorize({ chain, tool: TOOL, args: pay(10) });
      gc();
      return 10;
    },
  };
  const outer = eng.authorize({ chain, tool: TOOL, args });
  // The finance agent may pay; the approver may not: each call was decided on its own chain.
  assert.equal(outer.outcome, 'allow', JSON.stringify(outer));
  assert.equal(inner.outcome, 'deny', JSON.stringify(inner));
  await new Promise((resolve) => setTimeout(resolve, 10));
  gc();
  // The array now holds the approver's chain, and is decided so.
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(10) }).outcome, 'deny');
});

test('an engine is dropped (its log checkpointed) when the process or the worker holding it ends', async () => {
  const { spawnSync } = await import('node:child_process');
  const { Worker } = await import('node:worker_threads');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const aegis = new URL('../aegis.js', import.meta.url).href;
  const helpers = new URL('./helpers.mjs', import.meta.url).href;
  const body = (dir, exported) => `
    import { Engine, auditKeygen } from ${JSON.stringify(aegis)};
    import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, key, financeChain, pay, uniqueTask } from ${JSON.stringify(helpers)};
    const keys = auditKeygen('aegis.test/teardown', { seed: new Uint8Array(32).fill(9) });
    const eng = new Engine({ bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7),
      audit: { dir: ${JSON.stringify(dir)}, signingKey: keys.signerKey, exportCheckpointsTo: ${JSON.stringify(exported)} } });
    const chain = financeChain(uniqueTask('teardown'));
    for (let i = 0; i < 3; i++) if (eng.authorize({ chain, tool: TOOL, args: pay(10) }).outcome !== 'allow') throw new Error('not allowed');
    globalThis.kept = eng;`;
  const fresh = () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-teardown-'));
    const exported = path.join(root, 'checkpoints');
    fs.mkdirSync(exported);
    return { dir: path.join(root, 'log'), exported };
  };
  // A process that ends with its engine still referenced.
  const proc = fresh();
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', body(proc.dir, proc.exported)], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(fs.readdirSync(proc.exported).length, 1, 'the process checkpointed its log on the way out');
  // A worker that owns its engine and ends.
  const worker = fresh();
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(body(worker.dir, worker.exported))}`));
  await new Promise((resolve, reject) => {
    w.once('exit', resolve);
    w.once('error', reject);
  });
  assert.equal(fs.readdirSync(worker.exported).length, 1, 'the worker checkpointed its log on the way out');
});

test('a getter among the arguments that calls authorize itself leaves the outer call whole', () => {
  const eng = engine();
  const chain = financeChain(uniqueTask('getter'));
  let inner;
  let reads = 0;
  const args = {
    currency: 'eur',
    destination: ACCOUNT,
    get amount() {
      reads += 1;
      inner = eng.authorize({ chain, tool: TOOL, args: { ...pay(9000), memo: 'inner' } });
      return 10;
    },
  };
  const outer = eng.authorize({ chain, tool: TOOL, args });
  assert.equal(reads, 1, 'each property is read once');
  assert.equal(inner.outcome, 'approval_needed');
  assert.equal(outer.outcome, 'allow');
  // And the next call, on the tape both used, is read afresh.
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(9000) }).outcome, 'approval_needed');
});
