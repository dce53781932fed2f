'use strict';
// Aegis for Node: the engine from the Rust core, as typed values and errors with stable codes.
// Everything is decided by the core (through `index.js`, the napi module); this file converts
// values and maps errors.

const native = require('./index.js');

const CODES = new Set(JSON.parse(native.errorCodes()));

/** An error from Aegis; `code` is the core's stable ErrorCode. */
class AegisError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'AegisError';
    this.code = code;
  }
}

/** A guarded call was denied; `decision` says why. */
class AegisDenied extends AegisError {
  constructor(decision) {
    const first = decision.reasons[0];
    super(first ? first.code : 'no_matching_permit', first ? first.message : 'denied');
    this.name = 'AegisDenied';
    this.decision = decision;
  }
}

/** A guarded call needs a human approval of `approvalId`; retry with the override token. */
class AegisApprovalRequired extends AegisError {
  constructor(decision) {
    super('approval_required', `approval ${decision.approvalId} is needed before this call may run`);
    this.name = 'AegisApprovalRequired';
    this.decision = decision;
    this.approvalId = decision.approvalId;
  }
}

function mapError(e) {
  if (e instanceof AegisError || !(e instanceof Error)) return e;
  if (typeof e.code === 'string' && CODES.has(e.code)) return new AegisError(e.code, e.message);
  const m = /^\[([a-z_]+)\] ([\s\S]*)$/.exec(e.message);
  return m && CODES.has(m[1]) ? new AegisError(m[1], m[2]) : e;
}

function call(fn) {
  try {
    return fn();
  } catch (e) {
    throw mapError(e);
  }
}

async function callAsync(promise) {
  try {
    return await promise;
  } catch (e) {
    throw mapError(e);
  }
}

/** A deep, frozen copy. */
function deepFreeze(value) {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const snapshot = (value) => JSON.parse(JSON.stringify(value ?? {}));

function decisionFrom(json) {
  const d = JSON.parse(json);
  return deepFreeze({
    outcome: d.outcome,
    reasons: d.reasons.map((r) => ({ code: r.code, message: r.message, policyId: r.policy_id ?? null })),
    decisionId: d.decision_id,
    policyVersion: d.policy_version,
    wouldBlock: d.would_block,
    approvalId: d.approval_id ?? null,
    sanitizedArgs: d.sanitized_args ?? null,
    breakGlassId: d.break_glass_id ?? null,
  });
}

function pendingFrom(p) {
  return deepFreeze({
    approvalId: p.approval_id, callDigest: p.call_digest, tool: p.tool, args: p.args, agentId: p.agent_id,
    lineage: p.lineage, initiator: p.initiator, taskId: p.task_id, intent: p.intent, policyIds: p.policy_ids,
    reasons: p.reasons, roles: p.roles, policyVersion: p.policy_version, createdAtMs: p.created_at_ms,
    status: p.status, resolvedBy: p.resolved_by ?? null, resolvedAtMs: p.resolved_at_ms ?? null, note: p.note ?? null,
    latencyMs: p.resolved_at_ms == null ? null : p.resolved_at_ms - p.created_at_ms,
    raw: p,
  });
}

function resolutionFrom(json) {
  const r = JSON.parse(json);
  return deepFreeze({
    accepted: r.accepted,
    reasons: r.reasons.map((x) => ({ code: x.code, message: x.message, policyId: x.policy_id ?? null })),
    overrideToken: r.override_token ?? null,
    approval: pendingFrom(r.approval),
  });
}

function grantFrom(g) {
  return deepFreeze({
    id: g.id, agents: g.agents, tools: g.tools, reason: g.reason, approvers: g.approvers, openedAt: g.opened_at,
    expiresAt: g.expires_at, closedAt: g.closed_at ?? null, reviewRef: g.review_ref ?? null,
  });
}

/** An Ed25519 key pair; the private JWK is not shown by `util.inspect` or `JSON.stringify`. */
class KeyPair {
  #jwk;
  constructor(privateJwk) {
    if (!privateJwk || !privateJwk.d) throw new AegisError('invalid_key', 'a key pair needs a private jwk (with `d`)');
    call(() => native.publicJwk(JSON.stringify(privateJwk)));
    this.#jwk = { ...privateJwk };
  }
  static generate() {
    return new KeyPair(JSON.parse(call(() => native.generateKey())));
  }
  static fromSeed(seed) {
    return new KeyPair(JSON.parse(call(() => native.generateKey(Buffer.from(seed).toString('hex')))));
  }
  get privateJwk() {
    return { ...this.#jwk };
  }
  get publicJwk() {
    return JSON.parse(call(() => native.publicJwk(JSON.stringify(this.#jwk))));
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

function issueRoot({ issuer, issuerKey, agentId, agentKey, taskId, intent, scope, ttlSecs = 900, issuedAt, jti, audience }) {
  const req = { issuer, signing_key: issuerKey.privateJwk, agent_id: agentId, agent_key: jwkOf(agentKey), task_id: taskId,
    intent, scope, ttl_secs: ttlSecs, issued_at: issuedAt, jti, audience };
  return call(() => native.issue(JSON.stringify(req)));
}

function delegate({ parent, parentKey, agentId, agentKey, scope, ttlSecs = 600, issuedAt, jti }) {
  const req = { parent, signing_key: parentKey.privateJwk, agent_id: agentId, agent_key: jwkOf(agentKey), scope,
    ttl_secs: ttlSecs, issued_at: issuedAt, jti };
  return call(() => native.issue(JSON.stringify(req)));
}

const inspect = (token) => JSON.parse(call(() => native.inspect(token)));
const callDigest = (tool, args) => call(() => native.callDigest(tool, JSON.stringify(args)));
const slackMessage = (pending) => JSON.parse(call(() => native.slackMessage(JSON.stringify(pending.raw))));

function createProof({ key, tool, args, ttlSecs = 60, jti, issuedAt }) {
  const req = { key: key.privateJwk, tool, args, ttl_secs: ttlSecs, jti, issued_at: issuedAt };
  return call(() => native.createProof(JSON.stringify(req)));
}

function storeConfig(store, redisPrefix) {
  if (store == null || store === 'memory') return undefined;
  if (store.startsWith('sqlite:')) return { sqlite: { path: store.slice('sqlite:'.length) } };
  if (/^(rediss?|unix):\/\//.test(store)) return { redis: { url: store, prefix: redisPrefix } };
  throw new AegisError('malformed_request', `store \`${store}\` is not \`memory\`, \`sqlite:<path>\` or a \`redis://\` url`);
}

function requestJson({ chain, tool, args, resource, proof, approvalToken }) {
  return JSON.stringify({
    chain, tool, args: args ?? {},
    ...(resource ? { resource: { type: resource.type, id: resource.id } } : {}),
    ...(proof ? { proof } : {}),
    ...(approvalToken ? { approval_token: approvalToken } : {}),
  });
}

/** Decides, before each tool call runs, whether it may. */
class Engine {
  #native;
  #notifier;
  constructor({ bundleDir, trustedIssuers, store, redisPrefix, approvalKey, audience, leewaySecs, maxDelegationDepth,
    overrideTtlSecs, fixedTime, notifier }) {
    const config = {
      bundle_dir: bundleDir,
      trusted_issuers: Object.entries(trustedIssuers).map(([issuer, key]) => ({ issuer, jwk: jwkOf(key) })),
      store: storeConfig(store, redisPrefix),
      approval_key: approvalKey ? approvalKey.privateJwk : undefined,
      audience, leeway_secs: leewaySecs, max_delegation_depth: maxDelegationDepth, override_ttl_secs: overrideTtlSecs,
      fixed_time: fixedTime,
    };
    this.#native = call(() => new native.Engine(JSON.stringify(config)));
    this.#notifier = notifier;
  }

  get policyVersion() {
    return this.#native.policyVersion();
  }

  #notify(decision) {
    if (this.#notifier && decision.outcome === 'approval_needed') {
      const pending = this.approval(decision.approvalId);
      if (pending) this.#notifier(pending);
    }
    return decision;
  }

  authorize(request) {
    return this.#notify(decisionFrom(call(() => this.#native.authorize(requestJson(request)))));
  }
  async authorizeAsync(request) {
    return this.#notify(decisionFrom(await callAsync(this.#native.authorizeAsync(requestJson(request)))));
  }
  approve(approvalId, approverChain, note) {
    return resolutionFrom(call(() => this.#native.approve(JSON.stringify({ approval_id: approvalId, approver_chain: approverChain, note }))));
  }
  async approveAsync(approvalId, approverChain, note) {
    return resolutionFrom(await callAsync(this.#native.approveAsync(JSON.stringify({ approval_id: approvalId, approver_chain: approverChain, note }))));
  }
  reject(approvalId, approverChain, note) {
    return resolutionFrom(call(() => this.#native.reject(JSON.stringify({ approval_id: approvalId, approver_chain: approverChain, note }))));
  }
  async rejectAsync(approvalId, approverChain, note) {
    return resolutionFrom(await callAsync(this.#native.rejectAsync(JSON.stringify({ approval_id: approvalId, approver_chain: approverChain, note }))));
  }
  pendingApprovals() {
    return JSON.parse(call(() => this.#native.pendingApprovals())).map(pendingFrom);
  }
  async pendingApprovalsAsync() {
    return JSON.parse(await callAsync(this.#native.pendingApprovalsAsync())).map(pendingFrom);
  }
  approval(approvalId) {
    const p = JSON.parse(call(() => this.#native.approval(approvalId)));
    return p == null ? null : pendingFrom(p);
  }
  ledger(taskId) {
    return JSON.parse(call(() => this.#native.ledger(taskId))).map((e) => deepFreeze({
      tool: e.tool, agentId: e.agent_id, lineage: e.lineage, decisionId: e.decision_id, at: e.at,
    }));
  }
  endTask(taskId) {
    call(() => this.#native.endTask(taskId));
  }
  breakGlass({ agents, tools, reason, approvers, durationSecs }) {
    const req = { agents, tools, reason, approvers, duration_secs: durationSecs };
    return grantFrom(JSON.parse(call(() => this.#native.breakGlass(JSON.stringify(req)))));
  }
  openBreakGlass() {
    return JSON.parse(call(() => this.#native.openBreakGlass())).map(grantFrom);
  }
  closeBreakGlass(grantId, reviewRef) {
    call(() => this.#native.closeBreakGlass(grantId, reviewRef));
  }
  reloadBundle(bundleDir) {
    return call(() => this.#native.reloadBundle(bundleDir));
  }
  reloadBundleAsync(bundleDir) {
    return callAsync(this.#native.reloadBundleAsync(bundleDir));
  }
  /** Mean seconds per decision of `request`, measured inside Rust (for benchmarks). */
  timeAuthorize(request, iterations) {
    return call(() => this.#native.timeAuthorize(requestJson(request), iterations));
  }

  /**
   * Wraps `fn(args)` so every call is authorized first. `fn` receives a frozen snapshot of
   * exactly the authorized (or sanitized) arguments. Deny throws AegisDenied; approval needed
   * throws AegisApprovalRequired; pass `{ approvalToken }` to redeem an approval.
   */
  guard({ tool, chain }, fn) {
    return async (args, options = {}) => {
      const authorized = snapshot(args);
      const current = typeof chain === 'function' ? await chain() : chain;
      const decision = await this.authorizeAsync({ chain: current, tool, args: authorized, approvalToken: options.approvalToken });
      if (decision.outcome === 'approval_needed') throw new AegisApprovalRequired(decision);
      if (decision.outcome === 'deny') throw new AegisDenied(decision);
      return fn(deepFreeze(decision.sanitizedArgs ? snapshot(decision.sanitizedArgs) : authorized));
    };
  }
}

const errorCodes = () => [...CODES];

// One assignment per name, so that ES modules can import them by name.
exports.AegisApprovalRequired = AegisApprovalRequired;
exports.AegisDenied = AegisDenied;
exports.AegisError = AegisError;
exports.Engine = Engine;
exports.KeyPair = KeyPair;
exports.callDigest = callDigest;
exports.createProof = createProof;
exports.deepFreeze = deepFreeze;
exports.delegate = delegate;
exports.errorCodes = errorCodes;
exports.inspect = inspect;
exports.issueRoot = issueRoot;
exports.slackMessage = slackMessage;
exports.snapshot = snapshot;
