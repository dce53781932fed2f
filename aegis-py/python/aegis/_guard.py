"""The guard exceptions and the one rule guards follow (hand-written; `_errors.py` is generated).

Whether a guarded tool runs is decided by the core's `enforcement` of a decision, never by
comparing outcome strings here: `run` runs with exactly `enforcement.args`, `await_approval`
raises :class:`ApprovalRequired`, and anything else (an action this version does not know
included) raises :class:`Denied`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from ._errors import AegisError

if TYPE_CHECKING:
    from . import Decision, Enforced, Enforcement


class Denied(AegisError):
    """A guarded call was refused; `decision` says why, `enforcement` is the core's verdict."""

    def __init__(self, decision: "Decision", enforcement: "Optional[Enforcement]" = None) -> None:
        first = decision.reasons[0] if decision.reasons else None
        code = (enforcement.code if enforcement else None) or (first.code if first else "no_matching_permit")
        message = (enforcement.message if enforcement else None) or (first.message if first else "denied")
        super().__init__(message, code)
        self.decision = decision
        self.enforcement = enforcement


class ApprovalRequired(AegisError):
    """A guarded call needs a human approval: approve `approval_id`, then retry with the
    override token."""

    code = "approval_required"

    def __init__(self, decision: "Decision", enforcement: "Optional[Enforcement]" = None) -> None:
        approval_id = (enforcement.approval_id if enforcement else None) or decision.approval_id or ""
        message = (enforcement.message if enforcement else None) or \
            f"approval {approval_id} is needed before this call may run"
        super().__init__(message)
        self.decision = decision
        self.enforcement = enforcement
        self.approval_id: str = approval_id


def args_to_run(enforced: "Enforced") -> Mapping[str, Any]:
    """The arguments the tool runs with (immutable), or raises: the one rule every guard follows.

    `run` returns exactly `enforcement.args`; `await_approval` raises :class:`ApprovalRequired`;
    any other action, or a `run` without an arguments object, raises :class:`Denied`.
    """
    decision, enforcement = enforced.decision, enforced.enforcement
    if enforcement.action == "run" and isinstance(enforcement.args, Mapping):
        return enforcement.args
    if enforcement.action == "await_approval":
        raise ApprovalRequired(decision, enforcement)
    raise Denied(decision, enforcement)
