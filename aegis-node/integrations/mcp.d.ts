import type { Chain, Engine } from '../aegis';
/** An MCP client whose `callTool` is authorized first; `options.approvalToken` redeems an approval. */
export type GuardedClient<C> = Omit<C, 'callTool'> & {
  callTool(
    params: { name: string; arguments?: Record<string, unknown> },
    resultSchema?: unknown,
    options?: Record<string, unknown> & { approvalToken?: string },
  ): Promise<any>;
};
/** Wraps an MCP `Client`: `callTool` is authorized by Aegis before the server sees it. */
export function guardClient<C extends { callTool: (...args: any[]) => Promise<any> }>(
  client: C, engine: Engine, chain: Chain | (() => Chain | Promise<Chain>)): GuardedClient<C>;
