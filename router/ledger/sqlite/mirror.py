"""The local side of an external credit service (`BILLING_BACKEND=http`): holds kept in
the SQLite ledger on top of the service's, so that crashes, checkpoints, settlement and
the outbox work as with any backend.

The service owns the balances; the local account mirrors what it last said. A mirrored
hold first moves the local balance to that figure (a `sync` entry, so balance and held
still add up from the entries), then takes the hold with the usual checks (a request
taken twice, a key's spend cap, and in `check_debit` mode what the service's balance
affords after this instance's own open holds and undelivered debits). A hold the service
refused is released without a usage row (and forgotten, so that the request may ask for
less); one whose outcome is unknown is released and queues a `billing` release, so the
service lets go of it if it had placed it.
"""

from __future__ import annotations

import sqlite3

from router.ledger.base import AccountState
from router.ledger.sqlite.db import SqliteDatabase, Transaction
from router.ledger.sqlite.ledger import _append, _ensure, _hold, _state

RELEASE_BODY = b'{"action":"release"}'


def _pending_debits(conn: sqlite3.Connection, account: str, read_at: float) -> int:
    """What this ledger captured for the account that a balance the service gave at
    `read_at` may not show: debits not delivered yet, or delivered since."""
    row = conn.execute("SELECT COALESCE(SUM(u.cost_micros), 0) FROM outbox o JOIN usage u "
                       "ON u.request_id = o.request_id WHERE o.sink = 'billing' AND "
                       "o.account = ? AND o.body IS NULL AND (o.state != 'sent' OR "
                       "o.next_at >= ?)", (account, read_at)).fetchone()
    return int(row[0])


def _mirror_hold(conn: sqlite3.Connection, account: str, request_id: str, amount: int,
                 deadline: float, at: float, key_id: str | None, key_cap: int | None,
                 owner: str | None, model: str, service_balance: int | None) -> AccountState:
    """`service_balance`: check_debit's balance (what it affords is checked here);
    None: the service placed the hold already (two_phase), mirror just enough."""
    with Transaction(conn):
        _ensure(conn, account, at)
        state = _state(conn, account)
        if service_balance is None:
            target = state.held + amount
        else:
            # `at`: the request's time, taken before the service's balance was read.
            target = max(service_balance - _pending_debits(conn, account, at), state.held)
        if target != state.balance:
            _append(conn, account, "sync", target - state.balance, 0, request_id,
                    "credit service", at)
        return _hold(conn, account, request_id, amount, deadline, at, key_id, key_cap, owner,
                     model)


def _release_hold(conn: sqlite3.Connection, request_id: str, at: float,
                  tell_service: bool) -> None:
    with Transaction(conn):
        row = conn.execute("SELECT account, amount, key_id FROM holds WHERE request_id = ? "
                           "AND settled = 0", (request_id,)).fetchone()
        if row is None:
            return
        account, amount, key_id = row
        if tell_service:  # the request ends here (503): its hold stays, settled at 0
            conn.execute("UPDATE holds SET settled = 1, captured = 0, released = ? "
                         "WHERE request_id = ?", (amount, request_id))
        else:  # refused: the pipeline may ask again for less, under the same request id
            conn.execute("DELETE FROM holds WHERE request_id = ?", (request_id,))
        if amount:
            _append(conn, account, "release", 0, -amount, request_id, None, at)
            _append(conn, account, "sync", -amount, 0, request_id, "credit service", at)
            if key_id is not None:
                conn.execute("UPDATE key_spend SET spent = spent - ? WHERE key_id = ?",
                             (amount, key_id))
        if tell_service:
            conn.execute("INSERT OR IGNORE INTO outbox (event_id, sink, request_id, account, "
                         "body, created_at, next_at) VALUES (?, 'billing', ?, ?, ?, ?, ?)",
                         (f"billing.{request_id}", request_id, account, RELEASE_BODY, at, at))


class SqliteMirror:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def hold(self, account: str, request_id: str, amount: int, deadline: float,
                   at: float, *, key_id: str | None, key_cap: int | None, owner: str | None,
                   model: str, service_balance: int | None) -> AccountState:
        return await self.db.run(_mirror_hold, account, request_id, amount, deadline, at,
                                 key_id, key_cap, owner, model, service_balance)

    async def release(self, request_id: str, at: float, *, tell_service: bool) -> None:
        """Let go of a local hold that is not going to be used (no usage row)."""
        await self.db.run(_release_hold, request_id, at, tell_service)

    async def local_figures(self, account: str, read_at: float) -> tuple[int, int]:
        """(this ledger's open holds, its debits a balance read at `read_at` may miss)."""
        return await self.db.run(_local_figures, account, read_at)


def _local_figures(conn: sqlite3.Connection, account: str,
                   read_at: float) -> tuple[int, int]:
    return _state(conn, account).held, _pending_debits(conn, account, read_at)
