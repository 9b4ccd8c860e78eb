"""The overspend attack: many concurrent streams at one account whose balance covers a
fraction of them, through the real HTTP stack. Available never goes below zero, the
refused ones get 402 before any byte, and the debit equals what clients were told."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import httpx
import orjson
import trio

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess

REQUESTS = 200
PRICES = (Decimal("0.15"), Decimal("0.60"))  # gpt-4o-mini, USD per Mtok


def _cost(usage: dict) -> int:
    exact = usage["prompt_tokens"] * PRICES[0] + usage["completion_tokens"] * PRICES[1]
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


async def test_concurrent_streams_never_overspend(router: RouterProcess,
                                                  clean_fake: FakeProviderServer) -> None:
    clean_fake.state.chunk_delay_s = 0.01  # streams overlap for ~0.15 s each
    clean_fake.state.keep_requests = False
    granted = 2_000
    account, key = router.new_account(granted)
    body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 50,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "count to twelve, please"}]}
    told: list[int] = []
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)

    async with httpx.AsyncClient(base_url=router.base_url, timeout=30, limits=limits,
                                 headers={"authorization": f"Bearer {key}"}) as client:
        async def one() -> None:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                statuses.append(response.status_code)
                if response.status_code != 200:
                    assert response.headers["x-should-retry"] == "false"
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"usage":{' in line:
                        told.append(_cost(orjson.loads(line[6:])["usage"]))

        async with trio.open_nursery() as nursery:
            for _ in range(REQUESTS):
                nursery.start_soon(one)

    admitted, refused = statuses.count(200), statuses.count(402)
    assert admitted + refused == REQUESTS
    assert admitted > 0 and refused > 0, (admitted, refused)
    assert len(told) == admitted
    state = router.account(account)
    assert state["held_micros"] == 0
    assert granted - state["balance_micros"] == sum(told), "debit == usage clients were told"
    # available >= 0 at every moment: replay the ledger entry by entry
    balance = held = 0
    entries = router.ledger(account)
    assert len(entries) >= 1 + 2 * admitted  # the grant, a hold and a capture each
    for entry in entries:
        balance += entry["amount_micros"]
        held += entry["held_delta_micros"]
        assert balance - held >= 0, entry
    print(f"\nattack: admitted {admitted} of {REQUESTS}, refused {refused} with 402, "
          f"debited {sum(told)} of {granted} micro-USD, overspend 0")
