"""The pipeline's side of idempotency keys: record the first answer, replay it later.

`RecordingSink` sits between the stream stage and the client and keeps a copy of a
successful answer (up to `MAX_STORED_ANSWER`) so a replay can be served without calling
the provider or billing again.
"""

from __future__ import annotations

from router.errors import ApiShape, RouterError
from router.gateway import ClientSink, Settled
from router.ledger.base import MAX_STORED_ANSWER, Claim


class RecordingSink:
    """A `ClientSink` that also keeps what it sent."""

    def __init__(self, inner: ClientSink) -> None:
        self.inner = inner
        self.status = 0
        self.content_type = ""
        self.parts: list[bytes] = []
        self.size = 0

    @property
    def started(self) -> bool:
        return self.inner.started

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.status = status
        self.content_type = dict(headers).get(b"content-type", b"").decode("latin-1")
        await self.inner.start(status, headers)

    async def body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= MAX_STORED_ANSWER:
            self.parts.append(data)
        await self.inner.body(data)

    async def error(self, error: RouterError, shape: ApiShape) -> None:
        self.status = error.status
        await self.inner.error(error, shape)

    def settled(self, settled: Settled) -> None:
        self.inner.settled(settled)

    def replayable(self) -> bytes | None:
        if self.status != 200 or self.size > MAX_STORED_ANSWER:
            return None
        return b"".join(self.parts)


async def replay(sink: ClientSink, claim: Claim) -> None:
    await sink.start(claim.status, ((b"content-type", claim.content_type.encode("latin-1")),
                                    (b"x-request-id", claim.request_id.encode()),
                                    (b"x-aura-idempotent-replay", b"true")))
    await sink.body(claim.response)
