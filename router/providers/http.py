"""HTTP providers: OpenAI-kind (OpenAI, OpenRouter, Ollama, any compatible server) and
Anthropic-kind, over one keep-alive connection pool per provider (`h11_pool`).

The pool is created and closed by the provider's actor (`actors.providers`); this module
only knows how to address and authenticate a call. Every limit comes from the provider's
config: connections in flight, connect timeout, longest silence between two reads.
"""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from typing import AsyncIterator

from router.catalog import ProviderSpec
from router.providers.base import UpstreamRequest, UpstreamUnavailable
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
    """Addressing and auth for one provider; the pool is `self.pool`."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.pool: H11Pool | None = None  # set by the provider actor
        self._keys = itertools.cycle(spec.api_keys) if spec.api_keys else None

    def _next_key(self) -> str | None:
        return next(self._keys) if self._keys else None

    def _headers(self, request: UpstreamRequest) -> list[tuple[bytes, bytes]]:
        key = self._next_key()
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
        async with self.pool.post(path, self._headers(request), request.body) as response:
            yield response
