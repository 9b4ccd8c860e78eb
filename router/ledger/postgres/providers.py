"""The provider store's rows in PostgreSQL (`providers`, `providers_version`):
`router.provider_store.ProviderRows`, shared by every instance on the database. Keys
arrive sealed; nothing here can open them."""

from __future__ import annotations

from typing import Any

from router.ledger.postgres.db import PostgresDatabase
from router.ledger.postgres.trio_pq import TrioConnection
from router.provider_store import SealedProvider

_COLUMNS = "name, settings, sealed_keys, key_count, updated_at"
_BUMP = "UPDATE providers_version SET version = version + 1 WHERE id = 1"


def _row(row: tuple[Any, ...]) -> SealedProvider:
    name, settings, sealed, count, at = row
    return SealedProvider(str(name), str(settings), None if sealed is None else str(sealed),
                          int(count), float(at))


async def _put(conn: TrioConnection, row: SealedProvider) -> bool:
    async with conn.transaction():
        # xmax = 0 only for a row this statement inserted (not one it updated).
        result = await conn.fetchone(
            f"INSERT INTO providers ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET settings = EXCLUDED.settings, "
            "sealed_keys = EXCLUDED.sealed_keys, key_count = EXCLUDED.key_count, "
            "updated_at = EXCLUDED.updated_at RETURNING (xmax = 0)",
            (row.name, row.settings, row.sealed_keys, row.key_count, row.updated_at))
        await conn.execute(_BUMP)
    return bool(result and result[0])


async def _get(conn: TrioConnection, name: str) -> SealedProvider | None:
    row = await conn.fetchone(f"SELECT {_COLUMNS} FROM providers WHERE name = %s", (name,))
    return _row(row) if row else None


async def _list(conn: TrioConnection) -> list[SealedProvider]:
    return [_row(r) for r in await conn.execute(
        f"SELECT {_COLUMNS} FROM providers ORDER BY name")]


async def _remove(conn: TrioConnection, name: str) -> bool:
    async with conn.transaction():
        gone = await conn.fetchone("DELETE FROM providers WHERE name = %s RETURNING name",
                                   (name,))
        if gone:
            await conn.execute(_BUMP)
    return gone is not None


async def _version(conn: TrioConnection) -> int:
    row = await conn.fetchone("SELECT version FROM providers_version WHERE id = 1")
    return int(row[0]) if row else 0


class PostgresProviderRows:
    def __init__(self, db: PostgresDatabase) -> None:
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
