"""An MCP client (the `mcp` package) whose `call_tool` is authorized by Aegis first, against an
in-process MCP server: allowed payments reach the server, denied ones never do, an approval
lets one call through once."""

from __future__ import annotations

import asyncio
from typing import List

from mcp import Client
from mcp.server.mcpserver import MCPServer

import aegis
from aegis.mcp import GuardedSession
from payments_setup import TOOL, approver_chain, engine, finance_chain, pay, unique_task

RECEIVED: List[dict] = []
server = MCPServer("payments")


@server.tool(name=TOOL)
def create_payment(amount: int, currency: str, destination: str, card_number: str = "") -> str:
    """Create a payment."""
    RECEIVED.append({"amount": amount, "card_number": card_number})
    return f"paid {amount} {currency} to {destination}"


async def main() -> None:
    eng = engine()
    chain = finance_chain(unique_task("py-mcp"))
    async with Client(server) as client:
        guarded = GuardedSession(client, eng, chain)
        result = await guarded.call_tool(TOOL, pay(1200))
        print("1.", result.content[0].text)

        await guarded.call_tool(TOOL, {**pay(800), "card_number": "4242424242424242"})
        assert RECEIVED[-1]["card_number"] == "[REDACTED]", RECEIVED
        print("2. the server received the card number redacted")

        try:
            await guarded.call_tool(TOOL, pay(9000))
            raise SystemExit("9000 should need approval")
        except aegis.ApprovalRequired as e:
            approval_id = e.approval_id
        refused = eng.approve(approval_id, chain[:1])  # the planner holds no `aegis.approve`
        assert not refused.accepted and refused.reasons[0].code == "tool_not_in_scope", refused
        token = eng.approve(approval_id, approver_chain()).override_token
        result = await guarded.call_tool(TOOL, pay(9000), approval_token=token)
        print("3. after approval:", result.content[0].text)
        try:
            await guarded.call_tool(TOOL, pay(9000), approval_token=token)
            raise SystemExit("replay must be refused")
        except aegis.Denied as e:
            print("4. replay refused:", e.code)

        try:
            await guarded.call_tool(TOOL, {**pay(100), "destination": "nope"})
        except aegis.Denied as e:
            print("5. denied before reaching the server:", e.decision.reasons[0].policy_id)
    assert [r["amount"] for r in RECEIVED] == [1200, 800, 9000], RECEIVED
    print("mcp client: ok")


if __name__ == "__main__":
    asyncio.run(main())
