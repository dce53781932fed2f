"""Shared setup for the Python payments examples: keys, an engine on the payments bundle, and
the credential chains of the story (planner → finance-agent, whose attested id is
`planner/finance-agent`; a separate finance approver, a person whose issuer attests the
`finance-approver` role)."""

from __future__ import annotations

import pathlib
import time
from typing import List, Optional, Sequence

import aegis

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "policies" / "payments"
ISSUER = "https://issuer.aegis.example"
TOOL = "stripe.create_payment"
ACCOUNT = "acct_1032D82eZvKYlo2C"


def key(n: int) -> aegis.KeyPair:
    """Fixed seeds keep the keys the same on every run (the ids and times still vary)."""
    return aegis.KeyPair.from_seed(bytes([n]) * 32)


ISSUER_KEY, PLANNER_KEY, FINANCE_KEY, APPROVER_KEY = key(1), key(2), key(3), key(4)


def engine(store: Optional[str] = None) -> aegis.Engine:
    return aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, store=store, approval_key=key(7))


FINANCE_AGENT = "planner/finance-agent"  # the delegate's id, namespaced under its delegator
PLANNER_SCOPE = ("invoice.create", TOOL)


def finance_chain(task_id: str, planner_scope: Sequence[str] = PLANNER_SCOPE) -> List[str]:
    """The planner initiates the task and delegates payments to the finance agent."""
    planner = aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=task_id,
                               intent="pay the approved vendor invoices", scope=list(planner_scope))
    finance = aegis.delegate(planner, PLANNER_KEY, "finance-agent", FINANCE_KEY, scope=[TOOL])
    return [planner, finance]


def approver_chain() -> List[str]:
    """The finance approver's own root credential, outside the agent chain: the issuer attests
    the `finance-approver` role the bundle's approval policy asks for."""
    return [aegis.issue_root(ISSUER, ISSUER_KEY, "finance-approver", APPROVER_KEY, task_id="approvals-desk",
                             intent="review payment approvals", scope=["aegis.approve"],
                             roles=["finance-approver"])]


def unique_task(name: str) -> str:
    return f"{name}-{time.time_ns()}"


def pay(amount: int) -> dict:
    return {"amount": amount, "currency": "eur", "destination": ACCOUNT}
