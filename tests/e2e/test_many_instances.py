"""Many routers, one ledger: the overspend attack across three router instances at once,
on each backend, with one instance killed (-9) in the middle of it.

300 concurrent paced streams on one account whose balance covers about a third of
them, spread over three instances sharing the ledger (sqlite: one file; postgres: one
database; redis: one server). Then kill -9 of the third instance while its streams are
on screen. Promised: available never below 0 anywhere in the ledger's history, the
refused get 402 before any byte, every completed stream is billed exactly what its
client was told, the dead instance's streams are settled by the survivors from their
checkpoints (never at 0 once content was shown), and no hold is left.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest
import trio

from tests.backends import backend_env
from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, assert_account_invariants, router_config

STREAMS = 300
INSTANCES = 3
HEAD_START = 20  # the victim's streams started before the others
MAX_TOKENS = 60  # 1.8 s per stream at the fake's pace
CHECKPOINT_S, LEASE_S = 0.2, 3.0
SWEEP_S = 1.0  # the hold sweeper's round: LEASE_S / 3, at least 1 s (actors/root.py)
PRICES = (Decimal("0.15"), Decimal("0.60"))  # house-model, USD per Mtok
BODY = {"model": "house-model", "stream": True, "max_tokens": MAX_TOKENS,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "count slowly, please"}]}


def _cost(usage: dict[str, int]) -> int:
    exact = usage["prompt_tokens"] * PRICES[0] + usage["completion_tokens"] * PRICES[1]
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def paced_fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        server.state.chunk_delay_s = 0.03
        server.state.reply_words = MAX_TOKENS
        server.state.keep_requests = False
        yield server


class Attack:
    """What each stream's client saw."""

    def __init__(self) -> None:
        self.status: dict[int, int] = {}  # stream -> HTTP status
        self.instance: dict[int, int] = {}
        self.request_id: dict[int, str] = {}
        self.content: dict[int, int] = {}  # content events seen
        self.told: dict[int, int] = {}  # micro-USD the usage chunk said
        self.cut: set[int] = set()  # the connection broke (the instance died)


async def _stream(client: httpx.AsyncClient, i: int, instance: int, attack: Attack,
                  on_screen: trio.Semaphore) -> None:
    attack.instance[i] = instance
    try:
        async with client.stream("POST", "/v1/chat/completions", json=BODY) as response:
            attack.status[i] = response.status_code
            attack.request_id[i] = response.headers.get("x-request-id", "")
            if response.status_code != 200:
                await response.aread()
                return
            attack.content[i] = 0
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = orjson.loads(line[6:])
                if chunk.get("usage"):
                    attack.told[i] = _cost(chunk["usage"])
                elif chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    attack.content[i] += 1
                    if attack.content[i] == 1 and instance == INSTANCES - 1:
                        on_screen.release()
    except (httpx.HTTPError, trio.BrokenResourceError):
        attack.cut.add(i)


async def _attack(routers: list[RouterProcess], key: str, victim: RouterProcess) -> Attack:
    """The victim's first streams start first (so that it has streams to lose), then the
    rest over all three instances; kill -9 while the victim's first ones are mid-answer."""
    attack = Attack()
    on_screen = trio.Semaphore(0)  # the victim's streams with content shown
    per_instance = STREAMS // INSTANCES
    limits = httpx.Limits(max_connections=per_instance + 5)
    clients = [httpx.AsyncClient(base_url=r.base_url, timeout=60, limits=limits,
                                 headers={"authorization": f"Bearer {key}"}) for r in routers]
    victim_n = INSTANCES - 1
    first = [i for i in range(STREAMS) if i % INSTANCES == victim_n][:HEAD_START]
    rest = [i for i in range(STREAMS) if i not in first]
    try:
        async with trio.open_nursery() as nursery:
            for i in first + rest:
                if i == rest[0]:
                    with trio.move_on_after(30):
                        for _ in range(HEAD_START // 2):
                            await on_screen.acquire()
                nursery.start_soon(_stream, clients[i % INSTANCES], i, i % INSTANCES, attack,
                                   on_screen)
            await trio.sleep(1.0)  # the others under way; the victim's first ones mid-answer
            assert victim.proc is not None
            victim.proc.kill()  # SIGKILL: no shutdown, no settlement
            victim.proc.wait()
    finally:
        for client in clients:
            await client.aclose()
    return attack


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_three_instances_one_account_never_overspend_even_when_one_is_killed(
        backend: str, paced_fake: FakeProviderServer, tmp_path: Path) -> None:
    env = {**backend_env(backend, tmp_path / "shared"),
           "CHECKPOINT_S": str(CHECKPOINT_S), "LEASE_S": str(LEASE_S)}
    config = router_config(paced_fake.openai_base_url, paced_fake.anthropic_base_url)
    # sqlite: every instance on the one file; the others: each its own directory.
    dirs = [tmp_path / "shared" if backend == "sqlite" else tmp_path / f"r{n}"
            for n in range(INSTANCES)]
    routers = [RouterProcess(d, config, env=env) for d in dirs]
    with ThreadPoolExecutor(INSTANCES) as starting:  # at once, as a deployment does
        list(starting.map(RouterProcess.start, routers))
    try:
        first = routers[0]
        account, key = first.new_account(1)
        # One request prices the hold: the balance then covers about a third of the attack.
        one = httpx.post(first.base_url + "/v1/chat/completions", json=BODY, timeout=30,
                         headers={"authorization": f"Bearer {key}"})
        assert one.status_code == 402, one.text
        hold = int(re.search(r"needs a hold of (\d+)", one.json()["error"]["message"])[1])
        granted = hold * STREAMS // 3
        first.admin("POST", f"/admin/accounts/{account}/credits",
                    json={"amount_micros": granted - 1, "reason": "attack"})

        started = time.monotonic()
        attack = trio.run(_attack, routers, key, routers[-1])
        survivors = routers[:-1]
        while survivors[0].account(account)["held_micros"] and \
                time.monotonic() - started < 60 + LEASE_S + SWEEP_S:
            time.sleep(0.2)
        settled_after_s = time.monotonic() - started

        admitted = [i for i, s in attack.status.items() if s == 200]
        refused = [i for i, s in attack.status.items() if s == 402]
        unanswered = [i for i in range(STREAMS) if i not in attack.status]  # killed first
        assert all(i in attack.cut and attack.instance[i] == INSTANCES - 1
                   for i in unanswered), unanswered
        assert len(admitted) + len(refused) + len(unanswered) == STREAMS, \
            sorted(set(attack.status.values()))
        assert admitted and refused, (len(admitted), len(refused))
        state = survivors[0].account(account)
        assert state["held_micros"] == 0, "the dead instance's holds were settled"
        assert_account_invariants(survivors[1], account)  # I1-I4, available never < 0

        rows = {r["request_id"]: r for r in _usage_rows(survivors[0], account)}
        completed = [i for i in admitted if i not in attack.cut]
        for i in completed:  # billed exactly what the client was told
            assert rows[attack.request_id[i]]["cost_micros"] == attack.told[i], i
        killed = [i for i in admitted if i in attack.cut]
        assert killed and all(attack.instance[i] == INSTANCES - 1 for i in killed), (
            {i: (attack.status.get(i), attack.content.get(i), i in attack.cut)
             for i in range(STREAMS) if attack.instance[i] == INSTANCES - 1})
        billed_zero = [i for i in killed if attack.content.get(i) and
                       rows[attack.request_id[i]]["cost_micros"] == 0]
        assert billed_zero == [], "streamed tokens are never billed 0"
        assert all(rows[attack.request_id[i]]["recovered"] for i in killed)
        captured = sum(r["cost_micros"] for r in rows.values())
        assert granted - state["balance_micros"] == captured
        assert captured <= granted, "overspend"
        print(f"\n[{backend}] {STREAMS} streams over {INSTANCES} instances: "
              f"admitted {len(admitted)}, refused {len(refused)}, cut before an answer "
              f"{len(unanswered)}, overspend 0; "
              f"kill -9 of one instance cut {len(killed)} streams, recovered "
              f"{sum(rows[attack.request_id[i]]['cost_micros'] for i in killed)} micro-USD "
              f"from checkpoints; every hold settled {settled_after_s:.1f} s after the start")
    finally:
        for router in routers:
            router.stop()


def _usage_rows(router: RouterProcess, account: str) -> list[dict[str, Any]]:
    r = router.admin("GET", f"/admin/usage?format=json&account={account}&limit=100000")
    assert r.status_code == 200, r.text
    body = r.json()
    return body["data"] if isinstance(body, dict) else body
