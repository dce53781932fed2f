// Per-call cost of Aegis's `authorize` beside Cedar's own engine for JavaScript, in one process:
// `@cedar-policy/cedar-wasm`'s `statefulIsAuthorized` on the payments bundle's policies and schema,
// preparsed once, with the request Aegis builds for the same call. The goal is Aegis ≥10x faster.
//   node aegis-node/bench/peers.mjs [aegis iterations] [cedar-wasm iterations]
// Aegis runs whatever addon is built: a debug build (`npm run build`) is many times slower than
// `npm run build -- --release`, so compare on a release build.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from '../aegis.js';
import { BUNDLE, TOOL, engine, financeChain, pay } from '../../examples/node/setup.mjs';

export const TASK = 'bench-task';
/** The call bench_authorize.mjs times. */
export const SMALL = pay(0);
/** Over limits.cedar's `payment-hard-cap` (100000): denied by the bundle whoever asks. */
export const LARGE = pay(100001);

const POLICY_FILES = ['permits.cedar', 'limits.cedar'];
const SCHEMA_FILE = 'payments.cedarschema';
const POLICY_SET_ID = 'payments';
const SCHEMA_NAME = 'payments';
// manifest.yaml's predicates as Aegis evaluates them: the pattern anchored to the whole argument.
const PREDICATES = { destination_account_valid: { arg: 'destination', pattern: /^(?:acct_[0-9A-Za-z]{16})$/, tools: [TOOL] } };
// The manifest names no namespace nor entity types: Aegis's defaults.
const AGENT_TYPE = 'Agent';
const TOOL_TYPE = 'Tool';

/** Cedar's Node.js build, or `null` with the reason when it is not installed or does not load. */
export async function loadCedar() {
  try {
    return { cedar: await import('@cedar-policy/cedar-wasm/nodejs'), error: null };
  } catch (error) {
    return { cedar: null, error };
  }
}

/** An engine on the payments bundle and the bench's chain: the Aegis side. */
export function aegisSide() {
  const chain = financeChain(TASK);
  const eng = engine();
  return { chain, eng, request: (/** @type {object} */ args) => ({ chain, tool: TOOL, args }) };
}

const string = () => ({ type: 'String' });
const strings = () => ({ type: 'Set', element: string() });

/**
 * The context attributes Aegis adds to `action`'s context in the schema it validates against
 * (aegis-core/src/policy/context_schema.rs, docs/CONTEXT.md). No `temporal`: the bundle
 * declares no temporal facts.
 * @param {string} action
 */
function engineAttributes(action) {
  const predicates = Object.fromEntries(Object.entries(PREDICATES)
    .filter(([, p]) => p.tools.includes(action)).map(([name]) => [name, { type: 'Boolean' }]));
  return {
    agent_id: string(),
    parent_agent_id: { ...string(), required: false },
    initiator: string(),
    lineage: strings(),
    depth: { type: 'Long' },
    task_id: string(),
    intent: string(),
    now: { type: 'Long' },
    predicates: { type: 'Record', attributes: predicates },
    task: { type: 'Record', attributes: { duties_by_agent: strings(), duties_by_lineage: strings(), performed: strings(), actors: strings() } },
    break_glass: { type: 'Boolean' },
    ...(action === 'aegis.approve' && { approval: { type: 'Record', attributes: {
      approval_id: string(), tool: string(), requester: string(), initiator: string(), task_id: string(), roles: strings(), policy_ids: strings(),
    } } }),
  };
}

/**
 * The bundle's schema as Aegis validates policies and requests against it: the author's
 * declarations (each action's `args`) plus the attributes the engine fills in.
 * @param {any} cedar
 */
export function cedarSchema(cedar) {
  const parsed = cedar.schemaToJson(fs.readFileSync(path.join(BUNDLE, SCHEMA_FILE), 'utf8'));
  if (parsed.type !== 'success') throw new Error(`${SCHEMA_FILE}: ${JSON.stringify(parsed.errors)}`);
  for (const namespace of Object.values(parsed.json)) {
    for (const [action, { appliesTo }] of Object.entries(namespace.actions)) {
      Object.assign(appliesTo.context.attributes, engineAttributes(action));
    }
  }
  return parsed.json;
}

/**
 * The bundle's Cedar policies, one text as Cedar reads a policy set. The `@shadow` forbid is
 * enforced here where Aegis only reports it: the calls compared are in euros, which it ignores.
 * Aegis also evaluates the policies it compiles from sod.yaml; they are not given to Cedar, which
 * evaluates fewer policies than Aegis does.
 */
export function cedarPolicies() {
  return POLICY_FILES.map((f) => fs.readFileSync(path.join(BUNDLE, f), 'utf8')).join('\n');
}

/**
 * Checks the policies against the schema (as Aegis does when it loads the bundle) and caches
 * both in cedar-wasm, once: the calls timed below pay for no parsing of them.
 * @param {any} cedar
 */
export function prepareCedar(cedar) {
  const schema = cedarSchema(cedar);
  const policies = { staticPolicies: cedarPolicies() };
  const validated = cedar.validate({ schema, policies });
  if (validated.type !== 'success' || validated.validationErrors.length > 0) {
    throw new Error(`the policies do not validate against the schema: ${JSON.stringify(validated)}`);
  }
  for (const answer of [cedar.preparsePolicySet(POLICY_SET_ID, policies), cedar.preparseSchema(SCHEMA_NAME, schema)]) {
    if (answer.type !== 'success') throw new Error(`preparse: ${JSON.stringify(answer.errors)}`);
  }
}

/**
 * Who calls, in Aegis's terms, read from the chain's claims: ids are `root/…/sub`.
 * @param {string[]} chain
 */
function caller(chain) {
  const claims = chain.map((token) => inspect(token).claims);
  const ids = claims.map((_, i) => claims.slice(0, i + 1).map((c) => c.sub).join('/'));
  return { agentId: ids[ids.length - 1], lineage: ids.slice(0, -1), taskId: claims[0].task, intent: claims[0].intent };
}

/**
 * The `statefulIsAuthorized` call for `chain` calling the payments tool with `args`: the
 * principal, resource, entities and context Aegis evaluates. The `task` record is the warm
 * bench's: the caller already made this payment in the task.
 * @param {string[]} chain @param {Record<string, any>} args @param {{ schema: boolean }} options
 */
export function cedarCall(chain, args, { schema }) {
  const { agentId, lineage, taskId, intent } = caller(chain);
  const principal = { type: AGENT_TYPE, id: agentId };
  const resource = { type: TOOL_TYPE, id: TOOL };
  const predicates = Object.fromEntries(Object.entries(PREDICATES)
    .filter(([, p]) => p.tools.includes(TOOL)).map(([name, p]) => [name, p.pattern.test(String(args[p.arg]))]));
  const context = {
    args,
    agent_id: agentId,
    // A delegate's: the root has no parent (then Cedar sees no attribute, as in Aegis).
    ...(lineage.length > 0 && { parent_agent_id: lineage[lineage.length - 1] }),
    initiator: lineage[0] ?? agentId,
    lineage,
    depth: lineage.length,
    task_id: taskId,
    intent,
    now: Math.floor(Date.now() / 1000),
    predicates,
    task: { duties_by_agent: [TOOL], duties_by_lineage: [TOOL], performed: [TOOL], actors: [agentId] },
    break_glass: false,
  };
  return {
    principal,
    action: { type: 'Action', id: TOOL },
    resource,
    context,
    // Delegates hold no roles: the principal is in no Role.
    entities: [{ uid: principal, attrs: {}, parents: [] }, { uid: resource, attrs: {}, parents: [] }],
    preparsedPolicySetId: POLICY_SET_ID,
    ...(schema && { preparsedSchemaName: SCHEMA_NAME, validateRequest: true }),
  };
}

/**
 * cedar-wasm's decision on `call`, `allow` or `deny`; its failures (a request the schema
 * refuses, an unknown policy set) are errors, not denials.
 * @param {any} cedar @param {object} call
 */
export function cedarDecide(cedar, call) {
  const answer = cedar.statefulIsAuthorized(call);
  if (answer.type !== 'success') throw new Error(`statefulIsAuthorized: ${JSON.stringify(answer.errors)}`);
  return answer.response.decision;
}

/**
 * Per-call µs of each subject over `runs` timed runs of its `iterations` calls, after a warm-up:
 * the median and the spread. The subjects take turns run by run, so a burst of load elsewhere
 * on the machine does not fall on one of them only.
 * @param {{ fn: () => unknown, iterations: number }[]} subjects @param {number} runs
 */
export function measure(subjects, runs) {
  for (const { fn, iterations } of subjects) for (let i = 0; i < Math.min(iterations, 1000); i++) fn();
  const perCall = subjects.map(() => /** @type {number[]} */ ([]));
  for (let r = 0; r < runs; r++) {
    subjects.forEach(({ fn, iterations }, s) => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < iterations; i++) fn();
      perCall[s].push(Number(process.hrtime.bigint() - start) / 1e3 / iterations);
    });
  }
  return perCall.map((times) => {
    times.sort((a, b) => a - b);
    return { median: times[Math.floor(runs / 2)], min: times[0], max: times[runs - 1] };
  });
}

/** Times Aegis against cedar-wasm; `bench_authorize.mjs` runs it after the binding's ratio. */
export async function main(aegisIterations = Number(process.argv[2] ?? 20000), cedarIterations = Number(process.argv[3] ?? 5000)) {
  const runs = 3;
  const { cedar, error } = await loadCedar();
  if (!cedar) {
    console.log(`@cedar-policy/cedar-wasm cannot be loaded (${error.message}): run \`npm install\` in aegis-node; nothing compared.`);
    return;
  }
  prepareCedar(cedar);
  const { chain, eng, request } = aegisSide();
  const aegisRequest = request(SMALL);
  // Without a schema Cedar does not check the arguments' types: an `amount` given as a string
  // makes the hard cap's forbid fail to evaluate, and a failing forbid is skipped (allow), where
  // Aegis refuses the call (`args_invalid`). Only the validated form decides as Aegis does.
  const peers = [
    { name: 'cedar-wasm, request validated against the schema', call: cedarCall(chain, SMALL, { schema: true }) },
    { name: 'cedar-wasm, no schema', call: cedarCall(chain, SMALL, { schema: false }) },
  ];
  // Both sides decide the same permit before anything is timed.
  const outcome = eng.authorize(aegisRequest).outcome;
  if (outcome !== 'allow') throw new Error(`Aegis: ${outcome}`);
  for (const { name, call } of peers) {
    const decision = cedarDecide(cedar, call);
    if (decision !== 'allow') throw new Error(`${name}: ${decision}`);
  }

  const [aegis, ...times] = measure([
    { fn: () => eng.authorize(aegisRequest), iterations: aegisIterations },
    ...peers.map(({ call }) => ({ fn: () => cedar.statefulIsAuthorized(call), iterations: cedarIterations })),
  ], runs);

  const fmt = (/** @type {number} */ us) => us.toFixed(2);
  const row = (/** @type {string} */ label, /** @type {{ median: number, min: number, max: number }} */ t) =>
    `  ${label.padEnd(66)} ${fmt(t.median).padStart(8)} µs  [${fmt(t.min)}-${fmt(t.max)}]`;
  console.log(`payments bundle, one allowed payment; cedar-wasm ${cedar.getCedarVersion()} (preparsed policies and schema)`);
  console.log(`per call: median of ${runs} runs [min-max]`);
  console.log(row(`Aegis authorize, warm chain, memory store (${aegisIterations} calls)`, aegis));
  peers.forEach(({ name }, i) => {
    console.log(`${row(`${name} (${cedarIterations} calls)`, times[i])}  ${(times[i].median / aegis.median).toFixed(2)}x Aegis`);
  });
  console.log('goal: cedar-wasm / Aegis ≥ 10x');
}

// Run, not imported (the test imports the helpers above); `node -e` has no script path.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
