"""What only the Redis backend can get wrong, on the machine's real Redis (database 15):
many router instances holding on one account at once, money and times that must survive
Lua exactly, the export's paging, idempotency claims freed by recovery, and what an
operator sees when Redis is not there (at start-up: one ConfigError line naming
REDIS_URL without its password; while running: 503 billing_unavailable, and back to work
when Redis returns, without a restart). Redis is never stopped: a loopback proxy in front
of it is cut instead, or this test's own connections are killed."""

from __future__ import annotations

import random
import secrets
import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from router.config import load_config
from router.errors import BillingUnavailable, ConfigError, InsufficientFunds, SpendCapReached
from router.ledger.base import Checkpoint, UsageRecord
from router.ledger.redis import RedisIdempotency, RedisSession, persistence_warning
from router.ledger.redis import ledger as redis_ledger
from router.ledger.redis.client import Script
from router.ledger.stores import Stores, open_stores
from router.usage import Usage
from tests.backends import backend_env, redis_db, require

PASSWORD = "s3cret-Pa55"


def _stores(env: dict[str, str], tmp_path: Path) -> Stores:
    return open_stores(load_config(env=env, cwd=tmp_path))


@pytest.fixture
def redis_env(tmp_path: Path) -> dict[str, str]:
    return backend_env("redis", tmp_path)  # database 15, flushed


@pytest.fixture
async def stores(redis_env: dict[str, str], tmp_path: Path) -> Any:
    opened = _stores(redis_env, tmp_path)
    async with opened.session():
        yield opened


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _record(request_id: str, account: str, cost: int, at: float) -> UsageRecord:
    return UsageRecord(request_id, account, "m", "p", Usage(3, 4, reported=True), cost, at)


async def test_concurrent_holds_from_three_instances_never_overspend(
        redis_env: dict[str, str], tmp_path: Path) -> None:
    instances = [_stores(redis_env, tmp_path) for _ in range(3)]
    rng = random.Random(7)
    amounts = [rng.randrange(5_000, 20_000) for _ in range(300)]  # ~3.7 M asked
    granted = sum(amounts) // 3
    held: dict[str, int] = {}
    refused: list[str] = []
    capped: dict[str, int] = {}

    async def take(i: int, amount: int) -> None:
        stores = instances[i % 3]
        request_id = f"r{i}"
        key = ("k-capped", 400_000) if i % 2 else (None, None)
        try:
            await stores.billing.hold("acme", request_id, amount, 1e10, 1.0,
                                      key_id=key[0], key_cap=key[1], owner=f"inst{i % 3}")
        except (InsufficientFunds, SpendCapReached):
            refused.append(request_id)
            return
        held[request_id] = amount
        if key[0]:
            capped[request_id] = amount

    async with AsyncExitStack() as stack:
        for one in instances:
            await stack.enter_async_context(one.session())
        await instances[0].accounts.grant("acme", granted, "t", 0.0)
        async with trio.open_nursery() as nursery:
            for i, amount in enumerate(amounts):
                nursery.start_soon(take, i, amount)
        state = await instances[1].accounts.account("acme")
        open_holds = await instances[2].accounts.open_holds("acme")
        assert refused and held, "the test must reach the edge of the balance"
        assert state.balance == granted and state.available >= 0  # I3
        assert state.held == sum(held.values()) == sum(h[2] for h in open_holds)
        assert sorted(h[0] for h in open_holds) == sorted(held)
        assert await instances[0].billing.key_spent("k-capped") == sum(capped.values()) \
            <= 400_000

        async def settle(request_id: str, i: int) -> None:
            cost = held[request_id] // 2
            await instances[i % 3].billing.settle(
                request_id, cost, _record(request_id, "acme", cost, 2.0), 2.0)

        async with trio.open_nursery() as nursery:
            for i, request_id in enumerate(held):
                nursery.start_soon(settle, request_id, i)
        captured = sum(a // 2 for a in held.values())
        state = await instances[0].accounts.account("acme")
        assert (state.balance, state.held) == (granted - captured, 0)
        assert await instances[0].reports.spent("acme") == captured
        entries = await instances[0].accounts.entries("acme", 0, 100_000)
        assert sum(e.amount for e in entries) == state.balance  # I1
        assert sum(e.held_delta for e in entries) == 0
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))


async def test_money_and_times_survive_lua_exactly(stores: Stores) -> None:
    big = 2**53 - 1  # the largest integer a Lua number holds
    at = 1_733_000_000.123456789
    await stores.accounts.grant("whale", big, "all of it", at)
    await stores.billing.hold("whale", "r1", big - 1, at + 0.1, at)
    settled = await stores.billing.settle("r1", big - 2, _record("r1", "whale", 0, at), at)
    assert (settled.captured, settled.released, settled.balance) == (big - 2, 1, 2)
    [grant, hold, capture, release] = await stores.accounts.entries("whale", 0, 10)
    assert (grant.amount, grant.at, grant.reason, grant.request_id) == (big, at, "all of it",
                                                                         None)
    assert (hold.held_delta, capture.amount, release.held_delta) == (big - 1, -(big - 2), -1)
    [row] = await stores.reports.usage_rows("whale", at, at + 1e-6, 10)
    assert row["cost_micros"] == big - 2 and isinstance(row["cost_micros"], int)
    [recent] = await stores.reports.recent_usage("whale", 5)
    assert recent.at == at and recent.usage == Usage(3, 4, reported=True)
    with pytest.raises(Exception, match="integer"):
        await stores.accounts.grant("whale", 1.5, "float", at)  # type: ignore[arg-type]


async def test_usage_export_pages_in_at_order_through_ties(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_ledger, "USAGE_PAGE", 3)  # many pages, cut inside ties
    await stores.accounts.grant("erin", 1_000_000, "t", 0.0)
    ats = [5.0, 1.0, 5.0, 2.0, 5.0, 5.0, 3.0, 5.0, 9.0, 5.0, 0.5]
    expected = []
    for i, at in enumerate(ats):
        request_id = f"req-{(i * 7) % 11:02d}"  # settled out of id order
        await stores.billing.hold("erin", request_id, 100, 1e10, at)
        await stores.billing.settle(request_id, 10 + i, _record(request_id, "erin", 0, at), at)
        expected.append((at, request_id))
    expected.sort()
    rows = await stores.reports.usage_rows("erin", None, None, 1_000)
    assert [r["request_id"] for r in rows] == [rid for _, rid in expected]
    window = await stores.reports.usage_rows(None, 2.0, 9.0, 1_000)
    assert [r["request_id"] for r in window] == [rid for at, rid in expected if 2.0 <= at < 9.0]
    assert [r["request_id"] for r in await stores.reports.usage_rows("erin", 5.0, None, 4)] \
        == [rid for at, rid in expected if at >= 5.0][:4]
    recent = await stores.reports.recent_usage("erin", 2)
    assert [r.at for r in recent] == [9.0, 5.0]


async def test_recovering_a_dead_request_frees_its_idempotency_key(
        stores: Stores, redis_env: dict[str, str]) -> None:
    claims = stores.idempotency
    await stores.accounts.grant("fay", 1_000, "t", 1.0)
    assert (await claims.begin("fay", "k", b"{}", "r1", 1.0)).kind == "new"
    await stores.billing.hold("fay", "r1", 500, 2.0, 1.0, owner="dead")
    await stores.billing.checkpoint([Checkpoint("r1", "p", Usage(2, 9), 120, 1.5)])
    recovered = await stores.billing.recover("r1", 3.0)
    assert (recovered.captured, recovered.released) == (120, 380)
    [row] = await stores.reports.recent_usage("fay", 5)
    assert row.recovered and row.usage == Usage(2, 9) and row.provider == "p"
    assert (await claims.begin("fay", "k", b"{}", "r2", 3.0)).kind == "new"

    # On its own (beside another ledger backend): same claims, freed by request id.
    alone = RedisIdempotency(RedisSession(redis_env["REDIS_URL"]), stale_after_s=60)
    async with alone.redis.session():
        assert (await alone.begin("fay", "k", b"{}", "r3", 4.0)).kind == "in_flight"
        assert await alone.forget_request("r2") is True
        assert (await alone.begin("fay", "k", b"{}", "r3", 4.0)).kind == "new"
        await alone.finish("fay", "k", 200, "application/json", b"\x00\xffanswer")
        assert await alone.forget_request("r3") is False, "a finished answer stays"
        replay = await alone.begin("fay", "k", b"{}", "r4", 5.0)
        assert (replay.kind, replay.request_id, replay.response) == \
            ("replay", "r3", b"\x00\xffanswer")
        assert (await alone.begin("fay", "k2", b"a", "r5", 5.0)).kind == "new"
        assert (await alone.begin("fay", "k2", b"a", "r6", 66.0)).kind == "new", "stale"


async def test_a_script_redis_has_not_seen_is_sent_whole_once(stores: Stores) -> None:
    session: RedisSession = stores.details["redis_session"]
    fresh = Script("probe", f"-- {secrets.token_hex(8)}\nreturn ARGV[1] .. ARGV[2]")
    assert await session.command(b"SCRIPT", "EXISTS", fresh.sha) == [0]
    assert await session.script(fresh, "x") == b"aura:x"  # NOSCRIPT, then EVAL
    assert await session.command(b"SCRIPT", "EXISTS", fresh.sha) == [1]
    assert await session.script(fresh, "y") == b"aura:y"


async def test_every_key_lives_under_the_prefix(stores: Stores) -> None:
    await stores.accounts.open_account("gus", 100, 1.0)
    await stores.keys.issue("gus", spend_cap_micros=50, at=1.0)
    await stores.billing.hold("gus", "r1", 10, 9.0, 1.0, key_id="k", key_cap=50)
    await stores.billing.settle("r1", 5, _record("r1", "gus", 5, 1.0), 1.0)
    await stores.idempotency.begin("gus", "idem", b"", "r1", 1.0)
    client = stores.details["redis_session"].client
    keys = [k async for k in client.scan_iter()]
    assert keys and all(k.startswith(b"aura:") for k in keys), keys


async def test_the_body_of_a_session_raises_its_own_errors_unwrapped(
        stores: Stores, redis_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InsufficientFunds):
        async with stores.session():  # nested: reuses the open client
            await stores.accounts.grant("hal", -5, "no", 1.0)
    opened = _stores(redis_env, tmp_path)
    with pytest.raises(InsufficientFunds):
        async with opened.session():
            await opened.accounts.grant("hal", -5, "no", 1.0)


def test_each_event_loop_enters_its_own_session(redis_env: dict[str, str],
                                                tmp_path: Path) -> None:
    """The CLI runs one trio.run per command on the same Stores."""
    stores = _stores(redis_env, tmp_path)

    async def grant(amount: int) -> int:
        async with stores.session():
            return (await stores.accounts.grant("ivy", amount, "t", 1.0)).balance

    assert [trio.run(grant, 5), trio.run(grant, 7)] == [5, 12]
    # Outside any session a call opens a short one for itself (tests, one-off scripts).
    assert trio.run(stores.accounts.exists, "ivy") is True


async def test_this_machines_redis_without_aof_gets_a_persistence_warning(
        stores: Stores) -> None:
    warning = await stores.details["persistence_warning_check"]()
    assert warning is not None and "appendonly" in warning and "\n" not in warning
    assert await persistence_warning(stores.details["redis_session"].client) == warning


async def test_a_redis_url_that_cannot_be_used_is_one_config_error_naming_it(
        tmp_path: Path) -> None:
    require("redis")
    port = _closed_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/15"
    stores = _stores({"BILLING_BACKEND": "redis", "REDIS_URL": url}, tmp_path)
    assert stores.where == f"redis://127.0.0.1:{port}/15"
    with pytest.raises(ConfigError) as caught:
        async with stores.session():
            pass
    message = str(caught.value)
    assert message.startswith(f"REDIS_URL redis://127.0.0.1:{port}/15 cannot be reached")
    assert PASSWORD not in message and "\n" not in message
    for bad in (f"redis://:{PASSWORD}@127.0.0.1:port/0", f"http://:{PASSWORD}@h:1/0",
                f"redis://:{PASSWORD}@h:6379/zero"):
        with pytest.raises(ConfigError, match="^REDIS_URL ") as caught:
            _stores({"BILLING_BACKEND": "redis", "REDIS_URL": bad}, tmp_path)
        assert PASSWORD not in str(caught.value)


class Proxy:
    """A loopback TCP forwarder to the local Redis that can be cut and restored."""

    def __init__(self) -> None:
        self.port = 0
        self.scope: trio.CancelScope | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as self.scope:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._forward, listeners, handler_nursery=nursery)

    def cut(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    async def _forward(self, downstream: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", 6379)
        async with downstream, upstream, trio.open_nursery() as nursery:
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                nursery.start_soon(self._pump, source, sink, nursery.cancel_scope)

    @staticmethod
    async def _pump(source: trio.SocketStream, sink: trio.SocketStream,
                    done: trio.CancelScope) -> None:
        async for data in source:
            await sink.send_all(data)
        done.cancel()


async def test_lost_redis_is_billing_unavailable_until_it_returns(
        redis_env: dict[str, str], tmp_path: Path, nursery: trio.Nursery) -> None:
    proxy = Proxy()
    await nursery.start(proxy.serve)
    stores = _stores({**redis_env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{redis_db(15)}"},
                     tmp_path)
    async with stores.session():
        await stores.accounts.grant("jo", 1_000, "t", 1.0)
        proxy.cut()
        await trio.sleep(0.05)
        for attempt in (lambda: stores.billing.hold("jo", "r1", 10, 9.0, 1.0),
                        lambda: stores.accounts.account("jo"),
                        lambda: stores.keys.find("ar_sk_x"),
                        lambda: stores.idempotency.begin("jo", "k", b"", "r1", 1.0)):
            with pytest.raises(BillingUnavailable) as caught:
                await attempt()
            assert caught.value.status == 503 and caught.value.code == "billing_unavailable"
            assert "Redis" in str(caught.value) and str(proxy.port) in str(caught.value)
        await nursery.start(proxy.serve)  # Redis is back, on the same address
        assert (await stores.billing.hold("jo", "r1", 10, 9.0, 1.0)).held == 10
        assert (await stores.accounts.account("jo")).available == 990


async def test_killed_connections_are_replaced_on_the_next_call(
        redis_env: dict[str, str], tmp_path: Path) -> None:
    stores, killer = _stores(redis_env, tmp_path), RedisSession(redis_env["REDIS_URL"])
    async with stores.session(), killer.session():
        session: RedisSession = stores.details["redis_session"]
        await stores.accounts.grant("kim", 100, "t", 1.0)
        mine = await session.command(b"CLIENT", "ID")
        await killer.command(b"CLIENT", "KILL", "ID", str(mine))
        await trio.sleep(0.05)
        assert (await stores.accounts.grant("kim", 1, "t", 2.0)).balance == 101
        assert await session.command(b"CLIENT", "ID") != mine
