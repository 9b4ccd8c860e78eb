"""Idempotency keys on SQLite (router.ledger.base.IdempotencyStore).

The first request with a key claims it (with a hash of its body). A claim whose request
died with its process is freed when its hold is settled from its checkpoint (the
ledger's `recover`), and in any case expires after `stale_after_s`.
"""

from __future__ import annotations

import sqlite3

from router.ledger.base import Claim
from router.ledger.rows import body_hash
from router.ledger.sqlite.db import SqliteDatabase, Transaction


def _begin(conn: sqlite3.Connection, account: str, key: str, digest: str, request_id: str,
           now: float, stale_after_s: float) -> Claim:
    with Transaction(conn):
        row = conn.execute("SELECT body_hash, request_id, done, status, content_type, response, "
                           "created_at FROM idempotency WHERE account = ? AND key = ?",
                           (account, key)).fetchone()
        if row is not None and not row[2] and now - row[6] > stale_after_s:
            conn.execute("DELETE FROM idempotency WHERE account = ? AND key = ?", (account, key))
            row = None
        if row is None:
            conn.execute("INSERT INTO idempotency (account, key, body_hash, request_id, "
                         "created_at) VALUES (?, ?, ?, ?, ?)",
                         (account, key, digest, request_id, now))
            return Claim("new", request_id)
        if row[0] != digest:
            return Claim("mismatch", row[1])
        if not row[2]:
            return Claim("in_flight", row[1])
        return Claim("replay", row[1], row[3], row[4], bytes(row[5]))


def _finish(conn: sqlite3.Connection, account: str, key: str, status: int, content_type: str,
            response: bytes) -> None:
    with Transaction(conn):
        conn.execute("UPDATE idempotency SET done = 1, status = ?, content_type = ?, "
                     "response = ? WHERE account = ? AND key = ?",
                     (status, content_type, response, account, key))


def _abandon(conn: sqlite3.Connection, account: str, key: str) -> None:
    with Transaction(conn):
        conn.execute("DELETE FROM idempotency WHERE account = ? AND key = ? AND done = 0",
                     (account, key))


def _forget_request(conn: sqlite3.Connection, request_id: str) -> bool:
    with Transaction(conn):
        return conn.execute("DELETE FROM idempotency WHERE request_id = ? AND done = 0",
                            (request_id,)).rowcount > 0


class SqliteIdempotency:
    def __init__(self, db: SqliteDatabase, stale_after_s: float) -> None:
        self.db = db
        self.stale_after_s = stale_after_s

    async def begin(self, account: str, key: str, body: bytes, request_id: str,
                    now: float) -> Claim:
        return await self.db.run(_begin, account, key, body_hash(body), request_id, now,
                                 self.stale_after_s)

    async def finish(self, account: str, key: str, status: int, content_type: str,
                     response: bytes) -> None:
        await self.db.run(_finish, account, key, status, content_type, response)

    async def abandon(self, account: str, key: str) -> None:
        await self.db.run(_abandon, account, key)

    async def forget_request(self, request_id: str) -> bool:
        return await self.db.run(_forget_request, request_id)
