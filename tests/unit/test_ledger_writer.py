"""The ledger writer (group commit) against the real SQLite ledger: concurrent writes
share transactions, a refused write changes nothing of the others, no account is ever
overspent, and a write whose caller stopped waiting still lands, exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from actors.ledger_writer import LedgerWriter, WritingLedger
from actors.supervisor import Supervisor
from router.errors import DuplicateRequest, InsufficientFunds
from router.ledger.base import UsageRecord
from router.ledger.sqlite import SqliteDatabase, SqliteLedger
from router.usage import Usage

HOLD = 1_000


async def _writer(nursery: trio.Nursery, ledger: SqliteLedger) -> tuple[WritingLedger,
                                                                         LedgerWriter]:
    actor = LedgerWriter(ledger)
    handle = await nursery.start(Supervisor("ledger-writer", lambda: actor,
                                            mailbox_size=1024).run)
    return WritingLedger(ledger, handle), actor


async def test_concurrent_holds_share_commits_and_never_overspend(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = SqliteLedger(db)
    await ledger.grant("alice", 50 * HOLD + 10, "test", 0.0)
    held: list[str] = []
    refused: list[str] = []

    async def hold(i: int) -> None:
        try:
            await writing.hold("alice", f"r{i}", HOLD, 9e9, 0.0, owner="me", model="m")
            held.append(f"r{i}")
        except InsufficientFunds:
            refused.append(f"r{i}")

    async with trio.open_nursery() as nursery:
        writing, actor = await _writer(nursery, ledger)
        async with trio.open_nursery() as requests:
            for i in range(200):
                requests.start_soon(hold, i)
        with pytest.raises(DuplicateRequest):  # the same id again: refused on its own
            await writing.hold("alice", held[0], HOLD, 9e9, 0.0)
        await writing.settle(held[0], 400, UsageRecord(held[0], "alice", "m", "p",
                                                       Usage(1, 1), 400, 0.0), 0.0)
        nursery.cancel_scope.cancel()
    state = await ledger.account("alice")
    assert len(held) == 50 and len(refused) == 150, "exactly what the balance covers"
    assert state.available == 10 + HOLD - 400 and state.available >= 0
    assert actor.batches < actor.writes, "concurrent writes shared transactions"
    entries = await ledger.entries("alice", 0, 10_000)
    assert sum(e.amount for e in entries) == state.balance
    assert sum(e.held_delta for e in entries) == state.held
    db.close()


class GatedLedger(SqliteLedger):
    """The real ledger, whose batches wait at a gate (a slow disk, a busy file)."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
        self.arrived, self.gate = trio.Event(), trio.Event()

    async def write_batch(self, writes: list[Any]) -> list[Any]:
        self.arrived.set()
        await self.gate.wait()
        return await super().write_batch(writes)


async def test_a_write_lands_even_when_its_caller_stops_waiting(tmp_path: Path) -> None:
    """Why a hold's caller shields its wait: the write is applied anyway."""
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = GatedLedger(db)
    await ledger.grant("alice", 10 * HOLD, "test", 0.0)
    async with trio.open_nursery() as nursery:
        writing, _ = await _writer(nursery, ledger)
        async with trio.open_nursery() as caller:
            caller.start_soon(writing.hold, "alice", "orphan", HOLD, 9e9, 0.0)
            await ledger.arrived.wait()  # the writer is committing it now
            caller.cancel_scope.cancel()  # and its caller goes away
        ledger.gate.set()
        await writing.renew_lease("nobody", 1.0)  # a later write: the first batch is done
        nursery.cancel_scope.cancel()
    assert [h[0] for h in await ledger.open_holds("alice")] == ["orphan"]
    assert (await ledger.account("alice")).held == HOLD
    db.close()
