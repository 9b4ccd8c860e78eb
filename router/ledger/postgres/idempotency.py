"""Idempotency keys in PostgreSQL (router.ledger.base.IdempotencyStore), shared by every
instance on the database.

A claim is one `INSERT ... ON CONFLICT DO NOTHING`: of two instances claiming one key
at once, exactly one inserts. A claim whose request died with its instance is freed when
its hold is recovered (`aura_recover`), and in any case expires after `stale_after_s`.
"""

from __future__ import annotations


from router.ledger.base import Claim
from router.ledger.postgres.db import PostgresDatabase
from router.ledger.postgres.trio_pq import TrioConnection
from router.ledger.rows import body_hash


async def _begin(conn: TrioConnection, account: str, key: str, digest: str,
                 request_id: str, now: float, stale_after_s: float) -> Claim:
    async with conn.transaction():
        # A stale unfinished claim (its request long dead) is free again.
        await conn.execute("DELETE FROM idempotency WHERE account = %s AND key = %s "
                           "AND NOT done AND created_at < %s",
                           (account, key, now - stale_after_s))
        await conn.execute(
            "INSERT INTO idempotency (account, key, body_hash, request_id, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account, key) DO NOTHING",
            (account, key, digest, request_id, now))
        if conn.rowcount:
            return Claim("new", request_id)
        row = await conn.fetchone("SELECT body_hash, request_id, done, status, "
                                  "content_type, response FROM idempotency "
                                  "WHERE account = %s AND key = %s", (account, key))
    if row is None:  # freed between the two statements: claim it on the next call
        return await _begin(conn, account, key, digest, request_id, now, stale_after_s)
    if row[0] != digest:
        return Claim("mismatch", row[1])
    if not row[2]:
        return Claim("in_flight", row[1])
    return Claim("replay", row[1], row[3], row[4], bytes(row[5]))


async def _finish(conn: TrioConnection, account: str, key: str, status: int,
                  content_type: str, response: bytes) -> None:
    await conn.execute("UPDATE idempotency SET done = TRUE, status = %s, content_type = %s, "
                       "response = %s WHERE account = %s AND key = %s",
                       (status, content_type, response, account, key))


async def _abandon(conn: TrioConnection, account: str, key: str) -> None:
    await conn.execute("DELETE FROM idempotency WHERE account = %s AND key = %s AND NOT done",
                       (account, key))


async def _forget_request(conn: TrioConnection, request_id: str) -> bool:
    await conn.execute("DELETE FROM idempotency WHERE request_id = %s AND NOT done",
                       (request_id,))
    return conn.rowcount > 0


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
