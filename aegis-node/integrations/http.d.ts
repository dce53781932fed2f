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
  body?: unknown;
  params?: Record<string, string | undefined>;
  originalUrl?: string;
  aegis?: VerifiedCall;
};

export interface ReceiptMiddlewareOptions {
  /** The engine's receipt key set (`engine.receiptJwks()`, `/.well-known/jwks.json`), or a function returning it. */
  jwks: unknown | (() => unknown | Promise<unknown>);
  /** The issuer and audience the engine's receipts carry. */
  issuer: string;
  audience: string;
  /** The tool's Aegis name (default: `req.params.tool`, else the path after `/tools/`). */
  tool?: string | ((req: ReceiptRequest) => string | undefined);
  /** The largest body read, in bytes (default 1 MiB); larger: 413. */
  limit?: number;
  /** Seconds since the epoch (default the system clock). */
  clock?: () => number;
}

/**
 * A connect/express-style middleware (plain node:http too): the call reaches `next` only with a
 * valid, unused `Aegis-Receipt` for exactly this tool and the body's arguments; otherwise 403
 * (400/413 for a body that is not JSON or too large, 500 `internal`) with `{ code, message }`.
 */
export function receiptMiddleware(options: ReceiptMiddlewareOptions): (
  req: ReceiptRequest,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => Promise<void>;
