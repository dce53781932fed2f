import type { Chain, KeyPair } from '../aegis';

/** Options of a Delegator: the parent's chain (root first) and the private key its leaf binds. */
export interface DelegatorOptions {
  chain: Chain;
  key: KeyPair;
  /** The longest life of a delegation, in seconds (default 600); never past the parent's. */
  ttlSecs?: number;
  /** A cached delegation this close to expiry (seconds) is minted anew (default 30). */
  renewWithinSecs?: number;
  /** Seconds since the epoch (default the system clock). */
  clock?: () => number;
}

/** A minted delegation: the sub-agent's chain and its own, fresh key. */
export class Delegation {
  private constructor();
  /** The name the parent gave. */
  readonly name: string;
  /** The id the engine attests: `<parent id>/<name>`. */
  readonly agentId: string;
  readonly chain: readonly string[];
  readonly key: KeyPair;
  readonly scope: readonly string[];
  /** Seconds since the epoch. */
  readonly expiresAt: number;
  /** A Delegator for the sub-agent's own sub-agents (one per delegation). */
  delegator(): Delegator;
}

/**
 * Mints and caches the delegations an agent gives its sub-agents: one per sub-agent name and
 * scope, with a fresh key, never wider in scope or longer in life than the parent's.
 */
export class Delegator {
  constructor(options: DelegatorOptions);
  readonly chain: Chain;
  /** The parent's attested id (`planner`, `planner/finance-agent`, ...). */
  readonly agentId: string;
  readonly scope: readonly string[];
  readonly taskId: string;
  /**
   * The delegation of sub-agent `name` for the tools `scope` (cached until close to expiry),
   * narrowed by the core to the tools the parent holds (see the delegation's `scope`) and to the
   * parent's remaining life. Throws `malformed_request` for a name with `/`, `credential_expired`
   * when the parent has no lifetime left.
   */
  childFor(name: string, options: { scope: readonly string[]; ttlSecs?: number }): Delegation;
}

