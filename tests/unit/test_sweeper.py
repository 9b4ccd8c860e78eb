"""Expired holds are released by the maintenance actor (I2); live requests' holds are not."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from actors.services.ledger_maintenance import HoldSweeper
from actors.supervisor import Supervisor
from router.ledger.sqlite import SqliteDatabase, SqliteLedger

SWEEP_INTERVAL_S = 5.0


async def test_expired_holds_are_released_and_live_ones_kept(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    ledger = SqliteLedger(db)
    wall = [1_000.0]
    await ledger.grant("alice", 1_000_000, "test", wall[0])
    await ledger.hold("alice", "crashed-before", 100_000, 900.0, 800.0)   # already expired
    await ledger.hold("alice", "expires-later", 200_000, 1_010.0, wall[0])
    await ledger.hold("alice", "still-streaming", 300_000, 1_010.0, wall[0])
    live = {"still-streaming"}
    actor = HoldSweeper(ledger, live, clock=lambda: wall[0], interval_s=SWEEP_INTERVAL_S)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("maintenance", lambda: actor).run)
        # crash leftovers go at start-up, before the server takes traffic
        assert (await ledger.account("alice")).held == 500_000
        wall[0] = 1_020.0  # both later holds are now past their deadline
        await trio.sleep(SWEEP_INTERVAL_S - 1)
        assert (await ledger.account("alice")).held == 500_000, "not before the next sweep"
        await trio.sleep(2)
        state = await ledger.account("alice")
        assert state.held == 300_000, "only the live request keeps its hold"
        assert state.balance == 1_000_000, "released holds cost nothing"
        assert [h[0] for h in await ledger.open_holds()] == ["still-streaming"]
        nursery.cancel_scope.cancel()
    db.close()
