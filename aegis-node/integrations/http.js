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
// the call is passed on with `req.body` rebuilt from what was verified (frozen), and `req.aegis`
// saying what was verified.
//
// The tool is the server's to name, never the caller's: the `tool` option (required) names it,
// for every route, per route, or by a function of the path. `Mcp-Name`, `Aegis-Tool` and an MCP
// `tools/call` body's `params.name` may only agree with it (else 403 `args_invalid`, as the gate
// answers): a receipt for a harmless tool, sent to the payments route with a header naming that
// tool, is refused.
//
// The arguments are the JSON body (an empty body is `{}`), and the handlers see exactly them:
// `req.body` is the verified copy, so a member the receipt does not cover cannot reach a handler
// reading `req.body`. With `mcp: true` the body is an MCP `tools/call` request instead, and
// its `params.arguments` are the arguments; the envelope may hold nothing else (only `jsonrpc`,
// `id`, `method`, `params`; `params` only `name`, `arguments`, `_meta`), and is passed on rebuilt
// around the verified arguments. Without `mcp`, a JSON-RPC body is arguments like any other.

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

/** The request's path, as the server routed it (`originalUrl` under express, else `url`), without query or fragment. */
const pathOf = (req) => String(req.originalUrl ?? req.url ?? '').split(/[?#]/)[0];

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isName = (v) => typeof v === 'string' && v !== '';

/**
 * Checks the `tool` option and returns the function naming the tool of a request: a string (one
 * tool), a map of exact path → tool (a `Map` or a plain object), or a function `(path, req)`.
 * Throws for anything else: a middleware that does not know its tool would take the caller's word.
 */
function toolOption(tool) {
  if (isName(tool)) return () => tool;
  if (typeof tool === 'function') return (req) => tool(pathOf(req), req);
  const routes = tool instanceof Map ? [...tool] : isObject(tool) ? Object.entries(tool) : null;
  if (routes !== null && routes.length > 0 && routes.every(([path, name]) => typeof path === 'string' && isName(name))) {
    const byPath = new Map(routes);
    // The exact path only: a path not listed (another spelling of one included) names no tool.
    return (req) => byPath.get(pathOf(req));
  }
  throw new AegisError('malformed_request',
    'the middleware needs the tool it guards (`tool`): its Aegis name, a map of route path to tool, or a function of the path; it never takes the caller\'s word for it');
}

/** The members an MCP `tools/call` request may hold, and those of its `params`. */
const RPC_MEMBERS = new Set(['jsonrpc', 'id', 'method', 'params']);
const PARAMS_MEMBERS = new Set(['name', 'arguments', '_meta']);

/** An MCP `tools/call` request, checked: nothing in it but the call (else refused). */
function rpcOf(body) {
  if (!isObject(body)) throw new Refusal(403, 'malformed_request', 'the body is not an MCP `tools/call` request');
  const extra = Object.keys(body).find((k) => !RPC_MEMBERS.has(k));
  if (extra !== undefined) throw new Refusal(403, 'malformed_request', `the MCP request holds \`${extra}\`, which no receipt covers`);
  if (body.jsonrpc !== '2.0') throw new Refusal(403, 'malformed_request', 'the body is not a JSON-RPC 2.0 request');
  if (body.method !== 'tools/call') throw new Refusal(403, 'malformed_request', 'only MCP `tools/call` requests are calls of a tool');
  if (!(typeof body.id === 'string' || Number.isFinite(body.id))) throw new Refusal(403, 'malformed_request', 'the MCP request has no `id` (a string or a number)');
  const { params } = body;
  if (!isObject(params)) throw new Refusal(403, 'malformed_request', '`tools/call` without `params`');
  const extraParam = Object.keys(params).find((k) => !PARAMS_MEMBERS.has(k));
  if (extraParam !== undefined) throw new Refusal(403, 'malformed_request', `the MCP request's params hold \`${extraParam}\`, which no receipt covers`);
  if (!isName(params.name)) throw new Refusal(403, 'malformed_request', '`tools/call` without `params.name`');
  if (params.arguments !== undefined && !isObject(params.arguments)) throw new Refusal(403, 'malformed_request', '`params.arguments` is not an object');
  if (params._meta !== undefined && !isObject(params._meta)) throw new Refusal(403, 'malformed_request', '`params._meta` is not an object');
  return body;
}

/**
 * The tool and arguments of a call: the tool the server names (`toolOf`), which the headers and
 * an MCP body may only agree with; the arguments of the body (of its `params.arguments` for MCP).
 */
function callOf(req, body, toolOf, mcp) {
  const tool = toolOf(req);
  if (!isName(tool)) throw new Refusal(403, 'malformed_request', 'no tool is configured for this route');
  const rpc = mcp ? rpcOf(body) : null;
  const claimed = [['Mcp-Name', headerOf(req, 'mcp-name')], ['Aegis-Tool', headerOf(req, 'aegis-tool')], ['params.name', rpc?.params.name]];
  for (const [where, name] of claimed) {
    if (name !== undefined && name !== tool) throw new Refusal(403, 'args_invalid', `the call names two tools, \`${tool}\` (this route's) and \`${name}\` (${where})`);
  }
  const args = rpc ? rpc.params.arguments ?? {} : body === undefined ? {} : body;
  return { tool, args, rpc };
}

/** The MCP request passed on: the checked envelope around exactly the verified arguments. */
function rebuiltRpc(rpc, tool, args) {
  const params = { name: tool, arguments: args };
  // Protocol metadata (a progress token), not an argument: the receipt does not cover it.
  if (rpc.params._meta !== undefined) params._meta = JSON.parse(JSON.stringify(rpc.params._meta));
  return { jsonrpc: '2.0', id: rpc.id, method: 'tools/call', params };
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
 *   tool: string | Readonly<Record<string, string>> | ReadonlyMap<string, string> | ((path: string, req: unknown) => string | undefined),
 *   mcp?: boolean, limit?: number, clock?: () => number }} options
 *   `jwks`: the engine's receipt key set (or a function returning it, for rotation); `issuer`,
 *   `audience`: what the engine's receipts carry; `tool` (required): the tool's Aegis name, a
 *   map of exact route path to Aegis name, or a function of the path (and the request) returning
 *   it; `mcp`: the body is an MCP `tools/call` request (default: the body is the arguments);
 *   `limit`: the largest body read, in bytes (default 1 MiB); `clock`: seconds since the epoch
 *   (default the system clock).
 */
function receiptMiddleware({ jwks, issuer, audience, tool, mcp = false, limit = 1024 * 1024, clock } = {}) {
  if (jwks == null) throw new AegisError('malformed_request', 'the middleware needs the engine\'s receipt key set (`jwks`)');
  if (typeof issuer !== 'string' || typeof audience !== 'string' || issuer === '' || audience === '') {
    throw new AegisError('malformed_request', 'the middleware needs the receipts\' `issuer` and `audience`');
  }
  const toolOf = toolOption(tool);
  if (typeof mcp !== 'boolean') throw new AegisError('malformed_request', '`mcp` is true (the body is an MCP `tools/call` request) or false');
  return async function aegisReceipt(req, res, next) {
    try {
      const body = await bodyOf(req, limit);
      const call = callOf(req, body, toolOf, mcp);
      const keys = typeof jwks === 'function' ? await jwks() : jwks;
      // A copy, so that what is checked cannot change under the check (`null` stays `null`).
      const args = deepFreeze(JSON.parse(JSON.stringify(call.args)));
      const receipt = verifyReceipt(headerOf(req, RECEIPT_HEADER) ?? '', keys, {
        issuer, audience, tool: call.tool, args, consume: true, now: clock?.(),
      });
      // What the tool runs is what was checked, and nothing else: the body is rebuilt from the
      // verified arguments (members the receipt does not cover are not passed on), frozen, so
      // later middleware cannot change it either.
      req.body = call.rpc ? deepFreeze(rebuiltRpc(call.rpc, call.tool, args)) : args;
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
