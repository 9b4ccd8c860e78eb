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
from router.catalog import ProviderSpec
from router.providers.base import Provider
from router.providers.demo import DemoProvider
from router.providers.http import HttpProvider, new_pool


def make_provider(spec: ProviderSpec) -> Provider:
    return DemoProvider(spec) if spec.kind == "demo" else HttpProvider(spec)


class ProviderActor(Actor[Any]):
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def setup(self) -> None:
        if isinstance(self.provider, HttpProvider):
            self.provider.pool = new_pool(self.provider.spec)

    async def teardown(self) -> None:
        if isinstance(self.provider, HttpProvider) and self.provider.pool is not None:
            pool, self.provider.pool = self.provider.pool, None
            await pool.aclose()

    async def handle(self, message: Any) -> None:
        if isinstance(message, PoolStats):
            spec = self.provider.spec
            pool = getattr(self.provider, "pool", None)
            now = trio.current_time()
            credentials = self.provider.credentials.describe(now)
            breaker = self.provider.breaker.describe(now)
            running = pool is not None or spec.kind == "demo"
            usable = running and breaker["state"] != "open" and (
                not credentials or any(c["state"] != "bad" for c in credentials))
            message.reply.set({"name": spec.name, "kind": spec.kind, "strategy": spec.strategy,
                               "max_concurrent": spec.max_concurrent,
                               "running": running, "usable": usable, "breaker": breaker,
                               "credentials": credentials,
                               "pool": pool.stats() if pool is not None else None})
