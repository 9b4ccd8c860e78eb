"""The outbox on Redis (docs/integration.md): the events a settlement queues in its own
script (scripts.py `SETTLE_COMMON`: one per configured derived sink, then its
`messages` event), claimed and retired by the outbox actors of every instance on this
Redis, each operation one script.

Each (sink, account) is a FIFO queue: a list of event ids (`outbox:q:{sink}:{account}`)
whose head alone is scored in `outbox:ready` by its `next_at`. A claim takes due heads
only, oldest settlement (`seq`) first, and leases each by moving its `next_at` (and its
queue's score) to the end of the lease, so no other shipper takes it meanwhile and no
queue ever ships out of order. A parked event leaves its queue (the rest goes on) for
`outbox:dead`; a revived one gets a new `seq` and goes to the end of its queue. Pending
counts per sink are a counter (`outbox:count`), kept by the same scripts.
"""

from __future__ import annotations

from typing import Any

from router.ledger.base import DERIVED_SINKS, OutboxEvent, event_id
from router.ledger.redis import scripts
from router.ledger.redis.client import RedisSession
from router.ledger.redis.ledger import opt, pairs, text, text_or_none, usage_values, when
from router.ledger.rows import usage_row_dict

# A claim looks at the queues due the longest, at most this many (or 4 × its limit),
# and hands out those whose heads were settled first: settlement order exactly unless
# more queues than that are due at once (then the longest-due go first), and a script
# that never walks a whole backlog.
CLAIM_SCAN = 1_000


def _event(raw: Any) -> OutboxEvent:
    f = pairs(raw)
    sink, request_id = text(f["sink"]), text(f["request_id"])
    body = f.get("body")
    return OutboxEvent(event_id(sink, request_id), sink, request_id, text(f["account"]),
                       None if body is None else bytes(body), float(f["created_at"]),
                       int(f["attempts"]), float(f["next_at"]), text(f["state"]),
                       text_or_none(f.get("last_error")))


class RedisOutbox:
    """`Outbox` over a `RedisSession` (the ledger's keys, under its prefix)."""

    def __init__(self, redis: RedisSession) -> None:
        self.redis = redis
        self.prefix = redis.prefix

    async def configure(self, sinks: frozenset[str]) -> None:
        await self.redis.script(scripts.CONFIGURE_OUTBOX,
                                *sorted(s for s in sinks if s in DERIVED_SINKS))

    async def claim(self, now: float, limit: int, lease_s: float) -> list[OutboxEvent]:
        scan = max(CLAIM_SCAN, 4 * limit) if limit >= 0 else -1
        reply = await self.redis.script(scripts.CLAIM_OUTBOX, when(now), str(limit),
                                        str(scan), when(now + lease_s))
        return [_event(raw) for raw in reply]

    async def delivered(self, event: OutboxEvent, at: float) -> None:
        await self.redis.script(scripts.OUTBOX_DELIVERED, event.event_id)

    async def retry_at(self, event: OutboxEvent, next_at: float, error: str) -> None:
        await self.redis.script(scripts.OUTBOX_RETRY, event.event_id, when(next_at), error)

    async def park(self, event: OutboxEvent, error: str, at: float) -> None:
        await self.redis.script(scripts.OUTBOX_PARK, event.event_id, error, when(at))

    async def listing(self, state: str | None, limit: int) -> list[OutboxEvent]:
        reply = await self.redis.script(scripts.OUTBOX_LISTING, opt(state), str(limit))
        return [_event(raw) for raw in reply]

    async def revive(self, event_id: str, now: float) -> bool:
        return bool(await self.redis.script(scripts.OUTBOX_REVIVE, event_id, when(now)))

    async def pending(self) -> dict[str, int]:
        counts = pairs(await self.redis.command(b"HGETALL", self.prefix + "outbox:count"))
        return {sink: int(n) for sink, n in counts.items() if int(n) > 0}

    async def usage_row(self, request_id: str) -> dict[str, Any] | None:
        raw, started_at = await self.redis.script(scripts.OUTBOX_USAGE_ROW, request_id)
        if raw is None:
            return None
        return usage_row_dict((*usage_values(raw),
                               None if started_at is None else float(started_at)))
