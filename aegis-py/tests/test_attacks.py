"""Attacks on the approval, budget and break-glass paths, tried through the Python binding.

Each test plays an agent (or a person) trying to get a payment through without the human
approval the bundle asks for, and checks both the refusal and that the payment never ran.
"""

import json
from typing import List, Sequence

import pytest

import aegis
from payments_setup import (BUNDLE, FINANCE_AGENT, FINANCE_KEY, ISSUER, ISSUER_KEY, PLANNER_KEY, PLANNER_SCOPE, TOOL,
                            approver_chain, engine, finance_chain, pay, unique_task)

CARD = "4242424242424242"


def person(name: str, key: aegis.KeyPair, scope: Sequence[str], *, roles: Sequence[str] = (),
           task: str = "desk") -> List[str]:
    """A root credential attested by the trusted issuer: a person (or an attested agent)."""
    return [aegis.issue_root(ISSUER, ISSUER_KEY, name, key, task_id=task, intent="review", scope=list(scope),
                             roles=roles)]


def payments_in(eng: aegis.Engine, task: str) -> List[aegis.LedgerEntry]:
    return [e for e in eng.ledger(task) if e.tool == TOOL]


# (a) -------------------------------------------------------------------------------------------


def test_a_planner_cannot_name_a_delegate_into_the_approver() -> None:
    """A planner that holds `aegis.approve` tries to approve its own delegate's 9000 payment:
    itself, through a sibling delegate it names `finance-approver` (with a fresh key, and with
    its own key), and through a delegate carrying the role. Every attempt is refused, no token
    is minted, and the payment never runs."""
    eng = engine()
    task = unique_task("attack-a")
    planner, finance = chain = finance_chain(task, planner_scope=[*PLANNER_SCOPE, "aegis.approve"])
    asked = eng.authorize(chain, TOOL, pay(9000))
    assert asked.outcome == "approval_needed" and asked.approval_id
    approval_id = asked.approval_id

    fresh = aegis.delegate(planner, PLANNER_KEY, "finance-approver", aegis.KeyPair.generate(), scope=["aegis.approve"])
    # A "delegate" on the planner's own key is the planner itself: it is not even minted (and a
    # hand-signed one is refused by the engine as `delegation_cycle`, see the Rust attacks).
    with pytest.raises(aegis.DelegationCycle):
        aegis.delegate(planner, PLANNER_KEY, "finance-approver", PLANNER_KEY, scope=["aegis.approve"])
    assert aegis.inspect(fresh)["claims"]["sub"] == "finance-approver"  # the name it wrote...
    attempts = {
        "the planner itself": ([planner], "approver_conflict"),
        # ...is not the id it gets: `planner/finance-approver`, a delegate, never an approver.
        "a sibling on a fresh key": ([planner, fresh], "approver_conflict"),
    }
    for who, (approver, code) in attempts.items():
        for resolve in (eng.approve, eng.reject):  # rejecting would silence the request
            out = resolve(approval_id, approver)
            assert not out.accepted and out.override_token is None, (who, resolve.__name__, out)
            assert [r.code for r in out.reasons] == [code], (who, resolve.__name__, out.reasons)
    sibling = eng.approve(approval_id, [planner, fresh])
    assert "`planner/finance-approver` is a delegate" in sibling.reasons[0].message

    # A delegation cannot carry the role either: roles are attested by issuers, for roots only.
    with pytest.raises(aegis.MalformedRequest):
        aegis._free("issue", {"parent": planner, "signing_key": PLANNER_KEY.private_jwk, "agent_id": "finance-approver",
                              "agent_key": aegis.KeyPair.generate().public_jwk, "scope": ["aegis.approve"],
                              "ttl_secs": 60, "roles": ["finance-approver"]})

    # Even an issuer-attested finance approver is refused when it holds a key of the requester's
    # chain: it is the requester (or above it), whatever its name.
    for key in (PLANNER_KEY, FINANCE_KEY):
        out = eng.approve(approval_id, person("finance-approver", key, ["aegis.approve"], roles=["finance-approver"]))
        assert not out.accepted and out.override_token is None and out.reasons[0].code == "approver_conflict", out

    # The request is still pending, the payment never ran, and it still asks for the human.
    still = eng.approval(approval_id)
    assert still is not None and still.status == "pending" and still.resolved_by is None
    again = eng.authorize(chain, TOOL, pay(9000))
    assert again.outcome == "approval_needed" and not again.allowed
    assert payments_in(eng, task) == []
    assert [e.tool for e in eng.ledger(task)] == []  # no refused approver left a duty behind


def test_wildcards_never_make_an_approver() -> None:
    """`*` and `aegis.*` grant no `aegis.approve`: only the exact name does, even for a person the
    issuer attests as a finance approver."""
    eng = engine()
    task = unique_task("attack-wildcard")
    chain = finance_chain(task)
    approval_id = eng.authorize(chain, TOOL, pay(9000)).approval_id
    assert approval_id
    for scope in (["*"], ["aegis.*"]):
        out = eng.approve(approval_id, person("finance-approver", aegis.KeyPair.generate(), scope,
                                              roles=["finance-approver"]))
        assert not out.accepted and out.reasons[0].code == "tool_not_in_scope", (scope, out)
    # Without the attested role the bundle's approval policy does not permit it.
    out = eng.approve(approval_id, person("finance-approver", aegis.KeyPair.generate(), ["aegis.approve"]))
    assert not out.accepted and out.reasons[0].code == "no_matching_permit", out
    # An approver whose own task has ended is refused.
    desk = unique_task("desk")
    ended = person("finance-approver", aegis.KeyPair.generate(), ["aegis.approve"], roles=["finance-approver"], task=desk)
    eng.end_task(desk)
    out = eng.approve(approval_id, ended)
    assert not out.accepted and out.reasons[0].code == "task_ended", out
    assert payments_in(eng, task) == []
    # The real approver still can.
    assert eng.approve(approval_id, approver_chain()).accepted


# (b) -------------------------------------------------------------------------------------------


def test_b_a_negative_amount_does_not_make_room_in_the_budget() -> None:
    """After a 5000 payment the task's budget is spent; a -5000 "payment" is refused rather than
    refunding the budget, so the next payment still needs an approval."""
    eng = engine()
    task = unique_task("attack-b")
    chain = finance_chain(task)
    assert eng.authorize(chain, TOOL, pay(5000)).outcome == "allow"
    refund = eng.authorize(chain, TOOL, pay(-5000))
    assert (refund.outcome, refund.codes, refund.allowed) == ("deny", ("budget_amount_invalid",), False)
    # Through a guard too: the tool never runs.
    ran = []

    @eng.guard(tool=TOOL, chain=chain)
    def create_payment(amount: int, currency: str, destination: str) -> None:
        ran.append(amount)

    with pytest.raises(aegis.Denied) as denied:
        create_payment(**pay(-5000))
    assert denied.value.code == "budget_amount_invalid"
    for amount in (1, 4000):
        nxt = eng.authorize(chain, TOOL, pay(amount))
        assert nxt.outcome == "approval_needed" and nxt.codes == ("budget_exceeded",) and not nxt.allowed, nxt
    with pytest.raises(aegis.ApprovalRequired):
        create_payment(**pay(1))
    assert ran == []
    assert [e.agent_id for e in payments_in(eng, task)] == [FINANCE_AGENT]


# (c) -------------------------------------------------------------------------------------------


def test_c_an_approved_payment_reaches_the_tool_with_the_card_redacted() -> None:
    """Approving a call lifts its forbid, not its obligations: the approved payment runs with the
    card number redacted, and the human (pending approval, notifier, Slack message) never sees
    the card number either."""
    notified: List[aegis.PendingApproval] = []
    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, notifier=notified.append)
    task = unique_task("attack-c")
    chain = finance_chain(task)
    received = []

    @eng.guard(tool=TOOL, chain=chain)
    def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> str:
        received.append((amount, card_number))
        return "paid"

    with pytest.raises(aegis.ApprovalRequired) as asked:
        create_payment(**pay(9000), card_number=CARD)
    pending = eng.approval(asked.value.approval_id)
    assert pending is not None and pending.args["card_number"] == "[REDACTED]" and pending.args["amount"] == 9000
    assert [p.args["card_number"] for p in notified] == ["[REDACTED]"]
    assert CARD not in json.dumps(pending._raw) and CARD not in json.dumps(aegis.slack_message(pending))

    token = eng.approve(pending.approval_id, approver_chain()).override_token
    assert token
    assert create_payment(**pay(9000), card_number=CARD, aegis_approval_token=token) == "paid"
    assert received == [(9000, "[REDACTED]")]

    # The decision itself says so: `sanitize`, with the redacted arguments to run with.
    asked_again = eng.authorize(chain, TOOL, {**pay(9000), "card_number": CARD})
    token = eng.approve(asked_again.approval_id or "", approver_chain()).override_token
    enforced = eng.authorize_enforced(chain, TOOL, {**pay(9000), "card_number": CARD}, approval_token=token)
    assert enforced.decision.outcome == "sanitize" and enforced.decision.codes == ("approval_granted",)
    assert enforced.decision.sanitized_args == {**pay(9000), "card_number": "[REDACTED]"}
    assert enforced.enforcement.action == "run" and enforced.enforcement.args == {**pay(9000), "card_number": "[REDACTED]"}
    assert received == [(9000, "[REDACTED]")]


def test_override_tokens_are_bound_to_the_resource() -> None:
    eng = engine()
    chain = finance_chain(unique_task("resource"))
    approval_id = eng.authorize(chain, TOOL, pay(9000)).approval_id
    token = eng.approve(approval_id or "", approver_chain()).override_token
    other = eng.authorize(chain, TOOL, pay(9000), resource=("Tool", "payroll"), approval_token=token)
    assert other.codes == ("approval_args_mismatch",)
    assert eng.authorize(chain, TOOL, pay(9000), approval_token=token).outcome == "allow"


# (d) -------------------------------------------------------------------------------------------


def test_d_break_glass_by_one_person_and_their_own_delegate_is_refused() -> None:
    """Break-glass needs two people: one person plus a delegate of theirs (on a fresh key or on
    their own), or a second name on their key, is refused, and no grant lifts the forbid."""
    eng = engine()
    task = unique_task("attack-d")
    chain = finance_chain(task)
    cfo_key = aegis.KeyPair.generate()
    cfo = person("cfo", cfo_key, ["aegis.break_glass"])
    deputy = cfo + [aegis.delegate(cfo[0], cfo_key, "deputy", aegis.KeyPair.generate(), scope=["aegis.break_glass"])]
    with pytest.raises(aegis.DelegationCycle):
        aegis.delegate(cfo[0], cfo_key, "deputy", cfo_key, scope=["aegis.break_glass"])
    alias = person("ciso", cfo_key, ["aegis.break_glass"])  # a second root on the same key
    attempts = {
        "cfo + its delegate": ([cfo, deputy], "`cfo/deputy` is a delegate"),
        "its delegate + cfo": ([deputy, cfo], "`cfo/deputy` is a delegate"),
        "cfo + a second name on its key": ([cfo, alias], "two distinct approvers"),
        "cfo twice": ([cfo, cfo], "two distinct approvers"),
    }
    for who, (approvers, why) in attempts.items():
        with pytest.raises(aegis.BreakGlassRefused) as refused:
            eng.break_glass(agents=[FINANCE_AGENT], tools=[TOOL], tasks=[task], reason="outage", approvers=approvers,
                            duration_secs=60)
        assert why in refused.value.message, (who, refused.value.message)
    assert eng.open_break_glass() == []
    d = eng.authorize(chain, TOOL, pay(9000))
    assert d.outcome == "approval_needed" and d.break_glass_id is None
    assert [r.policy_id for r in d.reasons] == ["large-payment-needs-approval"]
    assert payments_in(eng, task) == []


def test_break_glass_covers_only_its_attested_agents_and_tasks() -> None:
    """A grant opened by two people lifts the breakable forbid for the attested id it names in
    the tasks it names, nothing else; the task's budget still asks for its own approval."""
    eng = engine()
    task = unique_task("bg")
    chain = finance_chain(task)
    approvers = [person(name, aegis.KeyPair.generate(), ["aegis.break_glass"]) for name in ("cfo", "ciso")]

    def open_for(agents: Sequence[str], tasks: Sequence[str]) -> aegis.BreakGlassGrant:
        return eng.break_glass(agents=agents, tools=[TOOL], tasks=tasks, reason="outage", approvers=approvers,
                               duration_secs=60)

    for agents, tasks in ((["finance-agent"], [task]), ([FINANCE_AGENT], [unique_task("other")])):
        grant = open_for(agents, tasks)
        d = eng.authorize(chain, TOOL, pay(9000))
        assert d.break_glass_id is None and d.codes == ("approval_required",), (agents, tasks, d)
        eng.close_break_glass(grant.id, "INC-0")
    with pytest.raises(aegis.BreakGlassRefused):  # an approver may not open it for itself
        eng.break_glass(agents=["cfo"], tools=[TOOL], tasks=["desk"], reason="outage", approvers=approvers,
                        duration_secs=60)
    grant = open_for([FINANCE_AGENT], [task])
    assert grant.tasks == (task,) and grant.agents == (FINANCE_AGENT,)
    d = eng.authorize(chain, TOOL, pay(9000))
    assert d.break_glass_id == grant.id and d.outcome == "approval_needed" and d.codes == ("budget_exceeded",)
    pending = eng.approval(d.approval_id or "")
    assert pending is not None and pending.lifts == ("budget:task_payments",)
    token = eng.approve(pending.approval_id, approver_chain()).override_token
    assert eng.authorize(chain, TOOL, pay(9000), approval_token=token).outcome == "allow"
    assert len(payments_in(eng, task)) == 1
