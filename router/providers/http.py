"""HTTP providers: OpenAI-kind (OpenAI, OpenRouter, Ollama, any compatible server) and
Anthropic-kind, over one `httpx.AsyncClient` per provider.

The client is created and closed by the provider's supervisor (`actors.providers`);
this module only knows how to address and authenticate a call. httpx's defaults are
wrong for LLM streams (5 s timeouts, 20-connection pool), so every limit is explicit.
"""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx

from router.catalog import ProviderSpec
from router.providers.base import UpstreamRequest, UpstreamUnavailable

ANTHROPIC_VERSION = "2023-06-01"


def new_client(spec: ProviderSpec) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=spec.max_concurrent,
                          max_keepalive_connections=spec.max_concurrent, keepalive_expiry=60)
    timeout = httpx.Timeout(connect=spec.timeout_connect_s, read=spec.timeout_idle_s,
                            write=spec.timeout_connect_s, pool=spec.timeout_connect_s)
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)


class HttpUpstreamResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.retry_after = response.headers.get("retry-after")

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise UpstreamUnavailable("provider went silent", timeout=True) from None
        except httpx.HTTPError:
            raise UpstreamUnavailable("provider connection broke mid-answer") from None

    async def read(self, limit: int) -> bytes:
        out = bytearray()
        async for chunk in self.aiter_bytes():
            out += chunk
            if len(out) > limit:
                break
        return bytes(out)


class HttpProvider:
    """Addressing and auth for one provider; the pool is `self.client`."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.client: httpx.AsyncClient | None = None  # set by the supervisor
        self._keys = itertools.cycle(spec.api_keys) if spec.api_keys else None

    def _next_key(self) -> str | None:
        return next(self._keys) if self._keys else None

    def _target(self, request: UpstreamRequest) -> tuple[str, dict[str, str]]:
        key = self._next_key()
        headers = {"content-type": "application/json"}
        if request.stream:
            headers["accept"] = "text/event-stream"
        if self.spec.kind == "anthropic":
            url = self.spec.base_url + "/v1/messages"
            headers["anthropic-version"] = ANTHROPIC_VERSION
            headers.update(dict(request.passthrough_headers))
            if key:
                headers["x-api-key"] = key
        else:
            url = self.spec.base_url + "/chat/completions"
            if key:
                headers["authorization"] = "Bearer " + key
        if request.query:
            url += "?" + request.query
        return url, headers

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[HttpUpstreamResponse]:
        if self.client is None:
            raise UpstreamUnavailable("provider is not running")
        url, headers = self._target(request)
        try:
            upstream = self.client.build_request("POST", url, content=request.body,
                                                 headers=headers)
            response = await self.client.send(upstream, stream=True)
        except httpx.TimeoutException:
            raise UpstreamUnavailable("provider timed out", timeout=True) from None
        except httpx.HTTPError:
            raise UpstreamUnavailable("provider could not be reached") from None
        try:
            yield HttpUpstreamResponse(response)
        finally:
            await response.aclose()
