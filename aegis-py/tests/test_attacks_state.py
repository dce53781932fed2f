"""State attacks through the Python binding, on the memory and SQLite stores: overflowing
amounts, one proof presented in two tasks, and a task agent named after the approver."""

import shutil
from pathlib import Path

import pytest

import aegis
from payments_setup import (BUNDLE, FINANCE_KEY, ISSUER, ISSUER_KEY, PLANNER_KEY, TOOL, approver_chain, finance_chain,
                            key, pay, unique_task)


def engine_on(store: str, bundle: object = BUNDLE) -> aegis.Engine:
    return aegis.Engine(bundle, trusted_issuers={ISSUER: ISSUER_KEY}, store=store, approval_key=key(7))  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory" if request.param == "memory" else f"sqlite:{tmp_path / 'aegis.db'}"


def test_overflowing_amounts_deny_and_other_tasks_still_decide(store: str) -> None:
    eng = engine_on(store)
    chain = finance_chain(unique_task("overflow"))
    for _ in range(2):
        d = eng.authorize(chain, TOOL, pay(-5_000_000_000_000_000_000))
        assert (d.outcome, d.codes) == ("deny", ("budget_amount_invalid",))
    d = eng.authorize(chain, TOOL, pay(2**63))  # past i64: not a Long the schema accepts
    assert (d.outcome, d.codes) == ("deny", ("args_invalid",))
    assert eng.authorize(finance_chain(unique_task("after")), TOOL, pay(10)).outcome == "allow"


def test_one_proof_is_accepted_once_across_tasks(store: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    manifest = bundle / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("proof_required: []", f"proof_required: [{TOOL}]"))
    eng = engine_on(store, bundle)
    args = pay(100)
    proof = aegis.create_proof(FINANCE_KEY, TOOL, args, jti="pop-once")
    first = eng.authorize(finance_chain(unique_task("proof-a")), TOOL, args, proof=proof)
    second = eng.authorize(finance_chain(unique_task("proof-b")), TOOL, args, proof=proof)
    assert first.outcome == "allow" and second.codes == ("proof_replayed",)


def test_a_task_agent_named_after_the_approver_neither_approves_nor_locks_it_out(store: str) -> None:
    eng = engine_on(store)
    task = unique_task("lockout")
    approval_id = eng.authorize(finance_chain(task), TOOL, pay(9000)).approval_id
    assert approval_id
    planner = aegis.issue_root(ISSUER, ISSUER_KEY, "planner", PLANNER_KEY, task_id=task, intent="x",
                               scope=["invoice.create", "aegis.approve"])
    named = aegis.delegate(planner, PLANNER_KEY, "finance-approver", aegis.KeyPair.generate(),
                           scope=["invoice.create", "aegis.approve"])
    drafted = eng.authorize([planner, named], "invoice.create", {"customer": "acme", "amount": 900})
    assert drafted.outcome == "allow"  # as `planner/finance-approver`, not the approver
    refused = eng.approve(approval_id, [planner, named])
    assert not refused.accepted and refused.reasons[0].code == "approver_conflict"
    assert eng.approve(approval_id, approver_chain()).accepted
