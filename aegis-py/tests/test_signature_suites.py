"""Wycheproof's and CCTV's Ed25519 suites through the Python binding: the same key loader and
strict verifier every credential goes through; the counts must match the Rust run."""

from __future__ import annotations

import json
from pathlib import Path

import aegis

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "external"


def test_wycheproof_ed25519_agrees_on_all_151() -> None:
    suite = json.loads((VECTORS / "wycheproof" / "ed25519_test.json").read_text())
    total, disagree = 0, []
    for group in suite["testGroups"]:
        key = bytes.fromhex(group["publicKey"]["pk"])
        for case in group["tests"]:
            total += 1
            valid = aegis.verify_signature(key, bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])).valid
            if valid != (case["result"] == "valid"):
                disagree.append(case["tcId"])
    assert total == 151 and disagree == []


def test_cctv_ed25519_accepts_the_same_43_of_914() -> None:
    cases = json.loads((VECTORS / "cctv" / "ed25519vectors.json").read_text())
    assert len(cases) == 914
    accepted = [c["number"] for c in cases
                if aegis.verify_signature(bytes.fromhex(c["key"]), c["msg"].encode(), bytes.fromhex(c["sig"])).valid]
    assert len(accepted) == 43, accepted
