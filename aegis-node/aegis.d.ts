/** Aegis for Node: decides, before each tool call runs, whether an AI agent may make it. */

export type Jwk = { kty: 'OKP'; crv: 'Ed25519'; x: string; d?: string; kid?: string };
export type Chain = readonly string[];
export type Args = Readonly<Record<string, unknown>>;

export interface Reason {
  readonly code: string;
  readonly message: string;
  readonly policyId: string | null;
}

interface DecisionBase {
  readonly reasons: readonly Reason[];
  readonly decisionId: string;
  readonly policyVersion: string;
  readonly wouldBlock: boolean;
  readonly breakGlassId: string | null;
}
export interface AllowDecision extends DecisionBase { readonly outcome: 'allow'; readonly approvalId: null; readonly sanitizedArgs: null }
export interface SanitizeDecision extends DecisionBase { readonly outcome: 'sanitize'; readonly approvalId: null; readonly sanitizedArgs: Args }
export interface DenyDecision extends DecisionBase { readonly outcome: 'deny'; readonly approvalId: null; readonly sanitizedArgs: null }
export interface ApprovalNeededDecision extends DecisionBase { readonly outcome: 'approval_needed'; readonly approvalId: string; readonly sanitizedArgs: null }
/** A decision: a discriminated union on `outcome`. */
export type Decision = AllowDecision | SanitizeDecision | DenyDecision | ApprovalNeededDecision;

export interface PendingApproval {
  readonly approvalId: string; readonly callDigest: string; readonly tool: string; readonly args: Args;
  readonly agentId: string; readonly lineage: readonly string[]; readonly initiator: string; readonly taskId: string;
  readonly intent: string; readonly policyIds: readonly string[]; readonly reasons: readonly string[];
  readonly roles: readonly string[]; readonly policyVersion: string; readonly createdAtMs: number;
  readonly status: 'pending' | 'approved' | 'rejected' | 'superseded'; readonly resolvedBy: string | null;
  readonly resolvedAtMs: number | null; readonly note: string | null; readonly latencyMs: number | null;
  readonly raw: unknown;
}
export interface ApprovalResolution {
  readonly accepted: boolean;
  readonly reasons: readonly Reason[];
  readonly overrideToken: string | null;
  readonly approval: PendingApproval;
}
export interface LedgerEntry { readonly tool: string; readonly agentId: string; readonly lineage: readonly string[]; readonly decisionId: string; readonly at: number }
export interface BreakGlassGrant {
  readonly id: string; readonly agents: readonly string[]; readonly tools: readonly string[]; readonly reason: string;
  readonly approvers: readonly string[]; readonly openedAt: number; readonly expiresAt: number;
  readonly closedAt: number | null; readonly reviewRef: string | null;
}

/** An error from Aegis; `code` is the core's stable ErrorCode. */
export class AegisError extends Error {
  constructor(code: string, message: string);
  readonly code: string;
}
export class AegisDenied extends AegisError {
  constructor(decision: Decision);
  readonly decision: Decision;
}
export class AegisApprovalRequired extends AegisError {
  constructor(decision: ApprovalNeededDecision);
  readonly decision: ApprovalNeededDecision;
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

export interface AuthorizationRequest {
  chain: Chain;
  tool: string;
  args?: Args;
  resource?: { type: string; id: string };
  proof?: string;
  approvalToken?: string;
}

export interface EngineOptions {
  bundleDir: string;
  trustedIssuers: Record<string, KeyPair | Jwk>;
  /** `memory` (default), `sqlite:<path>` or a `redis://` URL. */
  store?: string;
  redisPrefix?: string;
  approvalKey?: KeyPair;
  audience?: string;
  leewaySecs?: number;
  maxDelegationDepth?: number;
  overrideTtlSecs?: number;
  /** A fixed clock (seconds since the epoch), for fixtures and tests. */
  fixedTime?: number;
  notifier?: (pending: PendingApproval) => void;
}

export class Engine {
  constructor(options: EngineOptions);
  readonly policyVersion: string;
  authorize(request: AuthorizationRequest): Decision;
  authorizeAsync(request: AuthorizationRequest): Promise<Decision>;
  approve(approvalId: string, approverChain: Chain, note?: string): ApprovalResolution;
  approveAsync(approvalId: string, approverChain: Chain, note?: string): Promise<ApprovalResolution>;
  reject(approvalId: string, approverChain: Chain, note?: string): ApprovalResolution;
  rejectAsync(approvalId: string, approverChain: Chain, note?: string): Promise<ApprovalResolution>;
  pendingApprovals(): PendingApproval[];
  pendingApprovalsAsync(): Promise<PendingApproval[]>;
  approval(approvalId: string): PendingApproval | null;
  ledger(taskId: string): LedgerEntry[];
  endTask(taskId: string): void;
  breakGlass(request: { agents: string[]; tools: string[]; reason: string; approvers: Chain[]; durationSecs: number }): BreakGlassGrant;
  openBreakGlass(): BreakGlassGrant[];
  closeBreakGlass(grantId: string, reviewRef: string): void;
  reloadBundle(bundleDir: string): string;
  reloadBundleAsync(bundleDir: string): Promise<string>;
  timeAuthorize(request: AuthorizationRequest, iterations: number): number;
  guard<A extends Args, R>(
    target: { tool: string; chain: Chain | (() => Chain | Promise<Chain>) },
    fn: (args: A) => R | Promise<R>,
  ): (args: A, options?: { approvalToken?: string }) => Promise<R>;
}

export function issueRoot(options: {
  issuer: string; issuerKey: KeyPair; agentId: string; agentKey: KeyPair | Jwk; taskId: string; intent: string;
  scope: string[]; ttlSecs?: number; issuedAt?: number; jti?: string; audience?: string;
}): string;
export function delegate(options: {
  parent: string; parentKey: KeyPair; agentId: string; agentKey: KeyPair | Jwk; scope: string[]; ttlSecs?: number;
  issuedAt?: number; jti?: string;
}): string;
export function inspect(token: string): { header: Record<string, unknown>; claims: Record<string, unknown>; digest: string };
export function createProof(options: { key: KeyPair; tool: string; args: Args; ttlSecs?: number; jti?: string; issuedAt?: number }): string;
export function callDigest(tool: string, args: Args): string;
export function slackMessage(pending: PendingApproval): { text: string; blocks: unknown[] };
export function deepFreeze<T>(value: T): T;
export function snapshot<T>(value: T): T;
export function errorCodes(): string[];
