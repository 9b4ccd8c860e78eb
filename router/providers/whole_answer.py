"""Adapter pieces for providers that read some answers whole before the pipeline does.

Gemini reads its small 400 and 429 bodies (what they say belongs in the status line and
headers); Bedrock's native provider rewrites a whole Converse answer as the Anthropic
message it is. Both hand the pipeline a `WholeAnswer` in place of the upstream's answer,
through a `RewritingPool` wrapped round the provider's own connection pool.

Bedrock and Vertex (for Claude) answer a 429 with no delay at all (no `Retry-After`, and
none in the body): `undated_rate_limit` gives it the rest the router then gives the key,
so that the client is told the wait the router itself keeps.
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from router.providers.base import HttpCall
from router.providers.credentials import DEFAULT_COOLDOWN_S
from router.providers.http import HttpProvider

MAX_ERROR_BODY = 64 * 1024


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


async def undated_rate_limit(response: Any,
                             delay_in_body: Callable[[bytes], str | None] | None = None) -> Any:
    """A 429 without `Retry-After`: read whole (it is small), with the wait its body gives
    (`delay_in_body`), else the key's default rest (`DEFAULT_COOLDOWN_S`), as its
    retry-after. Any other answer as it is."""
    if response.status != 429 or response.retry_after:
        return response
    body = await response.read(MAX_ERROR_BODY)
    answer = WholeAnswer(response, body)
    answer.retry_after = (delay_in_body(body) if delay_in_body is not None else None) \
        or str(math.ceil(DEFAULT_COOLDOWN_S))
    return answer


class RewritingPool:
    """The provider's connection pool, with each answer passed through `rewrite` (which
    returns the response itself, or a `WholeAnswer` standing in for it)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def stats(self) -> dict[str, int]:
        return self.pool.stats()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def check_connect(self) -> None:
        await self.pool.check_connect()

    async def watch_reads(self) -> None:
        await self.pool.watch_reads()

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
