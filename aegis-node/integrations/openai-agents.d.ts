import type { Agent, AgentOutputType, FunctionTool, RunContext, RunState, RunToolApprovalItem } from '@openai/agents';
import type { ApprovalNeededDecision, Args, Chain, Engine, KeyPair } from '../aegis';
import type { DelegatorOptions } from './delegation';

/** A credential chain, or a function handing out the one in force. */
export type ChainSource = Chain | (() => Chain | Promise<Chain>);

export interface AegisAgentsGuardOptions {
  /**
   * The Aegis tool name of an SDK tool name (the SDK turns `stripe.create_payment` into
   * `stripe_create_payment`); default: the same name.
   */
  toolNames?: Readonly<Record<string, string>> | ((sdkToolName: string) => string);
  /** How the delegations minted for sub-agents are made (lifetime, renewal, clock). */
  delegation?: Omit<DelegatorOptions, 'chain' | 'key'>;
}

/**
 * The run a paused call belongs to: its RunState (`result.state`, or one restored from storage),
 * its result (`{ state }`), or its RunContext. Decisions and tokens are kept per run.
 */
export type PausedRun = RunState<any, any> | { readonly state: RunState<any, any> } | RunContext<any>;

/** The Aegis approval a paused call waits for. */
export interface AwaitedApproval {
  readonly approvalId: string;
  /** The Aegis tool name. */
  readonly tool: string;
  /** The arguments the approval is bound to (the model's). */
  readonly args: Args;
  readonly callId: string;
  readonly decision: ApprovalNeededDecision;
}

/** The decision a guarded tool runs under (`decisionOf(details)` in its execute). */
export interface GuardedRun {
  readonly decisionId: string;
  readonly outcome: 'allow' | 'sanitize';
  /** The decision receipt, for an engine that issues them (forward it as `Aegis-Receipt`). */
  readonly receipt: string | null;
  /** Exactly the arguments the tool runs with (the redacted ones for a sanitize). */
  readonly args: Args;
}

/**
 * Aegis for the OpenAI Agents SDK: every function tool call of a guarded agent is decided
 * (needsApproval + a tool input guardrail + the tool's invoke), and each sub-agent a guarded
 * agent hands off to acts on a delegation minted for it. Safe to share between concurrent runs:
 * a decision is kept per run and call, and used only for the chain and arguments it was made on.
 */
export class AegisAgentsGuard {
  constructor(engine: Engine, options?: AegisAgentsGuardOptions);
  /**
   * A copy of `agent` whose function tools are decided on `chain` and whose handoff targets act
   * on delegations minted with `key` (the private key of the chain's leaf; needed only when a
   * sub-agent calls tools). Throws for tools Aegis cannot decide (hosted, computer, shell,
   * apply-patch), for MCP servers, and for agents used as tools unless made by `asTool` of an
   * agent this guard guarded (`guard.agent(sub, { chain }).asTool(...)`).
   */
  agent<TContext, TOutput extends AgentOutputType>(
    agent: Agent<TContext, TOutput>,
    identity: { chain: ChainSource; key?: KeyPair },
  ): Agent<TContext, TOutput>;
  /** A copy of function tool `tool` whose calls are decided on `chain` (an unguarded agent tool is refused). */
  tool<T extends FunctionTool<any, any, any>>(tool: T, chain: ChainSource): T;
  /** The Aegis approval the paused call `item` of `run` waits for, or null (see the README). */
  approvalFor(item: RunToolApprovalItem, run: PausedRun): AwaitedApproval | null;
  /**
   * Presents an override token (`engine.approve(...).overrideToken`) for the paused call `item`
   * of `run` (the run that resumes it); approve it in the run too (`result.state.approve(item)`)
   * and resume.
   */
  presentToken(item: RunToolApprovalItem, token: string, run: PausedRun): void;
}

/** The name of the tool input guardrail the guard adds (in `result.toolInputGuardrailResults`). */
export const GUARDRAIL_NAME: 'aegis';

/** The decision a guarded tool runs under, from the `details` its execute receives; null outside one. */
export function decisionOf(details: unknown): GuardedRun | null;
