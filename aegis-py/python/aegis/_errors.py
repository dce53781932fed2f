"""Exceptions, one class per stable core `ErrorCode`, all under `AegisError`.

Generated from `aegis-core/src/error.rs`; `tests/test_errors.py` checks that every code the
native module reports has its class here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Type

if TYPE_CHECKING:
    from . import Decision


class AegisError(Exception):
    """Base of every Aegis error. `code` is the core's stable `ErrorCode`."""

    code: str = "internal"

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class MalformedRequest(AegisError):
    """The request is not well formed (wrong shape, unsupported value, bad JSON)."""

    code = "malformed_request"

class InvalidKey(AegisError):
    """A key is not a valid Ed25519 key or JWK."""

    code = "invalid_key"

class InvalidBundle(AegisError):
    """A bundle failed to load: unreadable file, parse error or schema validation error."""

    code = "invalid_bundle"

class Internal(AegisError):
    """Something that should be impossible happened; the engine failed closed."""

    code = "internal"

class MissingCredential(AegisError):
    """The request carried no credential chain."""

    code = "missing_credential"

class MalformedToken(AegisError):
    """A token is not a well-formed compact JWS (encoding, JSON, duplicate or unknown members)."""

    code = "malformed_token"

class UnsupportedAlgorithm(AegisError):
    """The token's `alg` is not `EdDSA` (for example `none` or `HS256`)."""

    code = "unsupported_algorithm"

class ForbiddenHeader(AegisError):
    """The token carries a header Aegis refuses (`jwk`, `jku`, `x5u`, `x5c`, `crit`, ...)."""

    code = "forbidden_header"

class WrongTokenType(AegisError):
    """The token's `typ` is not the one expected at this position."""

    code = "wrong_token_type"

class UntrustedIssuer(AegisError):
    """The root credential is not signed by a trusted issuer key, or names another issuer."""

    code = "untrusted_issuer"

class SignatureInvalid(AegisError):
    """A signature does not verify."""

    code = "signature_invalid"

class CredentialExpired(AegisError):
    """A credential has expired."""

    code = "credential_expired"

class CredentialNotYetValid(AegisError):
    """A credential is not valid yet (`nbf` or `iat` in the future)."""

    code = "credential_not_yet_valid"

class LifetimeTooLong(AegisError):
    """A credential lives longer than the engine allows."""

    code = "lifetime_too_long"

class AudienceMismatch(AegisError):
    """A credential was issued for another audience."""

    code = "audience_mismatch"

class ParentMismatch(AegisError):
    """A delegated link does not name its parent (digest or issuer mismatch)."""

    code = "parent_mismatch"

class ScopeWidened(AegisError):
    """A delegated link grants a tool its parent does not hold."""

    code = "scope_widened"

class LifetimeExceedsParent(AegisError):
    """A delegated link expires after its parent."""

    code = "lifetime_exceeds_parent"

class TaskMismatch(AegisError):
    """A delegated link is for another task than its parent."""

    code = "task_mismatch"

class DelegationCycle(AegisError):
    """An agent appears twice in one delegation chain."""

    code = "delegation_cycle"

class DelegationTooDeep(AegisError):
    """The chain is deeper than the engine allows."""

    code = "delegation_too_deep"

class ToolNotInScope(AegisError):
    """The leaf credential's scope does not include the requested tool."""

    code = "tool_not_in_scope"

class UnknownTool(AegisError):
    """The tool is not an action of the policy bundle."""

    code = "unknown_tool"

class ProofRequired(AegisError):
    """The tool requires a proof of possession and none was presented."""

    code = "proof_required"

class ProofInvalid(AegisError):
    """The proof does not verify, is stale, or is for another call."""

    code = "proof_invalid"

class ProofReplayed(AegisError):
    """The proof's `jti` was already used."""

    code = "proof_replayed"

class PolicyForbid(AegisError):
    """A forbid policy matched."""

    code = "policy_forbid"

class NoMatchingPermit(AegisError):
    """No permit policy matched."""

    code = "no_matching_permit"

class PolicyError(AegisError):
    """A forbid policy failed to evaluate; Aegis counts that as a deny."""

    code = "policy_error"

class PolicyPermit(AegisError):
    """Not an error: the permit policy that determined an `allow` or `sanitize`."""

    code = "policy_permit"

class StoreUnavailable(AegisError):
    """The store failed; Aegis denies rather than decide without state."""

    code = "store_unavailable"

class TaskEnded(AegisError):
    """The task has ended; its credentials are revoked."""

    code = "task_ended"

class BudgetExceeded(AegisError):
    """The call would exceed a budget."""

    code = "budget_exceeded"

class Contention(AegisError):
    """Concurrent calls in the task kept conflicting; decided as a deny."""

    code = "contention"

class ApprovalTokenInvalid(AegisError):
    """The override token does not verify or is not a well-formed token."""

    code = "approval_token_invalid"

class ApprovalExpired(AegisError):
    """The override token has expired."""

    code = "approval_expired"

class ApprovalReplayed(AegisError):
    """The override token was already used."""

    code = "approval_replayed"

class ApprovalWrongAgent(AegisError):
    """The override token was approved for another agent."""

    code = "approval_wrong_agent"

class ApprovalArgsMismatch(AegisError):
    """The override token was approved for other arguments or another tool."""

    code = "approval_args_mismatch"

class ApprovalWrongTask(AegisError):
    """The override token was approved in another task."""

    code = "approval_wrong_task"

class ApprovalPolicyChanged(AegisError):
    """The override token was approved under another policy version."""

    code = "approval_policy_changed"

class ApprovalNotFound(AegisError):
    """No approval has this id."""

    code = "approval_not_found"

class ApprovalNotPending(AegisError):
    """The approval was already resolved: approved, rejected or superseded."""

    code = "approval_not_pending"

class ApproverConflict(AegisError):
    """The approver may not approve this request (segregation of duties)."""

    code = "approver_conflict"

class ApprovalGranted(AegisError):
    """Not an error: an override token turned `approval_needed` into `allow`."""

    code = "approval_granted"

class BreakGlassRefused(AegisError):
    """A break-glass request was refused (reason, approvers, duration)."""

    code = "break_glass_refused"

class BreakGlassApplied(AegisError):
    """Not an error: an open break-glass grant lifted a breakable forbid."""

    code = "break_glass_applied"


class Denied(AegisError):
    """A guarded call was denied; `decision` says why."""

    def __init__(self, decision: "Decision") -> None:
        first = decision.reasons[0] if decision.reasons else None
        super().__init__(
            first.message if first else "denied",
            first.code if first else "no_matching_permit",
        )
        self.decision = decision


class ApprovalRequired(AegisError):
    """A call needs a human approval (an approvable forbid matched): approve `approval_id`,
    then retry with the override token."""

    code = "approval_required"

    def __init__(self, decision: "Decision | str", code: Optional[str] = None) -> None:
        if isinstance(decision, str):
            super().__init__(decision, code)
            self.decision: "Optional[Decision]" = None
            self.approval_id: str = ""
            return
        super().__init__(f"approval {decision.approval_id} is needed before this call may run")
        self.decision = decision
        self.approval_id = decision.approval_id or ""


ERRORS_BY_CODE: Dict[str, Type[AegisError]] = {
    "malformed_request": MalformedRequest,
    "invalid_key": InvalidKey,
    "invalid_bundle": InvalidBundle,
    "internal": Internal,
    "missing_credential": MissingCredential,
    "malformed_token": MalformedToken,
    "unsupported_algorithm": UnsupportedAlgorithm,
    "forbidden_header": ForbiddenHeader,
    "wrong_token_type": WrongTokenType,
    "untrusted_issuer": UntrustedIssuer,
    "signature_invalid": SignatureInvalid,
    "credential_expired": CredentialExpired,
    "credential_not_yet_valid": CredentialNotYetValid,
    "lifetime_too_long": LifetimeTooLong,
    "audience_mismatch": AudienceMismatch,
    "parent_mismatch": ParentMismatch,
    "scope_widened": ScopeWidened,
    "lifetime_exceeds_parent": LifetimeExceedsParent,
    "task_mismatch": TaskMismatch,
    "delegation_cycle": DelegationCycle,
    "delegation_too_deep": DelegationTooDeep,
    "tool_not_in_scope": ToolNotInScope,
    "unknown_tool": UnknownTool,
    "proof_required": ProofRequired,
    "proof_invalid": ProofInvalid,
    "proof_replayed": ProofReplayed,
    "policy_forbid": PolicyForbid,
    "no_matching_permit": NoMatchingPermit,
    "policy_error": PolicyError,
    "approval_required": ApprovalRequired,
    "policy_permit": PolicyPermit,
    "store_unavailable": StoreUnavailable,
    "task_ended": TaskEnded,
    "budget_exceeded": BudgetExceeded,
    "contention": Contention,
    "approval_token_invalid": ApprovalTokenInvalid,
    "approval_expired": ApprovalExpired,
    "approval_replayed": ApprovalReplayed,
    "approval_wrong_agent": ApprovalWrongAgent,
    "approval_args_mismatch": ApprovalArgsMismatch,
    "approval_wrong_task": ApprovalWrongTask,
    "approval_policy_changed": ApprovalPolicyChanged,
    "approval_not_found": ApprovalNotFound,
    "approval_not_pending": ApprovalNotPending,
    "approver_conflict": ApproverConflict,
    "approval_granted": ApprovalGranted,
    "break_glass_refused": BreakGlassRefused,
    "break_glass_applied": BreakGlassApplied,
}


def from_native(error: BaseException) -> AegisError:
    """Maps a native `(code, message)` error to its exception class."""
    code, message = error.args if len(error.args) == 2 else ("internal", str(error))
    return ERRORS_BY_CODE.get(code, AegisError)(message, code)
