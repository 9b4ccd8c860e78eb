"""The provider store's rows in the SQLite file (`providers`, `providers_version`): the
statements `router.ledger.sql_providers.SqlProviderRows` runs. Keys arrive sealed."""

from __future__ import annotations

import sqlite3

from router.ledger.sqlite.db import Transaction
from router.ledger.sql_providers import BUMP_VERSION, COLUMNS, sealed_row
from router.provider_store import SealedProvider


def put(conn: sqlite3.Connection, row: SealedProvider) -> bool:
    with Transaction(conn):
        new = conn.execute("SELECT 1 FROM providers WHERE name = ?", (row.name,)
                           ).fetchone() is None
        conn.execute(f"INSERT OR REPLACE INTO providers ({COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                     (row.name, row.settings, row.sealed_keys, row.key_count, row.updated_at))
        conn.execute(BUMP_VERSION)
    return new


def get(conn: sqlite3.Connection, name: str) -> SealedProvider | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM providers WHERE name = ?", (name,)).fetchone()
    return sealed_row(row) if row else None


def list_rows(conn: sqlite3.Connection) -> list[SealedProvider]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM providers ORDER BY name")
    return [sealed_row(r) for r in rows]


def remove(conn: sqlite3.Connection, name: str) -> bool:
    with Transaction(conn):
        gone = conn.execute("DELETE FROM providers WHERE name = ?", (name,)).rowcount > 0
        if gone:
            conn.execute(BUMP_VERSION)
    return gone


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT version FROM providers_version WHERE id = 1").fetchone()[0])
