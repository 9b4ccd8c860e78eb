"""The PostgreSQL ledger: the `LedgerModel` rules on the ledger of record that many router
instances share (billing, accounts, usage reports).

Holds, settlements and recoveries are the server-side functions of
router/ledger/postgres/schema.py, one round trip each; this module turns their outcomes
into the ledger's values and refusals. Everything else is one statement, or a short
transaction for the admin's grants.
"""

from __future__ import annotations

from typing import Any

import psycopg

from router.errors import (DuplicateRequest, InsufficientFunds, LedgerError, SpendCapReached,
                           UnknownRequest)
from router.ledger.base import (AccountState, Checkpoint, Entry, Instance, LeasedHold,
                                Settlement, UsageRecord, UsageTotal)
from router.ledger.export import row_dict
from router.ledger.listing import id_range, sql_where
from router.ledger.postgres.db import PostgresDatabase
from router.ledger.postgres.trio_pq import TrioConnection
from router.ledger.totals import check, edge
from router.usage import Usage

_USAGE_COLUMNS = ("request_id, account, model, provider, input_tokens, output_tokens, "
                  "cache_read_tokens, cache_write_tokens, reasoning_tokens, reported, "
                  "cost_micros, at, overrun_micros, recovered")


async def _state(conn: TrioConnection, account: str) -> AccountState:
    row = await conn.fetchone("SELECT balance, held FROM accounts WHERE id = %s",
                              (account,))
    return AccountState(account, row[0], row[1]) if row else AccountState(account, 0, 0)


async def _grant(conn: TrioConnection, account: str, amount: int, reason: str | None,
                 at: float) -> AccountState:
    async with conn.transaction():
        await conn.execute("INSERT INTO accounts (id, created_at) VALUES (%s, %s) "
                           "ON CONFLICT (id) DO NOTHING", (account, at))
        # The row lock makes the check and the change one step for every instance.
        row = await conn.fetchone("SELECT balance, held FROM accounts WHERE id = %s "
                                  "FOR UPDATE", (account,))
        assert row is not None  # inserted above
        balance, held = row
        if amount < 0 and balance - held + amount < 0:
            raise InsufficientFunds(-amount, balance - held)
        await _append(conn, account, "grant" if amount > 0 else "adjust", amount, reason,
                      at)
        return await _state(conn, account)


async def _append(conn: TrioConnection, account: str, kind: str, amount: int,
                  reason: str | None, at: float) -> None:
    await conn.execute("WITH a AS (UPDATE accounts SET balance = balance + %s "
                       "WHERE id = %s RETURNING balance) INSERT INTO entries (account, kind, "
                       "amount, held_delta, balance_after, reason, at) "
                       "SELECT %s, %s, %s, 0, a.balance, %s, %s FROM a",
                       (amount, account, account, kind, amount, reason, at))


async def _open_account(conn: TrioConnection, account: str, starting_grant: int,
                        at: float) -> bool:
    async with conn.transaction():
        await conn.execute("INSERT INTO accounts (id, created_at) VALUES (%s, %s) "
                           "ON CONFLICT (id) DO NOTHING", (account, at))
        created = conn.rowcount == 1
        if created and starting_grant > 0:
            await _append(conn, account, "grant", starting_grant, "starting grant", at)
        return created


async def _hold(conn: TrioConnection, account: str, request_id: str, amount: int,
                deadline: float, at: float, key_id: str | None, key_cap: int | None,
                owner: str | None, model: str) -> AccountState:
    try:
        outcome, balance, held, room = await conn.fetchone(
            "SELECT * FROM aura_hold(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (account, request_id, amount, deadline, at, key_id, key_cap, owner,
             model))
    except psycopg.errors.UniqueViolation:  # the same request id, held at the same moment
        raise DuplicateRequest(request_id) from None
    if outcome == "duplicate":
        raise DuplicateRequest(request_id)
    if outcome == "insufficient":
        raise InsufficientFunds(amount, room)
    if outcome == "cap":
        raise SpendCapReached(amount, room)
    return AccountState(account, balance, held)


def _settlement(request_id: str, row: tuple[Any, ...]) -> Settlement:
    outcome, captured, released, balance, held = row
    if outcome == "unknown":
        raise UnknownRequest(request_id)
    return Settlement(request_id, captured, released, balance, held,
                      replay=outcome == "replay")


_SETTLE_CALL = "aura_settle(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_SETTLE = f"SELECT * FROM {_SETTLE_CALL}"
# With stored messages: the same call, and the `messages` event queued by the same
# statement (one transaction) unless the settlement was a replay.
_SETTLE_WITH_TRANSCRIPT = (
    f"WITH s AS (SELECT * FROM {_SETTLE_CALL}), m AS ("
    "INSERT INTO outbox (event_id, sink, request_id, account, body, created_at, next_at) "
    "SELECT %s, 'messages', %s, h.account, %s, %s, %s FROM s, holds h "
    "WHERE s.outcome = 'ok' AND h.request_id = %s ON CONFLICT (event_id) DO NOTHING) "
    "SELECT outcome, captured, released, balance, held FROM s")


async def _settle(conn: TrioConnection, request_id: str, cost: int, record: UsageRecord,
                  at: float, transcript: bytes | None) -> Settlement:
    u = record.usage
    args = (request_id, cost, record.model, record.provider, u.input_tokens,
            u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens,
            u.reported, record.at, record.recovered, at)
    if transcript is None:
        return _settlement(request_id, await conn.fetchone(_SETTLE, args))
    return _settlement(request_id, await conn.fetchone(_SETTLE_WITH_TRANSCRIPT, (
        *args, f"messages.{request_id}", request_id, transcript, record.at, record.at,
        request_id)))


async def _recover(conn: TrioConnection, request_id: str, at: float) -> Settlement:
    return _settlement(request_id, await conn.fetchone("SELECT * FROM aura_recover(%s, %s)",
                                                       (request_id, at)))


async def _checkpoint(conn: TrioConnection, points: list[Checkpoint]) -> None:
    # One statement for the batch: never lowers a figure, never touches a settled hold.
    await conn.execute(
        "UPDATE holds h SET provider = p.provider, ck_input = p.i, ck_output = p.o, "
        "ck_cache_read = p.cr, ck_cache_write = p.cw, ck_reasoning = p.r, ck_cost = p.c, "
        "ck_at = p.at FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], "
        "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[]) "
        "AS p(rid, provider, i, o, cr, cw, r, c, at) "
        "WHERE h.request_id = p.rid AND NOT h.settled AND h.ck_cost <= p.c",
        ([p.request_id for p in points], [p.provider for p in points],
         [p.usage.input_tokens for p in points], [p.usage.output_tokens for p in points],
         [p.usage.cache_read_tokens for p in points],
         [p.usage.cache_write_tokens for p in points],
         [p.usage.reasoning_tokens for p in points], [p.cost_micros for p in points],
         [p.at for p in points]))


async def _leased_holds(conn: TrioConnection) -> list[LeasedHold]:
    return [LeasedHold(*row) for row in await conn.execute(
        "SELECT request_id, owner, deadline FROM holds WHERE NOT settled ORDER BY seq")]


async def _register_instance(conn: TrioConnection, instance: Instance) -> None:
    await conn.execute("INSERT INTO instances (id, host, pid, started_at, lease_until) "
                       "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                       "host = excluded.host, pid = excluded.pid, "
                       "started_at = excluded.started_at, lease_until = excluded.lease_until",
                       (instance.id, instance.host, instance.pid, instance.started_at,
                        instance.lease_until))


async def _renew_lease(conn: TrioConnection, instance_id: str, until: float) -> None:
    await conn.execute("UPDATE instances SET lease_until = %s WHERE id = %s",
                       (until, instance_id))


async def _instances(conn: TrioConnection) -> list[Instance]:
    return [Instance(*row) for row in await conn.execute(
        "SELECT id, host, pid, started_at, lease_until FROM instances ORDER BY id")]


async def _key_spent(conn: TrioConnection, key_id: str) -> int:
    row = await conn.fetchone("SELECT spent FROM key_spend WHERE key_id = %s", (key_id,))
    return int(row[0]) if row else 0


async def _entries(conn: TrioConnection, account: str, after: int, limit: int) -> list[Entry]:
    return [Entry(*row) for row in await conn.execute(
        "SELECT seq, account, kind, amount, held_delta, request_id, balance_after, reason, at "
        "FROM entries WHERE account = %s AND seq > %s ORDER BY seq LIMIT %s",
        (account, after, limit))]


async def _recent_usage(conn: TrioConnection, account: str, limit: int) -> list[UsageRecord]:
    rows = await conn.execute(f"SELECT {_USAGE_COLUMNS} FROM usage WHERE account = %s "
                              "ORDER BY at DESC LIMIT %s", (account, limit))
    return [UsageRecord(r[0], r[1], r[2], r[3], Usage(r[4], r[5], r[6], r[7], r[8], r[9]),
                        r[10], r[11], r[12], r[13]) for r in rows]


async def _usage_rows(conn: TrioConnection, account: str | None, since: float | None,
                      until: float | None, limit: int) -> list[dict[str, Any]]:
    clauses, params = [], []
    for clause, value in (("account = %s", account), ("at >= %s", since),
                          ("at < %s", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = await conn.execute(f"SELECT {_USAGE_COLUMNS} FROM usage{where} "
                              "ORDER BY at, request_id LIMIT %s", (*params, limit))
    return [row_dict(r) for r in rows]


# One statement: the window's range of `at` (its first and last edges, router/ledger/
# totals.py) off the covering index `usage_totals` (schema.py, step 5), each row's
# bucket the floor of a float8 quotient (exact: totals.py), hashed into groups by bucket
# and model. SUM of a BIGINT is a NUMERIC: read back as an exact Decimal and turned into
# an int, never a float.
_TOTALS = (
    "SELECT floor((at - %s::float8) / %s::float8)::bigint, model, count(*), "
    "count(*) FILTER (WHERE cost_micros > 0), sum(cost_micros), sum(input_tokens), "
    "sum(output_tokens) FROM usage WHERE at >= %s::float8 AND at < %s::float8 "
    "GROUP BY 1, 2")


async def _usage_totals(conn: TrioConnection, since: float, bucket_s: int,
                        buckets: int) -> list[UsageTotal]:
    since = float(since)
    end = edge(since, bucket_s * buckets)
    rows = await conn.execute(_TOTALS, (since, float(bucket_s), since, end))
    return [UsageTotal(int(k), model, int(calls), int(billed), int(cost), int(inputs),
                       int(outputs))
            for k, model, calls, billed, cost, inputs, outputs in rows]


async def _open_holds(conn: TrioConnection,
                      account: str | None) -> list[tuple[str, str, int, float]]:
    sql = "SELECT request_id, account, amount, deadline FROM holds WHERE NOT settled"
    if account is None:
        rows = await conn.execute(sql + " ORDER BY seq")
    else:
        rows = await conn.execute(sql + " AND account = %s ORDER BY seq", (account,))
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def _spent(conn: TrioConnection, account: str) -> int:
    row = await conn.fetchone("SELECT spent FROM accounts WHERE id = %s", (account,))
    return int(row[0]) if row else 0


async def _exists(conn: TrioConnection, account: str) -> bool:
    return await conn.fetchone("SELECT 1 FROM accounts WHERE id = %s",
                               (account,)) is not None


async def _listing(conn: TrioConnection, prefix: str | None, after: str | None,
                   limit: int) -> list[AccountState]:
    """One range of the "C"-collated index of ids (schema step 4): code point order
    whatever the database's collation. A PostgreSQL text holds no NUL, so no id starts
    with a prefix that has one, and the ids after a cursor that has one are those after
    what precedes its first NUL."""
    if limit < 1 or (prefix is not None and "\0" in prefix):
        return []
    if after is not None:
        after = after.partition("\0")[0]
    where, params = sql_where(id_range(prefix, after), 'id COLLATE "C"', "%s")
    rows = await conn.execute(f"SELECT id, balance, held FROM accounts{where} "
                              'ORDER BY id COLLATE "C" LIMIT %s', (*params, limit))
    return [AccountState(r[0], r[1], r[2]) for r in rows]


class PostgresLedger:
    """`BillingLedger`, `AccountBook` and `UsageReports` over a `PostgresDatabase`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def grant(self, account: str, amount: int, reason: str | None,
                    at: float) -> AccountState:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise LedgerError("amount must be a non-zero integer number of micro-USD")
        return await self.db.run(_grant, account, amount, reason, at)

    async def open_account(self, account: str, starting_grant: int, at: float) -> bool:
        return await self.db.run(_open_account, account, starting_grant, at)

    async def account(self, account: str) -> AccountState:
        return await self.db.run(_state, account)

    async def hold(self, account: str, request_id: str, amount: int, deadline: float,
                   at: float, *, key_id: str | None = None, key_cap: int | None = None,
                   owner: str | None = None, model: str = "") -> AccountState:
        if amount < 0:
            raise LedgerError("a hold cannot be negative")
        return await self.db.run(_hold, account, request_id, amount, deadline, at, key_id,
                                 key_cap, owner, model)

    async def checkpoint(self, points: list[Checkpoint]) -> None:
        if points:
            await self.db.run(_checkpoint, points)

    async def recover(self, request_id: str, at: float) -> Settlement:
        return await self.db.run(_recover, request_id, at)

    async def leased_holds(self) -> list[LeasedHold]:
        return await self.db.run(_leased_holds)

    async def register_instance(self, instance: Instance) -> None:
        await self.db.run(_register_instance, instance)

    async def renew_lease(self, instance_id: str, until: float) -> None:
        await self.db.run(_renew_lease, instance_id, until)

    async def instances(self) -> list[Instance]:
        return await self.db.run(_instances)

    async def key_spent(self, key_id: str) -> int:
        return await self.db.run(_key_spent, key_id)

    async def settle(self, request_id: str, cost_micros: int, record: UsageRecord,
                     at: float, transcript: bytes | None = None) -> Settlement:
        if cost_micros < 0:
            raise LedgerError("a cost cannot be negative")
        return await self.db.run(_settle, request_id, cost_micros, record, at, transcript)

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
        return await self.db.run(_usage_rows, account, since, until, limit)

    async def usage_totals(self, since: float, bucket_s: int,
                           buckets: int) -> list[UsageTotal]:
        check(since, bucket_s, buckets)
        return await self.db.run(_usage_totals, since, bucket_s, buckets)

    async def exists(self, account: str) -> bool:
        return await self.db.run(_exists, account)

    async def listing(self, prefix: str | None, after: str | None,
                      limit: int) -> list[AccountState]:
        return await self.db.run(_listing, prefix, after, limit)

    async def ping(self) -> bool:
        return await self.db.ping()
