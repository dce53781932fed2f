import type { Args, Chain, Engine } from '../aegis';
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
/** The `_meta` key a guarded call carries its decision receipt under. */
export const RECEIPT_META_KEY: 'dev.aegis/receipt';
/** For a server tool: verifies the request's decision receipt for exactly `tool` and `args`; throws `receipt_invalid` / `receipt_mismatch`. */
export function requireReceipt(
  tool: string, args: Args, extra: { _meta?: Record<string, unknown> } | undefined,
  keys: { jwks: unknown; issuer: string; audience: string },
): { readonly jti: string; readonly sub: string; readonly tool: string; readonly call: string };
