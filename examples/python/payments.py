"""The payments story in plain Python: guarded tool functions, self-approval refused (the
planner holds `aegis.approve`, yet may not approve what its own delegate asks, nor make itself a
delegate named like the approver), a human approval, one-time redemption, replay refused."""

from __future__ import annotations

import aegis
from payments_setup import (FINANCE_AGENT, PLANNER_KEY, PLANNER_SCOPE, TOOL, approver_chain, engine, finance_chain,
                            pay, unique_task)


def main() -> None:
    eng = engine()
    # This planner was also given the right to approve (by its exact name: no wildcard covers it).
    chain = finance_chain(unique_task("py-payments"), planner_scope=[*PLANNER_SCOPE, "aegis.approve"])
    paid = []

    @eng.guard(tool=TOOL, chain=chain)
    def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> str:
        paid.append((amount, currency, destination, card_number))
        return f"paid {amount} {currency} to {destination}"

    print("1.", create_payment(**pay(1200)))

    try:
        create_payment(**pay(9000))
        raise SystemExit("the 9000 payment should need an approval")
    except aegis.ApprovalRequired as e:
        approval_id = e.approval_id
        print("2. approval needed:", approval_id, "-", e.decision.reasons[0].message)
    pending = eng.approval(approval_id)
    assert pending is not None and pending.agent_id == FINANCE_AGENT, pending
    print("   asked by", pending.agent_id, "for", pending.roles)

    refused = eng.approve(approval_id, chain[:1])
    assert not refused.accepted and refused.reasons[0].code == "approver_conflict", refused
    print("3. the planner may not approve its own delegate's request:", refused.reasons[0].code)
    # Nor a delegate it names like the approver: delegates are ids under the planner
    # (`planner/finance-approver`), hold no roles, and are never approvers.
    sibling = aegis.delegate(chain[0], PLANNER_KEY, "finance-approver", aegis.KeyPair.generate(),
                             scope=["aegis.approve"])
    refused = eng.approve(approval_id, [chain[0], sibling])
    assert not refused.accepted and refused.reasons[0].code == "approver_conflict", refused
    print("   nor a delegate it named finance-approver:", refused.reasons[0].code)

    approved = eng.approve(approval_id, approver_chain(), note="invoice INV-2291 checked")
    assert approved.accepted and approved.override_token
    print(f"4. the finance approver approved after {approved.approval.latency_ms} ms")

    print("5.", create_payment(**pay(9000), aegis_approval_token=approved.override_token))
    try:
        create_payment(**pay(9000), aegis_approval_token=approved.override_token)
        raise SystemExit("a replayed token must be refused")
    except aegis.Denied as e:
        print("6. replay refused:", e.code)

    try:
        create_payment(**{**pay(1200), "destination": "DE89370400440532013000"})
    except aegis.Denied as e:
        print("7. bad destination refused:", e.decision.reasons[0].policy_id)

    assert [p[0] for p in paid] == [1200, 9000], paid
    print("payments story: ok")


if __name__ == "__main__":
    main()
