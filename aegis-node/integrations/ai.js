'use strict';
// Vercel AI SDK (ai 6.x): wraps a tool's `execute` so every call is authorized by Aegis first.
// Deny → the tool throws AegisDenied (the SDK reports a tool error to the model). Approval
// needed → AegisApprovalRequired with the approval id; after a human approves, call the tool
// again with `experimental_context: { aegisApprovalToken }` (the SDK's per-call context).

const { AegisApprovalRequired, AegisDenied, snapshot } = require('../aegis.js');

function aegisTool(engine, chain, name, tool) {
  const execute = tool.execute;
  return {
    ...tool,
    execute: async (input, options = {}) => {
      const context = options.experimental_context ?? {};
      const current = typeof chain === 'function' ? await chain() : chain;
      const authorized = snapshot(input);
      const decision = await engine.authorizeAsync({
        chain: current, tool: name, args: authorized, approvalToken: context.aegisApprovalToken,
      });
      if (decision.outcome === 'approval_needed') throw new AegisApprovalRequired(decision);
      if (decision.outcome === 'deny') throw new AegisDenied(decision);
      return execute(decision.sanitizedArgs ? snapshot(decision.sanitizedArgs) : authorized, options);
    },
  };
}

exports.aegisTool = aegisTool;
