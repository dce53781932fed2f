"""Aegis: decides, before each tool call runs, whether an AI agent may make it.

The engine verifies who is calling and through which chain of agents (Ed25519-signed,
delegable credentials), evaluates Cedar policies over the call, enforces segregation of duties
across the chain and the task, routes risky calls to a human for a one-time approval bound to the
exact arguments, and returns a :class:`Decision`.

Everything is decided by the Rust core; this package converts values and maps errors.
"""

from __future__ import annotations

import contextvars
import functools
import inspect as _inspect
import json
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from . import _native
from ._errors import *  # noqa: F401,F403  (one exception class per error code)
from ._errors import ERRORS_BY_CODE, REASON_CODES, VERDICT_CODES, AegisError, from_native
from ._guard import ApprovalRequired, Denied, args_to_run

__all__ = [
    "AegisError",
    "ApprovalRequired",
    "ApprovalResolution",
    "BreakGlassGrant",
    "Checkpoint",
    "Decision",
    "Denied",
    "Enforced",
    "Enforcement",
    "Engine",
    "ERRORS_BY_CODE",
    "ExternalIssuer",
    "KeyPair",
    "LedgerEntry",
    "LogKeys",
    "LogReport",
    "Operation",
    "PendingApproval",
    "REASON_CODES",
    "Reason",
    "SignatureVerdict",
    "VERDICT_CODES",
    "args_to_run",
    "admin_proof",
    "audit_keygen",
    "audit_verify",
    "bundle_sign",
    "bundle_verify",
    "call_digest",
    "create_proof",
    "delegate",
    "error_codes",
    "freeze",
    "inspect",
    "inspect_chain",
    "issue_root",
    "json_pointer",
    "operations",
    "policy_dry_run",
    "policy_lint",
    "policy_test",
    "reason_codes",
    "slack_message",
    "verify_signature",
]

Chain = Sequence[str]
F = TypeVar("F", bound=Callable[..., Any])


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except _native.NativeError as e:
        raise from_native(e) from None


def _free(op: str, payload: Any) -> Any:
    """Runs operation `op` of the core's table (one that needs no engine) on `payload`."""
    return json.loads(_call(_native.call, op, _dumps(payload)))


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why a decision came out as it did: a stable `code`, the policy (if any), a message, and
    the chain link (if a credential is the reason)."""

    code: str
    message: str
    policy_id: Optional[str] = None
    link: Optional[int] = None

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "Reason":
        return cls(d["code"], d["message"], d.get("policy_id"), d.get("link"))


@dataclass(frozen=True)
class Enforcement:
    """What a guard does with a decision, as the core rules: `action` is `run` (with exactly
    `args`), `await_approval` (a human approves `approval_id`) or `refuse` (`code`, `message`).
    Any other action must be treated as a refusal (see :func:`args_to_run`)."""

    action: str
    args: Optional[Mapping[str, Any]] = None
    approval_id: Optional[str] = None
    code: Optional[str] = None
    message: Optional[str] = None

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "Enforcement":
        args = d.get("args")
        return cls(str(d.get("action")), None if args is None else freeze(args), d.get("approval_id"),
                   d.get("code"), d.get("message"))


#: The decision on one tool call (`outcome`, `reasons`, `decision_id`, `policy_version`,
#: `would_block`, `approval_id`, `sanitized_args`, `break_glass_id`, `candidate`, `receipt`;
#: `allowed`, `codes`, `enforce(args)`): a native class, so that a warm decision is one
#: allocation. Frozen, compared and hashed by its fields as a dataclass is; its methods with
#: logic are the functions below, lent to it at registration.
Decision = _native.Decision


def _decision_allowed(d: Decision) -> bool:
    """`Decision.allowed`: whether the tool may run (`allow` or `sanitize`), as the core's
    enforcement rules."""
    return _decision_enforce(d, {}).action == "run"


def _decision_enforce(d: Decision, args: Mapping[str, Any]) -> "Enforcement":
    """`Decision.enforce`: the core's enforcement of `d` for a call with `args`."""
    return Enforcement._from_json(_free("enforce", {"decision": _decision_json(d), "args": args}))


def _decision_repr(d: Decision) -> str:
    why = ", ".join(f"{r.code}" + (f" {r.policy_id}" if r.policy_id else "") for r in d.reasons)
    extra = f" approval_id={d.approval_id}" if d.approval_id else ""
    return f"<Decision {d.outcome} [{why}]{extra} {d.decision_id} {d.policy_version}>"


def _decision_json(d: Decision) -> Dict[str, Any]:
    """`Decision._json`: `d` in the core's JSON form (`null` stands for an absent member)."""
    return {"outcome": d.outcome,
            "reasons": [{"code": r.code, "message": r.message, "policy_id": r.policy_id, "link": r.link}
                        for r in d.reasons],
            "decision_id": d.decision_id, "policy_version": d.policy_version,
            "would_block": d.would_block, "approval_id": d.approval_id,
            "sanitized_args": d.sanitized_args, "break_glass_id": d.break_glass_id}


def _decision_from_json(data: Dict[str, Any]) -> Decision:
    """`Decision._from_json`: a decision from the core's JSON form."""
    return Decision(
        outcome=data["outcome"],
        reasons=tuple(Reason._from_json(r) for r in data["reasons"]),
        decision_id=data["decision_id"],
        policy_version=data["policy_version"],
        would_block=data.get("would_block", False),
        approval_id=data.get("approval_id"),
        sanitized_args=freeze(data["sanitized_args"]) if "sanitized_args" in data else None,
        break_glass_id=data.get("break_glass_id"),
        candidate=freeze(data["candidate"]) if data.get("candidate") is not None else None,
        receipt=data.get("receipt"),
    )


@dataclass(frozen=True)
class Enforced:
    """A decision with the core's enforcement of it, as :meth:`Engine.authorize_enforced` returns."""

    decision: Decision
    enforcement: Enforcement

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "Enforced":
        return cls(Decision._from_json(d["decision"]), Enforcement._from_json(d["enforcement"]))


@dataclass(frozen=True)
class PendingApproval:
    """A call waiting for a human: who asked, for what, why, and under which policy.

    `agent_id` is the requester's attested id (a delegate's is namespaced under its delegator,
    `planner/finance-agent`); `args` are shown with the redactions (`@sanitize`) already applied
    (the approval binds the real arguments); `lifts` is what an approval lifts: the forbids it
    answers and `budget:<name>` for each budget it allows to be exceeded."""

    approval_id: str
    call_digest: str
    tool: str
    args: Mapping[str, Any]
    agent_id: str
    lineage: Tuple[str, ...]
    initiator: str
    task_id: str
    intent: str
    policy_ids: Tuple[str, ...]
    reasons: Tuple[str, ...]
    roles: Tuple[str, ...]
    policy_version: str
    created_at_ms: int
    status: str
    resolved_by: Optional[str] = None
    resolved_at_ms: Optional[int] = None
    note: Optional[str] = None
    lifts: Tuple[str, ...] = ()
    resource: Optional[Tuple[str, str]] = None
    quorum: int = 1
    stages: Tuple[str, ...] = ()
    votes: Tuple[Mapping[str, Any], ...] = ()
    batch: Optional[Mapping[str, Any]] = None
    _raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def latency_ms(self) -> Optional[int]:
        """Milliseconds from the request to its approval or rejection."""
        return None if self.resolved_at_ms is None else self.resolved_at_ms - self.created_at_ms

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "PendingApproval":
        return cls(
            approval_id=d["approval_id"], call_digest=d["call_digest"], tool=d["tool"], args=freeze(d["args"]),
            agent_id=d["agent_id"], lineage=tuple(d["lineage"]), initiator=d["initiator"], task_id=d["task_id"],
            intent=d["intent"], policy_ids=tuple(d["policy_ids"]), reasons=tuple(d["reasons"]),
            roles=tuple(d["roles"]), policy_version=d["policy_version"], created_at_ms=d["created_at_ms"],
            status=d["status"], resolved_by=d.get("resolved_by"), resolved_at_ms=d.get("resolved_at_ms"),
            note=d.get("note"), lifts=tuple(d.get("lifts") or ()), resource=_resource_of(d.get("resource")),
            quorum=d.get("quorum", 1), stages=tuple(d.get("stages") or ()),
            votes=tuple(freeze(v) for v in d.get("votes") or ()),
            batch=None if d.get("batch") is None else freeze(d["batch"]), _raw=d,
        )


@dataclass(frozen=True)
class ApprovalResolution:
    """The result of approve/reject; `override_token` is the single-use token for the call."""

    accepted: bool
    reasons: Tuple[Reason, ...]
    approval: PendingApproval
    override_token: Optional[str] = None


@dataclass(frozen=True)
class LedgerEntry:
    """One allowed call (or approval) in a task's ledger; `key` is the thumbprint of the key
    the performer's credential binds (duties are recorded by key too), when known."""

    tool: str
    agent_id: str
    lineage: Tuple[str, ...]
    decision_id: str
    at: int
    key: str = ""


@dataclass(frozen=True)
class BreakGlassGrant:
    """A time-boxed emergency grant for `agents` (attested ids) calling `tools` in `tasks`;
    listed as open until closed with a review reference."""

    id: str
    agents: Tuple[str, ...]
    tools: Tuple[str, ...]
    tasks: Tuple[str, ...]
    reason: str
    approvers: Tuple[str, ...]
    opened_at: int
    expires_at: int
    closed_at: Optional[int] = None
    review_ref: Optional[str] = None

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "BreakGlassGrant":
        return cls(d["id"], tuple(d["agents"]), tuple(d["tools"]), tuple(d.get("tasks") or ()), d["reason"],
                   tuple(d["approvers"]), d["opened_at"], d["expires_at"], d.get("closed_at"), d.get("review_ref"))


@dataclass(frozen=True)
class Operation:
    """One operation of the core's table: its name, whether it needs an engine, what it does."""

    name: str
    needs_engine: bool
    summary: str


def _resource_of(value: Any) -> Optional[Tuple[str, str]]:
    return None if value is None else (str(value["type"]), str(value["id"]))


def freeze(value: Any) -> Any:
    """A deep, immutable view: dicts become read-only mappings, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    try:
        # Plain dicts and lists (the usual arguments) need no copy; tuples are written as lists.
        return json.dumps(value, separators=(",", ":"))
    except TypeError:
        # Frozen views (`freeze`) and other mappings: copied into plain containers first.
        return json.dumps(_thaw(value), separators=(",", ":"))


# --- the core's table, directly ------------------------------------------------------------------


def operations() -> List[Operation]:
    """Every operation of the core's table (each has a wrapper in this package)."""
    return [Operation(o["name"], o["needs_engine"], o["summary"]) for o in _free("operations", {})]


def error_codes() -> Tuple[str, ...]:
    """Every stable `ErrorCode` of the core (each has its class in :data:`ERRORS_BY_CODE`)."""
    return tuple(_free("error_codes", {}))


def reason_codes() -> Tuple[str, ...]:
    """Every code a decision's reason can carry: the verdict codes, then the error codes."""
    return tuple(_free("reason_codes", {}))


def json_pointer(json_text: str, pointer: str) -> Any:
    """The value at RFC 6901 `pointer` in `json_text`, as the core reads it (strictly)."""
    return _free("json_pointer", {"json": json_text, "pointer": pointer})


# --- keys and credentials -----------------------------------------------------------------------


class KeyPair:
    """An Ed25519 key pair. The private JWK is never shown by `repr`."""

    __slots__ = ("_jwk",)

    def __init__(self, private_jwk: Mapping[str, Any]) -> None:
        self._jwk = dict(private_jwk)
        if "d" not in self._jwk:
            raise InvalidKey("a key pair needs a private jwk (with `d`)", "invalid_key")  # noqa: F405
        _free("public_jwk", self._jwk)

    @classmethod
    def generate(cls) -> "KeyPair":
        """A fresh key from the operating system's randomness."""
        return cls(_free("generate_key", {}))

    @classmethod
    def from_seed(cls, seed: bytes) -> "KeyPair":
        """The deterministic key for a 32-byte seed (fixtures and tests)."""
        return cls(_free("generate_key", {"seed_hex": seed.hex()}))

    @property
    def private_jwk(self) -> Dict[str, Any]:
        """The private JWK (contains the secret)."""
        return dict(self._jwk)

    @property
    def public_jwk(self) -> Dict[str, Any]:
        """The public JWK, `kid` = RFC 7638 thumbprint."""
        return dict(_free("public_jwk", self._jwk))

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint."""
        return str(self.public_jwk["kid"])

    def __repr__(self) -> str:
        return f"KeyPair(kid={self.kid!r})"


def _jwk_of(key: Union[KeyPair, Mapping[str, Any]]) -> Dict[str, Any]:
    return key.public_jwk if isinstance(key, KeyPair) else dict(key)


def issue_root(
    issuer: str, issuer_key: KeyPair, agent_id: str, agent_key: Union[KeyPair, Mapping[str, Any]], *,
    task_id: str, intent: str, scope: Sequence[str], ttl_secs: int = 900, issued_at: Optional[int] = None,
    jti: Optional[str] = None, audience: Optional[str] = None, roles: Sequence[str] = (),
) -> str:
    """Issues a root credential for `agent_id`, signed by a trusted issuer key.

    `roles` are what the issuer attests for this identity (`finance-approver`, ...): bundle
    policies match them as `principal in Role::"..."`. Only roots carry roles; a delegate holds
    none, whatever it is named."""
    if isinstance(roles, str):
        raise TypeError("`roles` is a sequence of role names, not one string")
    request: Dict[str, Any] = {
        "issuer": issuer, "signing_key": issuer_key.private_jwk, "agent_id": agent_id,
        "agent_key": _jwk_of(agent_key), "task_id": task_id, "intent": intent, "scope": list(scope),
        "ttl_secs": ttl_secs, "issued_at": issued_at, "jti": jti, "audience": audience}
    if roles:
        request["roles"] = list(roles)
    return str(_free("issue", request))


def delegate(
    parent: str, parent_key: KeyPair, agent_id: str, agent_key: Union[KeyPair, Mapping[str, Any]], *,
    scope: Sequence[str], ttl_secs: int = 600, issued_at: Optional[int] = None, jti: Optional[str] = None,
    narrow: bool = False,
) -> str:
    """Delegates from `parent` (bound to `parent_key`) to `agent_id`; may only narrow.

    The delegate's attested id is namespaced under its delegator (`planner/finance-agent`), so
    `agent_id` may not contain `/`, and its key must differ from every key above it in the chain
    (the engine refuses such a chain: `malformed_token`, `delegation_cycle`). A wider scope or
    longer life than the parent's is refused (`scope_widened`); with `narrow`, the core keeps
    the tools of `scope` the parent holds and ends the delegation with the parent instead (what
    integrations minting a sub-agent's delegation from its tools want)."""
    request = {"parent": parent, "signing_key": parent_key.private_jwk, "agent_id": agent_id,
               "agent_key": _jwk_of(agent_key), "scope": list(scope), "ttl_secs": ttl_secs,
               "issued_at": issued_at, "jti": jti, "narrow": narrow}
    return str(_free("issue", request))


def inspect(token: str) -> Dict[str, Any]:
    """Decodes a credential without verifying it (for display only)."""
    return dict(_free("inspect", {"token": token}))


@dataclass(frozen=True)
class InspectedChain:
    """How the engine names the agent of a credential chain, read without verifying it (for
    display and keying; the engine verifies every link when the chain is presented)."""

    #: The leaf's attested id: each delegate under its delegator (`planner/finance-agent`).
    agent_id: str
    #: The ids above the leaf, root first.
    lineage: Tuple[str, ...]
    task_id: str
    scope: Tuple[str, ...]


def inspect_chain(chain: Chain) -> InspectedChain:
    """How the engine names the agent of `chain` (root first), without verifying it; a token that
    is not an Aegis credential raises."""
    d = _free("inspect_chain", {"chain": list(chain)})
    return InspectedChain(d["agent_id"], tuple(d["lineage"]), d["task_id"], tuple(d["scope"]))


def create_proof(key: KeyPair, tool: str, args: Mapping[str, Any], *, ttl_secs: int = 60,
                 jti: Optional[str] = None, issued_at: Optional[int] = None) -> str:
    """A proof of possession by the leaf agent's key for exactly this call."""
    request = {"key": key.private_jwk, "tool": tool, "args": args, "ttl_secs": ttl_secs, "jti": jti,
               "issued_at": issued_at}
    return str(_free("create_proof", request))


@dataclass(frozen=True)
class SignatureVerdict:
    """The core's strict Ed25519 check of one signature: `valid`, and `key_error` (an error code
    such as `invalid_key`) when the public key itself is refused (malformed, or of small order)."""

    valid: bool
    key_error: Optional[str] = None


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> SignatureVerdict:
    """Checks an Ed25519 `signature` of `message` by the 32-byte `public_key` exactly as the core
    checks credentials, proofs and override tokens (strict: no malleable or weak-key forms)."""
    out = _free("verify_signature", {"public_key_hex": bytes(public_key).hex(), "message_hex": bytes(message).hex(),
                                     "signature_hex": bytes(signature).hex()})
    return SignatureVerdict(bool(out["valid"]), out.get("key_error"))


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint of an audit log (C2SP tlog-checkpoint in a signed note): the log's
    `origin`, its `size` in records, the Merkle `root` (base64) and the whole signed `note`."""

    origin: str
    size: int
    root: str
    note: str

    @staticmethod
    def _from(raw: Mapping[str, Any]) -> "Checkpoint":
        return Checkpoint(str(raw["origin"]), int(raw["size"]), str(raw["root"]), str(raw["note"]))


@dataclass(frozen=True)
class LogKeys:
    """An audit log's key in signed-note encoding: `signer_key` (private: keep it outside the
    log's directory, hand it to `Engine(audit={"signing_key_file": ...})`) and `verifier_key`
    (public: what an auditor pins)."""

    signer_key: str = field(repr=False)
    verifier_key: str


@dataclass(frozen=True)
class LogReport:
    """What checking an audit log found. `intact` is true when every record links to the one
    before, the Merkle root matches the latest checkpoint and that checkpoint's signature holds.
    `trusted` lists the sizes of the kept checkpoints the log was shown to extend; `key_from_log`
    is true when no key was pinned and the one stored beside the log was used (which proves
    nothing against whoever rewrote the log). `first_bad_seq` and `first_bad_why` name the first
    record that fails a check."""

    origin: str
    intact: bool
    records: int
    checkpoint: Optional[Checkpoint]
    trusted: Tuple[int, ...]
    first_bad_seq: Optional[int]
    first_bad_why: Optional[str]
    torn_bytes: int
    key_from_log: bool


def audit_keygen(name: str, *, seed: Optional[bytes] = None) -> LogKeys:
    """A new key for the audit log named `name` (its checkpoints' origin, e.g.
    `aegis.example/payments`); `seed` (32 bytes) makes it deterministic, for tests."""
    out = _free("audit_keygen", {"name": name, "seed_hex": bytes(seed).hex() if seed is not None else None})
    return LogKeys(str(out["signer_key"]), str(out["verifier_key"]))


def audit_verify(log_dir: Union[str, "os.PathLike[str]"], *, verifier_key: Optional[str] = None,
                 trusted_checkpoints: Sequence[str] = ()) -> LogReport:
    """Checks the audit log in `log_dir` record by record. Pin the log's `verifier_key` and pass
    checkpoints kept elsewhere (`trusted_checkpoints`, signed notes) to detect a log rewritten
    whole; without a key the one stored beside the log is used (`key_from_log`)."""
    if isinstance(trusted_checkpoints, str):
        raise TypeError("`trusted_checkpoints` is a sequence of signed notes, not one note")
    out = _free("audit_verify", {"dir": os.fspath(log_dir), "verifier_key": verifier_key,
                                 "trusted_checkpoints": list(trusted_checkpoints)})
    bad = out.get("first_bad") or {}
    return LogReport(str(out["origin"]), bool(out["intact"]), int(out["records"]),
                     Checkpoint._from(out["checkpoint"]) if out.get("checkpoint") else None,
                     tuple(int(n) for n in out["trusted"]), bad.get("seq"), bad.get("why"), int(out.get("torn_bytes") or 0),
                     bool(out["key_from_log"]))


def admin_proof(key: KeyPair, action: Mapping[str, Any], policy_version: str, *, ttl_secs: int = 300,
                jti: Optional[str] = None, issued_at: Optional[int] = None) -> str:
    """One administrator's signature over a control-plane `action` (`{"action": "set_mode",
    "mode": "shadow"}`, `{"action": "rollback"}`, `{"action": "load_bundle", "bundle_dir": ...,
    "digest": ...}`) on an engine with `policy_version` in force, by the key its root credential
    binds: pass it with the credential chain as `requested_by` or `approved_by` of
    :meth:`Engine.admin`. Single use."""
    return str(_free("admin_proof", {"key": key.private_jwk, "action": dict(action), "policy_version": policy_version,
                                     "ttl_secs": ttl_secs, "jti": jti, "issued_at": issued_at}))


def bundle_sign(bundle_dir: Union[str, "os.PathLike[str]"], key: KeyPair) -> Dict[str, Any]:
    """Signs the bundle in `bundle_dir` (name, version and the SHA-256 of every file) and writes
    `bundle.sig` beside it; returns `{signature, policy_version}`."""
    return dict(_free("bundle_sign", {"bundle_dir": os.fspath(bundle_dir), "key": key.private_jwk}))


def bundle_verify(bundle_dir: Union[str, "os.PathLike[str]"], keys: Sequence[KeyPair]) -> Dict[str, Any]:
    """Checks `bundle.sig` against trusted `keys`; returns `{policy_version, signed_by}` or
    raises `BundleSignatureInvalid`."""
    return dict(_free("bundle_verify", {"bundle_dir": os.fspath(bundle_dir), "keys": [k.public_jwk for k in keys]}))


def policy_test(bundle_dir: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Runs the bundle's policy tests (`tests/*.yaml`): `{policy_version, cases: [{file, name,
    failures}]}`; a case passed when its `failures` is empty."""
    return dict(_free("policy_test", {"bundle_dir": os.fspath(bundle_dir)}))


def policy_lint(bundle_dir: Union[str, "os.PathLike[str]"]) -> List[Dict[str, Any]]:
    """The bundle's lint findings: `[{code, file, line, policy_id, message}]`."""
    return [dict(x) for x in _free("policy_lint", {"bundle_dir": os.fspath(bundle_dir)})]


def policy_dry_run(bundle_dir: Union[str, "os.PathLike[str]"], logs: Sequence[Union[str, "os.PathLike[str]"]], *,
                   seal_key: Optional[bytes] = None) -> Dict[str, Any]:
    """Re-decides the calls of audit `logs` under the candidate bundle in `bundle_dir`:
    `{changes: [{decision_id, from, to, opens, policies, ...}], by_policy, by_agent, ...}`,
    calls that would now run first. `seal_key` opens raw arguments the logs keep sealed."""
    if isinstance(logs, (str, bytes)):
        raise TypeError("`logs` is a sequence of log directories, not one")
    return dict(_free("policy_dry_run", {"bundle_dir": os.fspath(bundle_dir), "logs": [os.fspath(x) for x in logs],
                                         "seal_key_hex": bytes(seal_key).hex() if seal_key is not None else None}))


def verify_receipt(receipt: str, jwks: Mapping[str, Any], *, issuer: str, audience: str, tool: str,
                   args: Mapping[str, Any], now: Optional[int] = None, consume: bool = False) -> Dict[str, Any]:
    """A tool's offline check of a decision receipt: signed by a key of `jwks`, by `issuer`, for
    `audience`, unexpired, for exactly `tool` and `args`. With `consume`, the receipt is used up
    in this process (presented again, it is refused). Returns its claims; raises
    `ReceiptInvalid` or `ReceiptMismatch`."""
    body: Dict[str, Any] = {"receipt": receipt, "jwks": jwks, "issuer": issuer, "audience": audience, "tool": tool,
                            "args": args, "consume": consume}
    if now is not None:
        body["now"] = now
    claims: Dict[str, Any] = _free("verify_receipt", body)
    return claims


def call_digest(tool: str, args: Mapping[str, Any]) -> str:
    """The digest approvals and proofs bind to: SHA-256 of the RFC 8785 form of the call."""
    return str(_free("call_digest", {"tool": tool, "args": args}))


def slack_message(pending: PendingApproval) -> Dict[str, Any]:
    """A Slack Block Kit message body asking a human to approve or reject `pending`."""
    return dict(_free("slack_message", pending._raw))


# --- the engine ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalIssuer:
    """An issuer of external identities (an OIDC provider, a SPIFFE trust domain's JWT issuer)
    whose tokens the engine accepts as roots: an ID token or JWT-SVID signed by a key of `jwks`
    is a one-link chain `[token]`.

    The token must carry `iss` = `issuer` and name `audience` in its `aud`, be unexpired, use
    one of `algorithms` (default `RS256`, `ES256`, `EdDSA`; the HMAC family and `none` are never
    accepted), and its `kid` must name a key of `jwks` (a JWK Set, RFC 7517, as a mapping:
    `{"keys": [...]}`); keys in its header (`jwk`, `jku`, `x5u`, `x5c`, `crit`) are refused.
    The identity's id is the token's `sub`, its roles the strings of the claim `roles_claim`
    (e.g. `groups`; none when unset), its scope `scope` (default `["aegis.approve"]`: people
    who approve). It binds no key, so it cannot delegate. Its credentials belong to `task`
    (default `external:<issuer>`): :meth:`Engine.end_task` on it revokes them all.
    :meth:`Engine.update_jwks` replaces the key set (after a fetch)."""

    issuer: str
    audience: str
    jwks: Mapping[str, Any]
    algorithms: Optional[Sequence[str]] = None
    roles_claim: Optional[str] = None
    scope: Optional[Sequence[str]] = None
    task: Optional[str] = None

    def _json(self) -> Dict[str, Any]:
        """This issuer as the core's `ExternalIssuerConfig` (absent members left out)."""
        for name in ("algorithms", "scope"):
            if isinstance(getattr(self, name), str):
                raise TypeError(f"`{name}` is a sequence of names, not one string")
        if not isinstance(self.jwks, Mapping):
            raise TypeError("`jwks` is a JWK Set as a mapping (`{\"keys\": [...]}`), not text")
        config: Dict[str, Any] = {"issuer": self.issuer, "audience": self.audience, "jwks": _thaw(self.jwks),
                                  "algorithms": None if self.algorithms is None else list(self.algorithms),
                                  "roles_claim": self.roles_claim,
                                  "scope": None if self.scope is None else list(self.scope), "task": self.task}
        return {k: v for k, v in config.items() if v is not None}


def _external_issuer_json(issuer: Union[ExternalIssuer, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(issuer, ExternalIssuer):
        return issuer._json()
    if isinstance(issuer, Mapping):
        # The core parses it strictly: an unknown member is a `malformed_request`.
        return dict(_thaw(issuer))
    raise TypeError("an external issuer is an `ExternalIssuer` or a mapping of its members")


class Engine(_native.Engine):
    """Decides, before each tool call runs, whether it may. Safe to share between threads.

    `authorize` and `authorize_enforced` are the native class's own methods: a decision runs no
    Python frame of this package."""

    def __new__(
        cls,
        bundle_dir: Union[str, "os.PathLike[str]"],
        *,
        trusted_issuers: Optional[Mapping[str, Union[KeyPair, Mapping[str, Any]]]] = None,
        external_issuers: Sequence[Union[ExternalIssuer, Mapping[str, Any]]] = (),
        store: Optional[str] = None,
        redis_prefix: Optional[str] = None,
        approval_key: Optional[KeyPair] = None,
        audience: Optional[str] = None,
        leeway_secs: Optional[int] = None,
        max_delegation_depth: Optional[int] = None,
        override_ttl_secs: Optional[int] = None,
        max_break_glass_secs: Optional[int] = None,
        fixed_time: Optional[int] = None,
        notifier: Optional[Callable[[PendingApproval], None]] = None,
        audit: Optional[Mapping[str, Any]] = None,
        telemetry: Optional[Mapping[str, Any]] = None,
        bundle_keys: Optional[Sequence[KeyPair]] = None,
        require_two_admins: bool = False,
        receipts: Optional[Mapping[str, Any]] = None,
    ) -> "Engine":
        """`trusted_issuers` maps each issuer of Aegis root credentials (`iss`) to its Ed25519
        public key; `external_issuers` lists the issuers of external identities (OIDC ID tokens,
        SPIFFE JWT-SVIDs), each an :class:`ExternalIssuer` or a mapping of the core's
        `ExternalIssuerConfig` members (`issuer`, `audience`, `jwks`, and optionally
        `algorithms`, `roles_claim`, `scope`, `task`). An engine needs at least one issuer of
        either kind.

        `store` is a URL the core parses: `memory` (the default), `sqlite:PATH`, `redis://...`
        or, for a Redis Cluster, `redis+cluster://HOST:PORT,HOST:PORT` (some of its nodes);
        `redis_prefix` sets the key prefix of a Redis store.

        `audit` turns on the tamper-evident audit log, a mapping of the core's `AuditConfig`
        members: `dir`, `signing_key_file` (or `signing_key`, from :func:`audit_keygen`), and
        optionally `export_checkpoints_to`, `checkpoint_every`, `seal_key_hex`. With a log, an
        allow that cannot be recorded is a deny (`audit_unavailable`).

        `telemetry` exports OpenTelemetry spans and metrics over OTLP/HTTP, a mapping of the
        core's `TelemetryConfig` members (`otlp_endpoint`, and optionally `service_name`,
        `export_interval_ms`).

        `bundle_keys` puts in force only bundles signed by one of these keys (`bundle.sig`, see
        :func:`bundle_sign`); `require_two_admins` takes changes to what is enforced only
        through :meth:`admin`. `receipts` signs a receipt for every permitting decision, a
        mapping of the core's `ReceiptsConfig` (`key`: a private JWK, and optionally `issuer`,
        `audience`, `ttl_secs`); tools check it with :func:`verify_receipt`."""
        if isinstance(external_issuers, Mapping):
            raise TypeError("`external_issuers` is a sequence of issuers, not one mapping")
        config = {
            "bundle_dir": os.fspath(bundle_dir),
            "trusted_issuers": [{"issuer": name, "jwk": _jwk_of(k)} for name, k in (trusted_issuers or {}).items()],
            "external_issuers": [_external_issuer_json(i) for i in external_issuers],
            "store": store if redis_prefix is None else {"redis": {"url": store, "prefix": redis_prefix}},
            "approval_key": approval_key.private_jwk if approval_key else None,
            "audience": audience,
            "leeway_secs": leeway_secs,
            "max_delegation_depth": max_delegation_depth,
            "override_ttl_secs": override_ttl_secs,
            "max_break_glass_secs": max_break_glass_secs,
            "fixed_time": fixed_time,
            "audit": dict(audit) if audit is not None else None,
            "telemetry": dict(telemetry) if telemetry is not None else None,
            "bundle_keys": [k.public_jwk for k in bundle_keys] if bundle_keys is not None else None,
            "require_two_admins": require_two_admins,
            "receipts": dict(receipts) if receipts is not None else None,
        }
        callback = None
        if notifier is not None:
            user_notifier = notifier

            def callback(pending: str) -> None:
                user_notifier(PendingApproval._from_json(json.loads(pending)))

        otel, otel_context = _tracing()
        config_json = json.dumps({k: v for k, v in config.items() if v is not None})
        engine: Engine = _call(super().__new__, cls, config_json, callback, otel, otel_context)
        return engine

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The engine is built by `__new__` (the native class's constructor); a subclass's
        `__init__` may call this with the same arguments."""

    def _op(self, op: str, payload: Any) -> Any:
        """Runs engine operation `op` of the core's table on `payload`."""
        return self._op_text(op, _dumps(payload))

    def _op_text(self, op: str, input_json: str) -> Any:
        return json.loads(_call(self._call, op, input_json))

    @property
    def policy_version(self) -> str:
        """The version of the bundle in force."""
        return str(self._op("policy_version", {})["policy_version"])

    def audit_checkpoint(self) -> Checkpoint:
        """Signs a checkpoint of the audit log now (and exports it when configured); an engine
        without a log raises `AuditUnavailable`."""
        return Checkpoint._from(self._op("audit_checkpoint", {}))

    def admin(self, request: Mapping[str, Any]) -> Dict[str, Any]:
        """Applies a change to what is enforced, signed by two distinct administrators:
        `{"action": {...}, "policy_version": ..., "requested_by": {"chain": [...], "proof": ...},
        "approved_by": {...}}`
        (see :func:`admin_proof`). Returns `{action, policy_version, mode, candidate_version,
        requested_by, approved_by}`; one administrator alone gets `AdminConflict`."""
        return dict(self._op("admin", dict(request)))

    def control_status(self) -> Dict[str, Any]:
        """`{policy_version, mode, candidate_version, history}`: what is enforced and how."""
        return dict(self._op("control_status", {}))

    def receipt_jwks(self) -> Optional[Dict[str, Any]]:
        """The JWK Set that verifies this engine's decision receipts (None: it issues none)."""
        jwks: Optional[Dict[str, Any]] = self._op("receipt_jwks", {})
        return jwks

    def flush_telemetry(self) -> None:
        """Exports the spans and metrics recorded so far now (an engine built with `telemetry`);
        a collector that cannot be reached raises `Internal`, decisions are never affected."""
        self._op("flush_telemetry", {})

    def reload_bundle(self, bundle_dir: Union[str, "os.PathLike[str]"]) -> str:
        """Loads a bundle and swaps it in atomically; on error the old one stays in force."""
        return str(self._op("reload_bundle", {"bundle_dir": os.fspath(bundle_dir)})["policy_version"])

    def update_jwks(self, issuer: str, jwks: Mapping[str, Any]) -> None:
        """Replaces the JWK Set of external issuer `issuer` (the refresh hook for hosts that fetch
        it): tokens are checked against the new keys from the next call on, so a key left out is
        refused (`untrusted_issuer`). An issuer the engine was not built with is
        `UntrustedIssuer`; a set that is not a JWK Set, or holds no key, is `InvalidKey`."""
        if not isinstance(jwks, Mapping):
            raise TypeError("`jwks` is a JWK Set as a mapping (`{\"keys\": [...]}`), not text")
        self._op("update_jwks", {"issuer": issuer, "jwks": jwks})

    def time_authorize(self, chain: Chain, tool: str, args: Mapping[str, Any], iterations: int) -> float:
        """Mean seconds per decision on this call, measured inside the core (for benchmarks:
        the baseline a Python-side timing is compared with)."""
        request = _request(chain, tool, _dumps(args), None, None, None)
        return float(self._op_text("time_authorize", f'{{"request":{request},"iterations":{int(iterations)}}}'))

    def approve(self, approval_id: str, approver_chain: Chain, note: Optional[str] = None) -> ApprovalResolution:
        """Approves as `approver_chain`; returns the single-use override token when accepted.

        The approver is a person: a root credential (never a delegate) holding `aegis.approve` by
        its exact name, outside the requester's chain (no shared id or key), whose own task has
        not ended; the bundle's `aegis.approve` policies decide the rest (usually on the roles its
        issuer attests). A person from an identity provider approves with the one-link chain
        `[id_token]` (see :class:`ExternalIssuer`). A refusal is `accepted=False` with the reason."""
        return self._resolve("approve", approval_id, approver_chain, note)

    def reject(self, approval_id: str, approver_chain: Chain, note: Optional[str] = None) -> ApprovalResolution:
        """Rejects a pending approval; the rejecter is checked as an approver is."""
        return self._resolve("reject", approval_id, approver_chain, note)

    def _resolve(self, op: str, approval_id: str, chain: Chain, note: Optional[str]) -> ApprovalResolution:
        out = self._op(op, {"approval_id": approval_id, "approver_chain": list(chain), "note": note})
        return ApprovalResolution(
            accepted=out["accepted"],
            reasons=tuple(Reason._from_json(r) for r in out["reasons"]),
            approval=PendingApproval._from_json(out["approval"]),
            override_token=out.get("override_token"),
        )

    def request_batch(
        self, chain: Chain, envelope: Mapping[str, Any], *, resource: Optional[Tuple[str, str]] = None,
        reason: Optional[str] = None,
    ) -> PendingApproval:
        """Asks one approval for a batch of calls of one tool within `envelope` (`tool`,
        `max_calls`, `per_call_limit`, `total_limit`, `destinations`, `window_secs`), where the
        bundle batches the tool. Once approved, its override token admits each call that fits,
        once each."""
        body: Dict[str, Any] = {"chain": list(chain), "envelope": dict(envelope)}
        if resource is not None:
            body["resource"] = {"type": resource[0], "id": resource[1]}
        if reason is not None:
            body["reason"] = reason
        return PendingApproval._from_json(self._op("request_batch", body))

    def pending_approvals(self) -> List[PendingApproval]:
        """Approvals waiting for a human, oldest first."""
        return [PendingApproval._from_json(p) for p in self._op("pending_approvals", {})]

    def approval(self, approval_id: str) -> Optional[PendingApproval]:
        """An approval in any state, or None."""
        data = self._op("approval", {"approval_id": approval_id})
        return None if data is None else PendingApproval._from_json(data)

    def ledger(self, task_id: str) -> List[LedgerEntry]:
        """Every allowed call and approval of a task, oldest first."""
        return [LedgerEntry(e["tool"], e["agent_id"], tuple(e["lineage"]), e["decision_id"], e["at"], e.get("key", ""))
                for e in self._op("ledger", {"task_id": task_id})]

    def end_task(self, task_id: str) -> None:
        """Ends a task: every credential of it is refused from now on."""
        self._op("end_task", {"task_id": task_id})

    def break_glass(self, *, agents: Sequence[str], tools: Sequence[str], tasks: Sequence[str], reason: str,
                    approvers: Sequence[Chain], duration_secs: int) -> BreakGlassGrant:
        """Opens a time-boxed emergency grant lifting `@breakable` forbids for `agents` (their
        attested ids, e.g. `planner/finance-agent`) calling `tools` in `tasks` only.

        Needs a reason and two approvers that are distinct root identities (distinct ids and
        keys) holding `aegis.break_glass` by its exact name, neither covered by the grant nor
        above a covered agent, with their own task not ended."""
        for name, value in (("agents", agents), ("tools", tools), ("tasks", tasks)):
            if isinstance(value, str):
                raise TypeError(f"`{name}` is a sequence of names, not one string")
        request = {"agents": list(agents), "tools": list(tools), "tasks": list(tasks), "reason": reason,
                   "approvers": [list(c) for c in approvers], "duration_secs": duration_secs}
        return BreakGlassGrant._from_json(self._op("break_glass", request))

    def open_break_glass(self) -> List[BreakGlassGrant]:
        """Grants not yet closed, expired ones included."""
        return [BreakGlassGrant._from_json(g) for g in self._op("open_break_glass", {})]

    def close_break_glass(self, grant_id: str, review_ref: str) -> None:
        """Closes a grant with its post-incident review reference."""
        self._op("close_break_glass", {"grant_id": grant_id, "review_ref": review_ref})

    def guard(self, tool: str, chain: Union[Chain, Callable[[], Chain]]) -> Callable[[F], F]:
        """Decorates a function so every call is authorized first.

        The core's enforcement decides (see :func:`args_to_run`): the function receives an
        immutable snapshot of exactly the arguments the core says to run with (the authorized
        ones, or their sanitized form); awaiting an approval raises :class:`ApprovalRequired`,
        anything else raises :class:`Denied`. Pass `aegis_approval_token=` to redeem an approval.
        """

        def current_chain() -> Chain:
            return chain() if callable(chain) else chain

        def decorator(fn: F) -> F:
            signature = _inspect.signature(fn)

            def check(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
                token = kwargs.pop("aegis_approval_token", None)
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                # The snapshot is taken once, here (converted under the GIL, or written as text):
                # the tool runs with the core's enforcement of exactly these values.
                enforced = self.authorize_enforced(current_chain(), tool, dict(bound.arguments), approval_token=token)
                return dict(args_to_run(enforced))

            if _inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    return await fn(**check(args, kwargs))

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return fn(**check(args, kwargs))

            return wrapper  # type: ignore[return-value]

        return decorator


_NO_TRACING: Any = object()
_propagate: Any = None
_otel_context: Any = None


_TRACING: Optional[Tuple[bool, Any]] = None


def _tracing() -> Tuple[bool, Any]:
    """Whether OpenTelemetry is installed, and the `ContextVar` its default runtime context keeps
    the current context in (`None` for another runtime context): the binding then asks
    :func:`_host_traceparent` only while that context holds something, as it would answer
    `None` for an empty one."""
    global _TRACING
    if _TRACING is None:
        try:
            from opentelemetry import context
            from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
        except ImportError:
            _TRACING = (False, None)
        else:
            runtime = getattr(context, "_RUNTIME_CONTEXT", None)
            var = getattr(runtime, "_current_context", None)
            exact = type(runtime) is ContextVarsRuntimeContext and isinstance(var, contextvars.ContextVar)
            _TRACING = (True, var if exact else None)
    return _TRACING


def _host_traceparent() -> Optional[str]:
    """The W3C `traceparent` of the caller's current OpenTelemetry span, when OpenTelemetry is
    installed and a span is active (the integrations get this for free)."""
    global _propagate, _otel_context
    if _propagate is None:
        try:
            from opentelemetry import context, propagate
            _propagate, _otel_context = propagate, context
        except ImportError:
            _propagate = _NO_TRACING
    if _propagate is _NO_TRACING:
        return None
    if not _otel_context.get_current():
        return None  # nothing active (no span, no baggage): nothing to pass on, and no inject to pay for
    carrier: Dict[str, str] = {}
    _propagate.inject(carrier)
    return carrier.get("traceparent")


#: The JSON text of recently used credential chains: an agent presents the same chain call after
#: call, and writing a few kilobytes of tokens as JSON each time is most of a request's cost.
#: Keyed by the chain's tuple of strings (whose hashes Python keeps), so a chain is only ever
#: served its own text; cleared when full.
_CHAIN_JSON: Dict[Tuple[str, ...], str] = {}
_CHAIN_JSON_CAPACITY = 1024


def _chain_json(chain: Chain) -> str:
    key = tuple(chain)
    text = _CHAIN_JSON.get(key)
    if text is None:
        text = json.dumps(list(key))
        if len(_CHAIN_JSON) >= _CHAIN_JSON_CAPACITY:
            _CHAIN_JSON.clear()
        _CHAIN_JSON[key] = text
    return text


def _request(chain: Chain, tool: str, args_json: str, resource: Optional[Tuple[str, str]],
             proof: Optional[str], approval_token: Optional[str], traceparent: Optional[str] = None,
             tool_call_id: Optional[str] = None) -> str:
    """An AuthorizationRequest as JSON text, with `args_json` embedded byte for byte."""
    parts = [f'"chain":{_chain_json(chain)}', f'"tool":{json.dumps(tool)}', f'"args":{args_json}']
    traceparent = traceparent if traceparent is not None else _host_traceparent()
    if traceparent is not None:
        parts.append(f'"traceparent":{json.dumps(traceparent)}')
    if tool_call_id is not None:
        parts.append(f'"tool_call_id":{json.dumps(tool_call_id)}')
    if resource is not None:
        parts.append(f'"resource":{json.dumps({"type": resource[0], "id": resource[1]})}')
    if proof is not None:
        parts.append(f'"proof":{json.dumps(proof)}')
    if approval_token is not None:
        parts.append(f'"approval_token":{json.dumps(approval_token)}')
    return "{" + ",".join(parts) + "}"


def _authorize_text(engine: Engine, op: str, chain: Chain, tool: str, args: Mapping[str, Any],
                    resource: Optional[Tuple[str, str]], proof: Optional[str], approval_token: Optional[str],
                    traceparent: Optional[str], tool_call_id: Optional[str]) -> Union[Decision, Enforced]:
    """`Engine.authorize` (`op`: or `authorize_enforced`) for a call whose values are not all
    plain (a frozen view, an int past 64 bits, a lone surrogate...): the request as JSON text,
    which reads them exactly as `json.dumps` writes them, or refuses them with a code."""
    request = _request(chain, tool, _dumps(args), resource, proof, approval_token, traceparent, tool_call_id)
    data = engine._op_text(op, request)
    return Decision._from_json(data) if op == "authorize" else Enforced._from_json(data)


# The binding builds `Engine.authorize`'s results of these classes, raises the core's errors as
# `from_native` maps them, sends what it cannot convert down the text path, asks the host for its
# trace context, and lends `Decision` its methods.
_native.register(Reason, Enforced, Enforcement, [
    from_native, _authorize_text, _host_traceparent,
    _decision_allowed, _decision_enforce, _decision_json, _decision_repr, _decision_from_json,
])
