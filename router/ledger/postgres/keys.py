"""Router API keys in PostgreSQL: issue, look up by hash, list, revoke."""

from __future__ import annotations

import psycopg

from router.auth.keys import KeyRecord, hash_key, new_key, new_key_id, shown_prefix
from router.ledger.postgres.db import PostgresDatabase
from router.ledger.rows import KEY_COLUMNS, key_record, models_column


def _issue(conn: psycopg.Connection, account: str, label: str | None,
           models: list[str] | None, rpm: int | None, spend_cap: int | None,
           expires_at: float | None, at: float) -> tuple[str, KeyRecord]:
    key, key_id = new_key(), new_key_id()
    with conn.transaction():
        conn.execute("INSERT INTO accounts (id, created_at) VALUES (%s, %s) "
                     "ON CONFLICT (id) DO NOTHING", (account, at))
        conn.execute(f"INSERT INTO api_keys ({KEY_COLUMNS}, hash) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s)",
                     (key_id, account, shown_prefix(key), label, models_column(models), rpm,
                      spend_cap, expires_at, at, hash_key(key)))
    return key, KeyRecord(key_id, account, shown_prefix(key), label,
                          tuple(models) if models else None, rpm, spend_cap, expires_at,
                          None, at)


def _find(conn: psycopg.Connection, key_hash: str) -> KeyRecord | None:
    row = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = %s",
                       (key_hash,)).fetchone()
    return key_record(row) if row else None


def _list(conn: psycopg.Connection, account: str | None) -> list[KeyRecord]:
    if account is None:
        rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY seq").fetchall()
    else:
        rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE account = %s "
                            "ORDER BY seq", (account,)).fetchall()
    return [key_record(r) for r in rows]


def _revoke(conn: psycopg.Connection, key_id: str, at: float) -> KeyRecord | None:
    conn.execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                 (at, key_id))
    row = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = %s",
                       (key_id,)).fetchone()
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
