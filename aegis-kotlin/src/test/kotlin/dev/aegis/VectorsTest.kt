package dev.aegis

import java.io.File
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Test

/** The shared decision vectors (tests/vectors/decisions.json) decide as in Rust, Python, Node and C. */
class VectorsTest {
    private val root = File(System.getProperty("aegis.root") ?: "..")
    private val vectors = JSONObject(File(root, "tests/vectors/decisions.json").readText())

    private fun engine(): Engine {
        val config = JSONObject(vectors.getJSONObject("engine").toString())
        config.put("bundle_dir", File(root, config.getString("bundle_dir")).path)
        return Engine(config.toString())
    }

    private fun outcomeName(outcome: Outcome) = when (outcome) {
        is Outcome.Allow -> "allow"
        is Outcome.Deny -> "deny"
        is Outcome.Sanitize -> "sanitize"
        is Outcome.ApprovalNeeded -> "approval_needed"
    }

    @Test
    fun `every vector decides as in rust`() {
        val cases = vectors.getJSONArray("cases")
        assertTrue(cases.length() >= 30, "the vectors are the full suite")
        val failures = mutableListOf<String>()
        for (i in 0 until cases.length()) {
            val case = cases.getJSONObject(i)
            val request = case.getJSONObject("request")
            val chain = request.getJSONArray("chain").map { it as String }
            val decision = engine().use {
                it.authorize(chain, request.getString("tool"), request.getJSONObject("args").toString())
            }
            val got = JSONObject()
                .put("outcome", outcomeName(decision.outcome))
                .put("codes", JSONArray(decision.reasons.map { it.code }))
                .put("policy_ids", JSONArray(decision.reasons.mapNotNull { it.policyId }.sorted()))
                .put("would_block", decision.wouldBlock)
            val expect = case.getJSONObject("expect")
            if (!got.similar(expect)) failures += "${case.getString("name")}: expected $expect, got $got"
            // The typed outcome and the core's JSON say the same.
            assertEquals(outcomeName(decision.outcome), JSONObject(decision.json).getString("outcome"))
        }
        assertTrue(failures.isEmpty(), failures.joinToString("\n"))
    }

    @Test
    fun `vector keys derive from their seeds`() {
        val keys = vectors.getJSONArray("keys")
        for (i in 0 until keys.length()) {
            val k = keys.getJSONObject(i)
            val seed = k.getString("seed_hex").chunked(2).map { it.toInt(16).toByte() }.toByteArray()
            KeyPair.fromSeed(seed).use { pair ->
                assertEquals(k.getString("kid"), pair.kid())
                assertEquals(k.getString("x"), JSONObject(pair.publicJwk()).getString("x"))
            }
        }
    }
}
