"""The outbox on SQLite (docs/integration.md): the `outbox` table that settlements write
(a trigger on `usage` queues the derived events, `_settle` a `messages` event), claimed
and retired by the outbox actor of any process sharing the file."""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from router.ledger.base import DERIVED_SINKS, OutboxEvent
from router.ledger.rows import usage_row_dict
from router.ledger.sql_outbox import SqlOutbox
from router.ledger.sqlite.db import SqliteDatabase, Transaction

_EVENT = ("event_id, sink, request_id, account, body, created_at, attempts, next_at, "
          "state, last_error")


def queue_transcript(conn: sqlite3.Connection, request_id: str, account: str,
                     transcript: bytes, at: float) -> None:
    """Inside the settlement's transaction: the stored messages of the request."""
    conn.execute("INSERT OR IGNORE INTO outbox (event_id, sink, request_id, account, body, "
                 "created_at, next_at) VALUES (?, 'messages', ?, ?, ?, ?, ?)",
                 (f"messages.{request_id}", request_id, account, transcript, at, at))


def _event(row: tuple[Any, ...]) -> OutboxEvent:
    return OutboxEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                       row[8], row[9])


def configure(conn: sqlite3.Connection, sinks: frozenset[str]) -> None:
    with Transaction(conn):
        wanted = sorted(s for s in sinks if s in DERIVED_SINKS)
        present = {r[0] for r in conn.execute("SELECT sink FROM outbox_sinks")}
        if present != set(wanted):
            conn.execute("DELETE FROM outbox_sinks")
            conn.executemany("INSERT INTO outbox_sinks (sink) VALUES (?)",
                             [(s,) for s in wanted])


def claim(conn: sqlite3.Connection, now: float, limit: int,
           lease_s: float) -> list[OutboxEvent]:
    with Transaction(conn):
        rows = conn.execute(
            f"SELECT {_EVENT} FROM outbox o WHERE state = 'pending' AND next_at <= ? AND "
            "seq = (SELECT MIN(seq) FROM outbox p WHERE p.sink = o.sink AND "
            "p.account = o.account AND p.state = 'pending') ORDER BY seq LIMIT ?",
            (now, limit)).fetchall()
        conn.executemany("UPDATE outbox SET next_at = ? WHERE event_id = ?",
                         [(now + lease_s, r[0]) for r in rows])
    return [_event(r) for r in rows]


SENT_KEPT_S = 600.0


def delivered(conn: sqlite3.Connection, event_id: str, at: float) -> None:
    # A delivered debit is kept a while: a check_debit hold that read the service's
    # balance before it arrived there must still count it (router.ledger.sqlite.mirror).
    with Transaction(conn):
        conn.execute("UPDATE outbox SET state = 'sent', next_at = ? WHERE event_id = ? AND "
                     "state = 'pending' AND sink = 'billing' AND body IS NULL", (at, event_id))
        conn.execute("DELETE FROM outbox WHERE event_id = ? AND state = 'pending'",
                     (event_id,))
        conn.execute("DELETE FROM outbox WHERE state = 'sent' AND next_at < ?",
                     (at - SENT_KEPT_S,))


def retry_at(conn: sqlite3.Connection, event_id: str, next_at: float, error: str) -> None:
    with Transaction(conn):
        conn.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, "
                     "last_error = ? WHERE event_id = ? AND state = 'pending'",
                     (next_at, error, event_id))


def park(conn: sqlite3.Connection, event_id: str, error: str, at: float) -> None:
    with Transaction(conn):
        conn.execute("UPDATE outbox SET attempts = attempts + 1, state = 'dead', "
                     "last_error = ?, next_at = ? WHERE event_id = ? AND state = 'pending'",
                     (error, at, event_id))


def listing(conn: sqlite3.Connection, state: str | None, limit: int) -> list[OutboxEvent]:
    if state is None:
        rows = conn.execute(f"SELECT {_EVENT} FROM outbox WHERE state != 'sent' ORDER BY seq "
                            "LIMIT ?", (limit,))
    else:
        rows = conn.execute(f"SELECT {_EVENT} FROM outbox WHERE state = ? ORDER BY seq "
                            "LIMIT ?", (state, limit))
    return [_event(r) for r in rows]


def revive(conn: sqlite3.Connection, event_id: str, now: float) -> bool:
    with Transaction(conn):
        row = conn.execute(f"SELECT {_EVENT} FROM outbox WHERE event_id = ? AND "
                           "state = 'dead'", (event_id,)).fetchone()
        if row is None:
            return False
        # A new sequence number: it goes to the end of its queue.
        conn.execute("DELETE FROM outbox WHERE event_id = ?", (event_id,))
        conn.execute("INSERT INTO outbox (event_id, sink, request_id, account, body, "
                     "created_at, attempts, next_at, last_error) "
                     "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                     (row[0], row[1], row[2], row[3], row[4], row[5], now, row[9]))
    return True


def pending(conn: sqlite3.Connection) -> dict[str, int]:
    return {sink: count for sink, count in conn.execute(
        "SELECT sink, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY sink")}


def usage_row(conn: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT u.request_id, u.account, u.model, u.provider, u.input_tokens, "
        "u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens, "
        "u.reported, u.cost_micros, u.at, u.overrun_micros, u.recovered, h.created_at "
        "FROM usage u LEFT JOIN holds h ON h.request_id = u.request_id "
        "WHERE u.request_id = ?", (request_id,)).fetchone()
    return None if row is None else usage_row_dict(row)


class SqliteOutbox(SqlOutbox):
    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db, sys.modules[__name__])
