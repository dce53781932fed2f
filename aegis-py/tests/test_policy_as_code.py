"""Policy as code from Python, through the core's one operation table: the bundle's own
tests, lints, a dry run of an audit log under a candidate, signed bundles, and the control
plane's two-administrator rule."""

import shutil

import pytest

import aegis
from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, key, pay, unique_task


def test_the_bundle_passes_its_own_tests_and_lints_name_file_and_line() -> None:
    report = aegis.policy_test(BUNDLE)
    assert len(report["cases"]) >= 10 and all(not c["failures"] for c in report["cases"]), report
    found = aegis.policy_lint(BUNDLE)
    assert [(f["code"], f["file"]) for f in found] == [("tool_without_forbid", "payments.cedarschema")]
    assert found[0]["line"] > 0


def candidate_without(tmp_path, policy_id: str):
    dst = tmp_path / "candidate"
    shutil.copytree(BUNDLE, dst)
    matrix = dst / "sod.yaml"
    text = matrix.read_text()
    start = text.index(f"  - id: {policy_id}")
    end = text.find("  - id: ", start + 1)
    matrix.write_text(text[:start] + (text[end:] if end >= 0 else ""))
    return dst


def test_dry_run_names_the_call_a_removed_sod_forbid_would_let_through(tmp_path) -> None:
    keys = aegis.audit_keygen("aegis.example/py-dry-run", seed=bytes([3]) * 32)
    log_dir = tmp_path / "log"
    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, approval_key=key(7),
                       audit={"dir": str(log_dir), "signing_key": keys.signer_key})
    task = unique_task("py-dry-run")
    planner = aegis.issue_root(ISSUER, ISSUER_KEY, "planner", key(2), task_id=task, intent="pay",
                               scope=["invoice.create", TOOL])
    clerk = [planner, aegis.delegate(planner, key(2), "clerk", key(9), scope=["invoice.create", TOOL])]
    assert eng.authorize(finance_chain(task), TOOL, pay(100)).outcome == "allow"
    assert eng.authorize(clerk, "invoice.create", {"customer": "acme", "amount": 5}).outcome == "allow"
    refused = eng.authorize(clerk, TOOL, pay(100))
    assert refused.outcome == "deny"
    del eng  # closes the log (and signs its checkpoint)

    same = aegis.policy_dry_run(BUNDLE, [log_dir])
    assert same["changes"] == [] and same["replayed"] == 3, same
    flipped = aegis.policy_dry_run(candidate_without(tmp_path, "drafter-does-not-pay"), [log_dir])
    assert [(c["decision_id"], c["from"], c["to"], c["opens"]) for c in flipped["changes"]] == [
        (refused.decision_id, "deny", "allow", True)]
    assert flipped["by_agent"] == {"planner/clerk": 1}


def test_signed_bundles(tmp_path) -> None:
    signer, stranger = key(50), key(51)
    bundle = tmp_path / "signed"
    shutil.copytree(BUNDLE, bundle)
    with pytest.raises(aegis.BundleSignatureInvalid):
        aegis.Engine(bundle, trusted_issuers={ISSUER: ISSUER_KEY}, bundle_keys=[signer])
    signed = aegis.bundle_sign(bundle, signer)
    assert (bundle / "bundle.sig").read_text().strip() == signed["signature"]
    assert aegis.bundle_verify(bundle, [signer])["signed_by"] == signer.kid
    with pytest.raises(aegis.BundleSignatureInvalid):
        aegis.bundle_verify(bundle, [stranger])
    eng = aegis.Engine(bundle, trusted_issuers={ISSUER: ISSUER_KEY}, bundle_keys=[signer])
    (bundle / "late.cedar").write_text('forbid (principal, action, resource);\n')
    with pytest.raises(aegis.BundleSignatureInvalid):
        eng.reload_bundle(bundle)
    assert eng.authorize(finance_chain(unique_task("py-signed")), TOOL, pay(10)).outcome == "allow"


def admin(name: str, n: int):
    chain = [aegis.issue_root(ISSUER, ISSUER_KEY, name, key(n), task_id="admins", intent="operate aegis",
                              scope=["aegis.admin"])]
    return chain, key(n)


def signed(who, action, version):
    chain, k = who
    return {"chain": chain, "proof": aegis.admin_proof(k, action, version)}


def test_one_administrator_cannot_switch_to_log_only(tmp_path) -> None:
    eng = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY}, require_two_admins=True)
    alice, bob = admin("alice", 60), admin("bob", 61)
    shadow = {"action": "set_mode", "mode": "shadow"}
    v = eng.policy_version
    with pytest.raises(aegis.AdminConflict):
        eng.admin({"action": shadow, "policy_version": v, "requested_by": signed(alice, shadow, v),
                   "approved_by": signed(alice, shadow, v)})
    with pytest.raises(aegis.AdminUnauthorized):
        other = {"action": "clear_candidate"}
        eng.admin({"action": shadow, "policy_version": v, "requested_by": signed(alice, shadow, v),
                   "approved_by": signed(bob, other, v)})
    with pytest.raises(aegis.AdminUnauthorized):
        eng.admin({"action": shadow, "policy_version": v, "requested_by": signed(alice, shadow, v),
                   "approved_by": signed(bob, shadow, "payments@0.0.0+0000000000000000")})
    with pytest.raises(aegis.AdminApprovalRequired):
        eng.reload_bundle(BUNDLE)
    assert eng.control_status()["mode"] == "enforce"
    out = eng.admin({"action": shadow, "policy_version": v, "requested_by": signed(alice, shadow, v),
                     "approved_by": signed(bob, shadow, v)})
    assert (out["mode"], out["requested_by"], out["approved_by"]) == ("shadow", "alice", "bob")
    planner_alone = finance_chain(unique_task("py-shadow"))[:1]
    d = eng.authorize(planner_alone, TOOL, pay(10))
    assert d.outcome == "allow" and d.would_block and d.reasons[-1].code == "shadow_mode"
