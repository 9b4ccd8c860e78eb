"""Router API keys in the SQLite file: issue, look up by hash, list, revoke."""

from __future__ import annotations

import sqlite3

from router.auth.keys import KeyRecord, hash_key, new_key, new_key_id, shown_prefix
from router.ledger.rows import KEY_COLUMNS as _COLUMNS
from router.ledger.rows import key_record as _record
from router.ledger.rows import models_column
from router.ledger.sqlite.db import SqliteDatabase, Transaction


def _issue(conn: sqlite3.Connection, account: str, label: str | None,
           models: list[str] | None, rpm: int | None, spend_cap: int | None,
           expires_at: float | None, at: float) -> tuple[str, KeyRecord]:
    key, key_id = new_key(), new_key_id()
    with Transaction(conn):
        conn.execute("INSERT OR IGNORE INTO accounts (id, balance, held, created_at) "
                     "VALUES (?, 0, 0, ?)", (account, at))
        conn.execute(f"INSERT INTO api_keys ({_COLUMNS}, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     (key_id, account, shown_prefix(key), label,
                      models_column(models), rpm, spend_cap,
                      expires_at, None, at, hash_key(key)))
    return key, KeyRecord(key_id, account, shown_prefix(key), label,
                          tuple(models) if models else None, rpm, spend_cap, expires_at,
                          None, at)


def _find(conn: sqlite3.Connection, key_hash: str) -> KeyRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE hash = ?", (key_hash,)).fetchone()
    return _record(row) if row else None


def _list(conn: sqlite3.Connection, account: str | None) -> list[KeyRecord]:
    if account is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
    else:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE account = ? "
                            "ORDER BY created_at", (account,)).fetchall()
    return [_record(r) for r in rows]


def _revoke(conn: sqlite3.Connection, key_id: str, at: float) -> KeyRecord | None:
    with Transaction(conn):
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                     (at, key_id))
        row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?",
                           (key_id,)).fetchone()
    return _record(row) if row else None


class SqliteKeyStore:
    def __init__(self, db: SqliteDatabase) -> None:
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
