// Interoperability with an independent JOSE implementation (`jose`), in both directions.
import test from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT, importJWK, jwtVerify } from 'jose';
import { delegate, inspect } from '../aegis.js';
import { FINANCE_KEY, ISSUER, ISSUER_KEY, PLANNER_KEY, TOOL, engine, financeChain, pay, uniqueTask } from './helpers.mjs';

test('credentials minted by Aegis verify with jose', async () => {
  const [root, leaf] = financeChain(uniqueTask('jose'));
  const issuerKey = await importJWK({ ...ISSUER_KEY.publicJwk, alg: 'EdDSA' }, 'EdDSA');
  const { payload, protectedHeader } = await jwtVerify(root, issuerKey, { issuer: ISSUER, audience: 'aegis', typ: 'aegis-credential+jwt' });
  assert.equal(payload.sub, 'planner');
  assert.equal(protectedHeader.kid, ISSUER_KEY.kid);
  // The delegated link is signed by the key the root binds in `cnf`.
  const plannerKey = await importJWK({ ...payload.cnf.jwk, alg: 'EdDSA' }, 'EdDSA');
  const link = await jwtVerify(leaf, plannerKey, { issuer: 'planner', audience: 'aegis' });
  assert.equal(link.payload.sub, 'finance-agent');
  assert.equal(link.payload.par, inspect(root).digest);
});

test('an EdDSA JWT minted by jose with a trusted key is accepted as a root credential', async () => {
  const now = Math.floor(Date.now() / 1000);
  const task = uniqueTask('jose-root');
  const signingKey = await importJWK({ ...ISSUER_KEY.privateJwk, alg: 'EdDSA' }, 'EdDSA');
  const root = await new SignJWT({
    task, intent: 'pay the approved vendor invoices', scope: [TOOL], cnf: { jwk: PLANNER_KEY.publicJwk },
  })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'aegis-credential+jwt', kid: ISSUER_KEY.kid })
    .setIssuer(ISSUER).setSubject('planner').setAudience('aegis').setIssuedAt(now).setNotBefore(now)
    .setExpirationTime(now + 600).setJti(`jose-${task}`)
    .sign(signingKey);
  const leaf = delegate({ parent: root, parentKey: PLANNER_KEY, agentId: 'finance-agent', agentKey: FINANCE_KEY, scope: [TOOL], ttlSecs: 300 });
  const d = engine().authorize({ chain: [root, leaf], tool: TOOL, args: pay(1200) });
  assert.equal(d.outcome, 'allow', JSON.stringify(d));

  // The same token signed by jose with a key Aegis does not trust is refused.
  const rogue = await importJWK({ ...FINANCE_KEY.privateJwk, alg: 'EdDSA' }, 'EdDSA');
  const forged = await new SignJWT({ task, intent: 'x', scope: [TOOL], cnf: { jwk: PLANNER_KEY.publicJwk } })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'aegis-credential+jwt', kid: FINANCE_KEY.kid })
    .setIssuer(ISSUER).setSubject('planner').setAudience('aegis').setIssuedAt(now).setNotBefore(now)
    .setExpirationTime(now + 600).setJti('x').sign(rogue);
  assert.equal(engine().authorize({ chain: [forged], tool: TOOL, args: pay(1) }).reasons[0].code, 'untrusted_issuer');
});
