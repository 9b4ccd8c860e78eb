"""Ledger upkeep actors, each with one job, started under supervisors in the root nursery.

- `WalCheckpointer` moves the SQLite WAL into the main file from a worker thread, because
  the inline connection that serves requests never checkpoints (an fsync would stall
  the event loop).
- `HoldSweeper` releases expired holds (I2): an open hold past its deadline whose request
  is not live in this process (a crash, a settlement that missed its own deadline) is
  released at cost 0. Holds of live requests are left to their own settlement, however
  long they stream. Settling crash leftovers from a checkpoint of streamed usage (I7)
  comes later.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Collection

import trio

from actors.mailbox import Actor
from router.ledger.base import Ledger, UsageRecord
from router.ledger.sqlite_db import SqliteDatabase
from router.usage import Usage

CHECKPOINT_INTERVAL_S = 1.0
SWEEP_INTERVAL_S = 30.0
log = logging.getLogger("aura.sweeper")


async def sweep_expired_holds(ledger: Ledger, live: Collection[str], now: float) -> int:
    """Release every open hold past its deadline that no live request owns; how many."""
    swept = 0
    for request_id, account, _amount, deadline in await ledger.open_holds():
        if deadline >= now or request_id in live:
            continue
        record = UsageRecord(request_id, account, "", "sweeper", Usage(), 0, now)
        settlement = await ledger.settle(request_id, 0, record, now)
        if not settlement.replay:
            swept += 1
            log.warning("released expired hold %s (%d micro-USD)", request_id,
                        settlement.released)
    return swept


class WalCheckpointer(Actor[Any]):
    def __init__(self, db: SqliteDatabase, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.db = db
        self.interval_s = interval_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            await self.db.checkpoint()


class HoldSweeper(Actor[Any]):
    def __init__(self, ledger: Ledger, live: Collection[str],
                 clock: Callable[[], float] = time.time,
                 interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.ledger = ledger
        self.live = live
        self.clock = clock
        self.interval_s = interval_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await sweep_expired_holds(self.ledger, self.live, self.clock())  # crash leftovers
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            await sweep_expired_holds(self.ledger, self.live, self.clock())
