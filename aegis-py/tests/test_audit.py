"""The audit log from Python: every decision recorded, checkpoints signed, tampering named."""

import json
import pathlib

import pytest

import aegis
from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, key, pay, unique_task

LOG_NAME = "aegis.test/python"


def audited_engine(log_dir: pathlib.Path, keys: aegis.LogKeys, **audit: object) -> aegis.Engine:
    return aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, approval_key=key(7),
                        audit={"dir": str(log_dir), "signing_key": keys.signer_key, **audit})


def records(log_dir: pathlib.Path) -> list:
    return [json.loads(line) for seg in sorted(log_dir.glob("*.jsonl")) for line in seg.read_text().splitlines()]


def test_decisions_are_recorded_and_the_log_verifies_under_a_pinned_key(tmp_path) -> None:
    keys = aegis.audit_keygen(LOG_NAME, seed=bytes([5]) * 32)
    assert keys.signer_key not in repr(keys) and keys.verifier_key.startswith(LOG_NAME + "+")
    log_dir = tmp_path / "log"
    eng = audited_engine(log_dir, keys)
    task = unique_task("audit")
    assert eng.authorize(finance_chain(task), TOOL, pay(10)).outcome == "allow"
    assert eng.authorize(finance_chain(task), TOOL, pay(9000)).outcome == "approval_needed"
    cp = eng.audit_checkpoint()
    kinds = [(r["kind"], r.get("outcome")) for r in records(log_dir)]
    assert kinds == [("bundle.loaded", None), ("decision", "allow"), ("approval.opened", None),
                     ("decision", "approval_needed")], kinds
    assert (cp.origin, cp.size) == (LOG_NAME, 4)
    report = aegis.audit_verify(log_dir, verifier_key=keys.verifier_key, trusted_checkpoints=[cp.note])
    assert report.intact and report.trusted == (4,) and not report.key_from_log and report.first_bad_seq is None
    assert report.records == len(kinds) and report.checkpoint is not None


def test_an_edited_record_is_named_and_another_key_is_refused(tmp_path) -> None:
    keys = aegis.audit_keygen(LOG_NAME, seed=bytes([5]) * 32)
    log_dir = tmp_path / "log"
    eng = audited_engine(log_dir, keys)
    task = unique_task("audit")
    for amount in (10, 20, 30):
        assert eng.authorize(finance_chain(task), TOOL, pay(amount)).outcome == "allow"
    cp = eng.audit_checkpoint()
    del eng
    (segment,) = sorted(log_dir.glob("*.jsonl"))
    text = segment.read_text()
    assert '"amount":20' in text
    segment.write_text(text.replace('"amount":20', '"amount":2', 1))
    report = aegis.audit_verify(log_dir, verifier_key=keys.verifier_key, trusted_checkpoints=[cp.note])
    assert not report.intact and report.first_bad_seq == 2, report
    other = aegis.audit_keygen(LOG_NAME, seed=bytes([6]) * 32)
    segment.write_text(text)
    assert aegis.audit_verify(log_dir, verifier_key=keys.verifier_key).intact
    assert not aegis.audit_verify(log_dir, verifier_key=other.verifier_key).intact
    unpinned = aegis.audit_verify(log_dir)
    assert unpinned.intact and unpinned.key_from_log and unpinned.trusted == ()


def test_an_engine_without_a_log_cannot_checkpoint_and_bad_keys_are_typed() -> None:
    with pytest.raises(aegis.AuditUnavailable):
        aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}).audit_checkpoint()
    with pytest.raises(aegis.AegisError) as bad:
        aegis.audit_keygen(LOG_NAME, seed=b"short")
    assert bad.value.code == "invalid_key"
