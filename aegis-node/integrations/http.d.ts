import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Args } from '../aegis';

/** The header `aegis serve` forwards the decision receipt in. */
export const RECEIPT_HEADER: 'aegis-receipt';

/** The claims of a verified decision receipt. */
export interface ReceiptClaims {
  readonly iss: string; readonly aud: string; readonly sub: string; readonly task: string; readonly tool: string;
  readonly call: string; readonly jti: string; readonly pv: string; readonly iat: number; readonly exp: number;
}

/** What the middleware verified, at `req.aegis` for the handlers after it. */
export interface VerifiedCall {
  /** The Aegis tool name. */
  readonly tool: string;
  /** Exactly the arguments the receipt authorized (frozen). */
  readonly args: Args;
  readonly receipt: ReceiptClaims;
}

/** The codes of a refusal's `{ code, message }` body (the core's stable codes). */
export type ReceiptRefusalCode = 'receipt_invalid' | 'receipt_mismatch' | 'malformed_request' | 'args_invalid' | 'internal';

/** A request as the middleware reads it: node:http's, with what express or a body parser may add. */
export type ReceiptRequest = IncomingMessage & {
  /**
   * Before the middleware: what a body parser left (else the stream is read). After it: exactly
   * the verified arguments (frozen), or with `mcp: true` the request rebuilt around them.
   */
  body?: unknown;
  params?: Record<string, string | undefined>;
  originalUrl?: string;
  aegis?: VerifiedCall;
};

/**
 * The tool a request calls, as the server names it: one Aegis tool name for every route; a map
 * of exact route path (`originalUrl` under express, else `url`; no query) to Aegis tool name,
 * where a path not listed names no tool (403); or a function of the path (and the request).
 * Never the caller's word: `Mcp-Name`, `Aegis-Tool` and an MCP `params.name` may only agree.
 */
export type ToolOfRoute =
  | string
  | Readonly<Record<string, string>>
  | ReadonlyMap<string, string>
  | ((path: string, req: ReceiptRequest) => string | undefined);

/** An MCP `tools/call` request as passed on with `mcp: true`: rebuilt around the verified arguments. */
export interface VerifiedToolsCall {
  readonly jsonrpc: '2.0';
  readonly id: string | number;
  readonly method: 'tools/call';
  readonly params: { readonly name: string; readonly arguments: Args; readonly _meta?: Readonly<Record<string, unknown>> };
}

export interface ReceiptMiddlewareOptions {
  /** The engine's receipt key set (`engine.receiptJwks()`, `/.well-known/jwks.json`), or a function returning it. */
  jwks: unknown | (() => unknown | Promise<unknown>);
  /** The issuer and audience the engine's receipts carry. */
  issuer: string;
  audience: string;
  /** The tool the route serves (required: the middleware refuses to be built without it). */
  tool: ToolOfRoute;
  /**
   * The body is an MCP `tools/call` request, whose `params.arguments` are the arguments; it may
   * hold only `jsonrpc`, `id`, `method`, `params` (and `params` only `name`, `arguments`,
   * `_meta`). Default false: the body is the arguments.
   */
  mcp?: boolean;
  /** The largest body read, in bytes (default 1 MiB); larger: 413. */
  limit?: number;
  /** Seconds since the epoch (default the system clock). */
  clock?: () => number;
}

/**
 * A connect/express-style middleware (plain node:http too): the call reaches `next` only with a
 * valid, unused `Aegis-Receipt` for exactly this tool and the body's arguments, with `req.body`
 * set to exactly those arguments; otherwise 403 (400/413 for a body that is not JSON or too
 * large, 500 `internal`) with `{ code, message }`. Throws when `tool` is missing.
 */
export function receiptMiddleware(options: ReceiptMiddlewareOptions): (
  req: ReceiptRequest,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => Promise<void>;
