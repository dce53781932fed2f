/** Aegis for Node: decides, before each tool call runs, whether an AI agent may make it. */

import type { ErrorCode, ReasonCode } from './codes';
export type { ErrorCode, ReasonCode, VerdictCode } from './codes';
export { ERROR_CODES, VERDICT_CODES } from './codes';

export type Jwk = { kty: 'OKP'; crv: 'Ed25519'; x: string; d?: string; kid?: string };
export type Chain = readonly string[];
export type Args = Readonly<Record<string, unknown>>;

export interface Reason {
  readonly code: ReasonCode;
  readonly message: string;
  readonly policyId: string | null;
  /** The chain link (0 = root) a credential error was found at. */
  readonly link: number | null;
}

interface DecisionBase {
  readonly reasons: readonly Reason[];
  readonly decisionId: string;
  readonly policyVersion: string;
  readonly wouldBlock: boolean;
  readonly breakGlassId: string | null;
  /** What a candidate bundle in shadow rollout would have decided; never the outcome. */
  /** For a permitting decision of an engine that issues receipts: what the tool checks with `verifyReceipt`. */
  readonly receipt: string | null;
  readonly candidate: { readonly policyVersion: string; readonly outcome: 'allow' | 'deny' | 'sanitize' | 'approval_needed'; readonly policyIds: readonly string[]; readonly wouldBlock: boolean } | null;
}
export interface AllowDecision extends DecisionBase { readonly outcome: 'allow'; readonly approvalId: null; readonly sanitizedArgs: null }
export interface SanitizeDecision extends DecisionBase { readonly outcome: 'sanitize'; readonly approvalId: null; readonly sanitizedArgs: Args }
export interface DenyDecision extends DecisionBase { readonly outcome: 'deny'; readonly approvalId: null; readonly sanitizedArgs: null }
export interface ApprovalNeededDecision extends DecisionBase { readonly outcome: 'approval_needed'; readonly approvalId: string; readonly sanitizedArgs: null }
/** A decision: a discriminated union on `outcome`. */
export type Decision = AllowDecision | SanitizeDecision | DenyDecision | ApprovalNeededDecision;

/**
 * What a guard does with a decision, decided by the core: run the tool with exactly `args`,
 * wait for a human, or refuse. Treat any other `action` as refuse.
 */
export type Enforcement =
  | { readonly action: 'run'; readonly args: Args }
  | { readonly action: 'await_approval'; readonly approvalId: string; readonly message: string }
  | { readonly action: 'refuse'; readonly code: ReasonCode; readonly message: string };
/** A decision with the core's enforcement of it (`authorizeEnforced`). */
export interface EnforcedDecision {
  readonly decision: Decision;
  readonly enforcement: Enforcement;
}

export interface PendingApproval {
  readonly approvalId: string; readonly callDigest: string; readonly tool: string;
  /** The arguments as a human may see them: every redaction (`@sanitize`) of the permits that held applied. */
  readonly args: Args;
  /** The resource the call targets (`null`: the tool's default resource); the override token is bound to it. */
  readonly resource: ResourceRef | null;
  /** What an approval lifts: the forbid policies it answers and `budget:<name>` for each budget it lets be exceeded. */
  readonly lifts: readonly string[];
  /** The requester's attested id (a delegate's is `planner/finance-agent`). */
  readonly agentId: string; readonly lineage: readonly string[]; readonly initiator: string; readonly taskId: string;
  readonly intent: string; readonly policyIds: readonly string[]; readonly reasons: readonly string[];
  readonly roles: readonly string[]; readonly policyVersion: string; readonly createdAtMs: number;
  readonly status: 'pending' | 'approved' | 'rejected' | 'superseded'; readonly resolvedBy: string | null;
  readonly resolvedAtMs: number | null; readonly note: string | null; readonly latencyMs: number | null;
  /** How many distinct approvers must approve (`@quorum`), and the roles that approve in order (`@stages`). */
  readonly quorum: number; readonly stages: readonly string[];
  /** The approvals given so far (each by a distinct identity and key). */
  readonly votes: readonly { readonly approver: string; readonly key: string; readonly stage?: string; readonly at_ms: number; readonly note?: string }[];
  /** For a batch approval: the envelope of calls it covers. */
  readonly batch: BatchEnvelope | null;
  readonly raw: unknown;
}
/** What a batch approval covers: calls of one tool within limits, for `window_secs` after its approval. */
export interface BatchEnvelope {
  readonly tool: string; readonly max_calls: number; readonly per_call_limit?: number; readonly total_limit?: number;
  readonly destinations?: readonly string[]; readonly window_secs: number;
}
export interface ApprovalResolution {
  readonly accepted: boolean;
  readonly reasons: readonly Reason[];
  readonly overrideToken: string | null;
  readonly approval: PendingApproval;
}
export interface LedgerEntry { readonly tool: string; readonly agentId: string; readonly lineage: readonly string[]; readonly decisionId: string; readonly at: number }
export interface BreakGlassGrant {
  readonly id: string; readonly agents: readonly string[]; readonly tools: readonly string[]; readonly tasks: readonly string[];
  readonly reason: string;
  readonly approvers: readonly string[]; readonly openedAt: number; readonly expiresAt: number;
  readonly closedAt: number | null; readonly reviewRef: string | null;
}

/** Where an error was found, when it has a place (`null` otherwise). */
export interface ErrorDetails {
  readonly link: number | null;
  readonly file: string | null;
  readonly line: number | null;
  readonly policyId: string | null;
}
/**
 * An error from Aegis: `code` is the core's stable ErrorCode (for AegisDenied and
 * AegisApprovalRequired, the reason code of the refusal).
 */
export class AegisError extends Error {
  constructor(code: ReasonCode, message: string, details?: Partial<ErrorDetails>);
  readonly code: ReasonCode;
  readonly details: ErrorDetails;
}
/** A guarded call was refused. */
export class AegisDenied extends AegisError {
  constructor(decision: Decision, enforcement?: Enforcement);
  readonly decision: Decision;
  readonly enforcement: Enforcement | null;
}
/** A guarded call needs a human approval of `approvalId`. */
export class AegisApprovalRequired extends AegisError {
  constructor(decision: ApprovalNeededDecision, enforcement?: Extract<Enforcement, { action: 'await_approval' }>);
  readonly code: 'approval_required';
  readonly decision: ApprovalNeededDecision;
  readonly enforcement: Extract<Enforcement, { action: 'await_approval' }> | null;
  readonly approvalId: string;
}

export class KeyPair {
  constructor(privateJwk: Jwk);
  static generate(): KeyPair;
  static fromSeed(seed: Uint8Array): KeyPair;
  readonly privateJwk: Jwk;
  readonly publicJwk: Jwk;
  readonly kid: string;
}

/** A resource entity: `type::"id"`. */
export interface ResourceRef { readonly type: string; readonly id: string }

export interface AuthorizationRequest {
  chain: Chain;
  tool: string;
  args?: Args;
  resource?: ResourceRef;
  proof?: string;
  approvalToken?: string;
  /**
   * The W3C trace context the engine's span nests under; by default the active span of
   * `@opentelemetry/api`, when the host has it.
   */
  traceparent?: string;
  /** The agent framework's id for this call (`gen_ai.tool.call.id` on the span and in the audit record). */
  toolCallId?: string;
}

/** A JSON Web Key Set (RFC 7517), as an issuer publishes it at its `jwks_uri`. */
export interface JwkSet { keys: readonly Record<string, unknown>[] }

/** The algorithms an external issuer may sign with (`none` and the HMAC family never). */
export type ExternalAlgorithm = 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'EdDSA';

/**
 * An issuer of external identities: an OIDC provider (ID tokens) or a SPIFFE trust domain's
 * JWT issuer (JWT-SVIDs). Its tokens are one-link chains `[token]`: id `sub`, roles the strings
 * of `rolesClaim`, scope `scope`; they cannot delegate.
 */
export interface ExternalIssuer {
  /** The `iss` its tokens carry. */
  issuer: string;
  /** The `aud` its tokens must hold (else `audience_mismatch`). */
  audience: string;
  /** Its key set; a token's `kid` must name one of these keys. Refresh with `Engine#updateJwks`. */
  jwks: JwkSet;
  /** Allowed algorithms (default `RS256`, `ES256`, `EdDSA`). */
  algorithms?: readonly ExternalAlgorithm[];
  /** The claim whose strings are the identity's roles, e.g. `groups` (default: no roles). */
  rolesClaim?: string;
  /** What its identities may do (default `['aegis.approve']`). */
  scope?: readonly string[];
  /** The task its identities belong to (default `external:<issuer>`): `endTask` on it revokes them all. */
  task?: string;
}

export interface EngineOptions {
  bundleDir: string;
  /** Issuers of Aegis root credentials, by `iss`. Optional, but an engine needs at least one issuer of either kind. */
  trustedIssuers?: Record<string, KeyPair | Jwk>;
  /** Issuers of external identities (OIDC ID tokens, SPIFFE JWT-SVIDs). */
  externalIssuers?: readonly ExternalIssuer[];
  /**
   * `memory` (default), `sqlite:<path>`, a `redis://` URL or, for a Redis Cluster,
   * `redis+cluster://HOST:PORT,HOST:PORT` (parsed by the core), or the
   * core's object form.
   */
  store?: string | StoreConfig;
  /** The Redis key prefix (default `aegis`); only with a Redis URL as `store`. */
  redisPrefix?: string;
  approvalKey?: KeyPair;
  audience?: string;
  leewaySecs?: number;
  maxDelegationDepth?: number;
  maxCredentialLifetimeSecs?: number;
  overrideTtlSecs?: number;
  /** The longest break-glass grant, in seconds. */
  maxBreakGlassSecs?: number;
  /** A fixed clock (seconds since the epoch), for fixtures and tests. */
  fixedTime?: number;
  /**
   * Called (asynchronously, on the JS thread) with every new pending approval, after it is
   * stored. A throw is reported as a process warning.
   */
  notifier?: (pending: PendingApproval) => void;
  /** Turns on the tamper-evident audit log: an allow that cannot be recorded is a deny (`audit_unavailable`). */
  audit?: AuditOptions;
  /** Exports OpenTelemetry spans and metrics over OTLP/HTTP (protobuf). */
  telemetry?: { otlpEndpoint: string; serviceName?: string; exportIntervalMs?: number };
  /** Put in force only bundles signed by one of these keys (`bundle.sig`, see `bundleSign`). */
  bundleKeys?: readonly KeyPair[];
  /** Take changes to what is enforced only through `admin` (two administrators). */
  requireTwoAdmins?: boolean;
  /** Sign a receipt for every permitting decision, for tools that check with `verifyReceipt`. */
  receipts?: { key: KeyPair; issuer?: string; audience?: string; ttlSecs?: number };
}

/** A control-plane change (`set_mode`, `load_bundle`, `rollback`, `set_candidate`, ...). */
export type AdminAction =
  | { action: 'set_mode'; mode: 'enforce' | 'shadow' }
  | { action: 'load_bundle'; bundle_dir: string; digest: string }
  | { action: 'rollback' }
  | { action: 'set_candidate'; bundle_dir: string; digest: string }
  | { action: 'promote_candidate' }
  | { action: 'clear_candidate' }
  | { action: 'update_jwks'; issuer: string; jwks: JwkSet }
  | { action: 'close_break_glass'; grant_id: string; review_ref: string };

/** One administrator's part of an admin request: its root credential and its signature over the action. */
export interface AdminSignature {
  chain: string[];
  proof: string;
}

/** What an accepted admin request left in force. */
export interface AdminOutcome {
  readonly action: string;
  readonly policy_version: string;
  readonly mode: 'enforce' | 'shadow';
  readonly candidate_version: string | null;
  readonly requested_by: string;
  readonly approved_by: string;
}

/** Where and how the engine keeps its audit log. */
export interface AuditOptions {
  /** The log's directory (created if absent). */
  dir: string;
  /** The log's private key, as `auditKeygen` returns it (or use `signingKeyFile`). */
  signingKey?: string;
  /** A file holding the private key; keep it outside the log's directory. */
  signingKeyFile?: string;
  /** A directory every checkpoint is also written to, as a new file. */
  exportCheckpointsTo?: string;
  /** Sign a checkpoint after this many records (default 1000; 0: only when asked). */
  checkpointEvery?: number;
  /** A 32-byte key, hex, that seals each decision's raw arguments for replay. */
  sealKeyHex?: string;
}

/** A signed checkpoint of an audit log (C2SP tlog-checkpoint in a signed note). */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  /** The Merkle root, base64. */
  readonly root: string;
  /** The whole signed note: what an auditor keeps. */
  readonly note: string;
}

/** What checking an audit log found; `firstBad` names the first record that fails a check. */
export interface LogReport {
  readonly origin: string;
  readonly intact: boolean;
  readonly records: number;
  readonly checkpoint: Checkpoint | null;
  /** The sizes of the kept checkpoints the log was shown to extend. */
  readonly trusted: readonly number[];
  readonly firstBad: { readonly seq: number; readonly why: string } | null;
  readonly tornBytes: number;
  /** True when no key was pinned and the one stored beside the log was used. */
  readonly keyFromLog: boolean;
}

/** The core's store configuration object. */
export type StoreConfig = 'memory' | { sqlite: { path: string } } | { redis: { url: string; prefix?: string } }
  | { redis_cluster: { nodes: string[]; prefix?: string } };

export class Engine {
  constructor(options: EngineOptions);
  /**
   * The engine another thread shared with `shareHandle()`: the same engine (stores, caches,
   * ledgers) used from this worker thread; the handle is valid while the engine that made it lives.
   */
  static attach(handle: string): Engine;
  /** A handle for `Engine.attach` in a worker thread (post it to the worker). */
  shareHandle(): string;
  readonly policyVersion: string;
  /** Signs a checkpoint of the audit log now; an engine without a log throws `audit_unavailable`. */
  auditCheckpoint(): Checkpoint;
  /** Exports the spans and metrics recorded so far now (an engine built with `telemetry`). */
  flushTelemetry(): void;
  /** A change to what is enforced, signed by two distinct administrators. */
  admin(request: { action: AdminAction; policy_version: string; requested_by: AdminSignature; approved_by: AdminSignature }): AdminOutcome;
  /** What is enforced and how. */
  controlStatus(): { readonly policy_version: string; readonly mode: 'enforce' | 'shadow'; readonly candidate_version: string | null; readonly history: readonly string[] };
  authorize(request: AuthorizationRequest): Decision;
  authorizeAsync(request: AuthorizationRequest): Promise<Decision>;
  /** The decision with the core's enforcement of it: what guards act on. */
  authorizeEnforced(request: AuthorizationRequest): EnforcedDecision;
  authorizeEnforcedAsync(request: AuthorizationRequest): Promise<EnforcedDecision>;
  /**
   * Approves as the person holding `approverChain`: a root identity (never a delegate) holding
   * `aegis.approve` by its exact name, outside the requester's chain and its keys; the bundle's
   * `aegis.approve` policies decide the rest (`principal in Role::"..."` matches issuer-attested roles).
   */
  approve(approvalId: string, approverChain: Chain, note?: string): ApprovalResolution;
  approveAsync(approvalId: string, approverChain: Chain, note?: string): Promise<ApprovalResolution>;
  reject(approvalId: string, approverChain: Chain, note?: string): ApprovalResolution;
  rejectAsync(approvalId: string, approverChain: Chain, note?: string): Promise<ApprovalResolution>;
  /** Asks one approval for a batch of calls within `envelope`, where the bundle batches the tool. */
  requestBatch(chain: Chain, envelope: BatchEnvelope, options?: { resource?: ResourceRef; reason?: string }): PendingApproval;
  requestBatchAsync(chain: Chain, envelope: BatchEnvelope, options?: { resource?: ResourceRef; reason?: string }): Promise<PendingApproval>;
  /** The JWK Set that verifies this engine's decision receipts (null: it issues none). */
  receiptJwks(): { readonly keys: readonly unknown[] } | null;
  pendingApprovals(): PendingApproval[];
  pendingApprovalsAsync(): Promise<PendingApproval[]>;
  approval(approvalId: string): PendingApproval | null;
  ledger(taskId: string): LedgerEntry[];
  endTask(taskId: string): void;
  /**
   * Opens a break-glass grant lifting `@breakable` forbids for the attested `agents` (a
   * delegate's id is `planner/finance-agent`) calling `tools` in `tasks`. Needs two approvers:
   * distinct root identities (distinct ids and keys) holding `aegis.break_glass` by name.
   */
  breakGlass(request: {
    agents: string[]; tools: string[]; tasks: string[]; reason: string; approvers: Chain[]; durationSecs: number;
  }): BreakGlassGrant;
  openBreakGlass(): BreakGlassGrant[];
  closeBreakGlass(grantId: string, reviewRef: string): void;
  reloadBundle(bundleDir: string): string;
  reloadBundleAsync(bundleDir: string): Promise<string>;
  /**
   * Replaces the key set of external issuer `issuer` (the refresh hook): tokens are checked
   * against `jwks` from the next call on. An issuer the engine does not know throws `untrusted_issuer`.
   */
  updateJwks(issuer: string, jwks: JwkSet): void;
  updateJwksAsync(issuer: string, jwks: JwkSet): Promise<void>;
  timeAuthorize(request: AuthorizationRequest, iterations: number): number;
  /**
   * Wraps `fn` so every call is authorized first: `fn` receives a frozen copy of exactly the
   * arguments the core's enforcement says to run with; approval needed throws
   * AegisApprovalRequired, anything else AegisDenied.
   */
  guard<A extends Args, R>(
    target: { tool: string; chain: Chain | (() => Chain | Promise<Chain>) },
    fn: (args: A) => R | Promise<R>,
  ): (args: A, options?: { approvalToken?: string }) => Promise<R>;
}

/** A root credential. `roles` are attested by the issuer (sent only when non-empty). */
export function issueRoot(options: {
  issuer: string; issuerKey: KeyPair; agentId: string; agentKey: KeyPair | Jwk; taskId: string; intent: string;
  scope: string[]; ttlSecs?: number; issuedAt?: number; jti?: string; audience?: string; roles?: readonly string[];
}): string;
/**
 * A delegated credential. `agentId` is the delegate's name under its delegator (no `/`): the
 * engine knows it as `<parent id>/<agentId>`. Delegates hold no roles; a key appears once per
 * chain (a delegation to the parent's own key throws `delegation_cycle`).
 */
export function delegate(options: {
  parent: string; parentKey: KeyPair; agentId: string; agentKey: KeyPair | Jwk; scope: string[]; ttlSecs?: number;
  issuedAt?: number; jti?: string;
  /**
   * Keep the tools of `scope` the parent holds and end with the parent, instead of refusing a
   * wider scope (`scope_widened`) or a longer life: what integrations minting a sub-agent's
   * delegation from its tools want.
   */
  narrow?: boolean;
}): string;
export function inspect(token: string): { header: Record<string, unknown>; claims: Record<string, unknown>; digest: string };
/** How the engine names the agent of a chain (root first), read without verifying it (for display and keying). */
export function inspectChain(chain: string[]): { agentId: string; lineage: string[]; taskId: string; scope: string[] };
/**
 * Checks an Ed25519 `signature` of `message` by the 32-byte `publicKey` exactly as the core checks
 * credentials, proofs and override tokens (strict). `keyError` is set when the key itself is refused.
 */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): {
  readonly valid: boolean; readonly keyError: ErrorCode | null;
};
/** A new audit log key; `signerKey` is private and not enumerable. */
export function auditKeygen(name: string, options?: { seed?: Uint8Array }): { readonly signerKey: string; readonly verifierKey: string };
/** Checks an audit log; pin `verifierKey` and pass kept checkpoints to detect a log rewritten whole. */
export function auditVerify(dir: string, options?: { verifierKey?: string; trustedCheckpoints?: string[] }): LogReport;
export function createProof(options: { key: KeyPair; tool: string; args: Args; ttlSecs?: number; jti?: string; issuedAt?: number }): string;
export function callDigest(tool: string, args: Args): string;
/** One administrator's signature over a control-plane action (single use). */
export function adminProof(key: KeyPair, action: AdminAction, policyVersion: string, options?: { ttlSecs?: number; jti?: string; issuedAt?: number }): string;
/** Signs a bundle directory (writes `bundle.sig`). */
export function bundleSign(bundleDir: string, key: KeyPair): { readonly signature: string; readonly policyVersion: string };
/** Checks a bundle's `bundle.sig` against trusted keys. */
export function bundleVerify(bundleDir: string, keys: readonly KeyPair[]): { readonly policyVersion: string; readonly signedBy: string };
/** Runs the bundle's policy tests. */
export function policyTest(bundleDir: string): { readonly policy_version: string; readonly cases: readonly { readonly file: string; readonly name: string; readonly failures: readonly string[] }[] };
/** The bundle's lint findings. */
export function policyLint(bundleDir: string): readonly { readonly code: string; readonly file: string; readonly line: number; readonly policy_id: string | null; readonly message: string }[];
/** Re-decides the calls of audit logs under a candidate bundle. */
export function policyDryRun(bundleDir: string, logs: readonly string[], options?: { sealKey?: Uint8Array }): {
  readonly candidate_version: string;
  readonly decisions: number;
  readonly replayed: number;
  readonly changes: readonly { readonly decision_id: string; readonly agent_id: string; readonly task_id: string; readonly tool: string; readonly from: string; readonly to: string; readonly policies: readonly string[]; readonly opens: boolean }[];
  readonly by_policy: Readonly<Record<string, number>>;
  readonly by_agent: Readonly<Record<string, number>>;
  readonly not_reevaluable: readonly string[];
};
export function slackMessage(pending: PendingApproval): { text: string; blocks: unknown[] };
/** The core's enforcement of `decision` for a call with `args`. */
export function enforce(decision: Decision, args: Args): Enforcement;
/**
 * The one rule guards follow: returns a frozen copy of exactly `enforcement.args` for `run`;
 * throws AegisApprovalRequired for `await_approval` and AegisDenied for anything else.
 */
export function argsToRun(enforced: EnforcedDecision): Args;
/** The value at an RFC 6901 JSON pointer in JSON text. */
export function jsonPointer(json: string, pointer: string): unknown;
export function deepFreeze<T>(value: T): T;
export function snapshot<T>(value: T): T;
export function errorCodes(): ErrorCode[];
export function reasonCodes(): ReasonCode[];
/** The core's operation table (each has a wrapper in this package). */
export function operations(): { name: string; needsEngine: boolean; summary: string }[];

/** A tool's offline check of a decision receipt: signed by a key of `jwks`, by `issuer`, for `audience`, unexpired, for exactly `tool` and `args`. */
export function verifyReceipt(receipt: string, jwks: unknown, check: { issuer: string; audience: string; tool: string; args: Args; now?: number; consume?: boolean }): {
  readonly iss: string; readonly aud: string; readonly sub: string; readonly task: string; readonly tool: string;
  readonly call: string; readonly jti: string; readonly pv: string; readonly iat: number; readonly exp: number;
};
