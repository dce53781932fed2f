"""The engine from Python: values, errors, threads, guards, approvals."""

import asyncio
import json
import pathlib
import threading
from typing import Any, Dict

import pytest

import aegis
from payments_setup import (ACCOUNT, BUNDLE, FINANCE_AGENT, ISSUER, ISSUER_KEY, TOOL, approver_chain, engine,
                            finance_chain, pay, unique_task)


def test_errors_are_typed_and_carry_the_code(tmp_path) -> None:
    with pytest.raises(aegis.InvalidBundle) as e:
        aegis.Engine(tmp_path, trusted_issuers={ISSUER: ISSUER_KEY})
    assert e.value.code == "invalid_bundle" and "manifest.yaml" in e.value.message
    eng = engine()
    with pytest.raises(aegis.MalformedRequest) as malformed:
        eng.authorize(finance_chain(unique_task("t")), "", pay(10))
    assert malformed.value.code == "malformed_request" and "tool" in malformed.value.message
    with pytest.raises(aegis.ApprovalNotFound):
        eng.approve("apr_nope", approver_chain())
    with pytest.raises(aegis.StoreUnavailable):
        aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, store="redis://127.0.0.1:1/0")
    with pytest.raises(aegis.ScopeWidened):
        aegis.delegate(finance_chain("t")[0], aegis.KeyPair.from_seed(bytes([2]) * 32), "x",
                       aegis.KeyPair.generate(), scope=["payroll.run"])


def test_arguments_are_checked_against_the_schema_before_any_policy() -> None:
    eng = engine()
    task = unique_task("t")
    chain = finance_chain(task)
    bad = [
        {**pay(10), "amount": 1e300},          # not a Long
        {**pay(10), "amount": 12.5},           # a fraction
        {**pay(10), "amount": 2 ** 70},        # past i64
        {**pay(10), "amount": "9000"},         # a string dodging `amount > 5000`
        {**pay(10), "refund_to": ACCOUNT},     # an argument the schema does not declare
        {"currency": "eur", "destination": ACCOUNT},  # a required argument missing
    ]
    for args in bad:
        d = eng.authorize(chain, TOOL, args)
        assert (d.outcome, d.codes, d.allowed) == ("deny", ("args_invalid",), False), (args, d)
        assert d.approval_id is None
    assert eng.ledger(task) == []
    assert eng.pending_approvals() == []
    assert eng.authorize(chain, TOOL, {**pay(10), "memo": "INV-1"}).outcome == "allow"


def test_delegates_are_namespaced_under_their_delegator() -> None:
    eng = engine()
    task = unique_task("ids")
    planner, finance = finance_chain(task)
    assert eng.authorize([planner, finance], TOOL, pay(10)).outcome == "allow"
    (entry,) = eng.ledger(task)
    assert (entry.agent_id, entry.lineage) == (FINANCE_AGENT, ("planner",))
    assert entry.key == aegis.KeyPair.from_seed(bytes([3]) * 32).kid  # the finance agent's key
    planner_key = aegis.KeyPair.from_seed(bytes([2]) * 32)
    # A `sub` with the separator is not minted (a hand-signed one never verifies: see the Rust
    # chain tests), nor is a delegation to one's own key, which is not a second holder.
    with pytest.raises(aegis.MalformedRequest):
        aegis.delegate(planner, planner_key, "finance/agent", aegis.KeyPair.generate(), scope=[TOOL])
    with pytest.raises(aegis.DelegationCycle):
        aegis.delegate(planner, planner_key, "finance-agent", planner_key, scope=[TOOL])
    assert len(eng.ledger(task)) == 1


def test_decision_is_a_readable_value() -> None:
    d = engine().authorize(finance_chain(unique_task("t")), TOOL, pay(1200))
    assert d.outcome == "allow" and d.allowed and d.codes == ("policy_permit",)
    assert d.policy_version.startswith("payments@1.0.0+")
    assert repr(d).startswith("<Decision allow [policy_permit payments-by-task-agents]")
    with pytest.raises(Exception):
        d.outcome = "deny"  # type: ignore[misc]


def test_errors_carry_the_cores_details(tmp_path) -> None:
    import shutil
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    (bundle / "limits.cedar").write_text("permit (principal, action, resource) when { nonsense };\n")
    with pytest.raises(aegis.InvalidBundle) as e:
        aegis.Engine(bundle, trusted_issuers={ISSUER: ISSUER_KEY})
    assert e.value.details == {"file": "limits.cedar", "line": 1}
    eng = engine()
    version = eng.policy_version
    with pytest.raises(aegis.InvalidBundle):
        eng.reload_bundle(bundle)
    assert eng.policy_version == version and eng.reload_bundle(BUNDLE) == version


def test_a_reason_names_the_chain_link_at_fault() -> None:
    planner, finance = finance_chain(unique_task("t"))
    tampered = finance[:-4] + ("AAAA" if not finance.endswith("AAAA") else "BBBB")
    d = engine().authorize([planner, tampered], TOOL, pay(10))
    assert d.outcome == "deny" and d.codes == ("signature_invalid",) and d.reasons[0].link == 1
    assert not d.allowed


def test_tokens_and_digests_are_strings() -> None:
    planner, finance = finance_chain(unique_task("t"))
    assert isinstance(planner, str) and planner.count(".") == 2
    assert aegis.inspect(finance)["claims"]["sub"] == "finance-agent"
    digest = aegis.call_digest(TOOL, pay(10))
    assert isinstance(digest, str) and digest == aegis.call_digest(TOOL, dict(reversed(list(pay(10).items()))))
    proof = aegis.create_proof(aegis.KeyPair.from_seed(bytes([3]) * 32), TOOL, pay(10))
    assert isinstance(proof, str) and proof.count(".") == 2


def test_decision_enforce_is_the_cores_rule() -> None:
    eng = engine()
    chain = finance_chain(unique_task("t"))
    allowed = eng.authorize(chain, TOOL, pay(10))
    assert allowed.enforce(pay(10)) == aegis.Enforcement("run", aegis.freeze(pay(10)))
    card = {**pay(10), "card_number": "4242424242424242"}
    sanitized = eng.authorize(chain, TOOL, card)
    assert sanitized.outcome == "sanitize" and sanitized.allowed
    assert sanitized.enforce(card).args == {**card, "card_number": "[REDACTED]"}
    pending = eng.authorize(chain, TOOL, pay(9000))
    assert pending.enforce(pay(9000)).action == "await_approval" and not pending.allowed
    assert pending.enforce(pay(9000)).approval_id == pending.approval_id
    denied = eng.authorize(chain, TOOL, {**pay(10), "destination": "nope"})
    refusal = denied.enforce(pay(10))
    assert (refusal.action, refusal.code, refusal.args) == ("refuse", "policy_forbid", None)
    enforced = eng.authorize_enforced(chain, TOOL, pay(10))
    assert enforced.decision.outcome == "allow" and enforced.enforcement.args == pay(10)


def test_key_repr_hides_the_secret() -> None:
    k = aegis.KeyPair.from_seed(bytes([9]) * 32)
    assert k.private_jwk["d"] not in repr(k) and k.kid in repr(k)


def bundle_with_meta(tmp_path) -> "pathlib.Path":
    """The payments bundle whose payment tool also declares a nested `meta` record (arguments
    the schema does not declare are refused, so a nested argument needs one)."""
    import shutil
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    schema = bundle / "payments.cedarschema"
    text = schema.read_text()
    assert text.count("memo?: String,") == 1
    schema.write_text(text.replace("memo?: String,", "memo?: String,\n      meta?: { invoice: String },"))
    return bundle


def test_guard_runs_with_the_authorized_snapshot_not_the_callers_dict(tmp_path) -> None:
    eng = aegis.Engine(bundle_with_meta(tmp_path), trusted_issuers={ISSUER: ISSUER_KEY})
    seen = []
    args = {"amount": 1200, "currency": "eur", "destination": ACCOUNT, "meta": {"invoice": "INV-1"}}

    @eng.guard(tool=TOOL, chain=finance_chain(unique_task("t")))
    def create_payment(amount, currency, destination, meta):
        args["amount"] = 999_999  # the caller's dict changes after the check...
        args["meta"]["invoice"] = "INV-EVIL"
        seen.append((amount, meta["invoice"]))
        with pytest.raises(TypeError):
            meta["invoice"] = "x"  # ...and the snapshot itself is immutable
        return "ok"

    assert create_payment(**args) == "ok"
    assert seen == [(1200, "INV-1")]
    # The nested record is typed too: a wrong type inside it never reaches the tool.
    with pytest.raises(aegis.Denied) as denied:
        create_payment(1, "eur", ACCOUNT, {"invoice": 7})
    assert denied.value.code == "args_invalid" and len(seen) == 1


def test_guard_passes_sanitized_args_and_raises_on_deny_and_approval() -> None:
    eng = engine()
    chain = finance_chain(unique_task("t"))
    received = []

    @eng.guard(tool=TOOL, chain=lambda: chain)
    def create_payment(amount, currency, destination, card_number=""):
        received.append(card_number)
        return amount

    create_payment(**pay(100), card_number="4242424242424242")
    assert received == ["[REDACTED]"]
    with pytest.raises(aegis.Denied) as denied:
        create_payment(100, "eur", "not-an-account")
    assert denied.value.decision.reasons[0].policy_id == "destination-account-pattern"
    with pytest.raises(aegis.ApprovalRequired) as approval:
        create_payment(**pay(9000))
    token = eng.approve(approval.value.approval_id, approver_chain()).override_token
    assert create_payment(**pay(9000), aegis_approval_token=token) == 9000
    with pytest.raises(aegis.Denied) as replay:
        create_payment(**pay(9000), aegis_approval_token=token)
    assert replay.value.code == "approval_replayed"


def forge_enforcement(eng: aegis.Engine, enforcement: Dict[str, Any]) -> None:
    """Makes `eng` answer `authorize_enforced` with the real decision but `enforcement` instead of
    the core's: guards must act on the enforcement alone."""
    real = type(eng).authorize_enforced

    def authorize_enforced(*args: Any, **kwargs: Any) -> aegis.Enforced:
        out = real(eng, *args, **kwargs)
        return aegis.Enforced(out.decision, aegis.Enforcement._from_json(enforcement))

    eng.authorize_enforced = authorize_enforced  # type: ignore[method-assign]


FORGED_ARGS = {"amount": 1, "currency": "usd", "destination": "acct_from_the_core_only"}
REFUSALS = [{"action": "launch"}, {"action": "run"}, {"action": "run", "args": [1]}, {}]


def test_guard_acts_on_the_enforcement_alone() -> None:
    eng = engine()
    chain = finance_chain(unique_task("t"))
    ran = []

    @eng.guard(tool=TOOL, chain=chain)
    def create_payment(amount, currency, destination):
        ran.append((amount, currency, destination))

    # The decision denies (bad destination), the enforcement says run: the enforcement wins.
    forge_enforcement(eng, {"action": "run", "args": FORGED_ARGS})
    create_payment(100, "eur", "nope")
    assert ran == [(1, "usd", "acct_from_the_core_only")]
    # The decision allows, the enforcement is unknown or malformed: refused.
    for enforcement in REFUSALS:
        forge_enforcement(eng, enforcement)
        with pytest.raises(aegis.Denied) as denied:
            create_payment(**pay(10))
        assert denied.value.decision.outcome == "allow"
    forge_enforcement(eng, {"action": "await_approval", "approval_id": "apr_x", "message": "ask"})
    with pytest.raises(aegis.ApprovalRequired) as approval:
        create_payment(**pay(10))
    assert (approval.value.approval_id, approval.value.message) == ("apr_x", "ask")
    assert len(ran) == 1


def test_mcp_session_acts_on_the_enforcement_alone() -> None:
    from aegis.mcp import GuardedSession

    received = []

    class Server:
        async def call_tool(self, name: str, arguments: Dict[str, Any]) -> str:
            received.append(arguments)
            return "done"

    eng = engine()
    guarded = GuardedSession(Server(), eng, finance_chain(unique_task("t")))
    forge_enforcement(eng, {"action": "run", "args": FORGED_ARGS})
    assert asyncio.run(guarded.call_tool(TOOL, {**pay(10), "destination": "nope"})) == "done"
    assert received == [FORGED_ARGS] and type(received[0]) is dict
    for enforcement in REFUSALS:
        forge_enforcement(eng, enforcement)
        with pytest.raises(aegis.Denied):
            asyncio.run(guarded.call_tool(TOOL, pay(10)))
    forge_enforcement(eng, {"action": "await_approval", "approval_id": "apr_x", "message": "ask"})
    with pytest.raises(aegis.ApprovalRequired):
        asyncio.run(guarded.call_tool(TOOL, pay(10)))
    assert len(received) == 1


def test_one_engine_shared_by_threads_keeps_single_use() -> None:
    eng = engine()
    chain = finance_chain(unique_task("threads"))
    approval_id = eng.authorize(chain, TOOL, pay(9000)).approval_id
    token = eng.approve(approval_id, approver_chain()).override_token
    results = []
    barrier = threading.Barrier(8)

    def redeem() -> None:
        barrier.wait()
        results.append(eng.authorize(chain, TOOL, pay(9000), approval_token=token).outcome)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["allow"] + ["deny"] * 7

    # Many threads deciding at once: every decision is made, none is lost.
    outcomes = []
    lock = threading.Lock()

    def decide() -> None:
        for _ in range(20):
            d = eng.authorize(finance_chain(unique_task("many")), TOOL, pay(10))
            with lock:
                outcomes.append(d.outcome)

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["allow"] * 80


def test_notifier_receives_pending_approvals_and_slack_message() -> None:
    got = []
    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, notifier=got.append)
    d = eng.authorize(finance_chain(unique_task("n")), TOOL, pay(9000))
    assert [p.approval_id for p in got] == [d.approval_id]
    pending = eng.pending_approvals()
    assert pending[0].args["amount"] == 9000 and (pending[0].agent_id, pending[0].lineage) == (FINANCE_AGENT, ("planner",))
    # One approval answers both what the 9000 payment needs: the forbid and the task's budget.
    assert pending[0].roles == ("budget-approver", "finance-approver")
    assert pending[0].lifts == ("budget:task_payments", "large-payment-needs-approval")
    assert pending[0].policy_ids == ("large-payment-needs-approval",)
    message = aegis.slack_message(pending[0])
    assert any(b["type"] == "actions" for b in message["blocks"]) and d.approval_id in json.dumps(message)


def test_ledger_end_task_budget_and_break_glass() -> None:
    eng = engine()
    task = unique_task("state")
    chain = finance_chain(task)
    # Splitting 9000 into three payments of 3000 does not get around the approval: the task's
    # budget (5000 a day) asks for one once it would be exceeded.
    decisions = [eng.authorize(chain, TOOL, pay(3000)) for _ in range(3)]
    assert [d.outcome for d in decisions] == ["allow", "approval_needed", "approval_needed"]
    assert [d.codes for d in decisions[1:]] == [("budget_exceeded",)] * 2
    assert [e.tool for e in eng.ledger(task)] == [TOOL]
    over = eng.approval(decisions[1].approval_id)
    assert over is not None and (over.roles, over.lifts) == (("budget-approver",), ("budget:task_payments",))
    token = eng.approve(over.approval_id, approver_chain()).override_token
    assert token and eng.authorize(chain, TOOL, pay(3000), approval_token=token).outcome == "allow"
    assert [e.tool for e in eng.ledger(task)] == [TOOL, "aegis.approve", TOOL]
    # The approval lifted that one call's budget, nothing more.
    assert eng.authorize(chain, TOOL, pay(1)).codes == ("budget_exceeded",)
    approvers = [approver_chain(),
                 [aegis.issue_root(ISSUER, ISSUER_KEY, "cfo", aegis.KeyPair.generate(), task_id="desk", intent="x",
                                   scope=["aegis.break_glass"])]]
    with pytest.raises(aegis.BreakGlassRefused) as refused:  # the finance approver holds no aegis.break_glass
        eng.break_glass(agents=[FINANCE_AGENT], tools=[TOOL], tasks=[task], reason="outage", approvers=approvers,
                        duration_secs=60)
    assert "tool_not_in_scope" in refused.value.message
    eng.end_task(task)
    assert eng.authorize(chain, TOOL, pay(1)).codes == ("task_ended",)


def test_break_glass_is_bounded_by_max_break_glass_secs() -> None:
    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, max_break_glass_secs=30)
    approvers = [[aegis.issue_root(ISSUER, ISSUER_KEY, name, aegis.KeyPair.generate(), task_id="desk", intent="x",
                                   scope=["aegis.break_glass"])] for name in ("cfo", "ciso")]
    with pytest.raises(aegis.BreakGlassRefused) as refused:
        eng.break_glass(agents=[FINANCE_AGENT], tools=[TOOL], tasks=["t-1"], reason="outage", approvers=approvers,
                        duration_secs=60)
    assert "30 seconds" in refused.value.message
    grant = eng.break_glass(agents=[FINANCE_AGENT], tools=[TOOL], tasks=["t-1"], reason="outage", approvers=approvers,
                            duration_secs=20)
    assert grant.expires_at - grant.opened_at == 20 and grant.approvers == ("cfo", "ciso")
    assert (grant.agents, grant.tools, grant.tasks) == ((FINANCE_AGENT,), (TOOL,), ("t-1",))
    assert [g.id for g in eng.open_break_glass()] == [grant.id]
    eng.close_break_glass(grant.id, "INC-1")
    assert eng.open_break_glass() == []


def test_store_urls_are_parsed_by_the_core() -> None:
    assert engine("memory").pending_approvals() == []
    for bad in ("bogus", "sqlite:"):
        with pytest.raises(aegis.MalformedRequest):
            engine(bad)
    with pytest.raises(aegis.StoreUnavailable):  # the object form, for the key prefix
        aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, store="redis://127.0.0.1:1/0", redis_prefix="p")
    with pytest.raises(aegis.MalformedRequest):
        aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, redis_prefix="p")


def test_sqlite_store_is_shared_by_two_engines(tmp_path) -> None:
    store = f"sqlite:{tmp_path / 'aegis.db'}"
    a, b = engine(store), engine(store)
    chain = finance_chain(unique_task("shared"))
    approval_id = a.authorize(chain, TOOL, pay(9000)).approval_id
    assert [p.approval_id for p in b.pending_approvals()] == [approval_id]
    token = b.approve(approval_id, approver_chain()).override_token
    assert a.authorize(chain, TOOL, pay(9000), approval_token=token).outcome == "allow"
    assert b.authorize(chain, TOOL, pay(9000), approval_token=token).codes == ("approval_replayed",)


def test_langgraph_tool_node_with_the_aegis_wrapper() -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    from aegis.langchain import tool_call_wrapper

    ran = []

    @tool(TOOL)
    def create_payment(amount: int, currency: str, destination: str) -> str:
        """Create a payment."""
        ran.append(amount)
        return "paid"

    node = ToolNode([create_payment], wrap_tool_call=tool_call_wrapper(engine(), finance_chain(unique_task("node"))))
    calls = [{"name": TOOL, "args": pay(100), "id": "a"}, {"name": TOOL, "args": {**pay(200), "destination": "x"}, "id": "b"}]
    graph = StateGraph(MessagesState)
    graph.add_node("tools", node)
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    out = graph.compile().invoke({"messages": [AIMessage(content="", tool_calls=calls)]})
    by_id = {m.tool_call_id: m for m in out["messages"] if hasattr(m, "tool_call_id")}
    assert by_id["a"].status == "success" and by_id["b"].status == "error"
    assert ran == [100]

    # The wrapper acts on the core's enforcement alone.
    eng = engine()
    forged = ToolNode([create_payment], wrap_tool_call=tool_call_wrapper(eng, finance_chain(unique_task("node"))))
    graph = StateGraph(MessagesState)
    graph.add_node("tools", forged)
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    compiled = graph.compile()
    forge_enforcement(eng, {"action": "run", "args": {"amount": 7, "currency": "eur", "destination": ACCOUNT}})
    out = compiled.invoke({"messages": [AIMessage(content="", tool_calls=calls[1:])]})
    assert out["messages"][-1].status == "success" and ran == [100, 7]
    forge_enforcement(eng, {"action": "launch"})
    out = compiled.invoke({"messages": [AIMessage(content="", tool_calls=calls[:1])]})
    assert out["messages"][-1].status == "error" and ran == [100, 7]


def test_a_tool_checks_the_decision_receipt_offline() -> None:
    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY},
                       receipts={"key": aegis.KeyPair.from_seed(bytes([11]) * 32).private_jwk, "issuer": "aegis.example",
                                 "audience": "payments-api"})
    jwks = eng.receipt_jwks()
    assert jwks is not None and len(jwks["keys"]) == 1
    chain = finance_chain(unique_task("receipt"))
    d = eng.authorize(chain, TOOL, pay(1200))
    assert d.outcome == "allow" and d.receipt
    check = {"issuer": "aegis.example", "audience": "payments-api", "tool": TOOL}
    claims = aegis.verify_receipt(d.receipt, jwks, args=pay(1200), **check)
    assert claims["jti"] == d.decision_id and claims["sub"] == FINANCE_AGENT
    with pytest.raises(aegis.ReceiptMismatch):
        aegis.verify_receipt(d.receipt, jwks, args=pay(1201), **check)
    with pytest.raises(aegis.ReceiptInvalid):
        aegis.verify_receipt(d.receipt, {"keys": [aegis.KeyPair.generate().public_jwk]}, args=pay(1200), **check)
    assert eng.authorize(chain, TOOL, pay(9000)).receipt is None
    assert engine().receipt_jwks() is None
