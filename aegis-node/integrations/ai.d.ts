import type { ApprovalNeededDecision, Chain, Engine } from '../aegis';
/**
 * Wraps an AI SDK tool: `needsApproval` asks Aegis (the SDK's approval flow handles the core's
 * `await_approval` enforcement), `execute` redeems the override token from `options.approve` and
 * runs the tool with exactly the arguments the core's enforcement says.
 */
export function aegisTool<T extends { execute?: (input: any, options: any) => any }>(
  engine: Engine,
  chain: Chain | (() => Chain | Promise<Chain>),
  name: string,
  tool: T,
  options?: { approve?: (approvalId: string, decision: ApprovalNeededDecision) => string | undefined | Promise<string | undefined> },
): T & { needsApproval: (input: any, options: any) => Promise<boolean> };
