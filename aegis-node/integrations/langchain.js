'use strict';
// LangChain.js (langchain 1.x): agent middleware that authorizes every tool call with Aegis.
// Deny → an error ToolMessage; approval needed → LangGraph `interrupt` with the approval id;
// resume with `new Command({ resume: { approvalToken } })` (or `{ rejected: true }`).

const { createMiddleware } = require('langchain');
const { ToolMessage } = require('@langchain/core/messages');
const { interrupt } = require('@langchain/langgraph');
const { snapshot } = require('../aegis.js');

function explain(decision) {
  return 'Aegis denied this call: ' + decision.reasons
    .map((r) => `${r.code}${r.policyId ? ` (${r.policyId})` : ''}: ${r.message}`).join('; ');
}

function aegisMiddleware(engine, chain) {
  return createMiddleware({
    name: 'AegisMiddleware',
    wrapToolCall: async (request, handler) => {
      const call = request.toolCall;
      const error = (content) => new ToolMessage({ content, tool_call_id: call.id ?? '', name: call.name, status: 'error' });
      const current = typeof chain === 'function' ? await chain(request) : chain;
      const authorized = snapshot(call.args);
      let decision = await engine.authorizeAsync({ chain: current, tool: call.name, args: authorized });
      if (decision.outcome === 'approval_needed') {
        const answer = interrupt({
          type: 'aegis_approval', approvalId: decision.approvalId, tool: call.name, args: authorized,
          reasons: decision.reasons.map((r) => r.message),
        });
        const token = answer && typeof answer === 'object' ? answer.approvalToken : undefined;
        if (!token) return error(`a human rejected this call (approval ${decision.approvalId})`);
        decision = await engine.authorizeAsync({ chain: current, tool: call.name, args: authorized, approvalToken: token });
      }
      if (decision.outcome !== 'allow' && decision.outcome !== 'sanitize') return error(explain(decision));
      const args = decision.sanitizedArgs ? snapshot(decision.sanitizedArgs) : authorized;
      return handler({ ...request, toolCall: { ...call, args } });
    },
  });
}

exports.aegisMiddleware = aegisMiddleware;
