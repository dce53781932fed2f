'use strict';
// MCP (@modelcontextprotocol/sdk): a client whose `callTool` is authorized by Aegis first. The
// core's enforcement decides: the server receives exactly the arguments it says to run with
// (the sanitized ones for a sanitize); approval needed throws AegisApprovalRequired (retry with
// `{ approvalToken }`); anything else throws AegisDenied. With an engine that issues receipts,
// the call carries its decision receipt in `_meta`, and a server tool checks for itself with
// `requireReceipt` before acting.

const { AegisError, argsToRun, snapshot, verifyReceipt } = require('../aegis.js');

/** The `_meta` key a guarded call carries its decision receipt under. */
const RECEIPT_META_KEY = 'dev.aegis/receipt';

function guardClient(client, engine, chain) {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'callTool') return Reflect.get(target, prop, receiver);
      return async (params, resultSchema, options = {}) => {
        const { approvalToken, ...rest } = options;
        const authorized = snapshot(params.arguments);
        const current = typeof chain === 'function' ? await chain() : chain;
        const guarded = await engine.authorizeEnforcedAsync({ chain: current, tool: params.name, args: authorized, approvalToken });
        const receipt = guarded.decision.receipt;
        const meta = receipt ? { ...(params._meta ?? {}), [RECEIPT_META_KEY]: receipt } : params._meta;
        return target.callTool({ ...params, arguments: argsToRun(guarded), ...(meta ? { _meta: meta } : {}) }, resultSchema, rest);
      };
    },
  });
}

/**
 * For a tool of an MCP server: verifies the decision receipt the request carries in `_meta`
 * (`extra._meta`) against `jwks`, for exactly this tool and the arguments it is about to run,
 * and uses it up (presented again, it is refused); returns the receipt's claims, throws
 * `receipt_invalid` or `receipt_mismatch`. Call it first.
 */
function requireReceipt(tool, args, extra, { jwks, issuer, audience }) {
  const receipt = String(extra?._meta?.[RECEIPT_META_KEY] ?? '');
  try {
    return verifyReceipt(receipt, jwks, { issuer, audience, tool, args: snapshot(args), consume: true });
  } catch (e) {
    // The client is told why, code first (the SDK passes on the message only).
    if (e instanceof AegisError) throw new AegisError(e.code, `[${e.code}] ${e.message}`);
    throw e;
  }
}

exports.guardClient = guardClient;
exports.requireReceipt = requireReceipt;
exports.RECEIPT_META_KEY = RECEIPT_META_KEY;
