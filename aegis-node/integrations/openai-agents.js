'use strict';
// OpenAI Agents SDK (@openai/agents 0.20+): every function tool call of a guarded agent is
// decided by Aegis, and every handoff gives the sub-agent a delegation of its own.
//
// Each function tool is wrapped, keeping its name, schema and execute; three SDK hooks carry the
// decision, made once per tool call:
// - `needsApproval` decides the call with the model's arguments; it asks the SDK to pause the
//   run (an interruption in `result.interruptions`) only when the core's enforcement is
//   `await_approval` (or the tool's own `needsApproval` asks).
// - a tool input guardrail (`aegis`, first in `inputGuardrails`) acts on that decision before the
//   tool runs: `run` passes; anything else is `rejectContent`, so the tool does not run and the
//   model reads why. For a call the run paused on, it redeems the override token presented with
//   `presentToken` (the human approved in Aegis; the user approved through `RunState`).
// - `invoke` runs the tool only with a pass the guardrail left for exactly this call and its
//   arguments, once, and with exactly the enforcement's arguments: the SDK's guardrails cannot
//   rewrite arguments, the wrapper can, so `sanitize` is honoured (the tool receives the
//   redacted arguments, in `input` and in `details.toolCall.arguments`).
// Any error from Aegis is a refusal: the tool does not run.
//
// Handoffs: a guarded agent's sub-agents are guarded too; once the model has handed off, the
// sub-agent's calls are decided on a delegation minted from its parent's chain and key
// (`Delegator`, at its first call, then cached), scoped to the tools it and its own sub-agents
// call, narrowed to what the parent holds. Its calls are decided as `<parent id>/<sub-agent
// name>`, so segregation of duties holds between them.
//
// The SDK is not loaded here: guardrails and their outputs are the plain objects the SDK
// defines, and agents and handoffs are copied with their own `clone`, so the copies belong to
// the same copy of the SDK (its CommonJS or its ES module build) as the application's.

const { AegisError, callDigest, deepFreeze, snapshot } = require('../aegis.js');
const { Delegator } = require('./delegation.js');

/** The name of the tool input guardrail this file adds (see `result.toolInputGuardrailResults`). */
const GUARDRAIL_NAME = 'aegis';

/** The decision a guarded tool ran under, by the `details.toolCall` object its invoke received. */
const ranUnder = new WeakMap();

/** The text the model reads for a refused decision. */
function explain({ decision, enforcement }) {
  const reasons = decision.reasons.map((r) => `${r.code}${r.policyId ? ` (${r.policyId})` : ''}: ${r.message}`).join('; ');
  return `Aegis denied this call: ${reasons || enforcement.message || enforcement.action}`;
}

/** The call digest of `args` for `tool`, or null when the core refuses to digest them (then nothing matches). */
function digestOf(tool, args) {
  try {
    return callDigest(tool, args);
  } catch {
    return null;
  }
}

/** The SDK's `ToolGuardrailFunctionOutput`s (what `ToolGuardrailFunctionOutputFactory` makes). */
const allow = (info) => ({ behavior: { type: 'allow' }, outputInfo: info });
const reject = (message, info) => ({ behavior: { type: 'rejectContent', message }, outputInfo: info });

/** Whether a `handoffs` entry is a `Handoff` (else it is an agent); by shape, from either build of the SDK. */
const isHandoff = (h) => h != null && typeof h.onInvokeHandoff === 'function' && typeof h.clone === 'function' && h.agent != null;
const targetOf = (h) => (isHandoff(h) ? h.agent : h);

/**
 * Guards agents of the OpenAI Agents SDK with one engine. Keeps, per wrapped tool, the decision
 * of each call between the SDK's hooks, and the override tokens presented for paused calls.
 */
class AegisAgentsGuard {
  #engine;
  #toolName;
  #delegation;
  /** Wrapped tool → its calls (callId → state). */
  #calls = new WeakMap();
  /** Wrapped tool → the Aegis tool name it is decided as. */
  #names = new WeakMap();

  /**
   * @param engine an Aegis Engine
   * @param options `toolNames`: the Aegis tool name of an SDK tool name (the SDK turns
   *   `stripe.create_payment` into `stripe_create_payment`), a map or a function (default: the
   *   same name); `delegation`: the Delegator options (`ttlSecs`, `renewWithinSecs`, `clock`) of
   *   the delegations minted at handoffs.
   */
  constructor(engine, { toolNames, delegation } = {}) {
    this.#engine = engine;
    this.#toolName = typeof toolNames === 'function'
      ? toolNames
      : (name) => (toolNames != null && Object.hasOwn(toolNames, name) ? toolNames[name] : name);
    this.#delegation = { ...(delegation ?? {}) };
  }

  /**
   * A copy of `agent` whose function tools are decided by Aegis on `chain`, and whose handoff
   * targets are guarded the same way on delegations minted with `key` when the model hands off.
   * `key` (the private key of the chain's leaf) is needed only when a sub-agent calls tools.
   * Refuses (throws) an agent with tools it cannot decide: hosted, computer, shell or
   * apply-patch tools and MCP servers would run around Aegis.
   */
  agent(agent, { chain, key } = {}) {
    if (chain == null) throw new AegisError('missing_credential', `agent \`${agent.name}\` needs the credential chain it acts on`);
    const chainOf = async () => (typeof chain === 'function' ? chain() : chain);
    let delegatorOf = null;
    if (key != null) {
      let current = null;
      // One Delegator per chain in force: a chain function may hand out a renewed chain.
      delegatorOf = async () => {
        const c = await chainOf();
        if (current === null || current.leaf !== c[c.length - 1]) current = { leaf: c[c.length - 1], delegator: new Delegator({ ...this.#delegation, chain: c, key }) };
        return current.delegator;
      };
    }
    return this.#guardAgent(agent, chainOf, delegatorOf, new Map());
  }

  /**
   * A copy of function tool `tool` whose calls are decided by Aegis on `chain`. What `agent`
   * does for each of an agent's tools; use it for a tool added to an agent by hand.
   */
  tool(tool, chain) {
    return this.#wrapTool(tool, async () => (typeof chain === 'function' ? chain() : chain));
  }

  /**
   * The Aegis approval a paused call waits for: `{ approvalId, tool, args, callId, decision }`
   * for an interruption of a guarded tool whose decision was `approval_needed` in this process;
   * null otherwise (the pause is the tool's own `needsApproval`, or the run paused elsewhere:
   * find it with `engine.pendingApprovals()`).
   */
  approvalFor(item) {
    const { calls, callId, tool } = this.#callsOf(item);
    const prior = calls.get(callId)?.decided;
    if (prior?.guarded?.enforcement.action !== 'await_approval') return null;
    return Object.freeze({ approvalId: prior.guarded.enforcement.approvalId, tool, args: prior.args, callId, decision: prior.guarded.decision });
  }

  /**
   * Presents the override token of an Aegis approval (`engine.approve(...).overrideToken`) for
   * the paused call `item`; approve it in the run too (`result.state.approve(item)`) and resume.
   * The engine accepts the token only for the call it was minted for, once.
   */
  presentToken(item, token) {
    if (typeof token !== 'string' || token === '') throw new AegisError('approval_token_invalid', 'no override token to present');
    const { calls, callId } = this.#callsOf(item);
    const state = calls.get(callId) ?? {};
    state.token = token;
    calls.set(callId, state);
  }

  /** The calls table and Aegis name of the guarded tool an interruption item is for. */
  #callsOf(item) {
    const raw = item?.rawItem;
    if (raw?.type !== 'function_call') throw new AegisError('malformed_request', 'not an interruption of a function tool call');
    const tool = (item.agent?.tools ?? []).find((t) => t.type === 'function' && t.name === raw.name && this.#calls.has(t));
    if (!tool) throw new AegisError('malformed_request', `\`${raw.name}\` is not a tool this guard decides`);
    return { calls: this.#calls.get(tool), callId: raw.callId, tool: this.#names.get(tool) };
  }

  /** The Aegis tool names `agent` and the sub-agents it hands off to call (each agent once). */
  #scopeOf(agent, seen) {
    if (seen.has(agent)) return [];
    seen.add(agent);
    const own = (agent.tools ?? []).filter((t) => t.type === 'function').map((t) => this.#toolName(t.name));
    const below = (agent.handoffs ?? []).flatMap((h) => this.#scopeOf(targetOf(h), seen));
    return [...new Set([...own, ...below])];
  }

  /** `agent` guarded on `chainOf`; `path` maps the agents above it (and itself) to their guarded copies. */
  #guardAgent(agent, chainOf, delegatorOf, path) {
    if ((agent.mcpServers ?? []).length > 0) {
      throw new AegisError('malformed_request', `agent \`${agent.name}\` has MCP servers, whose tools would run around Aegis: guard the MCP client (integrations/mcp) or list its tools as function tools`);
    }
    const other = (agent.tools ?? []).find((t) => t.type !== 'function');
    if (other) throw new AegisError('malformed_request', `agent \`${agent.name}\`'s tool \`${other.name}\` (${other.type}) cannot be decided by Aegis`);
    const guarded = agent.clone({ tools: agent.tools.map((t) => this.#wrapTool(t, chainOf)), handoffs: [] });
    const here = new Map(path).set(agent, guarded);
    // A Handoff is cloned onto the guarded target (its `onHandoff`, input filter and tool name
    // kept); an agent listed directly is replaced by its guarded copy.
    const retarget = (h, target) => (isHandoff(h) ? h.clone({ agent: target }) : target);
    guarded.handoffs = (agent.handoffs ?? []).map((h) => {
      const sub = targetOf(h);
      // A handoff back to an agent above resumes it on its own chain: no delegation is minted
      // for going back up, and none is widened.
      if (here.has(sub)) return retarget(h, here.get(sub));
      const scope = this.#scopeOf(sub, new Set(here.keys()));
      if (scope.length > 0 && delegatorOf === null) {
        throw new AegisError('invalid_key', `agent \`${agent.name}\` hands off to \`${sub.name}\`, whose tools need a delegation: pass the key of \`${agent.name}\`'s chain`);
      }
      // Minted when the sub-agent first acts (and again when it nears expiry; the Delegator
      // caches it): the tools of the parent's scope the sub-agent calls; a tool the parent does
      // not hold is left out, so Aegis denies it.
      const mint = async () => {
        const parent = await delegatorOf();
        return parent.childFor(sub.name, { scope });
      };
      const subChain = async () => (await mint()).chain;
      const subDelegator = delegatorOf === null ? null : async () => (await mint()).delegator();
      return retarget(h, this.#guardAgent(sub, subChain, subDelegator, here));
    });
    return guarded;
  }

  /** `tool` with Aegis in its approval hook, its input guardrails and its invoke. */
  #wrapTool(tool, chainOf) {
    if (tool?.type !== 'function' || typeof tool.invoke !== 'function') {
      throw new AegisError('malformed_request', `\`${tool?.name}\` is not a function tool`);
    }
    const engine = this.#engine;
    const name = this.#toolName(tool.name);
    /** callId → { decided?: { guarded?, error?, args, digest }, asked?, token?, pass? } */
    const calls = new Map();

    const decide = async (args, approvalToken, toolCallId) => {
      try {
        return { guarded: await engine.authorizeEnforcedAsync({ chain: await chainOf(), tool: name, args, approvalToken, toolCallId }) };
      } catch (error) {
        // Fail closed: an error is acted on as a refusal.
        return { error };
      }
    };

    // The SDK's `ToolInputGuardrailDefinition` (what `defineToolInputGuardrail` makes).
    const guardrail = {
      type: 'tool_input',
      name: GUARDRAIL_NAME,
      run: async ({ context, toolCall }) => {
        const { callId } = toolCall;
        const state = calls.get(callId) ?? {};
        let args;
        try {
          args = deepFreeze(JSON.parse(toolCall.arguments));
        } catch {
          calls.delete(callId);
          return reject('Aegis denied this call: its arguments are not JSON', { code: 'args_invalid' });
        }
        const digest = digestOf(name, args);
        const prior = state.decided?.digest === digest && digest !== null ? state.decided : null;
        // With `preApprovalInputGuardrails`, the SDK runs guardrails before it pauses: nothing
        // runs then, and the decision stays for the call the human answers.
        if (state.asked && context.isToolApproved({ toolName: toolCall.name, callId }) !== true) {
          return allow({ awaitingApproval: true });
        }
        calls.delete(callId);
        let outcome;
        if (prior?.guarded?.enforcement.action === 'await_approval') {
          if (state.token === undefined) {
            const { approvalId } = prior.guarded.enforcement;
            return reject(`Aegis: this call needs the human approval ${approvalId}, and no override token was presented for it; it did not run`,
              { code: 'approval_required', approvalId });
          }
          outcome = await decide(args, state.token, callId);
        } else if (prior) {
          // The decision made when the runner asked whether to pause, for these exact arguments.
          outcome = prior;
        } else {
          // No decision for these arguments here: the run resumed in another process, or the
          // arguments changed since the approval was asked (the engine binds tokens to them).
          outcome = await decide(args, state.token, callId);
        }
        if (outcome.error) {
          const code = outcome.error instanceof AegisError ? outcome.error.code : 'internal';
          return reject(`Aegis could not decide this call (${code}): ${outcome.error.message}`, { code });
        }
        const { decision, enforcement } = outcome.guarded;
        const info = { decisionId: decision.decisionId, outcome: decision.outcome };
        if (enforcement.action === 'run') {
          calls.set(callId, { pass: { input: toolCall.arguments, args: deepFreeze(snapshot(enforcement.args)), decision } });
          return allow(info);
        }
        if (enforcement.action === 'await_approval') {
          return reject(`Aegis: this call needs the human approval ${enforcement.approvalId}; it did not run`, { ...info, approvalId: enforcement.approvalId });
        }
        return reject(explain(outcome.guarded), { ...info, code: enforcement.code ?? 'refused' });
      },
    };

    const wrapped = {
      ...tool,
      needsApproval: async (context, args, callId) => {
        const own = typeof tool.needsApproval === 'function' ? await tool.needsApproval(context, args, callId) : false;
        const authorized = deepFreeze(snapshot(args));
        const digest = digestOf(name, authorized);
        const state = calls.get(callId) ?? {};
        // Asked again for a call already waiting on a human (a resume before the answer): the
        // same approval stands, rather than a second one for the same call.
        const waiting = state.decided?.guarded?.enforcement.action === 'await_approval' && digest !== null && state.decided.digest === digest;
        if (!waiting) state.decided = { ...(await decide(authorized, undefined, callId)), args: authorized, digest };
        state.asked = own === true || state.decided.guarded?.enforcement.action === 'await_approval';
        calls.set(callId, state);
        return state.asked;
      },
      inputGuardrails: [guardrail, ...(tool.inputGuardrails ?? [])],
      invoke: async (context, input, details) => {
        const callId = details?.toolCall?.callId;
        const pass = callId === undefined ? undefined : calls.get(callId)?.pass;
        if (pass !== undefined) calls.delete(callId);
        // Only the call the guardrail passed, with the arguments it saw, runs; once.
        if (pass === undefined || pass.input !== input) return 'Aegis denied this call: it was not decided before it ran';
        let runInput = input;
        let runDetails = details;
        if (digestOf(name, JSON.parse(input)) !== digestOf(name, pass.args)) {
          // `sanitize`: the tool runs the redacted arguments, and sees no others.
          runInput = JSON.stringify(pass.args);
          const descriptors = Object.getOwnPropertyDescriptors(details);
          descriptors.toolCall = { value: { ...details.toolCall, arguments: runInput }, enumerable: true, writable: true, configurable: true };
          runDetails = Object.create(Object.getPrototypeOf(details), descriptors);
        }
        ranUnder.set(runDetails.toolCall, Object.freeze({ decisionId: pass.decision.decisionId, outcome: pass.decision.outcome,
          receipt: pass.decision.receipt, args: pass.args }));
        return tool.invoke(context, runInput, runDetails);
      },
    };
    this.#calls.set(wrapped, calls);
    this.#names.set(wrapped, name);
    return wrapped;
  }
}

/**
 * The Aegis decision a guarded tool runs under, from the `details` its execute receives:
 * `{ decisionId, outcome, receipt, args }` (`receipt`: what a tool served elsewhere checks, see
 * integrations/http), or null outside a guarded call.
 */
function decisionOf(details) {
  const toolCall = details?.toolCall;
  return toolCall != null && typeof toolCall === 'object' ? ranUnder.get(toolCall) ?? null : null;
}

exports.AegisAgentsGuard = AegisAgentsGuard;
exports.GUARDRAIL_NAME = GUARDRAIL_NAME;
exports.decisionOf = decisionOf;
