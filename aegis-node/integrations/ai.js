'use strict';
// Vercel AI SDK (ai 6.x): authorizes a tool's calls with Aegis and maps the core's
// `await_approval` enforcement onto the SDK's own tool-approval flow.
//
// `needsApproval` decides the call with Aegis (once per tool call id) and returns true only when
// the core's enforcement is `await_approval`; the SDK then asks the user. When the user
// approves, the SDK runs `execute`, which obtains the override token from
// `options.approve(approvalId)` (your code calls `engine.approve(...)` with the human approver's
// credential) and redeems it. A refused call throws AegisDenied from `execute` (the SDK reports a
// tool error). The tool always runs with exactly the arguments the enforcement says.

const { AegisApprovalRequired, argsToRun, snapshot } = require('../aegis.js');

function aegisTool(engine, chain, name, tool, options = {}) {
  const decided = new Map();
  const current = async () => (typeof chain === 'function' ? chain() : chain);
  const decide = async (input, approvalToken) =>
    engine.authorizeEnforcedAsync({ chain: await current(), tool: name, args: snapshot(input), approvalToken });

  return {
    ...tool,
    needsApproval: async (input, callOptions = {}) => {
      const guarded = await decide(input);
      if (callOptions.toolCallId) decided.set(callOptions.toolCallId, guarded);
      return guarded.enforcement.action === 'await_approval';
    },
    execute: async (input, callOptions = {}) => {
      let guarded = decided.get(callOptions.toolCallId) ?? (await decide(input));
      decided.delete(callOptions.toolCallId);
      if (guarded.enforcement.action === 'await_approval') {
        const { approvalId } = guarded.enforcement;
        const token = options.approve ? await options.approve(approvalId, guarded.decision) : undefined;
        if (!token) throw new AegisApprovalRequired(guarded.decision, guarded.enforcement);
        guarded = await decide(input, token);
      }
      return tool.execute(argsToRun(guarded), callOptions);
    },
  };
}

exports.aegisTool = aegisTool;
