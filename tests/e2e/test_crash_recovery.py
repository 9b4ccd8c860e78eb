"""kill -9 mid-stream, then restart on the same DATA_DIR (I7): the new incarnation settles
its predecessor's open holds from their checkpoints at once, nothing that streamed is
billed 0, the ledger invariants hold, and an Idempotency-Key of a dead request works
again. Repeated with random kill times.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import trio

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, assert_account_invariants, router_config

STREAMS = 50
ROUNDS = 3
CHECKPOINT_S = 0.2
LEASE_S = 3.0
CHUNK_DELAY_S = 0.05
MAX_TOKENS = 400
ENV = {"CHECKPOINT_S": str(CHECKPOINT_S), "LEASE_S": str(LEASE_S)}


@pytest.fixture(scope="module")
def slow_fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        server.state.chunk_delay_s = CHUNK_DELAY_S
        server.state.reply_words = MAX_TOKENS
        server.state.keep_requests = False
        yield server


async def _stream(client: httpx.AsyncClient, key: str, received: dict[str, int],
                  started: trio.Semaphore, idempotency_key: str | None = None) -> None:
    headers = {"authorization": f"Bearer {key}"}
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    body = {"model": "house-model", "stream": True, "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": "tell me a long story"}]}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body,
                                 headers=headers) as response:
            request_id = response.headers["x-request-id"]
            received[request_id] = 0
            first = True
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"content":"' in line and \
                        '"content":""' not in line:
                    received[request_id] += 1
                    if first:
                        started.release()
                        first = False
    except (httpx.HTTPError, trio.BrokenResourceError):
        pass  # the router died under us: that is the point


async def _open_streams(base_url: str, key: str, kill_after_s: float,
                        kill: Any) -> dict[str, int]:
    received: dict[str, int] = {}
    started = trio.Semaphore(STREAMS, max_value=STREAMS)
    for _ in range(STREAMS):
        started.acquire_nowait()
    limits = httpx.Limits(max_connections=STREAMS + 5)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        async with trio.open_nursery() as nursery:
            for i in range(STREAMS):
                nursery.start_soon(_stream, client, key, received, started,
                                   "retry-me" if i == 0 else None)
            for _ in range(STREAMS):  # every stream has content on screen
                await started.acquire()
            await trio.sleep(kill_after_s)
            kill()
    return received


def test_kill_9_mid_stream_then_restart_settles_every_hold_from_its_checkpoint(
        slow_fake: FakeProviderServer, tmp_path: Path) -> None:
    config = router_config(slow_fake.openai_base_url, slow_fake.anthropic_base_url)
    data_dir = tmp_path / "router"
    rng = random.Random()
    figures: list[dict[str, Any]] = []
    router = RouterProcess(data_dir, config, env=ENV).start()
    account, key = router.new_account(50_000_000)
    try:
        for round_ in range(ROUNDS):
            kill_after_s = rng.uniform(0.0, 1.5)

            def kill() -> None:
                assert router.proc is not None
                router.proc.kill()  # SIGKILL: no shutdown, no settlement
                router.proc.wait()

            received = trio.run(_open_streams, router.base_url, key, kill_after_s, kill)
            assert len(received) == STREAMS
            killed_at = time.monotonic()
            router = RouterProcess(data_dir, config, env=ENV).start()
            # The restart settles its predecessor's holds before it serves: poll to be sure.
            while router.account(account)["held_micros"] and \
                    time.monotonic() - killed_at < LEASE_S + 10:
                time.sleep(0.1)
            settled_in_s = time.monotonic() - killed_at
            assert router.account(account)["held_micros"] == 0, "every hold settled"
            rows = {r["request_id"]: r for r in _usage(router, key)}
            billed_zero = [rid for rid, n in received.items()
                           if n > 0 and rows[rid]["cost_micros"] == 0]
            assert billed_zero == [], "streamed tokens are never billed 0"
            lag = int(CHECKPOINT_S / CHUNK_DELAY_S) * 3 + 2
            for rid, n in received.items():
                billed = rows[rid]["output_tokens"]
                assert n - lag <= billed <= MAX_TOKENS, (rid, n, billed)
            assert all(rows[rid]["recovered"] for rid in received)
            assert_account_invariants(router, account)
            with httpx.stream("POST", router.base_url + "/v1/chat/completions", timeout=30,
                              headers={"authorization": f"Bearer {key}",
                                       "idempotency-key": "retry-me"},
                              json={"model": "house-model", "stream": True,
                                    "max_tokens": MAX_TOKENS, "messages": [
                                        {"role": "user", "content": "tell me a long story"}]}
                              ) as retry:
                assert retry.status_code == 200, "the dead request's key is free again"
            figures.append({"round": round_ + 1, "kill_after_s": round(kill_after_s, 2),
                            "streams": len(received),
                            "holds_settled": len(received),
                            "seconds_to_settle": round(settled_in_s, 2),
                            "tokens_streamed": sum(received.values()),
                            "tokens_billed": sum(rows[r]["output_tokens"] for r in received),
                            "streams_billed_0_that_streamed": len(billed_zero)})
    finally:
        router.stop()
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))
        print("kill -9 figures:", json.dumps(figures))


def _usage(router: RouterProcess, key: str) -> list[dict[str, Any]]:
    r = router.admin("GET", "/admin/usage?format=json")
    assert r.status_code == 200, r.text
    body = r.json()
    return body["data"] if isinstance(body, dict) else body
