'use strict';
// Aegis for Node: the engine from the Rust core, as typed values and errors with stable codes.
// Everything is decided by the core: every native use is `call(op, json)` (or `callAsync`) on
// the core's one operation table (through `index.js`, the napi module). This file converts
// values between camelCase objects and the core's JSON, and maps the core's error JSON.

const native = require('./index.js');
const { ERROR_CODES, VERDICT_CODES } = require('./codes.js');

/** An error from Aegis; `code` is the core's stable code, `details` where it was found. */
class AegisError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'AegisError';
    this.code = code;
    this.details = Object.freeze({
      link: details.link ?? null, file: details.file ?? null, line: details.line ?? null, policyId: details.policyId ?? null,
    });
  }
}

/** A guarded call was refused; `decision` says why, `enforcement` is the core's verdict on running it. */
class AegisDenied extends AegisError {
  constructor(decision, enforcement) {
    const first = decision.reasons[0];
    super(enforcement?.code ?? first?.code ?? 'no_matching_permit', enforcement?.message ?? first?.message ?? 'denied');
    this.name = 'AegisDenied';
    this.decision = decision;
    this.enforcement = enforcement ?? null;
  }
}

/** A guarded call needs a human approval of `approvalId`; retry with the override token. */
class AegisApprovalRequired extends AegisError {
  constructor(decision, enforcement) {
    const approvalId = enforcement?.approvalId ?? decision.approvalId;
    super('approval_required', enforcement?.message || `approval ${approvalId} is needed before this call may run`);
    this.name = 'AegisApprovalRequired';
    this.decision = decision;
    this.enforcement = enforcement ?? null;
    this.approvalId = approvalId;
  }
}

/** The core's error JSON (the message of every native error) as an AegisError; others unchanged. */
function mapError(e) {
  if (e instanceof AegisError || !(e instanceof Error)) return e;
  let body;
  try {
    body = JSON.parse(e.message);
  } catch {
    return e;
  }
  if (!body || typeof body.code !== 'string' || typeof body.message !== 'string') return e;
  return new AegisError(body.code, body.message, { link: body.link, file: body.file, line: body.line, policyId: body.policy_id });
}

/** Runs a native call, mapping its error. */
function mapped(fn) {
  try {
    return fn();
  } catch (e) {
    throw mapError(e);
  }
}

/** Runs engine-free operation `op` of the core's table on `input`; returns the parsed result. */
const call = (op, input) => JSON.parse(mapped(() => native.call(op, JSON.stringify(input ?? {}))));

/** A deep, frozen copy. */
function deepFreeze(value) {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const snapshot = (value) => JSON.parse(JSON.stringify(value ?? {}));

const reasonFrom = (r) => ({ code: r.code, message: r.message, policyId: r.policy_id ?? null, link: r.link ?? null });

function decisionFrom(d) {
  return deepFreeze({
    outcome: d.outcome,
    reasons: d.reasons.map(reasonFrom),
    decisionId: d.decision_id,
    policyVersion: d.policy_version,
    wouldBlock: d.would_block,
    approvalId: d.approval_id ?? null,
    sanitizedArgs: d.sanitized_args ?? null,
    breakGlassId: d.break_glass_id ?? null,
    receipt: d.receipt ?? null,
    candidate: d.candidate == null ? null : { policyVersion: d.candidate.policy_version, outcome: d.candidate.outcome,
      policyIds: d.candidate.policy_ids, wouldBlock: d.candidate.would_block },
  });
}

/** A Decision back in the core's JSON form (for `enforce`). */
function decisionJson(d) {
  return {
    outcome: d.outcome,
    reasons: d.reasons.map((r) => ({ code: r.code, message: r.message, policy_id: r.policyId, link: r.link })),
    decision_id: d.decisionId, policy_version: d.policyVersion, would_block: d.wouldBlock,
    approval_id: d.approvalId, sanitized_args: d.sanitizedArgs, break_glass_id: d.breakGlassId,
  };
}

/** The core's Enforcement, camelCased; an action this file does not know is kept as is (and refuses). */
function enforcementFrom(e) {
  switch (e.action) {
    case 'run':
      return deepFreeze({ action: 'run', args: e.args });
    case 'await_approval':
      return deepFreeze({ action: 'await_approval', approvalId: e.approval_id, message: e.message });
    default:
      return deepFreeze({ ...e });
  }
}

const enforcedFrom = (g) => Object.freeze({ decision: decisionFrom(g.decision), enforcement: enforcementFrom(g.enforcement) });

/** The outcomes by their number in a packed decision (bits 0-1). */
const OUTCOMES = ['allow', 'deny', 'sanitize', 'approval_needed'];

/**
 * A decision from the native `authorize`: one string when the native side has already sent this
 * engine object the decision's reasons (by id) and policy version (two characters of six bits
 * each from `0`, low first: the outcome in bits 0-1, `wouldBlock` in bit 2, the reasons' id
 * from bit 3; then the decision's id), else the decision's parts (which tell them).
 */
function decisionFromNative(r, told) {
  if (typeof r !== 'string') return decisionFromParts(r, told);
  const packed = (r.charCodeAt(0) - 48) | ((r.charCodeAt(1) - 48) << 6);
  const decisionId = r.slice(2);
  // Built as `decisionFromParts` builds it: the same fields in the same order.
  return Object.freeze({
    outcome: OUTCOMES[packed & 3],
    reasons: told.reasons[packed >>> 3],
    decisionId,
    policyVersion: told.policyVersion,
    wouldBlock: (packed & 4) !== 0,
    approvalId: null,
    sanitizedArgs: null,
    breakGlassId: null,
    receipt: null,
    candidate: null,
  });
}

/**
 * A decision from the native call's parts: what `decisionFrom` makes of the same decision's
 * JSON. `told` holds the frozen reason lists by the ids the native engine object gave them, and
 * the policy version it sent last (these parts' own).
 */
function decisionFromParts(p, told) {
  const reasons = told.reasons;
  told.policyVersion = p.policyVersion;
  if (p.reasons != null) reasons[p.reasonsId] = deepFreeze(JSON.parse(p.reasons).map(reasonFrom));
  const rest = p.rest == null ? undefined : deepFreeze(JSON.parse(p.rest));
  // Frozen all the way down, as `decisionFrom`'s: the reasons and `rest` already are.
  return Object.freeze({
    outcome: p.outcome,
    reasons: reasons[p.reasonsId],
    decisionId: p.decisionId,
    policyVersion: p.policyVersion,
    wouldBlock: p.wouldBlock,
    approvalId: rest?.approval_id ?? null,
    sanitizedArgs: rest?.sanitized_args ?? null,
    breakGlassId: rest?.break_glass_id ?? null,
    receipt: rest?.receipt ?? null,
    candidate: rest?.candidate == null ? null : Object.freeze({ policyVersion: rest.candidate.policy_version,
      outcome: rest.candidate.outcome, policyIds: rest.candidate.policy_ids, wouldBlock: rest.candidate.would_block }),
  });
}

/**
 * The one rule guards follow, decided by the core's enforcement: `run` returns a frozen copy of
 * exactly `enforcement.args`; `await_approval` throws AegisApprovalRequired; anything else
 * (`refuse`, or an action unknown here) throws AegisDenied.
 */
function argsToRun({ decision, enforcement }) {
  if (enforcement.action === 'run') return deepFreeze(snapshot(enforcement.args));
  if (enforcement.action === 'await_approval') throw new AegisApprovalRequired(decision, enforcement);
  throw new AegisDenied(decision, enforcement);
}

function pendingFrom(p) {
  return deepFreeze({
    approvalId: p.approval_id, callDigest: p.call_digest, tool: p.tool, args: p.args, resource: p.resource ?? null,
    lifts: p.lifts ?? [], agentId: p.agent_id, lineage: p.lineage, initiator: p.initiator, taskId: p.task_id,
    intent: p.intent, policyIds: p.policy_ids,
    reasons: p.reasons, roles: p.roles, policyVersion: p.policy_version, createdAtMs: p.created_at_ms,
    status: p.status, resolvedBy: p.resolved_by ?? null, resolvedAtMs: p.resolved_at_ms ?? null, note: p.note ?? null,
    quorum: p.quorum ?? 1, stages: p.stages ?? [], votes: p.votes ?? [], batch: p.batch ?? null,
    latencyMs: p.resolved_at_ms == null ? null : p.resolved_at_ms - p.created_at_ms,
    raw: p,
  });
}

function batchBody(chain, envelope, { resource, reason } = {}) {
  const body = { chain, envelope };
  if (resource != null) body.resource = resource;
  if (reason != null) body.reason = reason;
  return body;
}

function resolutionFrom(r) {
  return deepFreeze({
    accepted: r.accepted,
    reasons: r.reasons.map(reasonFrom),
    overrideToken: r.override_token ?? null,
    approval: pendingFrom(r.approval),
  });
}

function grantFrom(g) {
  return deepFreeze({
    id: g.id, agents: g.agents, tools: g.tools, tasks: g.tasks ?? [], reason: g.reason, approvers: g.approvers,
    openedAt: g.opened_at, expiresAt: g.expires_at, closedAt: g.closed_at ?? null, reviewRef: g.review_ref ?? null,
  });
}

/** An Ed25519 key pair; the private JWK is not shown by `util.inspect` or `JSON.stringify`. */
class KeyPair {
  #jwk;
  constructor(privateJwk) {
    if (!privateJwk || !privateJwk.d) throw new AegisError('invalid_key', 'a key pair needs a private jwk (with `d`)');
    call('public_jwk', privateJwk);
    this.#jwk = { ...privateJwk };
  }
  static generate() {
    return new KeyPair(call('generate_key', {}));
  }
  static fromSeed(seed) {
    return new KeyPair(call('generate_key', { seed_hex: Buffer.from(seed).toString('hex') }));
  }
  get privateJwk() {
    return { ...this.#jwk };
  }
  get publicJwk() {
    return call('public_jwk', this.#jwk);
  }
  get kid() {
    return this.publicJwk.kid;
  }
  toJSON() {
    return { kid: this.kid };
  }
  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `KeyPair { kid: '${this.kid}' }`;
  }
}

const jwkOf = (k) => (k instanceof KeyPair ? k.publicJwk : k);

/**
 * A root credential, signed by the issuer. `roles` are what the issuer attests for this
 * identity (`finance-approver`, ...); policies match them as `principal in Role::"..."`.
 */
function issueRoot({ issuer, issuerKey, agentId, agentKey, taskId, intent, scope, ttlSecs = 900, issuedAt, jti, audience, roles }) {
  return call('issue', { issuer, signing_key: issuerKey.privateJwk, agent_id: agentId, agent_key: jwkOf(agentKey),
    task_id: taskId, intent, scope, ttl_secs: ttlSecs, issued_at: issuedAt, jti, audience,
    // Sent only when there are some; the core refuses anything but a list of names.
    ...(roles != null && roles.length > 0 ? { roles } : {}) });
}

/**
 * A delegated credential, signed by the parent's key. `agentId` is the name the delegator gives
 * (no `/`); the engine knows the delegate as `<parent id>/<agentId>`. Delegates hold no roles,
 * and a delegation to the parent's own key is refused (`delegation_cycle`).
 */
function delegate({ parent, parentKey, agentId, agentKey, scope, ttlSecs = 600, issuedAt, jti, narrow = false }) {
  return call('issue', { parent, signing_key: parentKey.privateJwk, agent_id: agentId, agent_key: jwkOf(agentKey), scope,
    ttl_secs: ttlSecs, issued_at: issuedAt, jti, narrow });
}

const inspect = (token) => call('inspect', { token });
/** How the engine names the agent of `chain` (root first), read without verifying it. */
function inspectChain(chain) {
  const c = call('inspect_chain', { chain });
  return deepFreeze({ agentId: c.agent_id, lineage: c.lineage, taskId: c.task_id, scope: c.scope });
}
/**
 * Checks an Ed25519 `signature` of `message` by the 32-byte `publicKey` exactly as the core checks
 * credentials, proofs and override tokens (strict: no malleable or weak-key forms).
 */
function verifySignature(publicKey, message, signature) {
  const hex = (bytes) => Buffer.from(bytes).toString('hex');
  const out = call('verify_signature', { public_key_hex: hex(publicKey), message_hex: hex(message), signature_hex: hex(signature) });
  return Object.freeze({ valid: out.valid === true, keyError: out.key_error ?? null });
}
const callDigest = (tool, args) => call('call_digest', { tool, args });
/** A tool's offline check of a decision receipt; returns its claims or throws `ReceiptInvalid` / `ReceiptMismatch`. */
const verifyReceipt = (receipt, jwks, { issuer, audience, tool, args, now, consume = false }) =>
  call('verify_receipt', now == null ? { receipt, jwks, issuer, audience, tool, args, consume }
    : { receipt, jwks, issuer, audience, tool, args, now, consume });
const slackMessage = (pending) => call('slack_message', pending.raw);
/** The core's enforcement of `decision` for a call with `args` (what guards do). */
const enforce = (decision, args) => enforcementFrom(call('enforce', { decision: decisionJson(decision), args: args ?? {} }));
/** The value at an RFC 6901 pointer in JSON text. */
const jsonPointer = (json, pointer) => call('json_pointer', { json, pointer });
const errorCodes = () => call('error_codes', {});
const reasonCodes = () => call('reason_codes', {});
/** A checkpoint as the core returns it: `{origin, size, root, note}`. */
const checkpointFrom = (c) => Object.freeze({ origin: c.origin, size: c.size, root: c.root, note: c.note });
/**
 * A new key for the audit log named `name` (its checkpoints' origin): `signerKey` is private
 * (keep it outside the log's directory), `verifierKey` is what an auditor pins. `seed` (32 bytes)
 * makes it deterministic, for tests.
 */
function auditKeygen(name, { seed } = {}) {
  const out = call('audit_keygen', { name, seed_hex: seed == null ? undefined : Buffer.from(seed).toString('hex') });
  const keys = { verifierKey: out.verifier_key };
  // Kept off enumeration so that logging the object does not print the private key.
  Object.defineProperty(keys, 'signerKey', { value: out.signer_key, enumerable: false });
  return Object.freeze(keys);
}
/**
 * Checks the audit log in `dir` record by record. Pin the log's `verifierKey` and pass
 * checkpoints kept elsewhere (`trustedCheckpoints`, signed notes) to detect a log rewritten whole;
 * without a key, the one stored beside the log is used (`keyFromLog`), which proves nothing
 * against whoever rewrote the log.
 */
function auditVerify(dir, { verifierKey, trustedCheckpoints = [] } = {}) {
  const r = call('audit_verify', { dir, verifier_key: verifierKey, trusted_checkpoints: trustedCheckpoints });
  return Object.freeze({ origin: r.origin, intact: r.intact === true, records: r.records,
    checkpoint: r.checkpoint ? checkpointFrom(r.checkpoint) : null, trusted: Object.freeze([...r.trusted]),
    firstBad: r.first_bad ? Object.freeze({ seq: r.first_bad.seq, why: r.first_bad.why }) : null,
    tornBytes: r.torn_bytes ?? 0, keyFromLog: r.key_from_log === true });
}
/**
 * One administrator's signature over a control-plane `action` (`{ action: 'set_mode', mode: 'shadow' }`, ...)
 * on an engine with `policyVersion` in force.
 */
function adminProof(key, action, policyVersion, { ttlSecs = 300, jti, issuedAt } = {}) {
  return call('admin_proof', { key: key.privateJwk, action, policy_version: policyVersion, ttl_secs: ttlSecs, jti, issued_at: issuedAt });
}
/** Signs the bundle in `bundleDir` and writes `bundle.sig`: `{ signature, policyVersion }`. */
function bundleSign(bundleDir, key) {
  const r = call('bundle_sign', { bundle_dir: bundleDir, key: key.privateJwk });
  return Object.freeze({ signature: r.signature, policyVersion: r.policy_version });
}
/** Checks `bundle.sig` against trusted keys: `{ policyVersion, signedBy }`, or throws `bundle_signature_invalid`. */
function bundleVerify(bundleDir, keys) {
  const r = call('bundle_verify', { bundle_dir: bundleDir, keys: keys.map((k) => k.publicJwk) });
  return Object.freeze({ policyVersion: r.policy_version, signedBy: r.signed_by });
}
/** Runs the bundle's policy tests (`tests/*.yaml`): the core's report (snake_case, as JSON). */
function policyTest(bundleDir) {
  return deepFreeze(call('policy_test', { bundle_dir: bundleDir }));
}
/** The bundle's lint findings: `[{ code, file, line, policy_id, message }]`. */
function policyLint(bundleDir) {
  return deepFreeze(call('policy_lint', { bundle_dir: bundleDir }));
}
/** Re-decides the calls of audit logs under a candidate bundle; changes that open a call first. */
function policyDryRun(bundleDir, logs, { sealKey } = {}) {
  return deepFreeze(call('policy_dry_run', { bundle_dir: bundleDir, logs,
    seal_key_hex: sealKey == null ? undefined : Buffer.from(sealKey).toString('hex') }));
}
const AUDIT_OPTIONS = { dir: 'dir', signingKey: 'signing_key', signingKeyFile: 'signing_key_file',
  exportCheckpointsTo: 'export_checkpoints_to', checkpointEvery: 'checkpoint_every', sealKeyHex: 'seal_key_hex' };
/** The audit options in the core's form; strict, like the core, so a misspelt option is refused. */
function auditJson(options) {
  if (options == null) return undefined;
  const unknown = Object.keys(options).filter((k) => !(k in AUDIT_OPTIONS));
  if (unknown.length > 0) {
    throw new AegisError('malformed_request', `unknown audit option ${unknown.map((k) => `\`${k}\``).join(', ')}; expected ${Object.keys(AUDIT_OPTIONS).join(', ')}`);
  }
  return Object.fromEntries(Object.entries(options).map(([k, v]) => [AUDIT_OPTIONS[k], v]));
}

/** The core's operation table. */
const operations = () => call('operations', {}).map((o) => ({ name: o.name, needsEngine: o.needs_engine, summary: o.summary }));

function createProof({ key, tool, args, ttlSecs = 60, jti, issuedAt }) {
  return call('create_proof', { key: key.privateJwk, tool, args, ttl_secs: ttlSecs, jti, issued_at: issuedAt });
}

/** `@opentelemetry/api` when the host has it (looked up once), else `null`. */
let otelApi;
/**
 * The W3C `traceparent` of the host's active OpenTelemetry span, so the engine's span nests
 * under it; `undefined` without OpenTelemetry or an active span.
 */
function hostTraceparent() {
  if (otelApi === undefined) {
    try {
      otelApi = require('@opentelemetry/api');
    } catch {
      otelApi = null;
    }
  }
  if (otelApi === null) return undefined;
  const active = otelApi.context.active();
  // No span in the active context (the usual case when the host traces nothing): no traceparent
  // to pass on, and no inject to pay for on every call.
  if (otelApi.trace.getSpan(active) === undefined) return undefined;
  const carrier = {};
  otelApi.propagation.inject(active, carrier);
  return carrier.traceparent;
}

function requestBody({ chain, tool, args, resource, proof, approvalToken, traceparent, toolCallId }) {
  return { chain, tool, args: args ?? {}, resource: resource ? { type: resource.type, id: resource.id } : undefined,
    proof, approval_token: approvalToken, tool_call_id: toolCallId, traceparent: traceparent ?? hostTraceparent() };
}

/** The deepest nesting of arrays and objects the core's text parser reads in `args` (the request
 * object around them is the first of its 127 levels). */
const MAX_ARGS_DEPTH = 126;

/**
 * A call's tool and plain arguments as the native side reads them: a tape of numbers (the
 * tool's length, then tags, counts, string lengths in UTF-16 units, numbers as they are) and
 * the text of the tool and of every key and string, joined. Two values cross into Rust, however
 * many the arguments hold; reading an object through N-API took several calls per property.
 * See `src/tape.rs` for the format.
 *
 * Only plain JSON is written, read exactly as `JSON.stringify` writes it: strings without lone
 * surrogates, booleans, null, finite numbers (whole ones only up to 2^53, past which the text is
 * rounded), arrays without holes, and objects whose prototype is `Object.prototype` or null
 * with no `toJSON`, each property read once. Anything else goes to the core as JSON text.
 */
class Tape {
  buf = new Float64Array(64);
  n = 1; // `buf[0]` is the length of the tape
  text = '';

  put(x) {
    if (this.n === this.buf.length) {
      const grown = new Float64Array(this.buf.length * 2);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf[this.n++] = x;
  }

  /** Writes `value`; false when it is not plain JSON. */
  write(value, depth) {
    switch (typeof value) {
      case 'string':
        if (!value.isWellFormed()) return false;
        this.put(TAG_STRING);
        this.put(value.length);
        this.text += value;
        return true;
      case 'boolean':
        this.put(value ? TAG_TRUE : TAG_FALSE);
        return true;
      case 'number':
        if (!Number.isFinite(value) || (Number.isInteger(value) && Math.abs(value) > 2 ** 53)) return false;
        this.put(TAG_NUMBER);
        this.put(value);
        return true;
      case 'object': {
        if (value === null) {
          this.put(TAG_NULL);
          return true;
        }
        if (depth >= MAX_ARGS_DEPTH || typeof value.toJSON === 'function') return false;
        if (Array.isArray(value)) {
          const length = value.length;
          this.put(TAG_ARRAY);
          this.put(length);
          for (let i = 0; i < length; i++) if (!this.write(value[i], depth + 1)) return false;
          return true;
        }
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) return false;
        const keys = Object.keys(value);
        this.put(TAG_OBJECT);
        this.put(keys.length);
        for (const key of keys) {
          if (!key.isWellFormed()) return false;
          this.put(key.length);
          this.text += key;
          if (!this.write(value[key], depth + 1)) return false;
        }
        return true;
      }
      default:
        return false;
    }
  }

  /** The joined text of a call of `tool` with `args` written on this tape, or undefined when
   * the arguments are not plain. */
  encode(tool, args) {
    this.n = 1;
    this.put(tool.length);
    this.text = tool;
    if (typeof args !== 'object' || args === null || Array.isArray(args) || !this.write(args, 0)) return undefined;
    this.buf[0] = this.n;
    const text = this.text;
    this.text = '';
    return text;
  }
}

const [TAG_NULL, TAG_FALSE, TAG_TRUE, TAG_NUMBER, TAG_STRING, TAG_ARRAY, TAG_OBJECT] = [0, 1, 2, 3, 4, 5, 6];

/** The tape calls write their arguments on, while none is writing one (see `callNative`). */
let spareTape = new Tape();

const optionalText = (v) => v == null || (typeof v === 'string' && v.isWellFormed());

/**
 * The native handles of the chains calls present, by the array a caller passes: an agent
 * presents the same chain call after call, and its tokens cross into the native side once. A
 * handle is used only while the array still holds exactly the tokens it was made from (strings
 * are immutable, so `===` on each is that), so an array changed in place gets a new handle.
 * A handle is a number the native side holds the chain under on this thread, released once its
 * entry here is collected (the array was, or its entry was replaced). A release runs as a job of
 * its own, once the code running now has returned: never inside a call that uses the handle.
 */
const chainHandles = new WeakMap();
/** Releases the native side's chains and engine objects once what they were made for is gone. */
const releasedChains = new FinalizationRegistry((handle) => native.releaseChain(handle));
const releasedDeciders = new FinalizationRegistry((decider) => native.releaseDecider(decider));

/** The entry (`{ tokens, handle }`) for `chain`, made when new; undefined when not plain. */
function chainEntry(chain) {
  const held = chainHandles.get(chain);
  if (held !== undefined && held.tokens.length === chain.length && held.tokens.every((t, i) => t === chain[i])) {
    return held;
  }
  // One read of each element (a getter answers once), holes and anything not plain text refused:
  // such a chain goes as JSON text, which reads and refuses it as ever.
  const tokens = [];
  for (let i = 0; i < chain.length; i++) {
    const t = chain[i];
    if (typeof t !== 'string' || !t.isWellFormed() || !Object.hasOwn(chain, i)) return undefined;
    tokens.push(t);
  }
  let handle;
  try {
    handle = native.chain(tokens);
  } catch {
    return undefined;
  }
  const entry = { tokens, handle };
  releasedChains.register(entry, handle);
  chainHandles.set(chain, entry);
  return entry;
}

/**
 * Runs the native `authorize` (or `authorizeEnforced`) for `decider` on `request` when every
 * part of `request` is plain (its tool and arguments written on a tape, the rarely set parts in
 * `extras` only when one is); otherwise returns undefined, for the text path.
 */
function callNative({ chain, tool, args, resource, proof, approvalToken, traceparent, toolCallId }, decider, enforced) {
  if (!Array.isArray(chain)) return undefined;
  if (typeof tool !== 'string' || !tool.isWellFormed()) return undefined;
  if (resource != null && !(typeof resource.type === 'string' && typeof resource.id === 'string'
    && resource.type.isWellFormed() && resource.id.isWellFormed())) return undefined;
  traceparent = traceparent ?? hostTraceparent();
  if (!(optionalText(proof) && optionalText(approvalToken) && optionalText(traceparent) && optionalText(toolCallId))) {
    return undefined;
  }
  const entry = chainEntry(chain);
  if (entry === undefined) return undefined;
  const handle = entry.handle;
  const extras = resource == null && proof == null && approvalToken == null && traceparent == null && toolCallId == null
    ? undefined
    : { resourceType: resource?.type, resourceId: resource?.id, proof, approvalToken, traceparent, toolCallId };
  // A getter among the arguments may itself call `authorize`: the tape in use is taken away
  // until this call is done, and such a call writes a tape of its own.
  const tape = spareTape ?? new Tape();
  spareTape = null;
  try {
    // The arguments last: a getter among them runs after every other part was read.
    const text = tape.encode(tool, args ?? {});
    if (text === undefined) return undefined;
    if (enforced) return mapped(() => native.authorizeEnforced(decider, handle, tape.buf, text, extras));
    // Without `extras` when there are none: one argument fewer to convert.
    return mapped(() => (extras === undefined ? native.authorize(decider, handle, tape.buf, text)
      : native.authorize(decider, handle, tape.buf, text, extras)));
  } finally {
    // Nothing of the arguments stays on the spare tape between calls.
    tape.text = '';
    // A loop rather than `fill`, which is a call into the runtime: a tape is a few numbers long.
    const buf = tape.buf;
    for (let i = 0; i < tape.n; i++) buf[i] = 0;
    spareTape = tape;
  }
}

const resolveBody = (approvalId, approverChain, note) => ({ approval_id: approvalId, approver_chain: approverChain, note });

/**
 * A notifier for the native engine: parses the pending approval and calls `notifier`; a throw
 * becomes a process warning, never an exception out of the threadsafe call.
 */
function nativeNotifier(notifier) {
  return (json) => {
    try {
      notifier(pendingFrom(JSON.parse(json)));
    } catch (e) {
      try {
        process.emitWarning(`the Aegis approval notifier threw: ${e instanceof Error ? e.stack : String(e)}`, 'AegisNotifierWarning');
      } catch {
        // nothing more can be done
      }
    }
  };
}

/**
 * An external issuer (OIDC provider, SPIFFE JWT issuer) in the core's form. Unset options are
 * left out, so the core's defaults apply (RS256/ES256/EdDSA, no roles, `aegis.approve`,
 * `external:<issuer>`).
 */
function externalIssuerJson(options) {
  // Strict like the core: a misspelt (or snake_case) option would otherwise be dropped here.
  const unknown = Object.keys(options ?? {}).filter((k) => !EXTERNAL_ISSUER_OPTIONS.includes(k));
  if (unknown.length > 0) {
    throw new AegisError('malformed_request',
      `unknown external issuer option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `\`${k}\``).join(', ')}; expected ${EXTERNAL_ISSUER_OPTIONS.join(', ')}`);
  }
  const { issuer, audience, jwks, algorithms, rolesClaim, scope, task } = options ?? {};
  return { issuer, audience, jwks, algorithms, roles_claim: rolesClaim, scope, task };
}
const EXTERNAL_ISSUER_OPTIONS = ['issuer', 'audience', 'jwks', 'algorithms', 'rolesClaim', 'scope', 'task'];

/** What `Engine.attach` passes its constructor: the handle of an engine shared by another thread. */
const SHARED = Symbol('aegis.sharedEngine');

/** Decides, before each tool call runs, whether it may. */
class Engine {
  #native;
  /** The native engine as `authorize` takes it, a number (see `callNative`). */
  #decider;
  /** What the native object has told this one: reason lists by id, the last policy version. */
  #told = { reasons: [], policyVersion: null };
  /**
   * The engine another thread shared with `engine.shareHandle()`: the same engine (stores,
   * caches, ledgers), used from this worker thread. The handle is valid while the engine that
   * made it lives.
   */
  static attach(handle) {
    if (typeof handle !== 'string') throw new TypeError('an engine handle is the string `shareHandle()` returned');
    return new Engine({ [SHARED]: handle });
  }
  /** A handle for `Engine.attach` in a worker thread (post it to the worker). */
  shareHandle() {
    return mapped(() => this.#native.shareHandle());
  }
  constructor(options) {
    if (options?.[SHARED] !== undefined) {
      this.#native = mapped(() => native.Engine.attach(options[SHARED]));
      this.#decider = this.#heldDecider();
      return;
    }
    this.#configure(options);
  }
  #configure({ bundleDir, trustedIssuers, externalIssuers, store, redisPrefix, approvalKey, audience, leewaySecs,
    maxDelegationDepth, maxCredentialLifetimeSecs, overrideTtlSecs, maxBreakGlassSecs, fixedTime, notifier, audit, telemetry,
    bundleKeys, requireTwoAdmins, receipts }) {
    const config = {
      bundle_dir: bundleDir,
      // Both kinds are optional here; the core refuses an engine with no issuer at all.
      trusted_issuers: Object.entries(trustedIssuers ?? {}).map(([issuer, key]) => ({ issuer, jwk: jwkOf(key) })),
      external_issuers: (externalIssuers ?? []).map(externalIssuerJson),
      // The core parses store URLs; a Redis prefix needs the object form.
      store: redisPrefix == null ? store : { redis: { url: store, prefix: redisPrefix } },
      approval_key: approvalKey ? approvalKey.privateJwk : undefined,
      audience, leeway_secs: leewaySecs, max_delegation_depth: maxDelegationDepth,
      max_credential_lifetime_secs: maxCredentialLifetimeSecs, override_ttl_secs: overrideTtlSecs,
      max_break_glass_secs: maxBreakGlassSecs, fixed_time: fixedTime, audit: auditJson(audit),
      bundle_keys: bundleKeys == null ? undefined : bundleKeys.map((k) => k.publicJwk),
      require_two_admins: requireTwoAdmins === true,
      receipts: receipts == null ? undefined
        : { key: receipts.key.privateJwk, issuer: receipts.issuer, audience: receipts.audience, ttl_secs: receipts.ttlSecs },
      telemetry: telemetry == null ? undefined
        : { otlp_endpoint: telemetry.otlpEndpoint, service_name: telemetry.serviceName, export_interval_ms: telemetry.exportIntervalMs },
    };
    const notify = notifier ? nativeNotifier(notifier) : undefined;
    this.#native = mapped(() => new native.Engine(JSON.stringify(config), notify));
    this.#decider = this.#heldDecider();
  }
  /** The number the native side holds this object's decider under, released with this object. */
  #heldDecider() {
    const decider = mapped(() => this.#native.decider());
    releasedDeciders.register(this, decider);
    return decider;
  }

  /** Runs engine operation `op` on `input`; returns the parsed result. */
  #call(op, input) {
    return JSON.parse(mapped(() => this.#native.call(op, JSON.stringify(input ?? {}))));
  }
  /** `#call` on the libuv pool. */
  async #callAsync(op, input) {
    try {
      return JSON.parse(await this.#native.callAsync(op, JSON.stringify(input ?? {})));
    } catch (e) {
      throw mapError(e);
    }
  }

  get policyVersion() {
    return this.#call('policy_version').policy_version;
  }
  /** Signs a checkpoint of the audit log now (exported when configured); no log: `audit_unavailable`. */
  auditCheckpoint() {
    return checkpointFrom(this.#call('audit_checkpoint'));
  }
  /** A change to what is enforced, signed by two distinct administrators (see `adminProof`). */
  admin(request) {
    return deepFreeze(this.#call('admin', request));
  }
  /** `{ policy_version, mode, candidate_version, history }`. */
  controlStatus() {
    return deepFreeze(this.#call('control_status'));
  }
  /** Exports the spans and metrics recorded so far now (an engine built with `telemetry`). */
  receiptJwks() {
    return this.#call('receipt_jwks');
  }
  flushTelemetry() {
    this.#call('flush_telemetry');
  }
  authorize(request) {
    // Plain values go to the core without JSON text; anything else as text, read as ever.
    const decided = callNative(request, this.#decider, false);
    if (decided === undefined) return decisionFrom(this.#call('authorize', requestBody(request)));
    return decisionFromNative(decided, this.#told);
  }
  async authorizeAsync(request) {
    return decisionFrom(await this.#callAsync('authorize', requestBody(request)));
  }
  /** The decision and the core's enforcement of it: what guards act on. */
  authorizeEnforced(request) {
    const parts = callNative(request, this.#decider, true);
    if (parts === undefined) return enforcedFrom(this.#call('authorize_enforced', requestBody(request)));
    return Object.freeze({ decision: decisionFromParts(parts, this.#told),
      enforcement: enforcementFrom(JSON.parse(parts.enforcement)) });
  }
  async authorizeEnforcedAsync(request) {
    return enforcedFrom(await this.#callAsync('authorize_enforced', requestBody(request)));
  }
  approve(approvalId, approverChain, note) {
    return resolutionFrom(this.#call('approve', resolveBody(approvalId, approverChain, note)));
  }
  async approveAsync(approvalId, approverChain, note) {
    return resolutionFrom(await this.#callAsync('approve', resolveBody(approvalId, approverChain, note)));
  }
  reject(approvalId, approverChain, note) {
    return resolutionFrom(this.#call('reject', resolveBody(approvalId, approverChain, note)));
  }
  async rejectAsync(approvalId, approverChain, note) {
    return resolutionFrom(await this.#callAsync('reject', resolveBody(approvalId, approverChain, note)));
  }
  requestBatch(chain, envelope, options = {}) {
    return pendingFrom(this.#call('request_batch', batchBody(chain, envelope, options)));
  }
  async requestBatchAsync(chain, envelope, options = {}) {
    return pendingFrom(await this.#callAsync('request_batch', batchBody(chain, envelope, options)));
  }
  pendingApprovals() {
    return this.#call('pending_approvals').map(pendingFrom);
  }
  async pendingApprovalsAsync() {
    return (await this.#callAsync('pending_approvals')).map(pendingFrom);
  }
  approval(approvalId) {
    const p = this.#call('approval', { approval_id: approvalId });
    return p == null ? null : pendingFrom(p);
  }
  ledger(taskId) {
    return this.#call('ledger', { task_id: taskId }).map((e) => deepFreeze({
      tool: e.tool, agentId: e.agent_id, lineage: e.lineage, decisionId: e.decision_id, at: e.at,
    }));
  }
  endTask(taskId) {
    this.#call('end_task', { task_id: taskId });
  }
  /** Opens a break-glass grant for the attested `agents` (`planner/finance-agent`) in `tasks`. */
  breakGlass({ agents, tools, tasks, reason, approvers, durationSecs }) {
    return grantFrom(this.#call('break_glass', { agents, tools, tasks, reason, approvers, duration_secs: durationSecs }));
  }
  openBreakGlass() {
    return this.#call('open_break_glass').map(grantFrom);
  }
  closeBreakGlass(grantId, reviewRef) {
    this.#call('close_break_glass', { grant_id: grantId, review_ref: reviewRef });
  }
  reloadBundle(bundleDir) {
    return this.#call('reload_bundle', { bundle_dir: bundleDir }).policy_version;
  }
  async reloadBundleAsync(bundleDir) {
    return (await this.#callAsync('reload_bundle', { bundle_dir: bundleDir })).policy_version;
  }
  /**
   * Replaces the key set of external issuer `issuer` (the refresh hook for hosts that fetch
   * its JWKS): tokens are checked against `jwks` from the next call on.
   */
  updateJwks(issuer, jwks) {
    this.#call('update_jwks', { issuer, jwks });
  }
  async updateJwksAsync(issuer, jwks) {
    await this.#callAsync('update_jwks', { issuer, jwks });
  }
  /** Mean seconds per decision of `request`, measured inside Rust (for benchmarks). */
  timeAuthorize(request, iterations) {
    return this.#call('time_authorize', { request: requestBody(request), iterations });
  }

  /**
   * Wraps `fn(args)` so every call is authorized first; the core's enforcement decides: `fn`
   * receives a frozen copy of exactly the arguments it says to run with (the sanitized ones for
   * a sanitize); approval needed throws AegisApprovalRequired; anything else throws AegisDenied.
   * Pass `{ approvalToken }` to redeem an approval.
   */
  guard({ tool, chain }, fn) {
    return async (args, options = {}) => {
      const authorized = snapshot(args); // before any await: later changes by the caller do not count
      const current = typeof chain === 'function' ? await chain() : chain;
      const guarded = await this.authorizeEnforcedAsync({ chain: current, tool, args: authorized, approvalToken: options.approvalToken });
      return fn(argsToRun(guarded));
    };
  }
}

// One assignment per name, so that ES modules can import them by name.
exports.AegisApprovalRequired = AegisApprovalRequired;
exports.AegisDenied = AegisDenied;
exports.AegisError = AegisError;
exports.ERROR_CODES = ERROR_CODES;
exports.Engine = Engine;
exports.KeyPair = KeyPair;
exports.VERDICT_CODES = VERDICT_CODES;
exports.adminProof = adminProof;
exports.argsToRun = argsToRun;
exports.auditKeygen = auditKeygen;
exports.auditVerify = auditVerify;
exports.bundleSign = bundleSign;
exports.bundleVerify = bundleVerify;
exports.callDigest = callDigest;
exports.verifyReceipt = verifyReceipt;
exports.createProof = createProof;
exports.deepFreeze = deepFreeze;
exports.delegate = delegate;
exports.enforce = enforce;
exports.errorCodes = errorCodes;
exports.inspect = inspect;
exports.inspectChain = inspectChain;
exports.issueRoot = issueRoot;
exports.jsonPointer = jsonPointer;
exports.operations = operations;
exports.policyDryRun = policyDryRun;
exports.policyLint = policyLint;
exports.policyTest = policyTest;
exports.reasonCodes = reasonCodes;
exports.slackMessage = slackMessage;
exports.snapshot = snapshot;
exports.verifySignature = verifySignature;
