"""The payments story in plain Python: guarded tool functions, self-approval refused, a human
approval, one-time redemption, replay refused."""

from __future__ import annotations

import aegis
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task


def main() -> None:
    eng = engine()
    chain = finance_chain(unique_task("py-payments"))
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

    refused = eng.approve(approval_id, chain[:1])
    assert not refused.accepted, refused
    print("3. the planner may not approve its own delegate's request:", refused.reasons[0].code)

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
