'use strict';
// Delegation for multi-agent frameworks, framework-neutral: an agent that holds a credential
// chain and its private key hands work to a sub-agent by minting it a delegation of its own
// (`<parent id>/<sub-agent>`), narrowed to what the sub-agent does. The sub-agent's calls are
// then decided on the longer chain: it acts under its own attested identity, so segregation of
// duties between the parent and the sub-agent holds without the application naming anyone.
//
// The core decides what a delegation may be: minted with `narrow`, it keeps the tools of the
// asked scope that the parent holds and ends no later than the parent (a tool left out is then
// denied on use, `tool_not_in_scope`); it refuses the parent's own key (`delegation_cycle`) and a
// parent with no life left (`credential_expired`); and the engine checks every link again at
// each decision. This file mints with a fresh key per sub-agent and caches the result, so that
// one sub-agent is one identity for as long as its delegation lasts.

const { AegisError, KeyPair, delegate, inspect, inspectChain } = require('../aegis.js');

const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * Mints and caches delegations for the sub-agents of one agent: the holder of `chain` (root
 * first) and of `key`, the private key its leaf credential binds.
 */
class Delegator {
  #chain;
  #key;
  #claims;
  #agentId;
  #ttlSecs;
  #renewWithinSecs;
  #clock;
  #children = new Map();

  /**
   * @param {{ chain: readonly string[], key: KeyPair, ttlSecs?: number, renewWithinSecs?: number, clock?: () => number }} options
   *   `ttlSecs`: the longest life of a delegation (default 600; never past the parent's);
   *   `renewWithinSecs`: a cached delegation this close to expiry is minted anew (default 30);
   *   `clock`: seconds since the epoch (default the system clock), for hosts with a fixed clock.
   */
  constructor({ chain, key, ttlSecs = 600, renewWithinSecs = 30, clock = nowSecs }) {
    if (!Array.isArray(chain) || chain.length === 0 || !chain.every((t) => typeof t === 'string')) {
      throw new AegisError('missing_credential', 'a delegator needs the parent credential chain, root first');
    }
    if (!(key instanceof KeyPair)) throw new AegisError('invalid_key', 'a delegator needs the parent\'s private key (a KeyPair)');
    const claims = chain.map((token) => inspect(token).claims);
    const leaf = claims[claims.length - 1];
    // Checked here so the mistake shows where it is made; the core refuses it too (`invalid_key`).
    if (leaf.cnf?.jwk?.x !== key.publicJwk.x) {
      throw new AegisError('invalid_key', 'the key is not the one the parent credential binds', { link: chain.length - 1 });
    }
    this.#chain = Object.freeze([...chain]);
    this.#key = key;
    this.#claims = Object.freeze({ scope: Object.freeze([...(leaf.scope ?? [])]), task: leaf.task });
    // The id the engine attests, as the core names it: each delegate under its delegator.
    this.#agentId = inspectChain(chain).agentId;
    this.#ttlSecs = ttlSecs;
    this.#renewWithinSecs = renewWithinSecs;
    this.#clock = clock;
  }

  /** The parent's chain, root first. */
  get chain() {
    return this.#chain;
  }
  /** The parent's attested id (`planner`, `planner/finance-agent`, ...). */
  get agentId() {
    return this.#agentId;
  }
  /** The parent's scope: no delegation it mints holds more. */
  get scope() {
    return this.#claims.scope;
  }
  /** The task the parent's chain belongs to (its delegations belong to it too). */
  get taskId() {
    return this.#claims.task;
  }

  /**
   * The delegation of sub-agent `name` for the tools `scope`: minted with a fresh key on first
   * use, then the same one until it is within `renewWithinSecs` of expiry. The core narrows it
   * to the tools the parent holds (the delegation's `scope` says which were kept) and to the
   * parent's remaining life. Throws `malformed_request` for a name the core cannot attest,
   * `credential_expired` when the parent has no life left to give.
   */
  childFor(name, { scope, ttlSecs } = {}) {
    if (typeof name !== 'string' || name === '' || name.includes('/')) {
      throw new AegisError('malformed_request', `a sub-agent's name must be non-empty, without \`/\` (got ${JSON.stringify(name)})`);
    }
    if (!Array.isArray(scope)) throw new AegisError('malformed_request', 'a delegation needs a scope: the tools the sub-agent may call');
    const wanted = [...new Set(scope)].sort();
    const cacheKey = JSON.stringify([name, wanted, ttlSecs ?? null]);
    const now = this.#clock();
    const cached = this.#children.get(cacheKey);
    if (cached && cached.expiresAt - now > this.#renewWithinSecs) return cached;

    const subKey = KeyPair.generate();
    const token = delegate({ parent: this.#chain[this.#chain.length - 1], parentKey: this.#key, agentId: name, agentKey: subKey,
      scope: wanted, ttlSecs: ttlSecs ?? this.#ttlSecs, issuedAt: now, narrow: true });
    const { scope: kept, exp } = inspect(token).claims;
    const delegation = new Delegation({ name, agentId: `${this.#agentId}/${name}`, chain: [...this.#chain, token], key: subKey,
      scope: kept, expiresAt: exp, options: { ttlSecs: this.#ttlSecs, renewWithinSecs: this.#renewWithinSecs, clock: this.#clock } });
    this.#children.set(cacheKey, delegation);
    return delegation;
  }
}

/** A minted delegation: the sub-agent's chain (the parent's plus one link) and its private key. */
class Delegation {
  #delegator;
  #options;
  constructor({ name, agentId, chain, key, scope, expiresAt, options }) {
    /** The name the parent gave (the last segment of `agentId`). */
    this.name = name;
    /** The id the engine attests for the sub-agent: `<parent id>/<name>`. */
    this.agentId = agentId;
    /** The sub-agent's chain, root first. */
    this.chain = Object.freeze([...chain]);
    /** The sub-agent's own key (fresh; the parent's key is never shared). */
    this.key = key;
    this.scope = Object.freeze([...scope]);
    /** Seconds since the epoch. */
    this.expiresAt = expiresAt;
    this.#options = options;
    Object.freeze(this);
  }

  /** A Delegator for the sub-agent's own sub-agents (one per delegation). */
  delegator() {
    if (!this.#delegator) this.#delegator = new Delegator({ chain: this.chain, key: this.key, ...this.#options });
    return this.#delegator;
  }
}

exports.Delegator = Delegator;
exports.Delegation = Delegation;
