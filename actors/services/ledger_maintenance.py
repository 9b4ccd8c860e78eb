"""Ledger upkeep actors, each with one job, started under supervisors in the root nursery.

- `StoreUpkeep` runs the ledger backend's periodic upkeep (SQLite: move its WAL into
  the main file from a worker thread, because the inline connection that serves
  requests never checkpoints: an fsync would stall the event loop).
- `LeaseKeeper` keeps this instance's promise to the others (I7): every `CHECKPOINT_S`
  it writes the running usage of every streaming request that grew, in one transaction
  for all of them, renews the instance's lease (`LEASE_S`), and retries settlements that
  missed their deadline until they land.
- `HoldSweeper` settles abandoned holds from their last checkpoint (I2, I7): those of
  instances that died (lease expired, or a process of this host that no longer exists:
  a restart settles its previous incarnation's holds at once), and those past their
  deadline that no live request owns. Streamed usage is never released at cost 0.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import trio

from actors.mailbox import Actor
from actors.pipeline.settle import Billing
from router.errors import BillingUnavailable
from router.ledger.base import BillingLedger, IdempotencyStore, Instance

log = logging.getLogger("aura.sweeper")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_instances(instances: list[Instance], me: Instance | None, now: float,
                   exists: Callable[[int], bool] = process_exists) -> set[str]:
    """Instances whose holds nobody will settle: lease expired, or (on this host) a
    process that is gone or is this very process under an earlier incarnation."""
    dead = set()
    for other in instances:
        if me is not None and other.id == me.id:
            continue
        same_host = me is not None and other.host == me.host
        if other.lease_until < now or same_host and (
                other.pid == os.getpid() or not exists(other.pid)):
            dead.add(other.id)
    return dead


async def sweep_abandoned_holds(ledger: BillingLedger, live: Mapping[str, Any], now: float,
                                me: Instance | None = None,
                                exists: Callable[[int], bool] = process_exists,
                                claims: IdempotencyStore | None = None) -> int:
    """Settle every abandoned hold from its last checkpoint; how many were settled."""
    instances = await ledger.instances()
    known = {i.id for i in instances}
    dead = dead_instances(instances, me, now, exists)
    swept = 0
    for hold in await ledger.leased_holds():
        if hold.request_id in live:
            continue
        owner_gone = hold.owner is not None and (hold.owner in dead or hold.owner not in known)
        mine_or_unowned = hold.owner is None or (me is not None and hold.owner == me.id)
        if not owner_gone and not (mine_or_unowned and hold.deadline < now):
            continue
        settlement = await ledger.recover(hold.request_id, now)
        if not settlement.replay:
            swept += 1
            if claims is not None:  # the claims may live apart from the ledger (Redis)
                await claims.forget_request(hold.request_id)
            log.warning("settled abandoned hold %s from its checkpoint: captured %d, released "
                        "%d micro-USD (%s)", hold.request_id, settlement.captured,
                        settlement.released,
                        "its router died" if owner_gone else "past its deadline")
    return swept


@asynccontextmanager
async def while_ledger_away(who: str) -> AsyncIterator[None]:
    """One round of upkeep: if the ledger's service cannot be reached, say so and let the
    next round try again (restarting the actor would not bring the service back)."""
    try:
        yield
    except BillingUnavailable:
        log.warning("%s: the ledger cannot be reached; trying again next round", who)


class StoreUpkeep(Actor[Any]):
    def __init__(self, upkeep: Callable[[], Awaitable[None]], interval_s: float) -> None:
        self.upkeep = upkeep
        self.interval_s = interval_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            async with while_ledger_away("store upkeep"):
                await self.upkeep()


class LeaseKeeper(Actor[Any]):
    def __init__(self, ledger: BillingLedger, me: Instance, live: dict[str, Billing], *,
                 checkpoint_s: float, lease_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.me = me
        self.live = live
        self.checkpoint_s = checkpoint_s
        self.lease_s = lease_s
        self.clock = clock

    async def tick(self) -> None:
        points = [p for b in list(self.live.values()) if (p := b.due_checkpoint()) is not None]
        await self.ledger.checkpoint(points)
        await self.ledger.renew_lease(self.me.id, self.clock() + self.lease_s)
        for billing in [b for b in self.live.values() if b.unsettled]:
            if (await billing.settle()).settlement is not None:
                self.live.pop(billing.request_id, None)

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.checkpoint_s)
            async with while_ledger_away("lease keeper"):
                await self.tick()


class HoldSweeper(Actor[Any]):
    def __init__(self, ledger: BillingLedger, live: Mapping[str, Any], me: Instance | None = None,
                 clock: Callable[[], float] = time.time, interval_s: float = 5.0,
                 claims: IdempotencyStore | None = None) -> None:
        self.ledger = ledger
        self.claims = claims
        self.live = live
        self.me = me
        self.clock = clock
        self.interval_s = interval_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Crash leftovers first, before traffic is accepted.
        await sweep_abandoned_holds(self.ledger, self.live, self.clock(), self.me,
                                        claims=self.claims)
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            async with while_ledger_away("hold sweeper"):
                await sweep_abandoned_holds(self.ledger, self.live, self.clock(), self.me,
                                            claims=self.claims)
