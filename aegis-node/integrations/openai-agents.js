'use strict';
// OpenAI Agents SDK (@openai/agents 0.20+): every function tool call of a guarded agent is
// decided by Aegis, and every handoff gives the sub-agent a delegation of its own.
//
// Each function tool is wrapped, keeping its name, schema and execute; three SDK hooks carry the
// decision, made once per tool call and kept per run (see "Runs" below):
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
// Runs: one guarded agent serves many runs (requests, users) at once, and the model provider
// chooses call ids, which repeat across runs (and a stored RunState carries them). So what the
// hooks leave for each other is kept per run, by the SDK's RunContext of the run (the `context`
// every hook receives: one per run, kept in its RunState, so the same object when the run resumes
// from `result.state`; a RunState restored from storage has a new one, and its calls are decided
// anew), then by call id; and a decision is acted on only for the chain in force when it is acted
// on (the chain source is asked again) and for the same arguments. A decision made in another
// run, or on another chain (another request's, read from an AsyncLocalStorage), is never used:
// the call is decided anew. `approvalFor` and `presentToken` name the run (`result.state`) for
// the same reason.
//
// Agents used as tools (`agent.asTool()`): the nested agent's tools run in a run of their own,
// which no hook of the outer tool sees; so only the tool of a guarded agent
// (`guard.agent(sub, ...).asTool(...)`) is accepted, and any other agent tool is refused. The
// SDK runs the nested agent on a fork of the calling run's context and surfaces its pauses in
// the calling run's result; so its calls are kept under the calling run (found by `approvalFor`
// and `presentToken` given the calling run's `result.state`).
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

const { AsyncLocalStorage } = require('node:async_hooks');
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

/** A frozen copy of the chain a chain source handed out (what a decision is recorded as made on). */
const chainCopy = (chain) => (Array.isArray(chain) ? Object.freeze([...chain]) : chain);

/** Whether `a` and `b` are the same chain, credential by credential (anything else is not). */
function sameChain(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((c, i) => typeof c === 'string' && c === b[i]);
}

/** Within a guarded agent tool's invoke: the run that called it (whose key its nested run's calls are kept under). */
const callingRun = new AsyncLocalStorage();

/**
 * The run a hook's `context` is (the SDK's RunContext), as a key of the per-run tables: the
 * calling run's within a guarded agent tool; null for a context that is not an object (then
 * nothing is kept, and nothing found: the call is decided anew, or refused).
 */
const runKey = (context) => callingRun.getStore() ?? (context !== null && typeof context === 'object' ? context : null);

/**
 * The RunContext of `run`: a RunResult (`result`), a RunState (`result.state`, or one restored
 * with `RunState.fromString`) or the RunContext itself. Throws for anything else, rather than
 * guess which run a paused call belongs to.
 */
function runContextOf(run) {
  const context = run?.runContext ?? run?.state?._context ?? run?._context ?? run;
  if (context === null || typeof context !== 'object' || typeof context.isToolApproved !== 'function') {
    throw new AegisError('malformed_request', 'name the run the call paused in (`result.state`): decisions and tokens are kept per run');
  }
  return context;
}

/** Whether `tool` runs an agent: what `Agent.asTool` makes (a function tool with `on`), by shape, from either build of the SDK. */
const isAgentTool = (tool) => tool?.type === 'function' && typeof tool.on === 'function';

/** The SDK's `ToolGuardrailFunctionOutput`s (what `ToolGuardrailFunctionOutputFactory` makes). */
const allow = (info) => ({ behavior: { type: 'allow' }, outputInfo: info });
const reject = (message, info) => ({ behavior: { type: 'rejectContent', message }, outputInfo: info });

/** Whether a `handoffs` entry is a `Handoff` (else it is an agent); by shape, from either build of the SDK. */
const isHandoff = (h) => h != null && typeof h.onInvokeHandoff === 'function' && typeof h.clone === 'function' && h.agent != null;
const targetOf = (h) => (isHandoff(h) ? h.agent : h);

/**
 * Guards agents of the OpenAI Agents SDK with one engine. Keeps, per wrapped tool and per run,
 * the decision of each call between the SDK's hooks, and the override tokens presented for
 * paused calls.
 */
class AegisAgentsGuard {
  #engine;
  #toolName;
  #delegation;
  /** Wrapped tool → its runs (RunContext → its calls, callId → state). */
  #calls = new WeakMap();
  /** The agent tools made by `asTool` of an agent this guard guarded (the only agent tools it accepts). */
  #agentTools = new WeakSet();
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
   * for an interruption `item` of a guarded tool whose decision was `approval_needed` in this
   * process, in `run` (the paused run: `result.state`, or `result`); null otherwise (the pause is
   * the tool's own `needsApproval`, or the run paused elsewhere: find it with
   * `engine.pendingApprovals()`).
   */
  approvalFor(item, run) {
    const { runs, context, callId, tool } = this.#callsOf(item, run);
    const prior = runs.get(context)?.get(callId)?.decided;
    if (prior?.guarded?.enforcement.action !== 'await_approval') return null;
    return Object.freeze({ approvalId: prior.guarded.enforcement.approvalId, tool, args: prior.args, callId, decision: prior.guarded.decision });
  }

  /**
   * Presents the override token of an Aegis approval (`engine.approve(...).overrideToken`) for
   * the paused call `item` of `run` (the run it resumes: `result.state`, or the RunState restored
   * from storage); approve it in the run too (`result.state.approve(item)`) and resume. Only that
   * run's call presents it, and the engine accepts the token only for the call it was minted
   * for, once.
   */
  presentToken(item, token, run) {
    if (typeof token !== 'string' || token === '') throw new AegisError('approval_token_invalid', 'no override token to present');
    const { runs, context, callId } = this.#callsOf(item, run);
    const calls = runs.get(context) ?? new Map();
    const state = calls.get(callId) ?? {};
    state.token = token;
    calls.set(callId, state);
    runs.set(context, calls);
  }

  /** The runs table, run, call id and Aegis name of the guarded tool an interruption item of `run` is for. */
  #callsOf(item, run) {
    const raw = item?.rawItem;
    if (raw?.type !== 'function_call') throw new AegisError('malformed_request', 'not an interruption of a function tool call');
    const tool = (item.agent?.tools ?? []).find((t) => t.type === 'function' && t.name === raw.name && this.#calls.has(t));
    if (!tool) throw new AegisError('malformed_request', `\`${raw.name}\` is not a tool this guard decides`);
    return { runs: this.#calls.get(tool), context: runContextOf(run), callId: raw.callId, tool: this.#names.get(tool) };
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
    this.#markAgentTools(guarded);
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

  /**
   * Makes the agent tools of the guarded agent `guarded` known to this guard: its `asTool`
   * records what it makes (always a tool running `guarded` itself, whatever `this` it is called
   * on). Not enumerable, so a clone of it (whose tools may be other ones) is not guarded.
   */
  #markAgentTools(guarded) {
    const asTool = guarded.asTool;
    if (typeof asTool !== 'function') return;
    const made = this.#agentTools;
    Object.defineProperty(guarded, 'asTool', {
      configurable: true,
      enumerable: false,
      writable: false,
      value: function asGuardedTool(...options) {
        const agentTool = asTool.apply(guarded, options);
        made.add(agentTool);
        return agentTool;
      },
    });
  }

  /** `tool` with Aegis in its approval hook, its input guardrails and its invoke. */
  #wrapTool(tool, chainOf) {
    if (tool?.type !== 'function' || typeof tool.invoke !== 'function') {
      throw new AegisError('malformed_request', `\`${tool?.name}\` is not a function tool`);
    }
    // Aegis would decide only the call of the agent, not the calls its agent makes in a run of
    // its own: that agent must be guarded itself.
    const runsAgent = isAgentTool(tool);
    if (runsAgent && !this.#agentTools.has(tool)) {
      throw new AegisError('malformed_request', `tool \`${tool.name}\` runs an agent that is not guarded, whose tools would run around Aegis: build it with guard.agent(sub, { chain }).asTool(...)`);
    }
    const engine = this.#engine;
    const name = this.#toolName(tool.name);
    /**
     * RunContext → its calls: callId → { decided?: { guarded?, error?, args, digest, chain }, asked?, token?, pass? }.
     * Weak: a run's table goes with its context.
     */
    const runs = new WeakMap();
    /** The calls of the run `context` is; with `create`, a table for a run that has none yet (a throwaway one when there is no run to key on). */
    const callsIn = (context, create) => {
      const key = runKey(context);
      let calls = key === null ? undefined : runs.get(key);
      if (calls === undefined && create) {
        calls = new Map();
        if (key !== null) runs.set(key, calls);
      }
      return calls;
    };

    /** The chain in force now (`{ chain }`, a frozen copy), or `{ error }` when the chain source fails. */
    const presented = async () => {
      try {
        return { chain: chainCopy(await chainOf()) };
      } catch (error) {
        return { error };
      }
    };

    const decide = async (current, args, approvalToken, toolCallId) => {
      // Fail closed: an error (from the chain source too) is acted on as a refusal.
      if (current.error) return { error: current.error };
      try {
        return { guarded: await engine.authorizeEnforcedAsync({ chain: current.chain, tool: name, args, approvalToken, toolCallId }) };
      } catch (error) {
        return { error };
      }
    };

    // The SDK's `ToolInputGuardrailDefinition` (what `defineToolInputGuardrail` makes).
    const guardrail = {
      type: 'tool_input',
      name: GUARDRAIL_NAME,
      run: async ({ context, toolCall }) => {
        const { callId } = toolCall;
        const calls = callsIn(context, true);
        const state = calls.get(callId) ?? {};
        let args;
        try {
          args = deepFreeze(JSON.parse(toolCall.arguments));
        } catch {
          calls.delete(callId);
          return reject('Aegis denied this call: its arguments are not JSON', { code: 'args_invalid' });
        }
        const digest = digestOf(name, args);
        // The chain the call is made on now: a decision made on another chain (another
        // request's, sharing this run's context or its call id) is not this call's.
        const current = await presented();
        const prior = digest !== null && state.decided?.digest === digest && !current.error && sameChain(state.decided.chain, current.chain)
          ? state.decided
          : null;
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
          outcome = await decide(current, args, state.token, callId);
        } else if (prior) {
          // The decision made when the runner asked whether to pause, for these exact arguments.
          outcome = prior;
        } else {
          // No decision for these arguments here: the run resumed in another process, or the
          // arguments or the chain changed since it was decided (the engine binds tokens to
          // the call, the agent and the task).
          outcome = await decide(current, args, state.token, callId);
        }
        if (outcome.error) {
          const code = outcome.error instanceof AegisError ? outcome.error.code : 'internal';
          return reject(`Aegis could not decide this call (${code}): ${outcome.error.message}`, { code });
        }
        const { decision, enforcement } = outcome.guarded;
        const info = { decisionId: decision.decisionId, outcome: decision.outcome };
        if (enforcement.action === 'run') {
          calls.set(callId, { pass: { input: toolCall.arguments, args: deepFreeze(snapshot(enforcement.args)), decision, chain: current.chain } });
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
        const current = await presented();
        const calls = callsIn(context, true);
        const state = calls.get(callId) ?? {};
        // Asked again for a call already waiting on a human (a resume before the answer): the
        // same approval stands, rather than a second one for the same call; on the same chain only.
        const waiting = state.decided?.guarded?.enforcement.action === 'await_approval' && digest !== null && state.decided.digest === digest
          && !current.error && sameChain(state.decided.chain, current.chain);
        if (!waiting) state.decided = { ...(await decide(current, authorized, undefined, callId)), args: authorized, digest, chain: current.chain ?? null };
        state.asked = own === true || state.decided.guarded?.enforcement.action === 'await_approval';
        calls.set(callId, state);
        return state.asked;
      },
      inputGuardrails: [guardrail, ...(tool.inputGuardrails ?? [])],
      invoke: async (context, input, details) => {
        const callId = details?.toolCall?.callId;
        const calls = callId === undefined ? undefined : callsIn(context, false);
        const pass = calls?.get(callId)?.pass;
        // Only the call the guardrail passed in this run, with the arguments it saw, runs; once.
        if (pass === undefined || pass.input !== input) {
          if (pass !== undefined) calls.delete(callId);
          return 'Aegis denied this call: it was not decided before it ran';
        }
        // And only on the chain it was decided on: a run context shared between requests does
        // not hand one request's pass to another (nor lets it use the pass up).
        const current = await presented();
        if (current.error || !sameChain(pass.chain, current.chain)) return 'Aegis denied this call: it was decided on another credential chain';
        // Taken once: a concurrent invoke of the same call may have taken it meanwhile.
        if (calls.get(callId)?.pass !== pass) return 'Aegis denied this call: it was not decided before it ran';
        calls.delete(callId);
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
        // A guarded agent's run, nested in this one: its calls are kept under this run.
        if (runsAgent) return callingRun.run(runKey(context), () => tool.invoke(context, runInput, runDetails));
        return tool.invoke(context, runInput, runDetails);
      },
    };
    this.#calls.set(wrapped, runs);
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
