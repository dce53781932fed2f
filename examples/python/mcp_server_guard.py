"""An MCP server whose payment tool checks for itself: it runs only with a valid decision
receipt for exactly the arguments it received. A guarded client gets its payment made; a client
that skips Aegis, replays a receipt with other arguments, or presents it twice, gets nothing
run."""

from __future__ import annotations

import asyncio
from typing import List

from mcp import Client
from mcp.server.mcpserver import Context, MCPServer

import aegis
from aegis.mcp import RECEIPT_META_KEY, GuardedSession, require_receipt
from payments_setup import BUNDLE, ISSUER, ISSUER_KEY, TOOL, finance_chain, pay, unique_task

RECEIPTS = {"issuer": "aegis.example", "audience": "payments-mcp"}
ENGINE = aegis.Engine(BUNDLE, trusted_issuers={ISSUER: ISSUER_KEY},
                      receipts={"key": aegis.KeyPair.from_seed(bytes([21]) * 32).private_jwk, **RECEIPTS})
# What the server is configured with: the engine's public keys, nothing secret.
JWKS = ENGINE.receipt_jwks()

PAID: List[int] = []
server = MCPServer("payments")


@server.tool(name=TOOL)
def create_payment(amount: int, currency: str, destination: str, ctx: Context) -> str:
    """Create a payment (only with a valid Aegis receipt for exactly these arguments)."""
    require_receipt(ctx, JWKS, tool=TOOL, args={"amount": amount, "currency": currency, "destination": destination},
                    **RECEIPTS)
    PAID.append(amount)
    return f"paid {amount} {currency} to {destination}"


async def main() -> None:
    chain = finance_chain(unique_task("py-mcp-server"))
    async with Client(server) as client:
        guarded = GuardedSession(client, ENGINE, chain)
        result = await guarded.call_tool(TOOL, pay(1200))
        print("1. guarded call:", result.content[0].text)

        direct = await client.call_tool(TOOL, pay(700))
        assert direct.is_error and "receipt_invalid" in direct.content[0].text, direct
        print("2. a call around Aegis is refused by the tool itself")

        decision = ENGINE.authorize(chain, TOOL, pay(300))
        swapped = await client.call_tool(TOOL, pay(30000), meta={RECEIPT_META_KEY: decision.receipt})
        assert swapped.is_error and "receipt_mismatch" in swapped.content[0].text, swapped
        print("3. a receipt for 300 does not pay 30000")
        await client.call_tool(TOOL, pay(300), meta={RECEIPT_META_KEY: decision.receipt})
        again = await client.call_tool(TOOL, pay(300), meta={RECEIPT_META_KEY: decision.receipt})
        assert again.is_error and "already used" in again.content[0].text, again
        print("4. the receipt pays 300 once")
    assert PAID == [1200, 300], PAID
    print("mcp server guard: ok")


if __name__ == "__main__":
    asyncio.run(main())
