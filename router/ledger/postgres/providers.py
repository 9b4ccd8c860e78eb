"""The provider store's rows in PostgreSQL (`providers`, `providers_version`), shared by
every instance on the database: the statements `router.ledger.sql_providers.
SqlProviderRows` runs. Keys arrive sealed."""

from __future__ import annotations

from router.ledger.postgres.trio_pq import TrioConnection
from router.ledger.sql_providers import BUMP_VERSION, COLUMNS, sealed_row
from router.provider_store import SealedProvider


async def put(conn: TrioConnection, row: SealedProvider) -> bool:
    async with conn.transaction():
        # xmax = 0 only for a row this statement inserted (not one it updated).
        result = await conn.fetchone(
            f"INSERT INTO providers ({COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET settings = EXCLUDED.settings, "
            "sealed_keys = EXCLUDED.sealed_keys, key_count = EXCLUDED.key_count, "
            "updated_at = EXCLUDED.updated_at RETURNING (xmax = 0)",
            (row.name, row.settings, row.sealed_keys, row.key_count, row.updated_at))
        await conn.execute(BUMP_VERSION)
    return bool(result and result[0])


async def get(conn: TrioConnection, name: str) -> SealedProvider | None:
    row = await conn.fetchone(f"SELECT {COLUMNS} FROM providers WHERE name = %s", (name,))
    return sealed_row(row) if row else None


async def list_rows(conn: TrioConnection) -> list[SealedProvider]:
    return [sealed_row(r) for r in await conn.execute(
        f"SELECT {COLUMNS} FROM providers ORDER BY name")]


async def remove(conn: TrioConnection, name: str) -> bool:
    async with conn.transaction():
        gone = await conn.fetchone("DELETE FROM providers WHERE name = %s RETURNING name",
                                   (name,))
        if gone:
            await conn.execute(BUMP_VERSION)
    return gone is not None


async def version(conn: TrioConnection) -> int:
    row = await conn.fetchone("SELECT version FROM providers_version WHERE id = 1")
    return int(row[0]) if row else 0
