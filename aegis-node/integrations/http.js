'use strict';
// HTTP tools that check for themselves: a connect/express-style `(req, res, next)` middleware
// (plain `node:http` too) for a tool served over HTTP behind Aegis. `aegis serve`'s gate
// forwards each allowed call's decision receipt as `Aegis-Receipt`; the middleware verifies it
// offline against the engine's JWK Set (`/.well-known/jwks.json`, `engine.receiptJwks()`), for
// exactly this tool and the body's arguments, and uses it up (single use in this process), so a
// call made around the proxy, a body changed behind it, or a receipt presented twice is refused
// before the tool runs: 403 with `{ code, message }` (the core's stable codes: `receipt_invalid`
// for a receipt absent, malformed, badly signed, from another issuer, for another audience,
// expired or already used; `receipt_mismatch` for another tool or other arguments). Otherwise
// the parsed body is passed on, frozen, with `req.aegis` saying what was verified.
//
// The tool is named as the gate names it: by the `tool` option, else the route (`req.params.tool`
// or the path after `/tools/`); `Mcp-Name`, `Aegis-Tool` and an MCP `tools/call` body's
// `params.name` must name the same one. The arguments are the JSON body (or an MCP `tools/call`
// request's `params.arguments`); an empty body is `{}`.

const { AegisError, deepFreeze, verifyReceipt } = require('../aegis.js');

/** The header `aegis serve` forwards the decision receipt in (lowercase, as node:http has it). */
const RECEIPT_HEADER = 'aegis-receipt';

/** A refusal with its HTTP status. */
class Refusal extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A request header's single value; a header sent twice is refused rather than one of them picked. */
function headerOf(req, name) {
  const value = req.headers?.[name];
  if (Array.isArray(value)) throw new Refusal(403, 'malformed_request', `the \`${name}\` header is sent more than once`);
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

function parseJson(text) {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Refusal(400, 'malformed_request', `the body is not JSON: ${e.message}`);
  }
}

/** The request's body: what a body parser left in `req.body`, else read from the stream (at most `limit` bytes). */
async function bodyOf(req, limit) {
  if (req.body !== undefined) {
    if (Buffer.isBuffer(req.body) || typeof req.body === 'string') return parseJson(String(req.body));
    return req.body;
  }
  const text = await new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      if (size > limit) return; // refused already: the rest is read and dropped
      size += chunk.length;
      if (size > limit) reject(new Refusal(413, 'malformed_request', `the body is larger than ${limit} bytes`));
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
  return parseJson(text);
}

/** The tool named by the route (`req.params.tool`, else the path after `/tools/`). */
function routeTool(req) {
  if (typeof req.params?.tool === 'string' && req.params.tool !== '') return req.params.tool;
  const path = String(req.originalUrl ?? req.url ?? '').split(/[?#]/)[0];
  const at = path.indexOf('/tools/');
  if (at < 0) return undefined;
  let rest;
  try {
    rest = decodeURIComponent(path.slice(at + '/tools/'.length)).replace(/^\/+|\/+$/g, '');
  } catch {
    throw new Refusal(403, 'malformed_request', 'the path is not valid percent-encoding');
  }
  if (rest.includes('/')) throw new Refusal(403, 'malformed_request', 'the path names no single tool under `/tools/`');
  return rest === '' ? undefined : rest;
}

/** The tool and arguments of a call, every place naming the tool agreeing (as the gate requires). */
function callOf(req, body, option) {
  const fixed = typeof option === 'function' ? option(req) : option;
  const names = [fixed ?? routeTool(req), headerOf(req, 'mcp-name'), headerOf(req, 'aegis-tool')];
  let args = body === undefined ? {} : body;
  const isRpc = body !== null && typeof body === 'object' && !Array.isArray(body) && 'jsonrpc' in body && 'method' in body;
  if (isRpc) {
    if (body.method !== 'tools/call') throw new Refusal(403, 'malformed_request', 'only MCP `tools/call` requests are calls of a tool');
    if (typeof body.params?.name !== 'string') throw new Refusal(403, 'malformed_request', '`tools/call` without `params.name`');
    names.push(body.params.name);
    args = body.params.arguments ?? {};
  }
  const named = names.filter((n) => typeof n === 'string' && n !== '');
  if (named.length === 0) throw new Refusal(403, 'malformed_request', 'no tool: configure `tool`, or route `/tools/<tool>`');
  const other = named.find((n) => n !== named[0]);
  if (other !== undefined) throw new Refusal(403, 'args_invalid', `the call names two tools, \`${named[0]}\` and \`${other}\``);
  return { tool: named[0], args };
}

/** Answers `status` with `{ code, message }`; the tool is not reached. */
function refuse(res, status, code, message) {
  if (res.headersSent) {
    res.destroy?.();
    return;
  }
  const body = JSON.stringify({ code, message });
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('aegis-reason', code);
  // The rest of a refused body is not read: the connection is not reused.
  if (status === 413) res.setHeader('connection', 'close');
  res.end(body);
}

/**
 * A `(req, res, next)` middleware that lets a call through to the tool only with a valid,
 * unused decision receipt for exactly this tool and the body's arguments.
 *
 * @param {{ jwks: unknown | (() => unknown | Promise<unknown>), issuer: string, audience: string,
 *   tool?: string | ((req: unknown) => string | undefined), limit?: number, clock?: () => number }} options
 *   `jwks`: the engine's receipt key set (or a function returning it, for rotation); `issuer`,
 *   `audience`: what the engine's receipts carry; `tool`: the tool's Aegis name (default: the
 *   route); `limit`: the largest body read, in bytes (default 1 MiB); `clock`: seconds since the
 *   epoch (default the system clock).
 */
function receiptMiddleware({ jwks, issuer, audience, tool, limit = 1024 * 1024, clock } = {}) {
  if (jwks == null) throw new AegisError('malformed_request', 'the middleware needs the engine\'s receipt key set (`jwks`)');
  if (typeof issuer !== 'string' || typeof audience !== 'string' || issuer === '' || audience === '') {
    throw new AegisError('malformed_request', 'the middleware needs the receipts\' `issuer` and `audience`');
  }
  return async function aegisReceipt(req, res, next) {
    try {
      const body = await bodyOf(req, limit);
      const call = callOf(req, body, tool);
      const keys = typeof jwks === 'function' ? await jwks() : jwks;
      // A copy, so that what is checked cannot change under the check (`null` stays `null`).
      const args = deepFreeze(JSON.parse(JSON.stringify(call.args)));
      const receipt = verifyReceipt(headerOf(req, RECEIPT_HEADER) ?? '', keys, {
        issuer, audience, tool: call.tool, args, consume: true, now: clock?.(),
      });
      // What the tool runs is what was checked: later middleware cannot change it.
      req.body = body === undefined ? body : deepFreeze(body);
      req.aegis = Object.freeze({ tool: call.tool, args, receipt: Object.freeze(receipt) });
    } catch (e) {
      if (e instanceof Refusal) refuse(res, e.status, e.code, e.message);
      else if (e instanceof AegisError) refuse(res, e.code === 'internal' ? 500 : 403, e.code, e.message);
      // Fail closed, and say nothing of the failure to the caller.
      else refuse(res, 500, 'internal', 'the receipt could not be checked');
      return;
    }
    // Outside the try: what the tool does is not this middleware's to answer for.
    next();
  };
}

exports.RECEIPT_HEADER = RECEIPT_HEADER;
exports.receiptMiddleware = receiptMiddleware;
