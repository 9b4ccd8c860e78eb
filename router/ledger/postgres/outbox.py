"""The outbox on PostgreSQL (docs/integration.md): the `outbox` table that settlements
write (a trigger on `usage` queues the derived events, the settlement statement a
`messages` event), claimed by the outbox actors of every instance on this database: a
claim takes each (sink, account) queue's head only, under `FOR UPDATE SKIP LOCKED`, so
two instances never ship one queue out of order."""

from __future__ import annotations

import sys
from typing import Any

from router.ledger.base import DERIVED_SINKS, OutboxEvent
from router.ledger.postgres.db import PostgresDatabase
from router.ledger.postgres.trio_pq import TrioConnection
from router.ledger.rows import usage_row_dict
from router.ledger.sql_outbox import SqlOutbox

_EVENT = ("event_id, sink, request_id, account, body, created_at, attempts, next_at, "
          "state, last_error")


def _event(row: tuple[Any, ...]) -> OutboxEvent:
    body = bytes(row[4]) if row[4] is not None else None
    return OutboxEvent(row[0], row[1], row[2], row[3], body, row[5], row[6], row[7], row[8],
                       row[9])


async def configure(conn: TrioConnection, sinks: frozenset[str]) -> None:
    wanted = sorted(s for s in sinks if s in DERIVED_SINKS)
    present = {r[0] for r in await conn.execute("SELECT sink FROM outbox_sinks")}
    if present == set(wanted):
        return
    async with conn.transaction():
        await conn.execute("DELETE FROM outbox_sinks")
        for sink in wanted:
            await conn.execute("INSERT INTO outbox_sinks (sink) VALUES (%s) "
                               "ON CONFLICT DO NOTHING", (sink,))


async def claim(conn: TrioConnection, now: float, limit: int,
                 lease_s: float) -> list[OutboxEvent]:
    rows = await conn.execute(
        f"UPDATE outbox SET next_at = %s WHERE seq IN ("
        "SELECT seq FROM outbox o WHERE state = 'pending' AND next_at <= %s AND "
        "seq = (SELECT min(seq) FROM outbox p WHERE p.sink = o.sink AND "
        "p.account = o.account AND p.state = 'pending') ORDER BY seq LIMIT %s "
        f"FOR UPDATE SKIP LOCKED) RETURNING {_EVENT}, seq",
        (now + lease_s, now, limit))
    return [_event(r) for r in sorted(rows, key=lambda r: r[-1])]


async def delivered(conn: TrioConnection, event_id: str, at: float) -> None:
    await conn.execute("DELETE FROM outbox WHERE event_id = %s AND state = 'pending'",
                       (event_id,))


async def retry_at(conn: TrioConnection, event_id: str, next_at: float, error: str) -> None:
    await conn.execute("UPDATE outbox SET attempts = attempts + 1, next_at = %s, "
                       "last_error = %s WHERE event_id = %s AND state = 'pending'",
                       (next_at, error, event_id))


async def park(conn: TrioConnection, event_id: str, error: str, at: float) -> None:
    await conn.execute("UPDATE outbox SET attempts = attempts + 1, state = 'dead', "
                       "last_error = %s, next_at = %s WHERE event_id = %s AND "
                       "state = 'pending'", (error, at, event_id))


async def listing(conn: TrioConnection, state: str | None, limit: int) -> list[OutboxEvent]:
    if state is None:
        rows = await conn.execute(f"SELECT {_EVENT} FROM outbox ORDER BY seq LIMIT %s",
                                  (limit,))
    else:
        rows = await conn.execute(f"SELECT {_EVENT} FROM outbox WHERE state = %s "
                                  "ORDER BY seq LIMIT %s", (state, limit))
    return [_event(r) for r in rows]


async def revive(conn: TrioConnection, event_id: str, now: float) -> bool:
    # A new sequence number: the event goes to the end of its queue.
    rows = await conn.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_at = %s, "
        "seq = nextval(pg_get_serial_sequence('outbox', 'seq')) "
        "WHERE event_id = %s AND state = 'dead' RETURNING seq", (now, event_id))
    return bool(rows)


async def pending(conn: TrioConnection) -> dict[str, int]:
    return {sink: int(count) for sink, count in await conn.execute(
        "SELECT sink, count(*) FROM outbox WHERE state = 'pending' GROUP BY sink")}


async def usage_row(conn: TrioConnection, request_id: str) -> dict[str, Any] | None:
    row = await conn.fetchone(
        "SELECT u.request_id, u.account, u.model, u.provider, u.input_tokens, "
        "u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens, "
        "u.reported, u.cost_micros, u.at, u.overrun_micros, u.recovered, h.created_at "
        "FROM usage u LEFT JOIN holds h ON h.request_id = u.request_id "
        "WHERE u.request_id = %s", (request_id,))
    return None if row is None else usage_row_dict(row)


class PostgresOutbox(SqlOutbox):
    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(db, sys.modules[__name__])
