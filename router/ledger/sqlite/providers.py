"""The provider store's rows in the SQLite file (`providers`, `providers_version`):
`router.provider_store.ProviderRows`. Keys arrive sealed; nothing here can open them."""

from __future__ import annotations

import sqlite3

from router.ledger.sqlite.db import SqliteDatabase, Transaction
from router.provider_store import SealedProvider

_COLUMNS = "name, settings, sealed_keys, key_count, updated_at"


def _row(row: tuple[object, ...]) -> SealedProvider:
    name, settings, sealed, count, at = row
    return SealedProvider(str(name), str(settings), None if sealed is None else str(sealed),
                          int(count), float(at))  # type: ignore[arg-type]


def _put(conn: sqlite3.Connection, row: SealedProvider) -> bool:
    with Transaction(conn):
        new = conn.execute("SELECT 1 FROM providers WHERE name = ?", (row.name,)
                           ).fetchone() is None
        conn.execute(f"INSERT OR REPLACE INTO providers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                     (row.name, row.settings, row.sealed_keys, row.key_count, row.updated_at))
        conn.execute("UPDATE providers_version SET version = version + 1 WHERE id = 1")
    return new


def _get(conn: sqlite3.Connection, name: str) -> SealedProvider | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM providers WHERE name = ?", (name,)).fetchone()
    return _row(row) if row else None


def _list(conn: sqlite3.Connection) -> list[SealedProvider]:
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM providers ORDER BY name")]


def _remove(conn: sqlite3.Connection, name: str) -> bool:
    with Transaction(conn):
        gone = conn.execute("DELETE FROM providers WHERE name = ?", (name,)).rowcount > 0
        if gone:
            conn.execute("UPDATE providers_version SET version = version + 1 WHERE id = 1")
    return gone


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT version FROM providers_version WHERE id = 1").fetchone()[0])


class SqliteProviderRows:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def put(self, row: SealedProvider) -> bool:
        return await self.db.run(_put, row)

    async def get(self, name: str) -> SealedProvider | None:
        return await self.db.run(_get, name)

    async def list(self) -> list[SealedProvider]:
        return await self.db.run(_list)

    async def remove(self, name: str) -> bool:
        return await self.db.run(_remove, name)

    async def version(self) -> int:
        return await self.db.run(_version)
