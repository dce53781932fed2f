package dev.aegis

import java.io.ByteArrayOutputStream
import java.io.PrintStream
import kotlin.test.assertContains
import org.junit.jupiter.api.Test

/** The example under examples/kotlin runs the payments story to its end. */
class ExampleTest {
    @Test
    fun `the payments example runs`() {
        val out = ByteArrayOutputStream()
        val saved = System.out
        System.setOut(PrintStream(out, true))
        try {
            examples.main()
        } finally {
            System.setOut(saved)
        }
        val text = out.toString()
        print(text)
        assertContains(text, "3. the planner may not approve its own delegate's request: approver_conflict")
        assertContains(text, "6. replay refused: approval_replayed")
        assertContains(text, "8. bad input is an error with a stable code: malformed_request")
        assertContains(text, "payments story: ok")
    }
}
