"""Idempotency keys in PostgreSQL (router.ledger.base.IdempotencyStore), shared by every
instance on the database.

A claim is one `INSERT ... ON CONFLICT DO NOTHING`: of two instances claiming one key
at once, exactly one inserts. A claim whose request died with its instance is freed when
its hold is recovered (`aura_recover`), and in any case expires after `stale_after_s`.
"""

from __future__ import annotations

import psycopg

from router.ledger.base import Claim
from router.ledger.postgres.db import PostgresDatabase
from router.ledger.rows import body_hash


def _begin(conn: psycopg.Connection, account: str, key: str, digest: str, request_id: str,
           now: float, stale_after_s: float) -> Claim:
    with conn.transaction():
        # A stale unfinished claim (its request long dead) is free again.
        conn.execute("DELETE FROM idempotency WHERE account = %s AND key = %s AND NOT done "
                     "AND created_at < %s", (account, key, now - stale_after_s))
        inserted = conn.execute(
            "INSERT INTO idempotency (account, key, body_hash, request_id, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account, key) DO NOTHING",
            (account, key, digest, request_id, now)).rowcount
        if inserted:
            return Claim("new", request_id)
        row = conn.execute("SELECT body_hash, request_id, done, status, content_type, "
                           "response FROM idempotency WHERE account = %s AND key = %s",
                           (account, key)).fetchone()
    if row is None:  # freed between the two statements: claim it on the next call
        return _begin(conn, account, key, digest, request_id, now, stale_after_s)
    if row[0] != digest:
        return Claim("mismatch", row[1])
    if not row[2]:
        return Claim("in_flight", row[1])
    return Claim("replay", row[1], row[3], row[4], bytes(row[5]))


def _finish(conn: psycopg.Connection, account: str, key: str, status: int,
            content_type: str, response: bytes) -> None:
    conn.execute("UPDATE idempotency SET done = TRUE, status = %s, content_type = %s, "
                 "response = %s WHERE account = %s AND key = %s",
                 (status, content_type, response, account, key))


def _abandon(conn: psycopg.Connection, account: str, key: str) -> None:
    conn.execute("DELETE FROM idempotency WHERE account = %s AND key = %s AND NOT done",
                 (account, key))


def _forget_request(conn: psycopg.Connection, request_id: str) -> bool:
    return conn.execute("DELETE FROM idempotency WHERE request_id = %s AND NOT done",
                        (request_id,)).rowcount > 0


class PostgresIdempotency:
    def __init__(self, db: PostgresDatabase, stale_after_s: float) -> None:
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
