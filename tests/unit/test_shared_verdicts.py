"""Breaker verdicts shared through Redis: the breaker's pure side (its own verdicts go
out, others' come in without echo), then two and three "instances" (each its breakers,
its outbox and its actor) on the local Redis, database 14."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import trio

from actors.services.shared_verdicts import SharedVerdicts, VerdictOutbox, share_breakers
from actors.supervisor import Supervisor
from router.providers.breaker import CircuitBreaker
from router.shared.redis import RedisSession
from router.shared.verdicts import BreakerVerdict, VerdictBoard
from tests.backends import fresh_redis_url, redis_db
from tests.tcp_proxy import TcpProxy


async def test_a_breaker_announces_its_own_transitions_only(
        autojump_clock: trio.abc.Clock) -> None:
    heard: list[tuple[str, float]] = []
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30)
    breaker.on_verdict = lambda verdict, retry_in: heard.append((verdict, retry_in))
    breaker.record_success()
    breaker.record_failure(trio.current_time())
    assert heard == [], "no transition, nothing to tell"
    breaker.record_failure(trio.current_time())
    breaker.record_failure(trio.current_time())  # an in-flight call failing: still open
    assert heard == [("open", 30)]
    await trio.sleep(30)
    assert breaker.allow(trio.current_time())
    breaker.record_success()
    assert heard == [("open", 30), ("closed", 0.0)]
    breaker.apply_verdict("open", 10, trio.current_time())
    breaker.apply_verdict("closed", 0, trio.current_time())
    assert len(heard) == 2, "another instance's verdicts are not echoed"


async def test_another_instances_open_verdict_holds_for_its_remaining_cooldown(
        autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=30)
    breaker.apply_verdict("open", 12, trio.current_time())
    assert not breaker.allow(trio.current_time())
    assert breaker.describe(trio.current_time())["opened_by"] == "another instance"
    await trio.sleep(11.9)
    assert not breaker.allow(trio.current_time())
    await trio.sleep(0.1)
    assert breaker.allow(trio.current_time()), "then this instance probes once itself"
    assert not breaker.allow(trio.current_time())
    breaker.release()
    # A local open that lasts longer is kept; a shorter remote one does not cut it.
    for _ in range(5):
        breaker.record_failure(trio.current_time())
    breaker.apply_verdict("open", 5, trio.current_time())
    assert breaker.retry_in(trio.current_time()) == 30
    breaker.apply_verdict("closed", 0, trio.current_time())
    assert breaker.state == "closed" and breaker.allow(trio.current_time())
    assert breaker.describe(trio.current_time())["times_opened"] == 1, \
        "only this instance's own openings are counted"


class Instance:
    """One router's share of the machinery: its breakers, outbox and verdict actor."""

    def __init__(self, name: str, session: RedisSession) -> None:
        self.name = name
        self.breakers = {"sick": CircuitBreaker(failure_threshold=2, cooldown_s=30),
                         "well": CircuitBreaker(failure_threshold=2, cooldown_s=30)}
        self.outbox = VerdictOutbox()
        share_breakers(self.breakers, self.outbox, name)
        self.board = VerdictBoard(session, name)

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(Supervisor(f"verdicts:{self.name}", lambda: SharedVerdicts(
            self.board, self.breakers, self.outbox, backoff_initial_s=0.05,
            backoff_max_s=0.2)).run)

    def fail(self, provider: str) -> None:
        breaker = self.breakers[provider]
        while breaker.state != "open":
            breaker.record_failure(trio.current_time())


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    with trio.fail_after(within_s):
        while not condition():
            await trio.sleep(0.01)


@asynccontextmanager
async def sessions(*urls: str) -> AsyncIterator[list[RedisSession]]:
    opened = [RedisSession(url) for url in urls]
    async with opened[0].session():
        if len(opened) == 1:
            yield opened
            return
        async with sessions(*urls[1:]) as rest:
            yield [opened[0], *rest]


async def test_an_open_and_a_close_on_one_instance_reach_the_others() -> None:
    url = fresh_redis_url(db=14)
    async with sessions(url, url) as (sa, sb), trio.open_nursery() as nursery:
        a, b = Instance("a", sa), Instance("b", sb)
        await a.start(nursery)
        await b.start(nursery)
        a.fail("sick")
        await eventually(lambda: b.breakers["sick"].state == "open")
        now = trio.current_time()
        assert not b.breakers["sick"].allow(now), "b skips the provider without trying it"
        assert 29 < b.breakers["sick"].retry_in(now) <= 30
        assert b.breakers["well"].allow(now), "only that provider"
        ttl = await sa.command("PTTL", "aura:breaker:sick")
        assert 29_000 < int(ttl) <= 30_000, "the key lasts the cooldown"

        # a's probe succeeds (its cooldown is over, say): everyone closes.
        a.breakers["sick"].record_success()
        await eventually(lambda: b.breakers["sick"].state == "closed")
        assert b.breakers["sick"].allow(trio.current_time())
        assert await sa.command("EXISTS", "aura:breaker:sick") == 0
        nursery.cancel_scope.cancel()


async def test_an_instance_that_starts_later_reads_the_verdicts_in_force() -> None:
    url = fresh_redis_url(db=14)
    async with sessions(url, url) as (sa, sc), trio.open_nursery() as nursery:
        a = Instance("a", sa)
        await a.start(nursery)
        a.fail("sick")
        with trio.fail_after(5):
            while not await sa.command("EXISTS", "aura:breaker:sick"):  # published
                await trio.sleep(0.01)
        c = Instance("c", sc)
        await c.start(nursery)  # ready only once it has read the keys
        assert c.breakers["sick"].state == "open" and c.breakers["well"].state == "closed"
        assert not c.breakers["sick"].allow(trio.current_time())
        nursery.cancel_scope.cancel()


async def test_redis_away_local_breakers_carry_on_and_verdicts_go_out_on_return() -> None:
    url = fresh_redis_url(db=14)
    proxy = TcpProxy(6379)
    try:
        async with sessions(f"redis://127.0.0.1:{proxy.port}/{redis_db(14)}", url) as (sa, sb), \
                trio.open_nursery() as nursery:
            a, b = Instance("a", sa), Instance("b", sb)
            await a.start(nursery)
            await b.start(nursery)
            proxy.cut()
            await trio.sleep(0.2)
            a.fail("sick")  # no Redis for a: its own breaker still opens
            assert not a.breakers["sick"].allow(trio.current_time())
            await trio.sleep(0.5)
            assert b.breakers["sick"].state == "closed", "b cannot have heard yet"
            proxy.restore()
            await eventually(lambda: b.breakers["sick"].state == "open", within_s=10)
            nursery.cancel_scope.cancel()
    finally:
        proxy.close()


def test_a_verdict_survives_the_wire_and_garbage_is_ignored() -> None:
    verdict = BreakerVerdict("p", "open", 12.5, "inst")
    assert BreakerVerdict.decode(verdict.encode()) == verdict
    for junk in (b"", b"{", b"[]", b'{"verdict": "maybe", "provider": "p"}', b"null"):
        assert BreakerVerdict.decode(junk) is None
