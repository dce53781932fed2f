"""The peers benchmark (`aegis-py/bench/peers.py`) compares equivalent policies: cedarpy allows
the benchmark's payment on the payments bundle and refuses what Aegis refuses, by the same
policies; the Agent Governance Toolkit's evaluators allow it and refuse the large payments.
Only the checks run here, not the timings."""

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "aegis-py" / "bench"))

import peers  # noqa: E402


@pytest.fixture(scope="module")
def state() -> peers.Setup:
    # `scripts/test-all` installs both peers: a missing one is a broken setup, not a skip.
    assert peers.cedarpy is not None, "cedarpy is not installed"
    assert peers.PolicyEvaluator is not None, "agent-governance-toolkit-core is not installed"
    return peers.setup()


def test_every_peer_decides_as_aegis_does(state: peers.Setup) -> None:
    peers.check_equivalence(state)


def test_cedarpy_allows_the_payment_and_refuses_over_the_limit(state: peers.Setup) -> None:
    allow = state.cedar.decide(peers.cedar_request(peers.ARGS, state.task_id), schema=True, parsed=True)
    assert allow.decision == peers.cedarpy.Decision.Allow
    assert peers.CedarPeer.policy_ids(allow) == ["payments-by-task-agents"]
    _, over = peers.REFUSED["large-payment-needs-approval"]
    deny = state.cedar.decide(peers.cedar_request(over, state.task_id), schema=True, parsed=True)
    assert deny.decision == peers.cedarpy.Decision.Deny
    assert peers.CedarPeer.policy_ids(deny) == ["large-payment-needs-approval"]
    assert state.engine.authorize(state.chain, peers.TOOL, over).outcome == "approval_needed"


def test_agt_evaluator_allows_the_payment_and_refuses_over_the_limit(state: peers.Setup) -> None:
    assert state.agt.evaluate(peers.ARGS)
    for policy_id in ("large-payment-needs-approval", "payment-hard-cap"):
        assert not state.agt.evaluate(peers.REFUSED[policy_id][1]), policy_id


def test_the_sod_translation_refuses_what_it_does_not_cover() -> None:
    matrix = {"duties": {"pay": ["stripe.create_payment"], "draft": ["invoice.create"]},
              "incompatible": [{"id": "w", "first": "draft", "then": "pay", "within": "agent", "window_secs": 60}]}
    with pytest.raises(ValueError, match="not translated"):
        peers.sod_policies(matrix)
