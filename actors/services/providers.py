"""Provider actors: each owns its provider's connection pool for the process lifetime.

The supervisor starts one per provider in the root nursery before traffic is accepted.
Requests use the provider object directly (a message hop per request would only add
latency); the actor owns the pool's lifecycle (create, close, recreate after a crash)
and answers questions about it.
"""

from __future__ import annotations

from typing import Any

import trio

from actors.mailbox import Actor
from actors.messages import PoolStats
from router.providers.base import Provider


class ProviderActor(Actor[Any]):
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def setup(self) -> None:
        await self.provider.start()

    async def teardown(self) -> None:
        await self.provider.aclose()

    async def handle(self, message: Any) -> None:
        if isinstance(message, PoolStats):
            provider = self.provider
            spec = provider.spec
            now = trio.current_time()
            credentials = provider.credentials.describe(now)
            breaker = provider.breaker.describe(now)
            running = provider.running
            usable = running and breaker["state"] != "open" and (
                not credentials and not provider.credentials.required
                or any(c["state"] not in ("bad", "expired") for c in credentials))
            message.reply.set({"name": spec.name, "kind": spec.kind, "strategy": spec.strategy,
                               "max_concurrent": spec.max_concurrent,
                               "running": running, "usable": usable, "breaker": breaker,
                               "credentials": credentials, "pool": provider.stats()})
