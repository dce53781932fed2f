"""`Engine.authorize` converts plain arguments natively (no JSON text): it must decide exactly as
the JSON text path does, for every value, and hand anything unusual to that path."""

import enum
import threading
from types import MappingProxyType
from typing import Any, Dict, Optional, Tuple

import pytest

import aegis
from aegis import Decision, Enforced, _dumps, _request
from payments_setup import ACCOUNT, TOOL, approver_chain, engine, finance_chain, pay, unique_task


class Currency(str, enum.Enum):
    EUR = "eur"


class Amount(enum.IntEnum):
    TEN = 10


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


# Plain values (converted natively) and values only the text path reads (handed to it).
ARGUMENTS = [
    pay(10),
    {**pay(10), "memo": "INV-1 ünïcödé ✓ \U0001f600"},
    {**pay(10), "memo": ""},
    {**pay(10), "amount": True},                       # a bool is not a Long
    {**pay(10), "amount": 12.0},                       # a whole float
    {**pay(10), "amount": 12.5},
    {**pay(10), "amount": -0.0},
    {**pay(10), "amount": 2 ** 63 - 1},
    {**pay(10), "amount": 2 ** 63},                    # u64 only
    {**pay(10), "amount": 2 ** 64},                    # past 64 bits: text path
    {**pay(10), "amount": -(2 ** 63) - 1},
    {**pay(10), "amount": float("nan")},               # not JSON: text path refuses
    {**pay(10), "amount": float("inf")},
    {**pay(10), "amount": 1e300},
    {**pay(10), "amount": None},
    {**pay(10), "amount": Amount.TEN},                 # int subclass: text path
    {**pay(10), "currency": Currency.EUR},             # str subclass: text path
    {**pay(10), "memo": "\ud800"},                     # lone surrogate: text path refuses
    {**pay(10), "memo": ["a", ("b", {"c": None})]},
    {**pay(10), "memo": {"k": [1, 2.5, False]}},
    {**pay(10), 1: "x"},                               # a key that is not a str
    {**pay(10), "memo": nested(120)},
    {**pay(10), "memo": nested(124)},
    {**pay(10), "memo": nested(125)},                  # the deepest the text path reads
    {**pay(10), "memo": nested(126)},
    {**pay(10), "memo": nested(200)},
    MappingProxyType(pay(10)),                         # a frozen view: text path
    {"currency": "eur", "destination": ACCOUNT},
    {},
]


def outcome(fn) -> Tuple[str, Any]:
    try:
        result = fn()
    except aegis.AegisError as e:
        return ("error", (type(e).__name__, e.code))
    except (TypeError, ValueError) as e:
        return ("error", (type(e).__name__,))
    if isinstance(result, Enforced):
        return ("enforced", (view(result.decision), result.enforcement))
    return ("decision", view(result))


def view(d: Decision) -> Dict[str, Any]:
    """A decision without its unique id."""
    return {k: v for k, v in d._json().items() if k != "decision_id"} | {"receipt": d.receipt is not None}


def text_path(eng: aegis.Engine, op: str, chain, args, token: Optional[str] = None):
    request = _request(chain, TOOL, _dumps(args), None, None, token)
    data = eng._op_text(op, request)
    return Decision._from_json(data) if op == "authorize" else Enforced._from_json(data)


@pytest.mark.parametrize("index", range(len(ARGUMENTS)))
def test_the_native_conversion_decides_as_the_text_path(index: int) -> None:
    args = ARGUMENTS[index]
    eng = engine()
    chain = finance_chain(unique_task("fast"))
    fast = outcome(lambda: eng.authorize(chain, TOOL, args))
    text = outcome(lambda: text_path(eng, "authorize", chain, args))
    assert fast == text, args
    fast = outcome(lambda: eng.authorize_enforced(chain, TOOL, args))
    text = outcome(lambda: text_path(eng, "authorize_enforced", chain, args))
    assert fast == text, args


def test_the_depth_limit_is_where_the_text_path_puts_it() -> None:
    eng = engine()
    chain = finance_chain(unique_task("deep"))
    # The memo is not a String past one level, so within the limit the call is denied on the
    # schema, and past it the request is malformed: both paths agree at every depth.
    results = {n: outcome(lambda: eng.authorize(chain, TOOL, {**pay(10), "memo": nested(n)})) for n in (124, 125, 126)}
    assert results[124][0] == results[125][0] == "decision"
    assert results[126] == ("error", ("MalformedRequest", "malformed_request"))


def test_the_enforced_arguments_are_a_frozen_snapshot() -> None:
    eng = engine()
    args = {**pay(10), "memo": "INV-9"}
    enforced = eng.authorize_enforced(finance_chain(unique_task("snap")), TOOL, args)
    run = aegis.args_to_run(enforced)
    args["amount"] = 9_000_000
    assert run["amount"] == 10 and isinstance(run, MappingProxyType)
    with pytest.raises(TypeError):
        run["amount"] = 1  # type: ignore[index]


def test_an_approval_binds_the_arguments_across_both_paths() -> None:
    """An approval asked through the native path is redeemed through the text path (and back):
    both write the same call digest, and a changed argument is refused either way."""
    eng = engine()
    for ask_fast in (True, False):
        chain = finance_chain(unique_task("bind"))
        big = {**pay(9000), "memo": "INV-77"}
        asked = eng.authorize(chain, TOOL, big) if ask_fast else text_path(eng, "authorize", chain, big)
        assert asked.outcome == "approval_needed", asked
        token = eng.approve(asked.approval_id, approver_chain()).override_token
        assert token
        changed = {**big, "amount": 9001}
        refused = (eng.authorize(chain, TOOL, changed, approval_token=token) if not ask_fast
                   else text_path(eng, "authorize", chain, changed, token))
        assert refused.outcome != "allow", refused
        redeemed = (eng.authorize(chain, TOOL, big, approval_token=token) if not ask_fast
                    else text_path(eng, "authorize", chain, big, token))
        assert redeemed.outcome == "allow", redeemed


def test_warm_decisions_are_whole_decisions_of_their_own() -> None:
    """A warm decision shares the objects of an earlier one's outcome, reasons and policy version
    (only its id is new): each is still a complete `Decision` of its own, equal field for field
    to the text path's, whichever outcome came before it."""
    eng = engine()
    chain = finance_chain(unique_task("warm"))
    seen = set()
    for amount in (10, 10, 9000, 10, 9000, 10):
        fast = eng.authorize(chain, TOOL, pay(amount))
        text = text_path(eng, "authorize", chain, pay(amount))
        assert type(fast) is Decision
        assert fast.outcome == ("approval_needed" if amount == 9000 else "allow")
        assert fast.__replace__(decision_id="x", approval_id=None) == text.__replace__(decision_id="x", approval_id=None)
        assert fast != text  # their ids differ
        assert fast.decision_id not in seen
        seen.add(fast.decision_id)
        with pytest.raises(AttributeError):
            fast.outcome = "allow"  # type: ignore[misc]


def test_one_chain_with_arguments_of_every_shape_in_turn_is_decided_as_the_text_path() -> None:
    """Calls with one chain reuse its request, reading each call's arguments into the last
    call's: whatever shape came before, each call decides as the text path does."""
    eng = engine()
    chain = finance_chain(unique_task("shapes"))
    for args in ARGUMENTS + ARGUMENTS[::-1] + [pay(10), pay(10), pay(9000), pay(10)]:
        fast = outcome(lambda: eng.authorize(chain, TOOL, args))
        text = outcome(lambda: text_path(eng, "authorize", chain, args))
        if fast[0] == "decision" and text[0] == "decision":
            fast[1].pop("approval_id", None)
            text[1].pop("approval_id", None)
        assert fast == text, args


def test_a_chain_changed_in_place_is_read_again() -> None:
    """The kept request is used only for the very token objects it was made from: a list whose
    tokens were replaced is a new chain."""
    eng = engine()
    chain = finance_chain(unique_task("in-place"))
    assert eng.authorize(chain, TOOL, pay(10)).outcome == "allow"
    other = approver_chain()
    chain[:] = other  # the same list object, now an approver's chain (no payments)
    d = eng.authorize(chain, TOOL, pay(10))
    assert d.outcome == "deny", d
    assert d == text_path(eng, "authorize", other, pay(10)).__replace__(decision_id=d.decision_id, receipt=d.receipt)


def test_decisions_from_many_threads_are_each_their_own() -> None:
    """The native path builds each result under the GIL from its own decision: concurrent calls
    with different arguments never see each other's outcome."""
    eng = engine()
    errors = []

    def work(i: int) -> None:
        chain = finance_chain(unique_task(f"threads-{i}"))
        for n in range(200):
            amount = 9000 if n % 3 == 0 else 10
            d = eng.authorize(chain, TOOL, {**pay(amount), "memo": f"{i}-{n}"})
            expected = "approval_needed" if amount == 9000 else "allow"
            if d.outcome != expected:
                errors.append((i, n, d))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


class _Tokens(str):
    """A `str` subclass: not read natively, so the request goes as text."""


def test_every_kind_of_chain_is_decided_as_the_text_path_decides_it() -> None:
    eng = engine()
    chain = finance_chain(unique_task("chains"))
    kinds = [
        list(chain), tuple(chain), iter_once(chain), [_Tokens(t) for t in chain], chain[:1],
        [chain[0], 7], [chain[0], b"bytes"], [chain[0], "\ud800"], [], "a string is not a chain",
    ]
    for kind in kinds:
        fast = outcome(lambda: eng.authorize(kind, TOOL, pay(10)))
        text = outcome(lambda: text_path(eng, "authorize", list(kind) if not isinstance(kind, str) else kind, pay(10)))
        assert fast == text, (type(kind), fast, text)
    assert outcome(lambda: eng.authorize(tuple(chain), TOOL, pay(10)))[1]["outcome"] == "allow"


def iter_once(items):
    """A sequence that is neither a list nor a tuple."""
    import collections

    return collections.deque(items)


class Text(str):
    pass


def test_the_call_options_go_down_the_text_path_when_they_are_not_plain() -> None:
    """Besides the arguments, the tool and the options (`resource`, `proof`, `approval_token`,
    `traceparent`, `tool_call_id`) are converted natively only when plain; anything else takes
    the text path, so each decides, or is refused with a code, as the text path would."""
    eng = engine()
    chain = finance_chain(unique_task("options"))
    for kind, tool, options in (
        ("plain", TOOL, {"resource": ("Account", ACCOUNT), "tool_call_id": "call-1"}),
        ("a list for the resource pair", TOOL, {"resource": ["Account", ACCOUNT]}),
        ("a str subclass for the tool", Text(TOOL), {"tool_call_id": Text("call-2")}),
        ("an int for the tool", 5, {}),
        ("an int for the call id", TOOL, {"tool_call_id": 7}),
        ("an empty tool", "", {}),
        ("a lone surrogate in the tool", "\ud800", {}),
    ):
        fast = outcome(lambda: eng.authorize(chain, tool, pay(10), **options))
        request = _request(chain, tool, _dumps(pay(10)), options.get("resource"), None, None, None,
                           options.get("tool_call_id"))
        text = outcome(lambda: Decision._from_json(eng._op_text("authorize", request)))
        assert fast == text, kind
    assert outcome(lambda: eng.authorize(chain, 5, pay(10))) == ("error", ("MalformedRequest", "malformed_request"))
    assert outcome(lambda: eng.authorize(chain, "", pay(10))) == ("error", ("MalformedRequest", "malformed_request"))
    with pytest.raises(TypeError):
        eng.authorize(chain, TOOL, pay(10), "Account")  # the options are keyword-only
