package dev.aegis

import examples.ISSUER
import examples.TOOL
import examples.key
import examples.pay
import java.io.File
import java.util.concurrent.Callable
import java.util.concurrent.Executors
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertIs
import kotlin.test.assertNotNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** What the JVM binding must refuse: the same attacks the other bindings' suites try. */
class AttacksTest {
    private val root = File(System.getProperty("aegis.root") ?: "..")
    private val issuerKey = key(1)
    private val plannerKey = key(2)
    private val financeKey = key(3)

    private fun engine() = Engine.open(
        EngineOptions(
            bundleDir = File(root, "policies/payments").path,
            trustedIssuers = mapOf(ISSUER to issuerKey.publicJwk()),
            approvalKey = key(7),
        ),
    )

    private fun chain(task: String = "kt-${System.nanoTime()}", signer: KeyPair = issuerKey): List<String> {
        val planner = issueRoot(ISSUER, signer, "planner", plannerKey, task, "pay invoices", listOf("invoice.create", TOOL))
        return listOf(planner, delegate(planner, plannerKey, "finance-agent", financeKey, listOf(TOOL)))
    }

    private fun approver() = listOf(
        issueRoot(ISSUER, issuerKey, "finance-approver", key(4), "desk", "review", listOf("aegis.approve"), roles = listOf("finance-approver")),
    )

    private fun approvedToken(engine: Engine, chain: List<String>, args: String): String {
        val pending = assertIs<Outcome.ApprovalNeeded>(engine.authorize(chain, TOOL, args).outcome)
        return assertNotNull(engine.approve(pending.approvalId, approver()).overrideToken)
    }

    @Test
    fun `a chain signed by an untrusted issuer is denied`() = engine().use { engine ->
        val forged = engine.authorize(chain(signer = KeyPair.generate()), TOOL, pay(100))
        assertEquals(Outcome.Deny, forged.outcome)
        assertTrue(forged.reasons.isNotEmpty())
    }

    @Test
    fun `a delegate cannot widen its scope`() = engine().use { engine ->
        val c = chain()
        val widened = assertThrows<AegisException.Failed> {
            delegate(c[0], plannerKey, "finance-agent", financeKey, listOf(TOOL, "aegis.approve"))
        }
        assertEquals("scope_widened", widened.code)
        // The planner's own scope does not reach the delegate's calls either.
        val outside = engine.authorize(c, "invoice.create", "{}")
        assertEquals(Outcome.Deny, outside.outcome)
        assertEquals("tool_not_in_scope", outside.reasons.first().code)
    }

    @Test
    fun `an approval binds its arguments and is used once`() = engine().use { engine ->
        val c = chain()
        val token = approvedToken(engine, c, pay(9000))
        val swapped = engine.authorize(c, TOOL, pay(9000, "acct_9999999999999999"), token)
        assertEquals(Outcome.Deny, swapped.outcome, "a token for other arguments")
        val used = engine.authorize(c, TOOL, pay(9000), token)
        assertEquals(Outcome.Allow, used.outcome)
        val replay = engine.authorize(c, TOOL, pay(9000), token)
        assertEquals(listOf("approval_replayed"), replay.reasons.map { it.code })
    }

    @Test
    fun `an override token is redeemed once across threads`() = engine().use { engine ->
        val c = chain()
        val token = approvedToken(engine, c, pay(9000))
        val pool = Executors.newFixedThreadPool(8)
        try {
            val outcomes = (1..16).map { pool.submit(Callable { engine.authorize(c, TOOL, pay(9000), token).outcome }) }.map { it.get() }
            assertEquals(1, outcomes.count { it == Outcome.Allow }, "exactly one redemption: $outcomes")
            assertEquals(15, outcomes.count { it == Outcome.Deny })
        } finally {
            pool.shutdown()
        }
    }

    @Test
    fun `the requester's own chain cannot approve`() = engine().use { engine ->
        val c = chain()
        val pending = assertIs<Outcome.ApprovalNeeded>(engine.authorize(c, TOOL, pay(9000)).outcome)
        val mine = engine.approve(pending.approvalId, c.take(1))
        assertFalse(mine.accepted)
        assertEquals(null, mine.overrideToken)
        val asDelegate = engine.approve(pending.approvalId, c)
        assertFalse(asDelegate.accepted)
        assertEquals("pending", engine.pendingApprovals().single { it.approvalId == pending.approvalId }.status)
    }

    @Test
    fun `bad input is an error with a stable code and nothing is lost`() = engine().use { engine ->
        val c = chain()
        val notJson = assertThrows<AegisException.Failed> { engine.authorize(c, TOOL, "{not json") }
        assertEquals("malformed_request", notJson.code)
        assertTrue(notJson.detailJson.contains("\"code\":\"malformed_request\""))
        // Duplicate keys are refused, as the core refuses them: a tool reading the first `amount`
        // while the decision bound the last would run what nobody authorized.
        val duplicate = """{"amount": 9000, "amount": 10, "currency": "eur", "destination": "acct_1032D82eZvKYlo2C"}"""
        assertEquals("malformed_request", assertThrows<AegisException.Failed> { engine.authorize(c, TOOL, duplicate) }.code)
        assertEquals("malformed_request", assertThrows<AegisException.Failed> { callDigest(TOOL, duplicate) }.code)
        val badConfig = assertThrows<AegisException.Failed> { Engine("""{"bundle_dir": "/nonexistent"}""") }
        assertEquals("invalid_bundle", badConfig.code)
        assertEquals("invalid_key", assertThrows<AegisException.Failed> { KeyPair.fromSeed(ByteArray(3)) }.code)
        // The engine still decides after the errors.
        assertEquals(Outcome.Allow, engine.authorize(c, TOOL, pay(100)).outcome)
    }

    @Test
    fun `a key pair never prints its secret`() {
        val pair = key(9)
        assertFalse(pair.toString().contains(pair.privateJwk()))
        assertFalse(pair.toString().contains("\"d\""))
    }

    @Test
    fun `receipts verify offline and bind the arguments`() {
        val config = org.json.JSONObject()
            .put("bundle_dir", File(root, "policies/payments").path)
            .put("trusted_issuers", org.json.JSONArray().put(org.json.JSONObject().put("issuer", ISSUER).put("jwk", org.json.JSONObject(issuerKey.publicJwk()))))
            .put("receipts", org.json.JSONObject().put("key", org.json.JSONObject(key(8).privateJwk())).put("issuer", "aegis-test").put("audience", "payments-api"))
        Engine(config.toString()).use { engine ->
            val decision = engine.authorize(chain(), TOOL, pay(100))
            val receipt = assertNotNull(decision.receipt)
            val jwks = assertNotNull(engine.receiptJwks())
            val claims = org.json.JSONObject(verifyReceipt(receipt, jwks, "aegis-test", "payments-api", TOOL, pay(100)))
            assertEquals(decision.decisionId, claims.getString("jti"))
            assertEquals("planner/finance-agent", claims.getString("sub"))
            val swapped = assertThrows<AegisException.Failed> { verifyReceipt(receipt, jwks, "aegis-test", "payments-api", TOOL, pay(101)) }
            assertEquals("receipt_mismatch", swapped.code)
            verifyReceipt(receipt, jwks, "aegis-test", "payments-api", TOOL, pay(100), consume = true)
            val reused = assertThrows<AegisException.Failed> { verifyReceipt(receipt, jwks, "aegis-test", "payments-api", TOOL, pay(100), consume = true) }
            assertTrue(reused.code.startsWith("receipt_"), reused.code)
        }
    }
}
