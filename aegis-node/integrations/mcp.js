'use strict';
// MCP (@modelcontextprotocol/sdk): a client whose `callTool` is authorized by Aegis first. The
// core's enforcement decides: the server receives exactly the arguments it says to run with
// (the sanitized ones for a sanitize); approval needed throws AegisApprovalRequired (retry with
// `{ approvalToken }`); anything else throws AegisDenied.

const { argsToRun, snapshot } = require('../aegis.js');

function guardClient(client, engine, chain) {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'callTool') return Reflect.get(target, prop, receiver);
      return async (params, resultSchema, options = {}) => {
        const { approvalToken, ...rest } = options;
        const authorized = snapshot(params.arguments);
        const current = typeof chain === 'function' ? await chain() : chain;
        const guarded = await engine.authorizeEnforcedAsync({ chain: current, tool: params.name, args: authorized, approvalToken });
        return target.callTool({ ...params, arguments: argsToRun(guarded) }, resultSchema, rest);
      };
    },
  });
}

exports.guardClient = guardClient;
