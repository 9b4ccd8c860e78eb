"""HTTP providers: one keep-alive connection pool per provider (`h11_pool`), a credential
pool and a circuit breaker; the kind's adapter addresses and signs each call.

The pool is created and closed by the provider's supervisor actor (`start`/`aclose`).
Every limit comes from the provider's config: connections in flight, connect timeout,
longest silence between two reads.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

from router.errors import CredentialsResting, ProviderStopped
from router.providers.base import Provider, ProviderAdapter, UpstreamRequest
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool
from router.providers.h11_pool import H11Pool, H11Response
from router.providers.spec import ProviderSpec


class HttpAdapter(ProviderAdapter):
    """A kind reached over HTTP through the shared pool (every kind but `demo`)."""

    def connect(self, spec: ProviderSpec) -> Provider:
        return HttpProvider(spec, self)


class HttpProvider:
    """One configured provider over HTTP.

    Each call takes a credential from the pool; a 401 marks it bad and a 429 rests it for
    its retry-after, and either way the same call is tried once more with the next usable
    credential before the answer counts (the user never sees one key's trouble).
    """

    def __init__(self, spec: ProviderSpec, adapter: ProviderAdapter) -> None:
        self.spec = spec
        self.adapter = adapter
        self.pool: H11Pool | None = None
        self.credentials = CredentialPool(spec.api_keys, spec.strategy)
        self.breaker = CircuitBreaker(spec.breaker_failures, spec.breaker_cooldown_s)

    async def start(self) -> None:
        self.pool = H11Pool(self.spec.base_url, max_connections=self.spec.max_concurrent,
                            connect_timeout_s=self.spec.timeout_connect_s,
                            idle_timeout_s=self.spec.timeout_idle_s)

    async def aclose(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.aclose()

    @property
    def running(self) -> bool:
        return self.pool is not None

    def stats(self) -> dict[str, int] | None:
        return self.pool.stats() if self.pool is not None else None

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[H11Response]:
        if self.pool is None:
            raise ProviderStopped("the provider is not running")
        pool = self.credentials
        for attempt in range(max(len(pool), 1)):
            now = trio.current_time()
            keyed = len(pool) > 0 or pool.required
            credential = pool.pick(now) if keyed else None
            if keyed and credential is None:
                raise CredentialsResting(pool.unusable_reason(now), pool.next_usable_in(now))
            # The key as the pool holds it: a plain str is an API key, an OAuthToken an OAuth
            # login (the adapter signs each its way).
            call = self.adapter.build_request(request, credential.key if credential else None)
            try:
                async with self.pool.send(call) as response:
                    if credential is not None and response.status < 400 and credential.bad:
                        pool.accepted(credential)
                    if credential is not None and response.status in (401, 429):
                        if response.status == 401:
                            pool.refused(credential, 401)
                        else:
                            pool.rate_limited(credential, now, response.retry_after)
                        if attempt + 1 < len(pool) and any(
                                c.usable(now) for c in pool.credentials):
                            continue  # this answer is about the key: try the next one
                    yield response
                    return
            finally:
                if credential is not None:
                    pool.done(credential)
