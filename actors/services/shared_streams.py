"""The stream hub's streams as every instance sees them (with `REDIS_URL`).

The instance that runs a stream (its owner) registers it in the shared directory,
publishes its events to the log in Redis as they are logged here, and records how it
started, its Responses id and how it ended (`router.shared.stream_logs`). Another
instance asked to resume it (an SSE `Last-Event-ID`, a `/v1/ws` `resume`, the Responses
websocket's `?resume=`, a background `starting_after`) finds it there and reads it as a
`RemoteStream`; a cancel from there reaches the owner through the directory, and while a
remote reader is attached the owner does not expire the stream.

Redis failing never fails a stream: its owner serves it on; only the other instances
lose sight of it (a log line says so).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import orjson
import trio

from router.errors import ApiShape, ProviderFailed, RouterError, StreamCancelled
from router.protocols.responses_state import retrieved
from router.shared.stream_logs import (LogPublisher, RedisStreamLogs, RedisUnavailable,
                                       RemoteLog, StreamMeta)

if TYPE_CHECKING:
    from actors.services.stream_hub import HubStream

log = logging.getLogger("aura.hub")
READY_POLL_S = 0.1
READY_WAIT_S = 30.0


class SharedStreams:
    """The owner's side and the finder's side of the shared directory and logs."""

    def __init__(self, logs: RedisStreamLogs, owner: str) -> None:
        self.logs = logs
        self.owner = owner

    def publisher(self, request_id: str) -> LogPublisher:
        return self.logs.publisher(request_id)

    async def register(self, stream: "HubStream", api: str) -> bool:
        try:
            await self.logs.register(StreamMeta(
                request_id=stream.request_id, account=stream.account, owner=self.owner,
                api=api, client_id=stream.client_id, lane=stream.lane,
                background=stream.background))
            return True
        except RedisUnavailable:
            log.warning("stream %s: Redis is unreachable; it can be resumed only on this "
                        "instance", stream.request_id)
            return False

    async def record(self, request_id: str, **fields: Any) -> None:
        """Best effort: a stream whose record lags is resumed a little later elsewhere."""
        try:
            await self.logs.update(request_id, **fields)
        except RedisUnavailable:
            log.warning("stream %s: could not record its %s in Redis", request_id,
                        ", ".join(fields))

    async def locate(self, account: str, **ids: str | None) -> "RemoteStream | None":
        meta = await self.logs.lookup(account, **ids)
        if meta is None or meta.owner == self.owner:
            return None  # unknown, or ours and forgotten here: the same for the client
        return RemoteStream(meta, self)

    def cancel(self, request_id: str) -> Callable[[], Any]:
        async def cancelling() -> None:
            try:
                await self.logs.request_cancel(request_id)
            except RedisUnavailable:
                log.warning("stream %s: the cancel could not reach its instance", request_id)
        return cancelling

    async def remote_reader_active(self, request_id: str) -> bool:
        try:
            return await self.logs.remote_reader_active(request_id)
        except RedisUnavailable:
            return False


class RemoteStream:
    """A `ResumableStream` another instance runs, read from Redis."""

    def __init__(self, meta: StreamMeta, shared: SharedStreams) -> None:
        self.meta = meta
        self.shared = shared
        self.request_id = meta.request_id
        self.account = meta.account
        self.client_id = meta.client_id
        self.lane = meta.lane
        self.background = meta.background
        self._log: RemoteLog = shared.logs.reader(meta.request_id)

    @property
    def log(self) -> RemoteLog:
        return self._log

    @property
    def started(self) -> bool:
        return self.meta.started

    @property
    def status(self) -> int:
        return self.meta.status

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return self.meta.headers

    @property
    def is_sse(self) -> bool:
        return self.meta.is_sse

    @property
    def response_id(self) -> str | None:
        return self.meta.response_id

    async def _refresh(self) -> None:
        meta = await self.shared.logs.lookup(self.account, request_id=self.request_id)
        if meta is not None:
            self.meta = meta

    async def wait_ready(self) -> None:
        """Until its owner recorded how it started (or that it ended without starting)."""
        with trio.move_on_after(READY_WAIT_S):
            while not self.meta.started and self.meta.state == "running":
                await trio.sleep(READY_POLL_S)
                await self._refresh()

    async def wait_identified(self) -> None:
        with trio.move_on_after(READY_WAIT_S):
            while self.meta.response_id is None and self.meta.state == "running":
                await trio.sleep(READY_POLL_S)
                await self._refresh()

    async def wait_ended(self) -> None:
        while self.meta.state == "running":
            await trio.sleep(READY_POLL_S)
            await self._refresh()

    def refusal(self, shape: ApiShape) -> tuple[RouterError, ApiShape]:
        if self.meta.state == "cancelled":
            return StreamCancelled("the stream was cancelled before it started"), shape
        return ProviderFailed("the stream ended before it started (on another instance)"), \
            shape

    def response_object(self) -> dict[str, Any] | None:
        if self.meta.response is None:
            return None
        snapshot = orjson.loads(self.meta.response)
        return retrieved(snapshot, done=self.meta.state != "running",
                         cancelled=self.meta.state == "cancelled")

    def describe(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "account": self.account,
                "id": self.client_id, "response_id": self.response_id,
                "background": self.background, "owner": self.meta.owner,
                "state": self.meta.state}
