"""The package wraps every operation of the core's table, and the codes agree with the core."""

import inspect
import json

import pytest

import aegis
from aegis import _native

# Every operation of the core's table -> the Python callable that wraps it (a dotted path in
# `aegis`). An operation the core adds fails the test until it is wrapped and listed here.
WRAPPERS = {
    "authorize": "Engine.authorize",
    "authorize_enforced": "Engine.authorize_enforced",
    "approve": "Engine.approve",
    "reject": "Engine.reject",
    "pending_approvals": "Engine.pending_approvals",
    "receipt_jwks": "Engine.receipt_jwks",
    "verify_receipt": "verify_receipt",
    "request_batch": "Engine.request_batch",
    "approval": "Engine.approval",
    "ledger": "Engine.ledger",
    "end_task": "Engine.end_task",
    "break_glass": "Engine.break_glass",
    "open_break_glass": "Engine.open_break_glass",
    "close_break_glass": "Engine.close_break_glass",
    "reload_bundle": "Engine.reload_bundle",
    "policy_version": "Engine.policy_version",
    "update_jwks": "Engine.update_jwks",
    "time_authorize": "Engine.time_authorize",
    "audit_checkpoint": "Engine.audit_checkpoint",
    "flush_telemetry": "Engine.flush_telemetry",
    "admin": "Engine.admin",
    "control_status": "Engine.control_status",
    "admin_proof": "admin_proof",
    "bundle_sign": "bundle_sign",
    "bundle_verify": "bundle_verify",
    "policy_test": "policy_test",
    "policy_lint": "policy_lint",
    "policy_dry_run": "policy_dry_run",
    "audit_keygen": "audit_keygen",
    "audit_verify": "audit_verify",
    "generate_key": "KeyPair.generate",
    "public_jwk": "KeyPair.public_jwk",
    "issue": "issue_root",
    "inspect": "inspect",
    "inspect_chain": "inspect_chain",
    "create_proof": "create_proof",
    "verify_signature": "verify_signature",
    "call_digest": "call_digest",
    "slack_message": "slack_message",
    "enforce": "_decision_enforce",  # `Decision.enforce`, lent to the native class
    "json_pointer": "json_pointer",
    "error_codes": "error_codes",
    "reason_codes": "reason_codes",
    "operations": "operations",
}


#: Operations `aegis.Engine` runs as the native class's own methods.
NATIVE = {"authorize", "authorize_enforced"}


def resolve(path: str) -> object:
    target: object = aegis
    for part in path.split("."):
        target = getattr(target, part)
    return target


def test_every_core_operation_has_a_python_wrapper() -> None:
    ops = json.loads(_native.call("operations", "{}"))
    names = [o["name"] for o in ops]
    assert len(names) == len(set(names)) >= 20
    missing = sorted(set(names) - set(WRAPPERS))
    assert not missing, f"operations without a wrapper in `aegis` (add one, then map it here): {missing}"
    stale = sorted(set(WRAPPERS) - set(names))
    assert not stale, f"mapped operations the core no longer has: {stale}"
    for op in ops:
        path = WRAPPERS[op["name"]]
        wrapper = resolve(path)  # raises AttributeError when the wrapper is missing
        assert path.startswith("Engine.") == op["needs_engine"], f"{op['name']}: engine operations live on Engine"
        function = wrapper.fget if isinstance(wrapper, property) else wrapper
        assert callable(function) and function.__doc__, f"{path} must be a documented callable"
        if op["name"] in NATIVE:
            # The binding's own method (no Python frame): it decides as the operation does,
            # which tests/test_fast_path.py holds it to, value by value.
            assert function is getattr(_native.Engine, op["name"]), f"{path} is not the native method"
            continue
        assert f'"{op["name"]}"' in inspect.getsource(function), f"{path} does not call operation `{op['name']}`"


def test_operations_helper_lists_the_table() -> None:
    listed = aegis.operations()
    assert [o.name for o in listed] == [o["name"] for o in json.loads(_native.call("operations", "{}"))]
    assert all(isinstance(o, aegis.Operation) and o.summary for o in listed)


def test_unknown_operation_is_a_typed_error() -> None:
    with pytest.raises(_native.NativeError) as raw:
        _native.call("no_such_operation", "{}")
    err = json.loads(raw.value.args[0])
    assert err["code"] == "unknown_operation" and "no_such_operation" in err["message"]
    assert isinstance(aegis.from_native(raw.value), aegis.UnknownOperation)


def test_inputs_are_parsed_strictly() -> None:
    with pytest.raises(aegis.MalformedRequest):
        aegis.json_pointer('{"a": 1, "a": 2}', "/a")
    with pytest.raises(_native.NativeError):
        _native.call("error_codes", '{"unexpected": 1}')
    assert aegis.json_pointer('{"a": [1, {"b": "x"}]}', "/a/1/b") == "x"


def test_every_core_error_code_has_its_exception_class() -> None:
    codes = json.loads(_native.call("error_codes", "{}"))
    assert list(aegis.error_codes()) == codes and len(codes) >= 40
    for code in codes:
        cls = aegis.ERRORS_BY_CODE[code]
        assert issubclass(cls, aegis.AegisError) and cls.code == code
    assert set(aegis.ERRORS_BY_CODE) == set(codes)


def test_verdict_codes_are_reasons_not_errors() -> None:
    reasons = json.loads(_native.call("reason_codes", "{}"))
    assert list(aegis.reason_codes()) == reasons
    assert set(aegis.REASON_CODES) == set(reasons)
    assert set(aegis.VERDICT_CODES) == set(reasons) - set(aegis.error_codes())
    assert "policy_permit" in aegis.VERDICT_CODES and "approval_required" in aegis.VERDICT_CODES
    for verdict in aegis.VERDICT_CODES:
        assert verdict not in aegis.ERRORS_BY_CODE


def test_guard_exceptions_are_aegis_errors() -> None:
    assert issubclass(aegis.Denied, aegis.AegisError) and issubclass(aegis.ApprovalRequired, aegis.AegisError)
    assert aegis.Denied.__module__ == aegis.ApprovalRequired.__module__ == "aegis._guard"


def test_verify_signature_is_the_cores_strict_check() -> None:
    import base64

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    issuer = aegis.KeyPair.from_seed(bytes([1]) * 32)
    token = aegis.issue_root("https://issuer.example", issuer, "planner", aegis.KeyPair.generate(), task_id="t",
                             intent="x", scope=["invoice.create"])
    header, payload, signature = token.split(".")
    public_key, message = unb64(issuer.public_jwk["x"]), f"{header}.{payload}".encode()
    assert aegis.verify_signature(public_key, message, unb64(signature)) == aegis.SignatureVerdict(True)
    assert not aegis.verify_signature(public_key, message + b"!", unb64(signature)).valid
    other = unb64(aegis.KeyPair.generate().public_jwk["x"])
    assert aegis.verify_signature(other, message, unb64(signature)) == aegis.SignatureVerdict(False)
    # A small-order key (the identity point) is refused as a key, whatever the signature.
    weak = aegis.verify_signature(b"\x01" + bytes(31), message, unb64(signature))
    assert weak == aegis.SignatureVerdict(False, "invalid_key")
