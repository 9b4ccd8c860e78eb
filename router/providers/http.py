"""HTTP providers: OpenAI-kind (OpenAI, OpenRouter, Ollama, any compatible server) and
Anthropic-kind, over one keep-alive connection pool per provider (`h11_pool`).

The pool is created and closed by the provider's actor (`actors.providers`); this module
only knows how to address and authenticate a call. Every limit comes from the provider's
config: connections in flight, connect timeout, longest silence between two reads.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from router.catalog import ProviderSpec
import trio

from router.providers.base import UpstreamRequest, UpstreamUnavailable
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool
from router.providers.h11_pool import H11Pool, H11Response

ANTHROPIC_VERSION = "2023-06-01"
# Where each API lives under a provider's base URL (OpenAI-kind base URLs end in /v1).
PATHS = {"openai.chat": "/chat/completions", "openai.responses": "/responses",
         "anthropic.messages": "/v1/messages",
         "anthropic.count_tokens": "/v1/messages/count_tokens"}


def new_pool(spec: ProviderSpec) -> H11Pool:
    return H11Pool(spec.base_url, max_connections=spec.max_concurrent,
                   connect_timeout_s=spec.timeout_connect_s, idle_timeout_s=spec.timeout_idle_s)


class HttpProvider:
    """Addressing and auth for one provider; the pool is `self.pool`.

    Each call takes a credential from the pool; a 401 marks it bad and a 429 rests it for
    its retry-after, and either way the same call is tried once more with the next usable
    credential before the answer counts (the user never sees one key's trouble).
    """

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.pool: H11Pool | None = None  # set by the provider actor
        self.credentials = CredentialPool(spec.api_keys, spec.strategy)
        self.breaker = CircuitBreaker(spec.breaker_failures, spec.breaker_cooldown_s)

    def _headers(self, request: UpstreamRequest, key: str | None) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json"), (b"user-agent", b"aura-router")]
        if request.stream:
            headers.append((b"accept", b"text/event-stream"))
        if self.spec.kind == "anthropic":
            passthrough = dict(request.passthrough_headers)
            passthrough.setdefault("anthropic-version", ANTHROPIC_VERSION)
            headers += [(k.encode(), v.encode("latin-1")) for k, v in passthrough.items()]
            if key:
                headers.append((b"x-api-key", key.encode()))
        elif key:
            headers.append((b"authorization", b"Bearer " + key.encode()))
        return headers

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[H11Response]:
        if self.pool is None:
            raise UpstreamUnavailable("provider is not running")
        path = PATHS[request.api] + ("?" + request.query if request.query else "")
        pool = self.credentials
        for attempt in range(max(len(pool), 1)):
            now = trio.current_time()
            credential = pool.pick(now) if len(pool) else None
            if len(pool) and credential is None:
                raise UpstreamUnavailable("every credential of the provider is resting after "
                                          "rate limits", retry_after=pool.next_usable_in(now))
            try:
                async with self.pool.post(path, self._headers(
                        request, credential.key if credential else None),
                        request.body) as response:
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
