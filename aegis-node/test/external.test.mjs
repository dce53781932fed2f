// External identities as roots: OIDC ID tokens and SPIFFE JWT-SVIDs minted by an independent
// JOSE implementation (`jose`), verified by the core against the issuer's JWKS; every way to
// smuggle one in refused; key rotation through `updateJwks`; revocation through `endTask`.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto, { KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { AegisError, Engine } from '../aegis.js';
import { BUNDLE, ISSUER, ISSUER_KEY, TOOL, financeChain, key, pay, uniqueTask } from './helpers.mjs';

const IDP = 'https://idp.example';
const AUDIENCE = 'aegis-approvals';
const ALICE = 'alice@example.com';

/** A signing key of `alg` and its public JWK under `kid` (jose's keys, not Aegis's). */
async function signer(alg, kid) {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  return { alg, kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

// The provider's keys, one per algorithm, and an attacker's RSA key.
const [RSA, EC, ED, ATTACKER] = await Promise.all([
  signer('RS256', 'rsa-1'), signer('ES256', 'ec-1'), signer('EdDSA', 'ed-1'), signer('RS256', 'attacker'),
]);
const PROVIDER_JWKS = { keys: [RSA.jwk, EC.jwk, ED.jwk] };

const now = () => Math.floor(Date.now() / 1000);
/** Alice's ID token claims: the provider attests her `finance-approver` group. */
const alice = (overrides = {}) => ({ sub: ALICE, groups: ['finance-approver'], nonce: 'n-0S6_WzA2Mj', ...overrides });

/**
 * An ID token for `claims`, signed by `by` (its alg and kid unless `header` overrides them).
 * `iss`, `aud`, `iat` and `exp` are set unless `claims` sets them (`undefined` leaves one out).
 */
function idToken(by, claims = alice(), header = {}) {
  const t = now();
  const body = { iss: IDP, aud: AUDIENCE, iat: t - 10, exp: t + 600, ...claims };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return new SignJWT(body).setProtectedHeader({ alg: by.alg, kid: by.kid, typ: 'JWT', ...header }).sign(by.privateKey);
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

function engine(provider = {}, extra = {}) {
  return new Engine({
    bundleDir: BUNDLE, trustedIssuers: { [ISSUER]: ISSUER_KEY }, approvalKey: key(7),
    externalIssuers: [{ issuer: IDP, audience: AUDIENCE, jwks: PROVIDER_JWKS, rolesClaim: 'groups', ...provider }],
    ...extra,
  });
}

/** A 9000 EUR payment by planner/finance-agent: over the limit, so it waits for a finance approver. */
function pendingPayment(eng, name) {
  const chain = financeChain(uniqueTask(name));
  const d = eng.authorize({ chain, tool: TOOL, args: pay(9000) });
  assert.equal(d.outcome, 'approval_needed', JSON.stringify(d.reasons));
  return { chain, approvalId: d.approvalId };
}

test('a person from the OIDC provider approves with RS256, ES256 and EdDSA ID tokens; the call then runs', async () => {
  const eng = engine();
  for (const by of [RSA, EC, ED]) {
    const { chain, approvalId } = pendingPayment(eng, `oidc-${by.alg}`);
    const r = eng.approve(approvalId, [await idToken(by)], 'ok');
    assert.equal(r.accepted, true, `${by.alg}: ${JSON.stringify(r.reasons)}`);
    assert.equal(r.approval.resolvedBy, ALICE);
    assert.equal(r.approval.status, 'approved');
    const redeemed = eng.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: r.overrideToken });
    assert.equal(redeemed.outcome, 'allow', `${by.alg}: ${JSON.stringify(redeemed.reasons)}`);
    // One approval, one call.
    const again = eng.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: r.overrideToken });
    assert.equal(again.reasons[0].code, 'approval_replayed');
  }
  // The async form, through a guard.
  const { chain, approvalId } = pendingPayment(eng, 'oidc-async');
  const r = await eng.approveAsync(approvalId, [await idToken(ED)]);
  assert.equal(r.accepted, true, JSON.stringify(r.reasons));
  const createPayment = eng.guard({ tool: TOOL, chain }, (args) => args.amount);
  assert.equal(await createPayment(pay(9000), { approvalToken: r.overrideToken }), 9000);
});

test('every way to smuggle an external token in is refused, and the request stays pending', async () => {
  // ES256 is not among this provider's algorithms.
  const eng = engine({ algorithms: ['RS256', 'EdDSA'] });
  const { chain, approvalId } = pendingPayment(eng, 'oidc-attacks');
  const refused = async (tokenOrChain, code, why) => {
    const approverChain = Array.isArray(tokenOrChain) ? tokenOrChain : [await tokenOrChain];
    const r = eng.approve(approvalId, approverChain);
    assert.equal(r.accepted, false, `${why}: accepted`);
    assert.equal(r.overrideToken, null, why);
    assert.equal(r.reasons[0].code, code, `${why}: ${JSON.stringify(r.reasons)}`);
  };
  const t = now();
  await refused(idToken(RSA, alice({ aud: 'someone-else' })), 'audience_mismatch', 'another audience');
  await refused(idToken(RSA, alice({ aud: undefined })), 'malformed_token', 'no audience');
  await refused(idToken(RSA, alice({ iat: t - 3600, exp: t - 120 })), 'credential_expired', 'expired');
  await refused(idToken(RSA, alice({ exp: undefined })), 'malformed_token', 'no expiry');
  await refused(idToken(RSA, alice({ nbf: t + 600, exp: t + 1200 })), 'credential_not_yet_valid', 'not yet valid');
  await refused(idToken(EC), 'unsupported_algorithm', 'ES256 is not allowed for this issuer');
  // The attacker signs with its own key under the provider's kid ...
  await refused(idToken({ ...ATTACKER, kid: 'rsa-1' }), 'signature_invalid', 'foreign key under the provider kid');
  await refused(idToken(ATTACKER), 'untrusted_issuer', 'a kid the provider does not have');
  // ... or ships its key in the protected header (or points to one).
  await refused(idToken(ATTACKER, alice(), { kid: 'rsa-1', jwk: ATTACKER.jwk }), 'forbidden_header', 'header jwk');
  await refused(idToken(ATTACKER, alice(), { kid: 'rsa-1', jku: 'https://attacker.example/jwks.json' }), 'forbidden_header', 'header jku');
  await refused(idToken(ATTACKER, alice(), { kid: 'rsa-1', x5u: 'https://attacker.example/cert.pem' }), 'forbidden_header', 'header x5u');
  await refused(idToken(ATTACKER, alice(), { kid: 'rsa-1', x5c: ['MIIBfake'] }), 'forbidden_header', 'header x5c');
  // `crit` (jose will not sign an extension it does not know): signed by hand with the provider's own key.
  const critHeader = b64({ alg: 'RS256', kid: 'rsa-1', crit: ['urn:example:policy'], 'urn:example:policy': 'x' });
  const critInput = `${critHeader}.${b64({ iss: IDP, aud: AUDIENCE, iat: t, exp: t + 600, ...alice() })}`;
  const critSig = crypto.sign('sha256', Buffer.from(critInput), KeyObject.from(RSA.privateKey)).toString('base64url');
  await refused([`${critInput}.${critSig}`], 'forbidden_header', 'crit, even signed by the provider');
  // The engine's lifetime bound holds for external tokens too (default 24 h).
  await refused(idToken(RSA, alice({ exp: t + 30 * 86400 })), 'lifetime_too_long', 'a 30-day ID token');
  // The provider cannot spell a delegate's id, and its people are not the requester.
  await refused(idToken(RSA, alice({ sub: 'planner/finance-agent' })), 'malformed_token', 'a sub that names a delegate');
  await refused(idToken(RSA, alice({ sub: '' })), 'malformed_token', 'an empty sub');
  await refused(idToken(RSA, alice({ sub: 'planner' })), 'approver_conflict', 'the requester\'s own id');
  // The classic confusion: HS256 keyed with the provider's public key set, as published.
  const jwksText = JSON.stringify(PROVIDER_JWKS);
  for (const secret of [jwksText, JSON.stringify(RSA.jwk)]) {
    const hs = new SignJWT({ iss: IDP, aud: AUDIENCE, iat: t, exp: t + 600, ...alice() })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(new TextEncoder().encode(secret));
    await refused(hs, 'unsupported_algorithm', 'HS256 keyed with public key material');
  }
  // `alg: none`, assembled by hand (jose refuses to make one).
  const unsigned = `${b64({ alg: 'none', kid: 'rsa-1', typ: 'JWT' })}.${b64({ iss: IDP, aud: AUDIENCE, iat: t, exp: t + 600, ...alice() })}.`;
  await refused([unsigned], 'malformed_token', 'alg none');
  // A real token with its signature stripped, or with the payload swapped for another.
  const real = await idToken(RSA);
  const [h, , s] = real.split('.');
  await refused([`${h}.${real.split('.')[1]}.`], 'signature_invalid', 'signature stripped');
  await refused([`${h}.${b64({ iss: IDP, aud: AUDIENCE, iat: t, exp: t + 600, ...alice({ sub: 'mallory@example.com' }) })}.${s}`],
    'signature_invalid', 'payload swapped');
  // Without the attested group the payments policy has no permit for this approver.
  await refused(idToken(RSA, alice({ groups: ['engineering'] })), 'no_matching_permit', 'no finance-approver group');
  await refused(idToken(RSA, alice({ groups: undefined })), 'no_matching_permit', 'no groups claim');
  // An external identity cannot delegate: it binds no key Aegis knows.
  await refused([real, financeChain(uniqueTask('delegated'))[1]], 'parent_mismatch', 'external token followed by a delegation');
  // Nothing above was accepted: the request is still pending, and Alice's real token approves it.
  assert.equal(eng.approval(approvalId).status, 'pending');
  const r = eng.approve(approvalId, [await idToken(ED)]);
  assert.equal(r.accepted, true, JSON.stringify(r.reasons));
  assert.equal(eng.authorize({ chain, tool: TOOL, args: pay(9000), approvalToken: r.overrideToken }).outcome, 'allow');
});

test('updateJwks rotates the provider keys from the next call on; endTask revokes the issuer', async () => {
  const eng = engine();
  const old = await idToken(RSA);
  const first = pendingPayment(eng, 'rotation-before');
  assert.equal(eng.approve(first.approvalId, [old]).accepted, true);
  // The provider rotates to a new EC key only.
  const next = await signer('ES256', 'ec-2');
  eng.updateJwks(IDP, { keys: [next.jwk] });
  const { approvalId } = pendingPayment(eng, 'rotation-after');
  const stale = eng.approve(approvalId, [old]);
  assert.deepEqual([stale.accepted, stale.reasons[0].code], [false, 'untrusted_issuer']);
  // A key of the old set under the new kid does not verify either.
  const r = eng.approve(approvalId, [await idToken({ ...EC, kid: 'ec-2' })]);
  assert.deepEqual([r.accepted, r.reasons[0].code], [false, 'signature_invalid']);
  assert.throws(() => eng.updateJwks('https://unknown.example', { keys: [next.jwk] }),
    (e) => e instanceof AegisError && e.code === 'untrusted_issuer');
  assert.throws(() => eng.updateJwks(IDP, { keys: [] }), (e) => e instanceof AegisError && e.code === 'invalid_key');
  // The async form; a refused update leaves the last good set in place.
  await eng.updateJwksAsync(IDP, { keys: [next.jwk, ED.jwk] });
  await assert.rejects(eng.updateJwksAsync(IDP, { keys: [] }), (e) => e instanceof AegisError && e.code === 'invalid_key');
  const kept = pendingPayment(eng, 'rotation-kept');
  assert.equal(eng.approve(kept.approvalId, [await idToken(ED)]).accepted, true, 'the last good set is still in place');
  const fresh = await idToken(next);
  // Ending the issuer's task revokes every identity it attests.
  eng.endTask(`external:${IDP}`);
  const revoked = eng.approve(approvalId, [fresh]);
  assert.deepEqual([revoked.accepted, revoked.reasons[0].code], [false, 'task_ended']);
  assert.equal(eng.approval(approvalId).status, 'pending');
});

test('a revocation task of its own, and an issuer that ended leaves the other kinds of roots alone', async () => {
  const eng = engine({ task: 'idp-people' });
  const { approvalId } = pendingPayment(eng, 'custom-task');
  eng.endTask(`external:${IDP}`); // not this issuer's task
  const fresh = await idToken(RSA);
  assert.equal(eng.approve(approvalId, [fresh]).accepted, true);
  const second = pendingPayment(eng, 'custom-task-2');
  eng.endTask('idp-people');
  const r = eng.approve(second.approvalId, [fresh]);
  assert.deepEqual([r.accepted, r.reasons[0].code], [false, 'task_ended']);
  // The agents' Aegis chains are untouched.
  assert.equal(eng.authorize({ chain: second.chain, tool: TOOL, args: pay(100) }).outcome, 'allow');
});

test('a SPIFFE JWT-SVID is an identity too, in an engine with external issuers only', async () => {
  const spire = await signer('ES256', 'spire-1');
  const eng = new Engine({
    bundleDir: BUNDLE,
    externalIssuers: [{ issuer: 'https://spire.example', audience: 'aegis', jwks: { keys: [spire.jwk] }, scope: ['invoice.create'], task: 'spiffe-workloads' }],
  });
  const t = now();
  const id = 'spiffe://example.org/ns/billing/sa/drafter';
  const svid = await new SignJWT({ iss: 'https://spire.example', sub: id, aud: ['aegis'], iat: t, exp: t + 300 })
    .setProtectedHeader({ alg: 'ES256', kid: 'spire-1', typ: 'JWT' }).sign(spire.privateKey);
  const d = eng.authorize({ chain: [svid], tool: 'invoice.create', args: { customer: 'acme', amount: 900 } });
  assert.equal(d.outcome, 'allow', JSON.stringify(d.reasons));
  assert.equal(eng.ledger('spiffe-workloads')[0].agentId, id);
  // Its scope is the configured one: no payments.
  assert.notEqual(eng.authorize({ chain: [svid], tool: TOOL, args: pay(100) }).outcome, 'allow');
  // No trusted Aegis issuer: Aegis credentials are refused.
  assert.equal(eng.authorize({ chain: financeChain(uniqueTask('no-aegis-issuer')), tool: TOOL, args: pay(100) }).reasons[0].code,
    'untrusted_issuer');
});

test('engine options: at least one issuer, no HMAC issuers, a strict external issuer shape', () => {
  assert.throws(() => new Engine({ bundleDir: BUNDLE }), (e) => e instanceof AegisError && e.code === 'malformed_request');
  assert.throws(() => engine({ algorithms: ['HS256'] }), (e) => e instanceof AegisError && e.code === 'unsupported_algorithm');
  assert.throws(() => engine({ algorithms: ['none'] }), (e) => e instanceof AegisError && e.code === 'unsupported_algorithm');
  assert.throws(() => engine({ jwks: { keys: [] } }), (e) => e instanceof AegisError && e.code === 'invalid_key');
  // A snake_case (or misspelt) option is refused rather than silently dropped.
  assert.throws(() => engine({ roles_claim: 'groups' }), (e) => e instanceof AegisError && e.code === 'malformed_request' && /roles_claim/.test(e.message));
});
