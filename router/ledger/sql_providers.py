"""The provider store's rows in the SQL backends (SQLite, PostgreSQL): both keep them in
a `providers` table with the same columns and a `providers_version` counter; each
backend's `providers` module has the statements, and its database's
`run(statement_function, *args)` runs one of them. Keys arrive sealed; nothing here can
open them (router/provider_store.py)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from router.ledger.sql_outbox import Runs
from router.provider_store import SealedProvider

COLUMNS = "name, settings, sealed_keys, key_count, updated_at"
BUMP_VERSION = "UPDATE providers_version SET version = version + 1 WHERE id = 1"


def sealed_row(row: tuple[Any, ...]) -> SealedProvider:
    name, settings, sealed, count, at = row
    return SealedProvider(str(name), str(settings), None if sealed is None else str(sealed),
                          int(count), float(at))


class SqlProviderRows:
    """`router.provider_store.ProviderRows` over one SQL database; `ops` is the backend's
    providers module (`put`, `get`, `list_rows`, `remove`, `version`)."""

    def __init__(self, db: Runs, ops: ModuleType) -> None:
        self.db = db
        self.ops = ops

    async def put(self, row: SealedProvider) -> bool:
        return await self.db.run(self.ops.put, row)

    async def get(self, name: str) -> SealedProvider | None:
        return await self.db.run(self.ops.get, name)

    async def list(self) -> list[SealedProvider]:
        return await self.db.run(self.ops.list_rows)

    async def remove(self, name: str) -> bool:
        return await self.db.run(self.ops.remove, name)

    async def version(self) -> int:
        return await self.db.run(self.ops.version)
