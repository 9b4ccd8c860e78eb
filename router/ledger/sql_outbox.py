"""The `Outbox` of the SQL backends (SQLite, PostgreSQL): both keep it in an `outbox`
table with the same columns and rules; each backend's module has the statements, and
its database's `run(statement_function, *args)` runs one of them."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol

from router.ledger.base import OutboxEvent


class Runs(Protocol):
    async def run(self, fn: Any, *args: Any) -> Any: ...


class SqlOutbox:
    """`Outbox` over one SQL database; `ops` is the backend's outbox module."""

    def __init__(self, db: Runs, ops: ModuleType) -> None:
        self.db = db
        self.ops = ops

    async def configure(self, sinks: frozenset[str]) -> None:
        await self.db.run(self.ops.configure, sinks)

    async def claim(self, now: float, limit: int, lease_s: float) -> list[OutboxEvent]:
        return await self.db.run(self.ops.claim, now, limit, lease_s)

    async def delivered(self, event: OutboxEvent, at: float) -> None:
        await self.db.run(self.ops.delivered, event.event_id, at)

    async def retry_at(self, event: OutboxEvent, next_at: float, error: str) -> None:
        await self.db.run(self.ops.retry_at, event.event_id, next_at, error)

    async def park(self, event: OutboxEvent, error: str, at: float) -> None:
        await self.db.run(self.ops.park, event.event_id, error, at)

    async def listing(self, state: str | None, limit: int) -> list[OutboxEvent]:
        return await self.db.run(self.ops.listing, state, limit)

    async def revive(self, event_id: str, now: float) -> bool:
        return await self.db.run(self.ops.revive, event_id, now)

    async def pending(self) -> dict[str, int]:
        return await self.db.run(self.ops.pending)

    async def usage_row(self, request_id: str) -> dict[str, Any] | None:
        return await self.db.run(self.ops.usage_row, request_id)
