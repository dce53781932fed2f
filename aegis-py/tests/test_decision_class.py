"""`aegis.Decision` is a native class (a warm decision is one allocation) with a frozen
dataclass's surface: built by keyword or position with the same defaults, read-only, equal and
hashed by its fields, pickled, copied, matched by pattern, and with the same methods."""

import copy
import dataclasses
import pickle
import weakref
from types import MappingProxyType

import pytest

import aegis
from aegis import Decision, Reason
from payments_setup import TOOL, engine, finance_chain, pay, unique_task

REASON = Reason("policy_permit", "permitted", "allow-small-payments")


def made(**changes):
    fields = dict(outcome="allow", reasons=(REASON,), decision_id="d-1", policy_version="payments@1+abc")
    return Decision(**{**fields, **changes})


def test_fields_defaults_and_positional_order_are_the_dataclass_ones() -> None:
    d = made()
    assert (d.would_block, d.approval_id, d.sanitized_args, d.break_glass_id, d.candidate, d.receipt) == (
        False, None, None, None, None, None)
    positional = Decision("deny", (), "d-2", "v", True, "a-1", None, "bg-1", None, "r")
    assert (positional.outcome, positional.would_block, positional.approval_id, positional.break_glass_id,
            positional.receipt) == ("deny", True, "a-1", "bg-1", "r")
    assert Decision.__match_args__ == ("outcome", "reasons", "decision_id", "policy_version", "would_block",
                                       "approval_id", "sanitized_args", "break_glass_id", "candidate", "receipt")
    match d:
        case Decision("allow", reasons, decision_id=did):
            assert (reasons, did) == ((REASON,), "d-1")
        case _:
            pytest.fail("a positional pattern did not match")
    with pytest.raises(TypeError):
        Decision("allow", (), "d")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        made(would_block="yes")
    with pytest.raises(TypeError):
        made(unknown=1)


def test_a_decision_is_read_only() -> None:
    d = made()
    for name in ("outcome", "reasons", "decision_id", "receipt"):
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
            setattr(d, name, "x")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(d, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.new_attribute = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):  # stricter than a dataclass, which this back door changes
        object.__setattr__(d, "outcome", "deny")
    assert d.outcome == "allow"
    assert weakref.ref(d)() is d


def test_equality_and_hash_follow_every_field() -> None:
    d = made()
    assert d == made() and hash(d) == hash(made())
    assert not (d != made())
    for change in (dict(outcome="deny"), dict(reasons=()), dict(decision_id="d-2"), dict(policy_version="v2"),
                   dict(would_block=True), dict(approval_id="a"), dict(break_glass_id="b"), dict(receipt="r")):
        assert d != made(**change), change
    assert d != "allow" and d.__eq__("allow") is NotImplemented
    assert len({d, made(), made(decision_id="d-2")}) == 2
    with pytest.raises(TypeError):  # a read-only mapping has no hash, as in a frozen dataclass
        hash(made(sanitized_args=MappingProxyType({"a": 1})))


def test_replace_pickle_and_copy_keep_every_field() -> None:
    d = made(sanitized_args=None, candidate=None, receipt="r", approval_id="a-1")
    replaced = d.__replace__(decision_id="d-9", would_block=True)
    assert (replaced.decision_id, replaced.would_block, replaced.receipt, replaced.approval_id) == ("d-9", True, "r", "a-1")
    assert d.decision_id == "d-1"  # the original is unchanged
    with pytest.raises(TypeError, match="no field `nope`"):
        d.__replace__(nope=1)
    assert pickle.loads(pickle.dumps(d)) == d
    assert copy.copy(d) == d and copy.deepcopy(d) == d
    assert type(pickle.loads(pickle.dumps(d))) is Decision


def test_methods_and_repr_of_an_engine_decision() -> None:
    eng = engine()
    chain = finance_chain(unique_task("decision-class"))
    allowed = eng.authorize(chain, TOOL, pay(10))
    pending = eng.authorize(chain, TOOL, pay(9000))
    assert allowed.allowed and not pending.allowed
    assert allowed.codes == tuple(r.code for r in allowed.reasons) and "policy_permit" in allowed.codes
    assert allowed.enforce(pay(10)).action == "run" and dict(allowed.enforce(pay(10)).args) == pay(10)
    assert pending.enforce(pay(9000)).action == "await_approval"
    assert repr(allowed).startswith("<Decision allow [policy_permit") and allowed.decision_id in repr(allowed)
    assert f"approval_id={pending.approval_id}" in repr(pending)
    assert Decision._from_json(allowed._json()).__replace__(receipt=allowed.receipt) == allowed
    assert aegis.Decision is Decision and Decision.__module__ == "aegis"


def test_an_engine_subclass_may_call_the_base_init() -> None:
    from payments_setup import BUNDLE, ISSUER, ISSUER_KEY

    class Counting(aegis.Engine):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.calls = 0

        def authorize(self, *args, **kwargs):  # type: ignore[override]
            self.calls += 1
            return super().authorize(*args, **kwargs)

    eng = Counting(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY})
    assert eng.authorize(finance_chain(unique_task("subclass")), TOOL, pay(10)).outcome == "allow"
    assert eng.calls == 1 and isinstance(eng, aegis.Engine)
