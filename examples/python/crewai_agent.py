"""A CrewAI crew whose every tool call goes through Aegis (`aegis.crewai.AegisToolHooks`, on
CrewAI's tool-call hooks), and whose tool runs only on the permit of a decision
(`hooks.guard_tools`): CrewAI may run a tool again for one call (it retries a tool that raises,
outside the hooks), and a guarded tool refuses every run no decision permits.

The LLM is scripted (a `BaseLLM` that plays back native tool calls and answers; no network, no
telemetry). The agent pays 1200 (runs), 300 with a card number (runs, with the number redacted
in the very input the tool receives), one to a malformed destination (blocked: the tool does not
run, the model is told why) and 9000, which needs a finance approver: the call is blocked and
the model told the approval id. The planner's attempt to approve is refused, the finance approver
approves, the host hands the approval to the hooks, and the crew's next run makes the same call,
which runs once with the override token.

CrewAI pins `mcp<2` and `openai<3`, so it runs from its own venv (`target/pyenv-crewai`; see
aegis-py/tests_crewai/).
"""

from __future__ import annotations

import os

# Before CrewAI is imported: it reads these at import time.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import json  # noqa: E402
from typing import Any, Dict, List, Union  # noqa: E402

from crewai import Agent, Crew, Task  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # noqa: E402
from crewai.tools import tool  # noqa: E402

from aegis import ReceiptInvalid  # noqa: E402
from aegis.crewai import AegisToolHooks  # noqa: E402
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task  # noqa: E402

PAID: List[Dict[str, Any]] = []


@tool("create_payment")
def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> str:
    """Create a payment with Stripe."""
    PAID.append({"amount": amount, "currency": currency, "destination": destination, "card_number": card_number})
    return f"paid {amount} {currency} to {destination}"


class ScriptedLLM(BaseLLM):
    """Plays back scripted turns (a list of native tool calls, or the final answer), one per
    call, and keeps the messages it was sent."""

    script: List[Union[str, List[Dict[str, Any]]]]
    seen: List[Any] = []

    def supports_function_calling(self) -> bool:
        return True

    def get_input_tokens_count(self, messages: Any, tools: Any = None, response_model: Any = None) -> int:
        # A scripted model has no tokenizer: its words are its tokens.
        return len(json.dumps(messages, default=str).split())

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
             from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> Any:
        self.seen.append(json.loads(json.dumps(messages, default=str)))
        return self.script.pop(0)


def call(n: int, args: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [{"id": f"call_{n}", "type": "function",
             "function": {"name": "create_payment", "arguments": json.dumps(args)}}]


def tool_results(messages: List[Dict[str, Any]]) -> Dict[str, str]:
    """What the model was told of each tool call, by call id."""
    return {m["tool_call_id"]: str(m["content"]) for m in messages if m.get("role") == "tool"}


def main() -> None:
    eng = engine()
    chain = finance_chain(unique_task("py-crewai"))
    llm = ScriptedLLM(model="scripted", script=[
        call(1, pay(1200)),
        call(2, {**pay(300), "card_number": "4242424242424242"}),
        call(3, {**pay(100), "destination": "DE89370400440532013000"}),
        call(4, pay(9000)),
        "Paid 1200 and 300; the 9000 payment awaits a finance approver.",
        call(5, pay(9000)),
        "Paid 9000.",
    ])
    hooks = AegisToolHooks(eng, chain, tool_names={"create_payment": TOOL})
    # The agent gets the guarded copy: it runs once per permitted call, and never without one.
    agent = Agent(role="finance agent", goal="pay the approved vendor invoices", backstory="pays invoices",
                  llm=llm, tools=hooks.guard_tools([create_payment]), cache=False, max_iter=10)

    def kickoff(description: str) -> str:
        task = Task(description=description, expected_output="what was paid", agent=agent)
        return str(Crew(agents=[agent], tasks=[task]).kickoff())

    with hooks:  # the hooks decide the calls made inside this block (this crew's), no other
        first = kickoff("Pay the four vendor invoices.")
        assert [p["amount"] for p in PAID] == [1200, 300], PAID
        print("1. paid 1200")
        assert PAID[1]["card_number"] == "[REDACTED]", PAID[1]
        print("2. paid 300; the tool received the card number as", PAID[1]["card_number"])
        told = tool_results(llm.seen[4])
        assert "destination-account-pattern" in told["call_3"], told
        print("3. the bad destination never reached the tool; the model was told:", told["call_3"][:70], "...")
        waiting = eng.pending_approvals()
        assert len(waiting) == 1 and waiting[0].args["amount"] == 9000, waiting
        assert waiting[0].approval_id in told["call_4"], told
        print("4. the 9000 payment was blocked; the model was told:", told["call_4"][:75], "...")
        print("   crew:", first)

        # The planner holds no `aegis.approve` (and, holding it, would still be above the requester).
        refused = eng.approve(waiting[0].approval_id, chain[:1])
        assert not refused.accepted and refused.reasons[0].code == "tool_not_in_scope", refused
        hooks.approved(refused)  # a refused approval holds nothing
        print("5. the planner's self-approval is refused:", refused.reasons[0].code)
        approved = eng.approve(waiting[0].approval_id, approver_chain())
        assert approved.accepted and approved.override_token
        hooks.approved(approved)
        print("6. the finance approver approved; the hooks hold the token for that exact call")

        second = kickoff("Retry the payment that was waiting for approval.")
        assert [p["amount"] for p in PAID] == [1200, 300, 9000], PAID
        assert second == "Paid 9000.", second
        print("7. the retried call ran once with the token: paid 9000 | crew:", second)

    replay = eng.authorize(chain, TOOL, pay(9000), approval_token=approved.override_token)
    assert replay.outcome == "deny" and replay.codes == ("approval_replayed",), replay
    assert not llm.script, llm.script
    print("8. the same token again:", replay.codes[0])
    # The guarded tool run outside the hooks (as CrewAI's retry of a failed call runs it): refused.
    try:
        agent.tools[0].run(**pay(9000))
        raise AssertionError("a guarded tool ran without a decision")
    except ReceiptInvalid as e:
        print("9. the tool run again without a decision:", e.code)
    assert [p["amount"] for p in PAID] == [1200, 300, 9000], PAID
    print("crewai agent: ok")


if __name__ == "__main__":
    main()
