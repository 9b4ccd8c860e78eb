"""Router API keys in PostgreSQL: issue, look up by hash, list, revoke."""

from __future__ import annotations

from router.auth.keys import KeyRecord, hash_key, new_key, new_key_id, shown_prefix
from router.ledger.postgres.db import PostgresDatabase
from router.ledger.postgres.trio_pq import TrioConnection
from router.ledger.rows import KEY_COLUMNS, key_record, models_column


async def _issue(conn: TrioConnection, account: str, label: str | None,
                 models: list[str] | None, rpm: int | None, spend_cap: int | None,
                 expires_at: float | None, at: float) -> tuple[str, KeyRecord]:
    key, key_id = new_key(), new_key_id()
    async with conn.transaction():
        await conn.execute("INSERT INTO accounts (id, created_at) VALUES (%s, %s) "
                           "ON CONFLICT (id) DO NOTHING", (account, at))
        await conn.execute(f"INSERT INTO api_keys ({KEY_COLUMNS}, hash) "
                           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s)",
                           (key_id, account, shown_prefix(key), label,
                            models_column(models), rpm, spend_cap, expires_at, at,
                            hash_key(key)))
    return key, KeyRecord(key_id, account, shown_prefix(key), label,
                          tuple(models) if models else None, rpm, spend_cap, expires_at,
                          None, at)


async def _find(conn: TrioConnection, key_hash: str) -> KeyRecord | None:
    row = await conn.fetchone(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = %s",
                              (key_hash,))
    return key_record(row) if row else None


async def _list(conn: TrioConnection, account: str | None) -> list[KeyRecord]:
    if account is None:
        rows = await conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY seq")
    else:
        rows = await conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE account = %s "
                                  "ORDER BY seq", (account,))
    return [key_record(r) for r in rows]


async def _revoke(conn: TrioConnection, key_id: str, at: float) -> KeyRecord | None:
    await conn.execute("UPDATE api_keys SET revoked_at = %s "
                       "WHERE id = %s AND revoked_at IS NULL", (at, key_id))
    row = await conn.fetchone(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = %s",
                              (key_id,))
    return key_record(row) if row else None


class PostgresKeyStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def issue(self, account: str, *, label: str | None = None,
                    models: list[str] | None = None, rpm: int | None = None,
                    spend_cap_micros: int | None = None, expires_at: float | None = None,
                    at: float) -> tuple[str, KeyRecord]:
        return await self.db.run(_issue, account, label, models, rpm, spend_cap_micros,
                                 expires_at, at)

    async def find(self, key: str) -> KeyRecord | None:
        return await self.db.run(_find, hash_key(key))

    async def list(self, account: str | None = None) -> list[KeyRecord]:
        return await self.db.run(_list, account)

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        return await self.db.run(_revoke, key_id, at)
