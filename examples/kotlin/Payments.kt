// The payments story from Kotlin: a planner delegates payments to a finance agent; a small
// payment runs, a large one waits for a human, the planner's self-approval is refused, the
// finance approver approves, the call runs once, and the same token again is refused.
//
// Run with `mvn -q test -Dtest=ExampleTest` in aegis-kotlin/ (it needs libaegis_ffi built:
// `cargo build -p aegis-sod-ffi`), or call `examples.main()` from any JVM program that has the
// aegis-kotlin jar and JNA on its classpath.
package examples

import dev.aegis.AegisException
import dev.aegis.ApprovalResolution
import dev.aegis.Engine
import dev.aegis.EngineOptions
import dev.aegis.Enforcement
import dev.aegis.KeyPair
import dev.aegis.Outcome
import dev.aegis.delegate
import dev.aegis.issueRoot
import java.io.File

const val ISSUER = "https://issuer.aegis.example"
const val TOOL = "stripe.create_payment"

/** Fixed seeds keep the keys the same on every run. */
fun key(n: Int): KeyPair = KeyPair.fromSeed(ByteArray(32) { n.toByte() })

fun pay(amount: Int, destination: String = "acct_1032D82eZvKYlo2C") =
    """{"amount": $amount, "currency": "eur", "destination": "$destination"}"""

/** A payment tool that runs only on what Aegis's enforcement names. */
class PaymentsTool(private val engine: Engine, private val chain: List<String>) {
    val paid = mutableListOf<String>()

    /** The result of one attempt: the tool's output, or why it did not run. */
    fun createPayment(argsJson: String, approvalToken: String? = null): String =
        when (val e = engine.authorizeEnforced(chain, TOOL, argsJson, approvalToken).enforcement) {
            is Enforcement.Run -> { paid += e.argsJson; "paid ${e.argsJson}" }
            is Enforcement.AwaitApproval -> "approval needed: ${e.approvalId}"
            is Enforcement.Refuse -> "refused: ${e.code}"
        }
}

fun main() {
    val root = System.getProperty("aegis.root") ?: "."
    val issuerKey = key(1)
    val plannerKey = key(2)
    val financeKey = key(3)
    val approverKey = key(4)
    Engine.open(
        EngineOptions(
            bundleDir = File(root, "policies/payments").path,
            trustedIssuers = mapOf(ISSUER to issuerKey.publicJwk()),
            approvalKey = key(7),
        ),
    ).use { engine ->
        val task = "kotlin-payments-${System.nanoTime()}"
        val planner = issueRoot(
            ISSUER, issuerKey, "planner", plannerKey, task, "pay the approved vendor invoices",
            listOf("invoice.create", TOOL, "aegis.approve"),
        )
        val finance = delegate(planner, plannerKey, "finance-agent", financeKey, listOf(TOOL))
        val chain = listOf(planner, finance)
        val tool = PaymentsTool(engine, chain)

        val first = tool.createPayment(pay(1200))
        check(first.startsWith("paid")) { first }
        println("1. $first")

        val decision = engine.authorize(chain, TOOL, pay(9000))
        val approvalId = (decision.outcome as? Outcome.ApprovalNeeded)?.approvalId
            ?: error("the 9000 payment should need an approval, got $decision")
        println("2. approval needed: $approvalId - ${decision.reasons.first().message}")
        val pending = engine.pendingApprovals().single { it.approvalId == approvalId }
        check(pending.agentId == "planner/finance-agent") { pending.agentId }

        val selfApproval: ApprovalResolution = engine.approve(approvalId, listOf(planner))
        check(!selfApproval.accepted && selfApproval.reasons.first().code == "approver_conflict") { selfApproval }
        println("3. the planner may not approve its own delegate's request: ${selfApproval.reasons.first().code}")

        val approver = issueRoot(
            ISSUER, issuerKey, "finance-approver", approverKey, "approvals-desk", "review payment approvals",
            listOf("aegis.approve"), roles = listOf("finance-approver"),
        )
        val approved = engine.approve(approvalId, listOf(approver), note = "invoice INV-2291 checked")
        val token = approved.overrideToken
        check(approved.accepted && token != null) { approved }
        println("4. the finance approver approved")

        val second = tool.createPayment(pay(9000), token)
        check(second.startsWith("paid")) { second }
        println("5. $second")
        val replay = tool.createPayment(pay(9000), token)
        check(replay == "refused: approval_replayed") { replay }
        println("6. replay refused: ${replay.removePrefix("refused: ")}")

        val bad = engine.authorize(chain, TOOL, pay(1200, "DE89370400440532013000"))
        check(bad.outcome == Outcome.Deny) { bad }
        println("7. bad destination refused: ${bad.reasons.first().policyId}")

        try {
            engine.authorize(chain, TOOL, "[1, 2]")
            error("arguments that are not an object must be refused")
        } catch (e: AegisException.Failed) {
            println("8. bad input is an error with a stable code: ${e.code}")
        }
        check(tool.paid.size == 2) { tool.paid }
        println("payments story: ok")
    }
}
