'use strict';
// MCP (@modelcontextprotocol/sdk): a client whose `callTool` is authorized by Aegis first.
// Deny throws AegisDenied, approval needed throws AegisApprovalRequired (retry with
// `{ approvalToken }`); the server receives exactly the authorized (or sanitized) arguments.

const { AegisApprovalRequired, AegisDenied, snapshot } = require('../aegis.js');

function guardClient(client, engine, chain) {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'callTool') return Reflect.get(target, prop, receiver);
      return async (params, resultSchema, options = {}) => {
        const { approvalToken, ...rest } = options;
        const current = typeof chain === 'function' ? await chain() : chain;
        const authorized = snapshot(params.arguments);
        const decision = await engine.authorizeAsync({ chain: current, tool: params.name, args: authorized, approvalToken });
        if (decision.outcome === 'approval_needed') throw new AegisApprovalRequired(decision);
        if (decision.outcome === 'deny') throw new AegisDenied(decision);
        const args = decision.sanitizedArgs ? snapshot(decision.sanitizedArgs) : authorized;
        return target.callTool({ ...params, arguments: args }, resultSchema, rest);
      };
    },
  });
}

exports.guardClient = guardClient;
