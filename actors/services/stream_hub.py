"""The stream hub: model calls whose stream outlives the client that started it.

Websocket streams, and SSE requests sent with `x-aura-resumable: true`, run here instead
of in the client's request task (docs/websocket.md): the hub's nursery owns them, each in
its own cancel scope, and their events go to a `StreamLog` that readers (an SSE response, a
websocket stream) attach to and detach from. A stream whose readers all left keeps
running and is billed in full; if nobody attaches again within the resume window it is
cancelled then (billing what was produced, like any cancel). A finished stream stays
replayable for the window after its last reader left, then is forgotten.

Background responses (`"background": true`) run here too and are never cancelled for
want of a reader; a Responses stream is numbered by the router and found again by its
response id (`router.protocols.responses_state`). An account keeps at most
`MAX_DETACHED_STREAMS` streams running unread. With `REDIS_URL`, each stream's record and
events are kept in Redis as well (`actors.services.shared_streams`), so that another
instance resumes or cancels it; `locate` finds those.

The plain SSE path does not come here: a plain disconnect cancels at once (users press
stop), and that path stays the lean one the benchmark measures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import orjson
import trio

from actors.pipeline.request import run_model_call
from actors.services.shared_streams import RemoteStream, SharedStreams
from router.errors import ApiShape, RouterError, StreamCancelled
from router.gateway import ModelCall, ResumableStream, Settled
from router.protocols.responses_state import ResponseWatch, retrieved
from router.protocols.sse import SseParser
from router.shared.stream_logs import LogPublisher
from router.stream_log import StreamLog

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger("aura.hub")
SWEEP_INTERVAL_S = 1.0


class LogSink:
    """The pipeline's `ClientSink` for a hub stream: events go to the log."""

    __slots__ = ("log", "started", "status", "headers", "is_sse", "_parser", "_ready",
                 "settlement", "error_sent", "watch", "identified", "_on_identified",
                 "ended", "publisher", "shared")

    def __init__(self, stream_log: StreamLog, watch: ResponseWatch | None = None,
                 on_identified: Callable[[str], None] | None = None) -> None:
        self.log = stream_log
        self.watch = watch  # a Responses stream read again by its id (background, ws mode)
        self.identified = trio.Event()  # its response id is known, or it never will be
        self._on_identified = on_identified
        self.ended = trio.Event()
        self.publisher: LogPublisher | None = None  # with REDIS_URL: the log in Redis too
        self.shared: tuple[SharedStreams, str] | None = None  # (where, request id)
        self.started = False
        self.status = 0
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.is_sse = False
        self._parser = SseParser()
        self._ready = trio.Event()
        self.settlement: Settled | None = None
        self.error_sent: tuple[RouterError, str] | None = None

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.started, self.status, self.headers = True, status, headers
        self.is_sse = dict(headers).get(b"content-type", b"").startswith(b"text/event-stream")
        if self.shared is not None:
            where, request_id = self.shared
            await where.record(request_id, status=status, headers=headers, is_sse=self.is_sse)
        self._ready.set()

    async def _append(self, name: bytes | None, data: bytes) -> None:
        seq = await self.log.append(name, data)
        if self.publisher is not None:
            await self.publisher.add(seq, name, data)

    async def body(self, data: bytes) -> None:
        if not self.is_sse:  # a whole JSON answer is one event
            await self._append(None, data)
            return
        watch = self.watch
        for event in self._parser.feed(data):
            if event.data or event.name:  # comments (upstream keep-alives) are not events
                if watch is None:
                    await self._append(event.name, event.data)
                    continue
                known = watch.response_id
                await self._append(event.name,
                                   watch.event(event.name, event.data, self.log.last_seq + 1))
                if known is None and watch.response_id is not None:
                    await self._identify(watch)

    async def _identify(self, watch: ResponseWatch) -> None:
        assert watch.response_id is not None
        if self._on_identified is not None:
            self._on_identified(watch.response_id)
        if self.shared is not None:
            where, request_id = self.shared
            await where.record(request_id, response_id=watch.response_id,
                               response=orjson.dumps(watch.snapshot))
        self.identified.set()

    async def error(self, error: RouterError, shape: ApiShape) -> None:
        if self.started:  # only reachable for answers already under way
            await self.body(error.sse_event(shape))  # type: ignore[arg-type]
            return
        self.error_sent = (error, shape)
        self.status = error.status
        self._ready.set()

    def settled(self, settled: Settled) -> None:
        self.settlement = settled

    async def wait_ready(self) -> None:
        """Until the answer started, or was refused before it could."""
        await self._ready.wait()

    def release(self) -> None:
        """The stream ended: whoever waits for its start or its id waits no more."""
        self._ready.set()
        self.identified.set()
        self.ended.set()


@dataclass(eq=False, slots=True)
class HubStream:
    request_id: str
    account: str
    client_id: str | None  # the websocket frame id, for resumes from another socket
    sink: LogSink
    lane: str | None = None  # a Responses websocket's `stream_id`, echoed on its events
    background: bool = False  # runs apart from any client: never cancelled for lack of one
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    readers: int = 0
    idle_since: float | None = None  # trio time the last reader left
    cancelled: bool = False

    @property
    def response_id(self) -> str | None:
        watch = self.sink.watch
        return watch.response_id if watch is not None else None

    async def wait_identified(self) -> None:
        """Until the Responses stream's id is known, or it ended without one."""
        await self.sink.identified.wait()

    async def wait_ended(self) -> None:
        await self.sink.ended.wait()

    def response_object(self) -> dict[str, Any] | None:
        """What `GET /v1/responses/{id}` returns now (None: nothing to show yet)."""
        watch = self.sink.watch
        if watch is None:
            return None
        error = None
        if self.sink.error_sent is not None:
            error = (self.sink.error_sent[0].code, self.sink.error_sent[0].message)
        return retrieved(watch.snapshot, done=self.log.done, cancelled=self.cancelled,
                         error=error)

    @property
    def log(self) -> StreamLog:
        return self.sink.log

    @property
    def started(self) -> bool:
        return self.sink.started

    @property
    def status(self) -> int:
        return self.sink.status

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return self.sink.headers

    @property
    def is_sse(self) -> bool:
        return self.sink.is_sse

    async def wait_ready(self) -> None:
        await self.sink.wait_ready()

    def refusal(self, shape: ApiShape) -> tuple[RouterError, ApiShape]:
        """Why a stream that never started has no answer, in the API shape to tell it."""
        if self.sink.error_sent is not None:
            return self.sink.error_sent
        if self.cancelled:
            return StreamCancelled("the stream was cancelled before it started"), shape
        return RouterError("the router failed to handle this request"), shape

    def describe(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "account": self.account,
                "id": self.client_id, "response_id": self.response_id,
                "background": self.background, "readers": self.readers, "done": self.log.done,
                "cancelled": self.cancelled, "last_seq": self.log.last_seq,
                "first_kept": self.log.first_kept, "kept_bytes": self.log.kept_bytes}


class StreamHub:
    """Owns the detached streams; `run` it in the root nursery before serving."""

    def __init__(self, rt: "Runtime", *, window_s: float, buffer_bytes: int,
                 max_detached: int = 32, shared: SharedStreams | None = None) -> None:
        self.rt = rt
        self.window_s = window_s
        self.buffer_bytes = buffer_bytes
        self.max_detached = max_detached  # per account: running streams nobody reads
        self.shared = shared  # with REDIS_URL: every stream in Redis too (any instance)
        self._nursery: trio.Nursery | None = None
        self._by_request: dict[str, HubStream] = {}
        self._by_client: dict[tuple[str, str], HubStream] = {}
        self._by_response: dict[str, HubStream] = {}

    async def run(self, *, task_status: trio.TaskStatus[StreamHub] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._expire_forever)
            if self.shared is not None:  # cancels asked on other instances
                await nursery.start(partial(self.shared.logs.watch_cancels, self.shared.owner,
                                            self._cancel_request))
            task_status.started(self)

    def streams(self) -> list[ResumableStream]:
        return list(self._by_request.values())

    def start(self, call: ModelCall, account: str, client_id: str | None = None, *,
              lane: str | None = None, background: bool = False) -> HubStream:
        """Run `call` here; a Responses call (`openai.responses`) is numbered and findable
        by its response id once the upstream named it."""
        assert self._nursery is not None, "the hub is not running"
        watch = ResponseWatch(background) if call.api == "openai.responses" else None
        stream = HubStream(call.request_id, account, client_id, LogSink(
            StreamLog(self.buffer_bytes), watch,
            None if watch is None else lambda rid: self._identified(stream, rid)),
            lane=lane, background=background)
        self._by_request[call.request_id] = stream
        if client_id is not None:
            self._by_client[(account, client_id)] = stream
        self._nursery.start_soon(self._run_stream, stream, call)
        return stream

    def _identified(self, stream: HubStream, response_id: str) -> None:
        self._by_response[response_id] = stream

    def _cancel_request(self, request_id: str) -> None:
        stream = self._by_request.get(request_id)
        if stream is not None and not stream.log.done:
            log.info("stream %s: cancelled from another instance", request_id)
            self.cancel(stream)

    async def locate(self, account: str, *, request_id: str | None = None,
                     client_id: str | None = None, response_id: str | None = None
                     ) -> ResumableStream | None:
        """`find`, then (with REDIS_URL) the streams other instances run."""
        found = self.find(account, request_id=request_id, client_id=client_id,
                          response_id=response_id)
        if found is not None or self.shared is None:
            return found
        return await self.shared.locate(account, request_id=request_id,
                                        client_id=client_id, response_id=response_id)

    def find(self, account: str, *, request_id: str | None = None,
             client_id: str | None = None, response_id: str | None = None
             ) -> ResumableStream | None:
        """A stream of this account; another account's streams do not exist for it."""
        if request_id is not None:
            stream = self._by_request.get(request_id)
        elif response_id is not None:
            stream = self._by_response.get(response_id)
        else:
            stream = self._by_client.get((account, client_id or ""))
        return stream if stream is not None and stream.account == account else None

    def attach(self, stream: ResumableStream) -> None:
        if isinstance(stream, RemoteStream):
            return  # its reader renews its lease in Redis as it reads
        assert isinstance(stream, HubStream)
        stream.readers += 1
        stream.idle_since = None

    def detach(self, stream: ResumableStream) -> None:
        if isinstance(stream, RemoteStream):
            return
        assert isinstance(stream, HubStream)
        stream.readers -= 1
        if stream.readers == 0:
            stream.idle_since = trio.current_time()
            if not stream.log.done and not stream.background:
                self._cap_detached(stream.account)

    def _cap_detached(self, account: str) -> None:
        """At most `max_detached` of an account's streams run with nobody reading them
        (a client that keeps dropping its sockets): beyond it the one left longest ago is
        cancelled, billed for what it produced."""
        detached = [s for s in self._by_request.values()
                    if s.account == account and not s.readers and not s.background
                    and not s.log.done and not s.cancelled and s.idle_since is not None]
        if len(detached) <= self.max_detached:
            return
        detached.sort(key=lambda s: s.idle_since or 0.0)
        for stream in detached[:len(detached) - self.max_detached]:
            log.info("stream %s: account %s has over %d detached streams; cancelling the "
                     "oldest", stream.request_id, account, self.max_detached)
            self.cancel(stream)

    def cancel(self, stream: ResumableStream) -> None:
        """Stop the stream now; settlement bills what was produced."""
        if isinstance(stream, RemoteStream):  # its owner stops it
            assert self._nursery is not None and self.shared is not None
            self._nursery.start_soon(self.shared.cancel(stream.request_id))
            return
        assert isinstance(stream, HubStream)
        stream.cancelled = True
        stream.scope.cancel()

    async def _run_stream(self, stream: HubStream, call: ModelCall) -> None:
        shared, sink = self.shared, stream.sink
        if shared is None or not await shared.register(stream, call.api):
            await self._run_call(stream, call)
            return
        publisher = sink.publisher = shared.publisher(stream.request_id)
        sink.shared = (shared, stream.request_id)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(publisher.run)
                try:
                    await self._run_call(stream, call)
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await self._publish_end(shared, publisher, stream)
        except Exception:  # noqa: BLE001 - the shared copy failing must not stop the hub
            log.exception("stream %s: keeping it in Redis failed", stream.request_id)

    @staticmethod
    async def _publish_end(shared: SharedStreams, publisher: LogPublisher,
                           stream: HubStream) -> None:
        """The done marker with the bill, and how the stream ended, for the others."""
        sink, settled = stream.sink, stream.sink.settlement
        await publisher.finish(None if settled is None else orjson.dumps(settled.summary()))
        watch = sink.watch
        await shared.record(
            stream.request_id, state="cancelled" if stream.cancelled else "done",
            response=orjson.dumps(watch.snapshot) if watch is not None
            and watch.snapshot is not None else None)

    async def _run_call(self, stream: HubStream, call: ModelCall) -> None:
        try:
            with stream.scope:
                await run_model_call(self.rt, call, stream.sink)
        except Exception:  # noqa: BLE001 - one stream's bug must not stop the others
            log.exception("stream %s failed", stream.request_id)
        finally:
            sink = stream.sink
            stream.log.finish(sink.settlement)  # the bill the `done` frame reports
            sink.release()  # a refused or crashed stream has readers to release
            if stream.readers == 0:
                stream.idle_since = trio.current_time()

    async def _expire_forever(self) -> None:
        while True:
            await trio.sleep(SWEEP_INTERVAL_S)
            now = trio.current_time()
            if self.shared is not None:  # read on another instance: not idle
                for stream in self._idle_running(now):
                    if await self.shared.remote_reader_active(stream.request_id):
                        stream.idle_since = now
            self.expire(now)

    def _idle_running(self, now: float) -> list[HubStream]:
        return [s for s in self._by_request.values()
                if not s.readers and s.idle_since is not None and not s.log.done
                and not s.background and now - s.idle_since >= self.window_s]

    def expire(self, now: float) -> None:
        """Cancel streams nobody resumed within the window; forget finished ones."""
        for stream in list(self._by_request.values()):
            if stream.readers or stream.idle_since is None \
                    or now - stream.idle_since < self.window_s:
                continue
            if not stream.log.done and stream.background:
                continue  # runs to its end; kept for the window after it
            if not stream.log.done:
                log.info("stream %s: nobody resumed within %.0f s; cancelling",
                         stream.request_id, self.window_s)
                self.cancel(stream)
                continue
            del self._by_request[stream.request_id]
            if stream.response_id is not None and \
                    self._by_response.get(stream.response_id) is stream:
                del self._by_response[stream.response_id]
            if stream.client_id is not None and \
                    self._by_client.get((stream.account, stream.client_id)) is stream:
                del self._by_client[(stream.account, stream.client_id)]

