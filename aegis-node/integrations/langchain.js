'use strict';
// LangChain.js (langchain 1.x): agent middleware that authorizes every tool call with Aegis. The
// core's enforcement decides: `run` → the tool runs with exactly its arguments; `await_approval`
// → LangGraph `interrupt` with the approval id, resumed with
// `new Command({ resume: { approvalToken } })` (or `{ rejected: true }`); anything else → an
// error ToolMessage.

const { createMiddleware } = require('langchain');
const { ToolMessage } = require('@langchain/core/messages');
const { interrupt } = require('@langchain/langgraph');
const { deepFreeze, snapshot } = require('../aegis.js');

function explain({ decision, enforcement }) {
  const reasons = decision.reasons.map((r) => `${r.code}${r.policyId ? ` (${r.policyId})` : ''}: ${r.message}`).join('; ');
  return `Aegis denied this call: ${reasons || enforcement.message || enforcement.action}`;
}

function aegisMiddleware(engine, chain) {
  return createMiddleware({
    name: 'AegisMiddleware',
    wrapToolCall: async (request, handler) => {
      const call = request.toolCall;
      const error = (content) => new ToolMessage({ content, tool_call_id: call.id ?? '', name: call.name, status: 'error' });
      const authorized = snapshot(call.args);
      const current = typeof chain === 'function' ? await chain(request) : chain;
      const decide = (approvalToken) => engine.authorizeEnforcedAsync({ chain: current, tool: call.name, args: authorized, approvalToken });
      let guarded = await decide();
      if (guarded.enforcement.action === 'await_approval') {
        const { approvalId } = guarded.enforcement;
        const answer = interrupt({
          type: 'aegis_approval', approvalId, tool: call.name, args: authorized,
          reasons: guarded.decision.reasons.map((r) => r.message),
        });
        const token = answer && typeof answer === 'object' ? answer.approvalToken : undefined;
        if (!token) return error(`a human rejected this call (approval ${approvalId})`);
        guarded = await decide(token);
      }
      if (guarded.enforcement.action !== 'run') return error(explain(guarded));
      return handler({ ...request, toolCall: { ...call, args: deepFreeze(snapshot(guarded.enforcement.args)) } });
    },
  });
}

exports.aegisMiddleware = aegisMiddleware;
