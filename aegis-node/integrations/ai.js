'use strict';
// Vercel AI SDK (ai 6.x): authorizes a tool's calls with Aegis and maps `approval_needed` onto
// the SDK's own tool-approval flow.
//
// `needsApproval` decides the call with Aegis (once per tool call id) and returns true only for
// `approval_needed`; the SDK then asks the user. When the user approves, the SDK runs `execute`,
// which obtains the override token from `options.approve(approvalId)` (your code calls
// `engine.approve(...)` with the human approver's credential) and redeems it. A denied call
// throws AegisDenied from `execute` (the SDK reports a tool error). The tool always runs with
// exactly the authorized (or sanitized) arguments.

const { AegisApprovalRequired, AegisDenied, snapshot } = require('../aegis.js');

function aegisTool(engine, chain, name, tool, options = {}) {
  const decided = new Map();
  const current = async () => (typeof chain === 'function' ? chain() : chain);
  const decide = async (input, approvalToken) =>
    engine.authorizeAsync({ chain: await current(), tool: name, args: snapshot(input), approvalToken });

  return {
    ...tool,
    needsApproval: async (input, callOptions = {}) => {
      const decision = await decide(input);
      if (callOptions.toolCallId) decided.set(callOptions.toolCallId, decision);
      return decision.outcome === 'approval_needed';
    },
    execute: async (input, callOptions = {}) => {
      let decision = decided.get(callOptions.toolCallId) ?? (await decide(input));
      decided.delete(callOptions.toolCallId);
      if (decision.outcome === 'approval_needed') {
        const token = options.approve ? await options.approve(decision.approvalId, decision) : undefined;
        if (!token) throw new AegisApprovalRequired(decision);
        decision = await decide(input, token);
      }
      if (decision.outcome !== 'allow' && decision.outcome !== 'sanitize') throw new AegisDenied(decision);
      return tool.execute(decision.sanitizedArgs ? snapshot(decision.sanitizedArgs) : snapshot(input), callOptions);
    },
  };
}

exports.aegisTool = aegisTool;
