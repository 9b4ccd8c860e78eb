"""Crash safety's moving parts against the real SQLite ledger (I7): batched checkpoints of
streamed usage, leases and who counts as dead, settlement from a checkpoint with the
request's Idempotency-Key freed, and a settlement that missed its deadline retried until
it is recorded."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio
import trio.testing

from actors.services.ledger_maintenance import LeaseKeeper, dead_instances, sweep_abandoned_holds
from actors.pipeline.reserve import HoldPolicy, Reservation, reserve
from actors.pipeline.context import Outcome
from actors.pipeline.settle import Billing
from router.auth.principal import Principal
from router.catalog import ModelSpec
from router.ledger.base import Instance, Settlement, UsageRecord
from router.ledger.sqlite import SqliteDatabase, SqliteIdempotency, SqliteLedger
from router.pricing import Prices
from router.protocols.api import ClientRequest, Meter
from router.tokens import measure
from tests.unit.contexts import request_context

MODEL = ModelSpec("m", "openai", Prices(Decimal(1), Decimal(2), Decimal(1), Decimal(1)), 1000)
NOW = 1_000.0


def instance(name: str, host: str = "h1", pid: int = 10, lease_until: float = NOW + 15
             ) -> Instance:
    return Instance(name, host, pid, NOW, lease_until)


class CountingLedger(SqliteLedger):
    """The real ledger, counting checkpoint batches; its first settlement can hang."""

    def __init__(self, db: SqliteDatabase, hang_first_settle: bool = False) -> None:
        super().__init__(db)
        self.batches: list[list[str]] = []
        self.hang = hang_first_settle

    async def checkpoint(self, points: list[Any]) -> None:
        if points:
            self.batches.append([p.request_id for p in points])
        await super().checkpoint(points)

    async def settle(self, request_id: str, cost: int, record: UsageRecord,
                     at: float, transcript: bytes | None = None) -> Settlement:
        if self.hang:
            self.hang = False
            await trio.sleep_forever()  # a lock held elsewhere, longer than the deadline
        return await super().settle(request_id, cost, record, at, transcript)


async def _held(ledger: SqliteLedger, request_id: str, amount: int = 100_000,
                owner: str = "me") -> Billing:
    await ledger.hold("alice", request_id, amount, NOW + 3600, NOW, owner=owner, model="m")
    reservation = Reservation(request_id, "alice", amount, 1000, 50)
    ctx = request_context(MODEL, reservation, estimated_input=40)
    return Billing(ledger, ctx, Meter(), Outcome(request_id, "test"), lambda: NOW)


def _stream(billing: Billing, deltas: int) -> None:
    for _ in range(deltas):
        billing.meter.add_text("tok")


def test_dead_instances_by_lease_pid_and_host() -> None:
    me = instance("me", pid=os.getpid() + 1)
    others = [instance("expired", lease_until=NOW - 1, host="h2"),
              instance("gone", pid=4242), instance("earlier-me", pid=os.getpid()),
              instance("alive-here", pid=7), instance("elsewhere", host="h2", pid=4242),
              me]
    dead = dead_instances(others, me, NOW, exists=lambda pid: pid == 7)
    assert dead == {"expired", "gone", "earlier-me"}, "a pid elsewhere says nothing"


async def test_the_lease_keeper_checkpoints_every_grown_stream_in_one_batch(
        tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = CountingLedger(db)
    await ledger.grant("alice", 1_000_000, "t", NOW)
    me = instance("me")
    await ledger.register_instance(me)
    live = {rid: await _held(ledger, rid) for rid in ("a", "b", "c")}
    _stream(live["a"], 5)
    _stream(live["b"], 2)
    keeper = LeaseKeeper(ledger, me, live, checkpoint_s=1, lease_s=15, clock=lambda: NOW + 5)
    await keeper.tick()
    assert ledger.batches == [["a", "b"]], "one write for all, none for a quiet stream"
    await keeper.tick()
    assert ledger.batches == [["a", "b"]], "nothing grew: nothing written"
    _stream(live["b"], 1)
    await keeper.tick()
    assert ledger.batches == [["a", "b"], ["b"]]
    assert (await ledger.instances())[0].lease_until == NOW + 20, "the lease was renewed"
    db.close()


async def test_a_dead_routers_hold_is_settled_from_its_checkpoint_and_frees_its_key(
        tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = SqliteLedger(db)
    claims = SqliteIdempotency(db, stale_after_s=3600)
    await ledger.grant("alice", 1_000_000, "t", NOW)
    await ledger.register_instance(instance("dead", pid=4242))
    streamed = await _held(ledger, "streamed", owner="dead")
    await _held(ledger, "never-started", owner="dead")
    assert (await claims.begin("alice", "key-1", b"{}", "streamed", NOW)).kind == "new"
    _stream(streamed, 30)
    point = streamed.due_checkpoint()
    assert point is not None
    await ledger.checkpoint([point])
    me = instance("me", pid=99)
    await ledger.register_instance(me)
    assert await sweep_abandoned_holds(ledger, {}, NOW + 1, me,
                                       exists=lambda pid: pid == 99) == 2
    usage = {r.request_id: r for r in await ledger.recent_usage("alice")}
    assert usage["streamed"].cost_micros == MODEL.prices.cost_micros(
        streamed.meter.usage(40)) > 0, "billed what was checkpointed"
    assert usage["streamed"].recovered and usage["streamed"].usage.output_tokens == 30
    assert usage["never-started"].cost_micros == 0, "nothing streamed: released at 0"
    assert (await ledger.account("alice")).held == 0
    assert (await claims.begin("alice", "key-1", b"{}", "retry", NOW + 2)).kind == "new"
    db.close()


async def test_a_settlement_that_misses_its_deadline_is_retried_until_recorded(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = CountingLedger(db, hang_first_settle=True)
    await ledger.grant("alice", 1_000_000, "t", NOW)
    me = instance("me")
    await ledger.register_instance(me)
    billing = await _held(ledger, "slow")
    billing.outcome.provider = "p"
    _stream(billing, 10)
    live = {"slow": billing}
    settled = await billing.settle()
    assert settled.settlement is None and billing.unsettled, "missed its deadline"
    assert await ledger.recent_usage("alice") == []
    keeper = LeaseKeeper(ledger, me, live, checkpoint_s=1, lease_s=15, clock=lambda: NOW)
    await keeper.tick()
    rows = await ledger.recent_usage("alice")
    assert [r.request_id for r in rows] == ["slow"] and rows[0].cost_micros > 0
    assert live == {}, "recorded: the keeper lets it go"
    db.close()


class LateAnswers:
    """A real ledger whose answers come back late, as a network ledger's do: the hold is
    written, then the answer travels."""

    def __init__(self, ledger: SqliteLedger) -> None:
        self.ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    async def hold(self, *args: Any, **kwargs: Any) -> Any:
        state = await self.ledger.hold(*args, **kwargs)
        await trio.sleep(1)
        return state


async def test_a_request_cancelled_while_its_hold_is_answered_keeps_the_hold_to_settle(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A client that hangs up while the ledger answers the hold: the reservation still
    reaches the pipeline (which settles it), instead of a hold nobody knows of until its
    deadline, an hour later."""
    db = SqliteDatabase(tmp_path / "l.sqlite3")
    ledger = SqliteLedger(db)
    await ledger.grant("alice", 1_000_000, None, NOW)
    request = ClientRequest({}, MODEL.id, True, 50, measure({}))
    reservation = None
    with trio.move_on_after(0.5):  # the client is gone mid-hold
        reservation = await reserve(LateAnswers(ledger), Principal("alice"), request, MODEL,
                                    "r1", now=NOW, policy=HoldPolicy())
    assert reservation is not None and reservation.request_id == "r1"
    assert [h[0] for h in await ledger.open_holds("alice")] == ["r1"]
    db.close()


class StalledBatchLedger(SqliteLedger):
    """The real ledger; its first checkpoint write never arrives, like a lease keeper's
    batch still on its way to a network ledger when the process is killed."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
        self.stalled = trio.Event()

    async def checkpoint(self, points: list[Any]) -> None:
        if not self.stalled.is_set():
            self.stalled.set()
            await trio.sleep_forever()
        await super().checkpoint(points)


async def test_content_waits_for_its_own_checkpoint_even_with_a_batch_in_flight(
        tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = StalledBatchLedger(db)
    await ledger.grant("alice", 1_000_000, "t", NOW)
    await ledger.register_instance(instance("dead", pid=4242))
    streaming = await _held(ledger, "streaming", owner="dead")
    _stream(streaming, 3)
    keeper = LeaseKeeper(ledger, instance("dead", pid=4242), {"streaming": streaming},
                         checkpoint_s=1, lease_s=15, clock=lambda: NOW + 1)
    async with trio.open_nursery() as crash:
        crash.start_soon(keeper.tick)  # takes the running usage, its write never lands
        await ledger.stalled.wait()
        await streaming.before_content(whole=False)
        crash.cancel_scope.cancel()  # kill -9 right after the content left
    me = instance("me", pid=99)
    await ledger.register_instance(me)
    assert await sweep_abandoned_holds(ledger, {}, NOW + 1, me,
                                       exists=lambda pid: pid == 99) == 1
    [row] = await ledger.recent_usage("alice")
    assert row.recovered and row.cost_micros > 0, "content shown is never billed 0"
    db.close()
