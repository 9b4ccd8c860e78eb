"""The SQLite ledger: the `LedgerModel` rules as transactions on one file (billing,
accounts, usage reports).

Each hold is one `BEGIN IMMEDIATE` transaction that checks `available` and writes the
hold, so no two requests can both spend the same micro-USD (I3). Settlement is keyed by
request id and marks the hold settled in the same transaction, so a replay returns the
first result instead of billing twice (I4).
"""

from __future__ import annotations

import sqlite3

from typing import Any, Callable, TypeVar

import trio

from router.errors import (DuplicateRequest, InsufficientFunds, LedgerError, SpendCapReached,
                           UnknownRequest)
from router.ledger.base import (AccountState, Checkpoint, Entry, Instance, LeasedHold,
                                Settlement, UsageRecord, UsageTotal)
from router.ledger.listing import id_range, sql_where
from router.ledger.sqlite.db import SqliteDatabase, Transaction
from router.ledger.sqlite.export import read_usage_rows
from router.ledger.sqlite.outbox import queue_transcript
from router.ledger.sqlite.totals import read_usage_totals
from router.ledger.totals import check
from router.usage import Usage

T = TypeVar("T")


def _state(conn: sqlite3.Connection, account: str) -> AccountState:
    row = conn.execute("SELECT balance, held FROM accounts WHERE id = ?", (account,)).fetchone()
    return AccountState(account, row[0], row[1]) if row else AccountState(account, 0, 0)


def _ensure(conn: sqlite3.Connection, account: str, at: float) -> None:
    conn.execute("INSERT OR IGNORE INTO accounts (id, balance, held, created_at) "
                 "VALUES (?, 0, 0, ?)", (account, at))


def _append(conn: sqlite3.Connection, account: str, kind: str, amount: int, held_delta: int,
            request_id: str | None, reason: str | None, at: float) -> None:
    row = conn.execute("UPDATE accounts SET balance = balance + ?, held = held + ? "
                       "WHERE id = ? RETURNING balance", (amount, held_delta, account)).fetchone()
    conn.execute("INSERT INTO entries (account, kind, amount, held_delta, request_id, "
                 "balance_after, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (account, kind, amount, held_delta, request_id, row[0], reason, at))


def _grant(conn: sqlite3.Connection, account: str, amount: int, reason: str | None,
           at: float) -> AccountState:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise LedgerError("amount must be a non-zero integer number of micro-USD")
    with Transaction(conn):
        _ensure(conn, account, at)
        state = _state(conn, account)
        if amount < 0 and state.available + amount < 0:
            raise InsufficientFunds(-amount, state.available)
        _append(conn, account, "grant" if amount > 0 else "adjust", amount, 0, None, reason, at)
        return _state(conn, account)


def _open_account(conn: sqlite3.Connection, account: str, starting_grant: int,
                  at: float) -> bool:
    """Create the account if it is new, with its starting grant; True if it was new.

    One transaction: concurrent first requests (in this or another process) grant once."""
    with Transaction(conn):
        created = conn.execute("INSERT OR IGNORE INTO accounts (id, balance, held, created_at) "
                               "VALUES (?, 0, 0, ?)", (account, at)).rowcount == 1
        if created and starting_grant > 0:
            _append(conn, account, "grant", starting_grant, 0, None, "starting grant", at)
        return created


def _key_spent(conn: sqlite3.Connection, key_id: str) -> int:
    row = conn.execute("SELECT spent FROM key_spend WHERE key_id = ?", (key_id,)).fetchone()
    return int(row[0]) if row else 0


def _hold(conn: sqlite3.Connection, account: str, request_id: str, amount: int,
          deadline: float, at: float, key_id: str | None = None,
          key_cap: int | None = None, owner: str | None = None,
          model: str = "") -> AccountState:
    if amount < 0:
        raise LedgerError("a hold cannot be negative")
    if conn.execute("SELECT 1 FROM holds WHERE request_id = ?", (request_id,)).fetchone():
        raise DuplicateRequest(request_id)
    state = _state(conn, account)
    if amount > state.available:
        raise InsufficientFunds(amount, state.available)
    if key_id is not None and key_cap is not None:
        remaining = key_cap - _key_spent(conn, key_id)
        if amount > remaining:
            raise SpendCapReached(amount, max(remaining, 0))
    _ensure(conn, account, at)
    conn.execute("INSERT INTO holds (request_id, account, amount, deadline, created_at, "
                 "key_id, owner, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (request_id, account, amount, deadline, at, key_id, owner, model))
    if key_id is not None and key_cap is not None:  # captured + held under the key's cap
        conn.execute("INSERT INTO key_spend (key_id, spent) VALUES (?, ?) ON CONFLICT "
                     "(key_id) DO UPDATE SET spent = spent + excluded.spent",
                     (key_id, amount))
    _append(conn, account, "hold", 0, amount, request_id, None, at)
    return _state(conn, account)


def _settle(conn: sqlite3.Connection, request_id: str, cost: int, record: UsageRecord,
            at: float, transcript: bytes | None = None) -> Settlement:
    if cost < 0:
        raise LedgerError("a cost cannot be negative")
    row = conn.execute("SELECT account, amount, settled, captured, released, key_id "
                       "FROM holds WHERE request_id = ?", (request_id,)).fetchone()
    if row is None:
        raise UnknownRequest(request_id)
    account, amount, settled, captured, released, key_id = row
    if settled:
        state = _state(conn, account)
        return Settlement(request_id, captured, released, state.balance, state.held,
                          replay=True)
    captured = min(cost, amount)
    released = amount - captured
    if captured:
        _append(conn, account, "capture", -captured, -captured, request_id, None, at)
        conn.execute("UPDATE accounts SET spent = spent + ? WHERE id = ?", (captured, account))
    if released:
        _append(conn, account, "release", 0, -released, request_id, None, at)
        if key_id is not None:
            conn.execute("UPDATE key_spend SET spent = spent - ? WHERE key_id = ?",
                         (released, key_id))
    conn.execute("UPDATE holds SET settled = 1, captured = ?, released = ? "
                 "WHERE request_id = ?", (captured, released, request_id))
    u = record.usage
    conn.execute("INSERT INTO usage (request_id, account, model, provider, input_tokens, "
                 "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
                 "reported, cost_micros, at, overrun_micros, recovered) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (request_id, account, record.model, record.provider, u.input_tokens,
                  u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                  u.reasoning_tokens, int(u.reported), captured, record.at,
                  cost - captured, int(record.recovered)))
    if transcript is not None:
        queue_transcript(conn, request_id, account, transcript, record.at)
    state = _state(conn, account)
    return Settlement(request_id, captured, released, state.balance, state.held)


def _checkpoint(conn: sqlite3.Connection, points: list[Checkpoint]) -> None:
    conn.executemany(
        "UPDATE holds SET provider = ?, ck_input = ?, ck_output = ?, ck_cache_read = ?, "
        "ck_cache_write = ?, ck_reasoning = ?, ck_cost = ?, ck_at = ? "
        "WHERE request_id = ? AND settled = 0 AND ck_cost <= ?",
        [(p.provider, p.usage.input_tokens, p.usage.output_tokens,
          p.usage.cache_read_tokens, p.usage.cache_write_tokens, p.usage.reasoning_tokens,
          p.cost_micros, p.at, p.request_id, p.cost_micros) for p in points])


def _recover(conn: sqlite3.Connection, request_id: str, at: float) -> Settlement:
    row = conn.execute("SELECT account, model, provider, ck_input, ck_output, "
                       "ck_cache_read, ck_cache_write, ck_reasoning, ck_cost, ck_at "
                       "FROM holds WHERE request_id = ?", (request_id,)).fetchone()
    if row is None:
        raise UnknownRequest(request_id)
    account, model, provider, *tokens, cost, checkpointed_at = row
    usage, provider = (Usage(*tokens), provider) if checkpointed_at is not None \
        else (Usage(), "")
    record = UsageRecord(request_id, account, model, provider, usage, cost, at,
                         recovered=True)
    settlement = _settle(conn, request_id, cost, record, at)
    if not settlement.replay:  # the request is dead: its Idempotency-Key is free again
        conn.execute("DELETE FROM idempotency WHERE request_id = ? AND done = 0",
                     (request_id,))
    return settlement


def _leased_holds(conn: sqlite3.Connection) -> list[LeasedHold]:
    return [LeasedHold(*row) for row in conn.execute(
        "SELECT request_id, owner, deadline FROM holds WHERE settled = 0 ORDER BY rowid")]


def _register_instance(conn: sqlite3.Connection, instance: Instance) -> None:
    conn.execute("INSERT OR REPLACE INTO instances (id, host, pid, started_at, lease_until) "
                 "VALUES (?, ?, ?, ?, ?)", (instance.id, instance.host, instance.pid,
                                            instance.started_at, instance.lease_until))


def _renew_lease(conn: sqlite3.Connection, instance_id: str, until: float) -> None:
    conn.execute("UPDATE instances SET lease_until = ? WHERE id = ?", (until, instance_id))


def _in_transaction(conn: sqlite3.Connection, write: Callable[..., T], *args: Any) -> T:
    """Run one write (the functions above open no transaction of their own)."""
    with Transaction(conn):
        return write(conn, *args)


def _instances(conn: sqlite3.Connection) -> list[Instance]:
    return [Instance(*row) for row in conn.execute(
        "SELECT id, host, pid, started_at, lease_until FROM instances ORDER BY id")]


def _entries(conn: sqlite3.Connection, account: str, after: int, limit: int) -> list[Entry]:
    rows = conn.execute("SELECT seq, account, kind, amount, held_delta, request_id, "
                        "balance_after, reason, at FROM entries WHERE account = ? AND seq > ? "
                        "ORDER BY seq LIMIT ?", (account, after, limit)).fetchall()
    return [Entry(*row) for row in rows]


def _recent_usage(conn: sqlite3.Connection, account: str, limit: int) -> list[UsageRecord]:
    rows = conn.execute("SELECT request_id, account, model, provider, input_tokens, "
                        "output_tokens, cache_read_tokens, cache_write_tokens, "
                        "reasoning_tokens, reported, cost_micros, at, overrun_micros, "
                        "recovered FROM usage WHERE account = ? ORDER BY at DESC LIMIT ?",
                        (account, limit)).fetchall()
    return [UsageRecord(r[0], r[1], r[2], r[3], Usage(r[4], r[5], r[6], r[7], r[8], bool(r[9])),
                        r[10], r[11], r[12], bool(r[13])) for r in rows]


def _open_holds(conn: sqlite3.Connection,
                account: str | None) -> list[tuple[str, str, int, float]]:
    sql = "SELECT request_id, account, amount, deadline FROM holds WHERE settled = 0"
    if account is None:
        return conn.execute(sql + " ORDER BY rowid").fetchall()
    return conn.execute(sql + " AND account = ? ORDER BY rowid", (account,)).fetchall()


def _spent(conn: sqlite3.Connection, account: str) -> int:
    row = conn.execute("SELECT spent FROM accounts WHERE id = ?", (account,)).fetchone()
    return int(row[0]) if row else 0


def _exists(conn: sqlite3.Connection, account: str) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account,)).fetchone() is not None


def _listing(conn: sqlite3.Connection, prefix: str | None, after: str | None,
             limit: int) -> list[AccountState]:
    """One range of the primary key (router/ledger/listing.py): SQLite compares TEXT
    with its BINARY collation, the byte order of UTF-8, i.e. code point order."""
    if limit < 1:
        return []
    where, params = sql_where(id_range(prefix, after), "id", "?")
    rows = conn.execute(f"SELECT id, balance, held FROM accounts{where} ORDER BY id LIMIT ?",
                        (*params, limit)).fetchall()
    return [AccountState(*row) for row in rows]


def _ping(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1").fetchone() == (1,)


class SqliteLedger:
    """`BillingLedger`, `AccountBook` and `UsageReports` over a `SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def grant(self, account: str, amount: int, reason: str | None,
                    at: float) -> AccountState:
        return await self.db.run(_grant, account, amount, reason, at)

    async def open_account(self, account: str, starting_grant: int, at: float) -> bool:
        return await self.db.run(_open_account, account, starting_grant, at)

    async def account(self, account: str) -> AccountState:
        return await self.db.run(_state, account)

    async def hold(self, account: str, request_id: str, amount: int, deadline: float,
                   at: float, *, key_id: str | None = None, key_cap: int | None = None,
                   owner: str | None = None, model: str = "") -> AccountState:
        return await self.db.run(_in_transaction, _hold, account, request_id, amount,
                                 deadline, at, key_id, key_cap, owner, model)

    async def checkpoint(self, points: list[Checkpoint]) -> None:
        if points:
            await self.db.run(_in_transaction, _checkpoint, points)

    async def recover(self, request_id: str, at: float) -> Settlement:
        return await self.db.run(_in_transaction, _recover, request_id, at)

    async def leased_holds(self) -> list[LeasedHold]:
        return await self.db.run(_leased_holds)

    async def register_instance(self, instance: Instance) -> None:
        await self.db.run(_in_transaction, _register_instance, instance)

    async def renew_lease(self, instance_id: str, until: float) -> None:
        await self.db.run(_in_transaction, _renew_lease, instance_id, until)

    async def instances(self) -> list[Instance]:
        return await self.db.run(_instances)

    async def key_spent(self, key_id: str) -> int:
        return await self.db.run(_key_spent, key_id)

    async def settle(self, request_id: str, cost_micros: int, record: UsageRecord,
                     at: float, transcript: bytes | None = None) -> Settlement:
        return await self.db.run(_in_transaction, _settle, request_id, cost_micros, record,
                                 at, transcript)

    async def entries(self, account: str, after: int = 0, limit: int = 100) -> list[Entry]:
        return await self.db.run(_entries, account, after, limit)

    async def recent_usage(self, account: str, limit: int = 20) -> list[UsageRecord]:
        return await self.db.run(_recent_usage, account, limit)

    async def open_holds(self, account: str | None = None) -> list[tuple[str, str, int, float]]:
        return await self.db.run(_open_holds, account)

    async def spent(self, account: str) -> int:
        return await self.db.run(_spent, account)

    async def usage_rows(self, account: str | None, since: float | None,
                         until: float | None, limit: int) -> list[dict[str, Any]]:
        # An export may read 100 000 rows (~0.6 s): on a read-only connection of its own
        # in a worker thread, not inline where it would stall every stream.
        return await trio.to_thread.run_sync(read_usage_rows, self.db.path, account, since,
                                             until, limit)

    async def usage_totals(self, since: float, bucket_s: int,
                           buckets: int) -> list[UsageTotal]:
        check(since, bucket_s, buckets)
        return await trio.to_thread.run_sync(read_usage_totals, self.db.path, since,
                                             bucket_s, buckets)

    async def exists(self, account: str) -> bool:
        return await self.db.run(_exists, account)

    async def listing(self, prefix: str | None, after: str | None,
                      limit: int) -> list[AccountState]:
        return await self.db.run(_listing, prefix, after, limit)

    async def ping(self) -> bool:
        return await self.db.run(_ping)
