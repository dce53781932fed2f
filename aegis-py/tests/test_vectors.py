"""The shared vectors in tests/vectors/ through the Python API; they must agree with Rust."""

import json

import aegis
from conftest import ROOT

VECTORS = json.loads((ROOT / "tests" / "vectors" / "decisions.json").read_text())


def engine_for_vectors() -> aegis.Engine:
    cfg = VECTORS["engine"]
    issuers = {i["issuer"]: i["jwk"] for i in cfg["trusted_issuers"]}
    return aegis.Engine(ROOT / cfg["bundle_dir"], trusted_issuers=issuers, fixed_time=cfg["fixed_time"])


def test_every_vector_decides_as_in_rust() -> None:
    cases = VECTORS["cases"]
    assert len(cases) >= 30
    failures = []
    for case in cases:
        req = case["request"]
        d = engine_for_vectors().authorize(req["chain"], req["tool"], req["args"])
        got = {"outcome": d.outcome, "codes": list(d.codes),
               "policy_ids": sorted(r.policy_id for r in d.reasons if r.policy_id), "would_block": d.would_block}
        if got != case["expect"]:
            failures.append(f"{case['name']}: expected {case['expect']}, got {got}")
        assert (d.approval_id is not None) == (d.outcome == "approval_needed")
        assert (d.sanitized_args is not None) == (d.outcome == "sanitize")
    assert not failures, "\n".join(failures)


def test_vector_keys_derive_from_their_seeds() -> None:
    for k in VECTORS["keys"]:
        pair = aegis.KeyPair.from_seed(bytes.fromhex(k["seed_hex"]))
        assert pair.kid == k["kid"] and pair.public_jwk["x"] == k["x"]
