"""The ledger maintenance actor: background upkeep of the SQLite file.

Checkpoints the WAL into the main file every second from a worker thread, because the
inline connection that serves requests never checkpoints (an fsync would stall the
event loop). Expired-hold sweeping joins it when the money issue lands.
"""

from __future__ import annotations

from typing import Any

import trio

from actors.mailbox import Actor
from router.ledger.sqlite_db import SqliteDatabase

CHECKPOINT_INTERVAL_S = 1.0


class LedgerMaintenance(Actor[Any]):
    def __init__(self, db: SqliteDatabase, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.db = db
        self.interval_s = interval_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            await self.db.checkpoint()
