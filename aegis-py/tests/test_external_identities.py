"""External identities as roots: OIDC ID tokens and SPIFFE JWT-SVIDs minted by an independent
implementation (PyJWT, keys from `cryptography`, the JWK Set built by PyJWT's `to_jwk`), verified
by the core against the issuer's JWKS, and every way to smuggle one in refused."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

import aegis
from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, key, pay, unique_task

IDP = "https://idp.example"
AUDIENCE = "aegis-approvals"
ALICE = "alice@example.com"

PrivateKey = Any  # an RSA, EC or Ed25519 private key of `cryptography`

# The provider's keys, one per algorithm, and the attacker's (same kinds, never in the JWKS).
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_ED = ed25519.Ed25519PrivateKey.generate()

SIGNERS: Dict[str, tuple[PrivateKey, str]] = {"RS256": (RSA_KEY, "rsa-1"), "ES256": (EC_KEY, "ec-1"), "EdDSA": (ED_KEY, "ed-1")}


def public_jwk(private: PrivateKey, kid: str) -> Dict[str, Any]:
    """The public JWK of `private` as PyJWT writes it, with `kid` added."""
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    assert isinstance(jwk, dict) and "d" not in jwk
    return {**jwk, "kid": kid}


def jwks(*keys: Dict[str, Any]) -> Dict[str, Any]:
    return {"keys": list(keys)}


PROVIDER_JWKS = jwks(*(public_jwk(k, kid) for k, kid in SIGNERS.values()))


def claims(now: Optional[int] = None, **changes: Any) -> Dict[str, Any]:
    """Alice's ID token claims: the provider attests the `finance-approver` group."""
    now = int(time.time()) if now is None else now
    c: Dict[str, Any] = {"iss": IDP, "sub": ALICE, "aud": AUDIENCE, "iat": now - 10, "exp": now + 600,
                         "jti": f"id-{time.time_ns()}", "groups": ["finance-approver"]}
    c.update(changes)
    return {k: v for k, v in c.items() if v is not None}


def id_token(alg: str = "RS256", payload: Optional[Mapping[str, Any]] = None, *,
             signer: Optional[PrivateKey] = None, kid: Optional[str] = None,
             headers: Optional[Mapping[str, Any]] = None) -> str:
    """An ID token minted by PyJWT, by default with the provider's key for `alg`."""
    default_key, default_kid = SIGNERS[alg]
    extra = {"kid": kid or default_kid, **(headers or {})}
    return jwt.encode(dict(payload or claims()), signer or default_key, algorithm=alg, headers=extra)


def provider(**options: Any) -> aegis.ExternalIssuer:
    return aegis.ExternalIssuer(IDP, AUDIENCE, PROVIDER_JWKS, roles_claim="groups", **options)


def engine(*external: Any, trusted: bool = True) -> aegis.Engine:
    return aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY} if trusted else None,
                        external_issuers=list(external or [provider()]), approval_key=key(7))


def pending_payment(eng: aegis.Engine, name: str = "oidc") -> tuple[List[str], str]:
    """A 9000 payment by the finance agent, which needs a finance approver."""
    chain = finance_chain(unique_task(name))
    d = eng.authorize(chain, TOOL, pay(9000))
    assert d.outcome == "approval_needed" and d.approval_id, d
    return chain, d.approval_id


def b64(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- people from an identity provider approve -------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_a_person_from_the_oidc_provider_approves_a_payment(alg: str) -> None:
    eng = engine()
    chain, approval_id = pending_payment(eng, f"oidc-{alg}")
    token = id_token(alg)
    assert jwt.get_unverified_header(token)["alg"] == alg
    r = eng.approve(approval_id, [token], note="checked the invoice")
    assert r.accepted, r.reasons
    assert r.approval.status == "approved" and r.approval.resolved_by == ALICE
    assert r.override_token
    d = eng.authorize(chain, TOOL, pay(9000), approval_token=r.override_token)
    assert d.outcome == "allow" and d.allowed, d
    # The override is single use, and bound to exactly this call.
    assert eng.authorize(chain, TOOL, pay(9000), approval_token=r.override_token).codes == ("approval_replayed",)


def test_the_issuer_may_be_given_as_a_mapping_and_without_aegis_issuers() -> None:
    config = {"issuer": IDP, "audience": AUDIENCE, "jwks": PROVIDER_JWKS, "algorithms": ["ES256"],
              "roles_claim": "groups", "scope": ["aegis.approve"], "task": "idp-people"}
    eng = aegis.Engine(BUNDLE, external_issuers=[config], approval_key=key(7))
    # No Aegis issuer is trusted here: the agents' chain itself is refused ...
    assert eng.authorize(finance_chain(unique_task("t")), TOOL, pay(10)).codes == ("untrusted_issuer",)
    # ... and the dataclass builds the same configuration.
    assert provider(algorithms=("ES256",), scope=("aegis.approve",), task="idp-people")._json() == config


def test_a_spiffe_svid_is_a_workload_identity() -> None:
    spire = aegis.ExternalIssuer("https://spire.example", "aegis", PROVIDER_JWKS, algorithms=["ES256"],
                                 scope=["invoice.create"], task="spiffe-workloads")
    eng = engine(spire, trusted=False)
    now = int(time.time())
    drafter = "spiffe://example.org/ns/billing/sa/drafter"
    svid = id_token("ES256", {"iss": "https://spire.example", "sub": drafter, "aud": ["aegis"], "iat": now,
                              "exp": now + 300})
    d = eng.authorize([svid], "invoice.create", {"customer": "acme", "amount": 900})
    assert d.outcome == "allow", d
    (entry,) = eng.ledger("spiffe-workloads")
    assert (entry.tool, entry.agent_id, entry.lineage) == ("invoice.create", drafter, ())
    # Its scope is what the issuer is configured with, nothing the token says.
    assert eng.authorize([svid], TOOL, pay(10)).outcome == "deny"


def test_an_approvers_identity_cannot_act_as_an_agent() -> None:
    eng = engine()
    d = eng.authorize([id_token()], TOOL, pay(10))
    assert d.outcome == "deny" and not d.allowed, d


# --- every way to smuggle one in is refused ----------------------------------------------------


def hs256(secret: str) -> str:
    """The classic key confusion: an HS256 token keyed with what the verifier publishes. PyJWT's
    `encode` refuses a JWK as an HMAC secret (a guard of its own), so the token is signed with its
    HMAC primitive directly."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{b64(claims())}"
    mac = HMACAlgorithm(HMACAlgorithm.SHA256).sign(signing_input.encode(), secret.encode())
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def attacker_jwk() -> Dict[str, Any]:
    return public_jwk(ATTACKER_RSA, "rsa-1")


REFUSED: Dict[str, tuple[Callable[[], str], str]] = {
    "another audience": (lambda: id_token(payload=claims(aud="someone-else")), "audience_mismatch"),
    "expired": (lambda: id_token(payload=claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
                "credential_expired"),
    "not yet valid": (lambda: id_token(payload=claims(nbf=int(time.time()) + 3600)), "credential_not_yet_valid"),
    "no expiry": (lambda: id_token(payload=claims(exp=None)), "malformed_token"),
    "no audience": (lambda: id_token(payload=claims(aud=None)), "malformed_token"),
    "ES256, not allowed for this issuer": (lambda: id_token("ES256"), "unsupported_algorithm"),
    "an attacker key under the provider's kid": (lambda: id_token(signer=ATTACKER_RSA, kid="rsa-1"),
                                                  "signature_invalid"),
    "an attacker Ed25519 key under the provider's kid": (lambda: id_token("EdDSA", signer=ATTACKER_ED, kid="ed-1"),
                                                         "signature_invalid"),
    "a kid the provider does not have": (lambda: id_token(signer=ATTACKER_RSA, kid="attacker"), "untrusted_issuer"),
    "an attacker key in the header": (lambda: id_token(signer=ATTACKER_RSA, headers={"jwk": attacker_jwk()}),
                                      "forbidden_header"),
    "an attacker key set pointed to": (lambda: id_token(signer=ATTACKER_RSA,
                                                        headers={"jku": "https://attacker.example/jwks"}),
                                       "forbidden_header"),
    "critical extensions": (lambda: id_token(headers={"crit": ["exp"]}), "forbidden_header"),
    "HS256 keyed with the public JWKS text": (lambda: hs256(json.dumps(PROVIDER_JWKS)), "unsupported_algorithm"),
    "HS256 keyed with the provider's public JWK": (lambda: hs256(json.dumps(PROVIDER_JWKS["keys"][0])),
                                                   "unsupported_algorithm"),
    "alg none (PyJWT)": (lambda: jwt.encode(claims(), None, algorithm="none",  # type: ignore[arg-type]
                                                    headers={"kid": "rsa-1"}),
                         "malformed_token"),
    "alg none, by hand, with a signature": (
        lambda: f"{b64({'alg': 'none', 'kid': 'rsa-1'})}.{b64(claims())}." + id_token().rsplit(".", 1)[1],
        "malformed_token"),
    "a signature moved onto other claims": (
        lambda: ".".join([id_token().split(".")[0], b64(claims(sub="mallory@example.com")),
                          id_token().split(".")[2]]),
        "signature_invalid"),
}


@pytest.fixture(scope="module")
def strict_engine() -> aegis.Engine:
    """The provider, allowed RS256 and EdDSA only."""
    return engine(provider(algorithms=["RS256", "EdDSA"]))


@pytest.mark.parametrize("why", list(REFUSED))
def test_refused(strict_engine: aegis.Engine, why: str) -> None:
    make, code = REFUSED[why]
    chain, approval_id = pending_payment(strict_engine)
    r = strict_engine.approve(approval_id, [make()])
    assert not r.accepted and r.override_token is None, why
    assert r.reasons[0].code == code, (why, r.reasons)
    assert r.approval.status == "pending"
    # Nothing was consumed: a real approver still answers the request.
    assert strict_engine.approve(approval_id, [id_token()]).accepted


def test_a_token_without_the_attested_group_is_refused_by_the_policy() -> None:
    eng = engine()
    _, approval_id = pending_payment(eng)
    for groups in (["engineering"], [], "finance-approvers", None):
        r = eng.approve(approval_id, [id_token("EdDSA", claims(groups=groups))])
        assert (r.accepted, r.reasons[0].code) == (False, "no_matching_permit"), (groups, r.reasons)
    # The roles come from the configured claim only: another claim with the group is not read.
    r = eng.approve(approval_id, [id_token(payload=claims(groups=None, roles=["finance-approver"]))])
    assert (r.accepted, r.reasons[0].code) == (False, "no_matching_permit")
    assert eng.approve(approval_id, [id_token()]).accepted


def test_an_external_identity_cannot_delegate() -> None:
    eng = engine()
    _, approval_id = pending_payment(eng)
    delegate = finance_chain(unique_task("other"))[1]
    r = eng.approve(approval_id, [id_token(), delegate])
    assert (r.accepted, r.reasons[0].code, r.reasons[0].link) == (False, "parent_mismatch", 1)
    # Nor can a delegation be minted under it: it binds no key.
    with pytest.raises(aegis.AegisError):
        aegis.delegate(id_token(), key(9), "helper", aegis.KeyPair.generate(), scope=["aegis.approve"])


# --- key rotation and revocation ---------------------------------------------------------------


def test_update_jwks_rotates_the_keys_from_the_next_call() -> None:
    eng = engine()
    old = id_token("RS256")
    _, first = pending_payment(eng)
    assert eng.approve(first, [old]).accepted
    # The provider rotates to a new EC key only.
    new_ec = ec.generate_private_key(ec.SECP256R1())
    eng.update_jwks(IDP, jwks(public_jwk(new_ec, "ec-2")))
    _, second = pending_payment(eng)
    r = eng.approve(second, [old])
    assert (r.accepted, r.reasons[0].code) == (False, "untrusted_issuer")
    r = eng.approve(second, [id_token("ES256")])  # the retired EC key, kid `ec-1`
    assert (r.accepted, r.reasons[0].code) == (False, "untrusted_issuer")
    # A token from the retired key relabelled with the new kid does not verify either.
    r = eng.approve(second, [id_token("ES256", kid="ec-2")])
    assert (r.accepted, r.reasons[0].code) == (False, "signature_invalid")
    assert eng.approve(second, [id_token("ES256", signer=new_ec, kid="ec-2")]).accepted


def test_update_jwks_errors() -> None:
    eng = engine()
    with pytest.raises(aegis.UntrustedIssuer):
        eng.update_jwks("https://unknown.example", PROVIDER_JWKS)
    with pytest.raises(aegis.UntrustedIssuer):
        eng.update_jwks(ISSUER, PROVIDER_JWKS)  # an Aegis issuer has no JWKS to replace
    with pytest.raises(aegis.InvalidKey):
        eng.update_jwks(IDP, {"keys": []})
    with pytest.raises(aegis.InvalidKey):
        eng.update_jwks(IDP, {"keys": "nope"})
    with pytest.raises(TypeError):
        eng.update_jwks(IDP, json.dumps(PROVIDER_JWKS))  # type: ignore[arg-type]
    # A refused update leaves the old keys in force.
    _, approval_id = pending_payment(eng)
    assert eng.approve(approval_id, [id_token()]).accepted


@pytest.mark.parametrize("task", [None, "idp-people"])
def test_ending_the_issuers_task_revokes_its_identities(task: Optional[str]) -> None:
    eng = engine(provider(task=task))
    _, approval_id = pending_payment(eng)
    token = id_token()
    eng.end_task(task or f"external:{IDP}")
    for t in (token, id_token("ES256")):
        r = eng.approve(approval_id, [t])
        assert (r.accepted, r.reasons[0].code) == (False, "task_ended")
    assert eng.approval(approval_id).status == "pending"  # type: ignore[union-attr]


# --- configuration -----------------------------------------------------------------------------


def test_configuration_is_checked() -> None:
    with pytest.raises(aegis.MalformedRequest):
        aegis.Engine(BUNDLE)  # neither kind of issuer
    with pytest.raises(aegis.MalformedRequest):
        aegis.Engine(BUNDLE, trusted_issuers={}, external_issuers=[])
    for algorithms in (["HS256"], ["none"], ["RS257"]):
        with pytest.raises(aegis.UnsupportedAlgorithm):
            engine(provider(algorithms=algorithms))
    with pytest.raises(aegis.InvalidKey):
        engine(aegis.ExternalIssuer(IDP, AUDIENCE, {"keys": []}))
    with pytest.raises(aegis.MalformedRequest):  # the core parses the mapping strictly
        engine({"issuer": IDP, "audience": AUDIENCE, "jwks": PROVIDER_JWKS, "role_claim": "groups"})
    with pytest.raises(TypeError):
        engine(provider(algorithms="RS256"))
    with pytest.raises(TypeError):
        engine(aegis.ExternalIssuer(IDP, AUDIENCE, json.dumps(PROVIDER_JWKS)))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        aegis.Engine(BUNDLE, external_issuers={"issuer": IDP})  # type: ignore[arg-type]


def test_external_issuer_is_a_frozen_value() -> None:
    issuer = provider()
    with pytest.raises(Exception):
        issuer.audience = "other"  # type: ignore[misc]
    assert "ExternalIssuer" in aegis.__all__ and aegis.ExternalIssuer.__doc__
