"""Adapter pieces for providers that read some answers whole before the pipeline does.

Gemini reads its small 400 and 429 bodies (what they say belongs in the status line and
headers); Bedrock's native provider rewrites a whole Converse answer as the Anthropic
message it is. Both hand the pipeline a `WholeAnswer` in place of the upstream's answer,
through a `RewritingPool` wrapped round the provider's own connection pool.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from router.providers.base import HttpCall
from router.providers.http import HttpProvider


class WholeAnswer:
    """An answer already read (`body`), replayed to the pipeline as if it were the
    upstream's: the status, content type, headers and retry-after are the response's
    unless a subclass rewrites them."""

    def __init__(self, response: Any, body: bytes, content_type: str | None = None) -> None:
        self.status = response.status
        self.content_type = content_type if content_type is not None \
            else response.content_type
        self.headers = getattr(response, "headers", {})
        self.retry_after = response.retry_after
        self._body: bytes | None = body

    async def next_chunk(self) -> bytes | None:
        body, self._body = self._body, None
        return body or None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while (chunk := await self.next_chunk()) is not None:
            yield chunk

    async def read(self, limit: int) -> bytes:
        return (await self.next_chunk() or b"")[:limit]


class RewritingPool:
    """The provider's connection pool, with each answer passed through `rewrite` (which
    returns the response itself, or a `WholeAnswer` standing in for it)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def stats(self) -> dict[str, int]:
        return self.pool.stats()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def rewrite(self, call: HttpCall, response: Any) -> Any:
        """The answer the pipeline gets for `call` (the response as it is, here)."""
        return response

    @asynccontextmanager
    async def send(self, call: HttpCall) -> AsyncIterator[Any]:
        async with self.pool.send(call) as response:
            yield await self.rewrite(call, response)


class RewritingProvider(HttpProvider):
    """An HTTP provider whose pool is wrapped, once started, in `pool_class`."""

    pool_class: type[RewritingPool] = RewritingPool

    async def start(self) -> None:
        await super().start()
        self.pool = self.pool_class(self.pool)  # type: ignore[assignment]
