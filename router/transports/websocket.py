"""The websocket transport (`/v1/ws`, docs/websocket.md): several streams on one connection, built
for mobile networks that drop.

One connection = one nursery, owned by this handler: the frame reader runs in it, and one
forwarder task per attached stream copies that stream's events from the hub's log to the
socket. The streams themselves run in the stream hub, not here: when the socket drops
without a `cancel` frame they keep running, and a `resume` frame on a new socket (same
account, same stream id) replays the events after the last one the client saw, then
continues live. Billing is the pipeline's, as on HTTP; the `done` frame reports it.

Every frame goes through the connection's `SocketWriter` (router/transports/ws_writer.py),
which owns the socket's sends. Backpressure: a forwarder waits on the writer's small
buffer; while it waits its stream's log fills to `STREAM_BUFFER_BYTES`, then the stream
stops reading from the provider. Forwarders take turns, so one busy stream cannot starve
the others, and nothing grows without bound. Bad frames get an `error` frame naming the
problem; the connection and its other streams live on.

Half-open sockets (a peer gone without FIN or RST): the writer declares the socket gone
when a ping went unanswered for two ping intervals, or when frames waited and none could
be sent for as long (at least `WS_STALL_S`). The connection then ends as if the socket
had dropped: its streams detach and stay resumable, while the send stuck in the server is
left to TCP.
"""

from __future__ import annotations

import logging
import secrets
from functools import cache, partial
from typing import Any, Awaitable, Callable

import orjson
import trio

from router.auth.credentials import credential_in
from router.errors import EventsGone, RouterError
from router.gateway import Gateway, ModelCall, ResumableStream, Settled
from router.protocols.formats import CLIENT_APIS, FORMATS
from router.stream_log import EventLog, LoggedEvent
from router.transports.ws_liveness import unanswered_s
from router.transports.ws_writer import SocketGone, SocketWriter

log = logging.getLogger("aura.ws")
Message = dict[str, Any]
MAX_ID_LENGTH = 128
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
REFUSED_GRACE_S = 1.0


def error_frame(message: str, *, stream_id: str | None = None, status: int = 400,
                kind: str = "invalid_request_error") -> bytes:
    frame: dict[str, Any] = {"type": "error"}
    if stream_id is not None:
        frame["id"] = stream_id
    frame["error"] = {"type": kind, "message": message}
    frame["status"] = status
    return orjson.dumps(frame)


def _router_error_frame(stream_id: str, error: RouterError, shape: str) -> bytes:
    kind = error.anthropic_type if shape == "anthropic" else error.openai_type
    return error_frame(error.message, stream_id=stream_id, status=error.status, kind=kind)


def done_frame(stream_id: str, settled: Settled | bytes | None) -> bytes:
    """The bill: a `Settled` here, or its summary as JSON (a stream another instance ran,
    read from Redis); None: the stream ended unbilled (refused, or the ledger is late)."""
    if isinstance(settled, Settled):
        summary: dict[str, Any] = settled.summary()
    elif isinstance(settled, bytes):
        summary = orjson.loads(settled)
    else:
        summary = {"usage": None, "cost_micros": 0, "available_micros": None}
    return orjson.dumps({"type": "done", "id": stream_id, **summary})


def event_frame(id_json: bytes, event: LoggedEvent) -> bytes:
    """`data` is exactly what the SSE `data:` line carried (spliced, not re-encoded)."""
    data = event.data
    if data[:1] not in (b"{", b"["):
        data = orjson.dumps(data.decode("utf-8", "replace"))
    name = b',"event":' + orjson.dumps(event.name.decode("latin-1")) if event.name else b""
    return (b'{"type":"event","id":' + id_json + b',"seq":%d' % event.seq + name
            + b',"data":' + data + b"}")


class Connection:
    """One websocket: its credential, its account and the streams attached to it."""

    def __init__(self, gw: Gateway, writer: SocketWriter, nursery: trio.Nursery) -> None:
        self.gw = gw
        self.config = gw.config
        self.writer = writer
        self.nursery = nursery
        self.credential: str | None = None
        self.account_header: str | None = None
        self.account: str | None = None
        self.forwarders: dict[str, trio.CancelScope] = {}

    async def send(self, frame: bytes) -> None:
        """Raises `SocketGone` once the socket is gone: the caller's task ends."""
        await self.writer.send_text(frame)

    async def authenticate(self, credential: str | None) -> bool:
        try:
            principal = await self.gw.authenticate(credential, self.account_header)
        except RouterError as exc:
            await self.send(error_frame(exc.message, status=exc.status,
                                        kind=exc.openai_type))
            return False
        self.credential, self.account = credential, principal.account
        return True

    # --- frames ------------------------------------------------------------------------

    async def on_frame(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > self.config.ws_max_frame_bytes:
            await self.send(error_frame(f"frame of {size} bytes is over the limit of "
                                        f"{self.config.ws_max_frame_bytes}", status=413))
            return
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.send(error_frame("frame is not JSON"))
            return
        if not isinstance(frame, dict):
            await self.send(error_frame("frame must be a JSON object"))
            return
        kind = frame.get("type")
        if not isinstance(kind, str):
            await self.send(error_frame("'type' must be a string"))
            return
        if kind == "ping":
            await self.send(b'{"type":"pong"}')
            return
        if kind == "auth":
            await self.send(error_frame("this connection is authenticated already"))
            return
        handler = {"request": self.on_request, "cancel": self.on_cancel,
                   "resume": self.on_resume}.get(kind)  # type: ignore[arg-type]
        if handler is None:
            await self.send(error_frame(f"unknown frame type {kind!r}; expected request, "
                                        "cancel, resume or ping"))
            return
        stream_id = frame.get("id")
        if not isinstance(stream_id, str) or not 0 < len(stream_id) <= MAX_ID_LENGTH:
            await self.send(error_frame(f"a {kind} frame needs an 'id' string of 1 to "
                                        f"{MAX_ID_LENGTH} characters"))
            return
        try:
            await handler(stream_id, frame)
        except SocketGone:
            raise
        except Exception:  # noqa: BLE001 - one bad frame must not end the connection
            log.exception("websocket frame %r failed", kind)
            await self.send(error_frame("the router failed to handle this frame",
                                        stream_id=stream_id, status=500, kind="api_error"))

    def _live(self, stream_id: str) -> ResumableStream | None:
        assert self.account is not None
        return self.gw.streams.find(self.account, client_id=stream_id)

    async def _anywhere(self, stream_id: str) -> ResumableStream | None:
        """The stream on this instance, or (with REDIS_URL) on the one that runs it."""
        assert self.account is not None
        return await self.gw.streams.locate(self.account, client_id=stream_id)

    async def on_request(self, stream_id: str, frame: dict[str, Any]) -> None:
        assert self.account is not None
        api, body = frame.get("api"), frame.get("body")
        if not isinstance(api, str) or api not in CLIENT_APIS:
            await self.send(error_frame(f"'api' must be one of {', '.join(CLIENT_APIS)}",
                                        stream_id=stream_id))
            return
        if not isinstance(body, dict):
            await self.send(error_frame("'body' must be an object", stream_id=stream_id))
            return
        existing = self._live(stream_id)
        if stream_id in self.forwarders or (existing is not None and not existing.log.done):
            await self.send(error_frame(f"stream id {stream_id!r} is in use; ids must be "
                                        "unique among live streams", stream_id=stream_id))
            return
        if len(self.forwarders) >= self.config.ws_max_streams:
            await self.send(error_frame(
                f"at most {self.config.ws_max_streams} streams at once on a connection",
                stream_id=stream_id, status=429, kind="rate_limit_error"))
            return
        call = ModelCall(api=str(api), body=orjson.dumps(body), credential=self.credential,
                         request_id="req_" + secrets.token_hex(12),
                         account_header=self.account_header)
        stream = self.gw.streams.start(call, self.account, stream_id)
        self._forward(stream_id, stream, 0, FORMATS[str(api)].shape)

    async def on_cancel(self, stream_id: str, frame: dict[str, Any]) -> None:
        stream = await self._anywhere(stream_id)
        if stream is None:
            await self.send(error_frame(f"no stream {stream_id!r} to cancel",
                                        stream_id=stream_id, status=404))
            return
        self.gw.streams.cancel(stream)  # its forwarder, if any, still sends the `done` bill

    async def on_resume(self, stream_id: str, frame: dict[str, Any]) -> None:
        after = frame.get("after", 0)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self.send(error_frame("'after' must be a non-negative integer",
                                        stream_id=stream_id))
            return
        # A resume hands over an answer: the credential must still be good (a key
        # revoked, or a JWT expired, since the socket opened cannot take it).
        try:
            principal = await self.gw.authenticate(self.credential, self.account_header)
        except RouterError as exc:
            await self.send(error_frame(exc.message, stream_id=stream_id, status=exc.status,
                                        kind=exc.openai_type))
            return
        if principal.account != self.account:
            await self.send(error_frame("this credential no longer belongs to the account "
                                        "that opened the connection", stream_id=stream_id,
                                        status=403, kind="permission_error"))
            return
        stream = await self._anywhere(stream_id)
        if stream is None:
            await self.send(error_frame(f"no stream {stream_id!r} to resume (streams are kept "
                                        f"{self.config.resume_window_s} s after their "
                                        "client left)", stream_id=stream_id, status=404))
            return
        if stream_id in self.forwarders:
            await self.send(error_frame(f"stream {stream_id!r} is already attached to this "
                                        "connection", stream_id=stream_id))
            return
        try:
            await stream.log.check_after(after)
        except EventsGone as exc:
            await self.send(error_frame(str(exc), stream_id=stream_id, status=410))
            return
        self._forward(stream_id, stream, after, "openai")

    # --- forwarding --------------------------------------------------------------------

    def _forward(self, stream_id: str, stream: ResumableStream, after: int,
                 shape: str) -> None:
        scope = trio.CancelScope()
        self.forwarders[stream_id] = scope
        self.gw.streams.attach(stream)
        self.nursery.start_soon(self._forwarder, stream_id, stream, after, shape, scope)

    async def _forwarder(self, stream_id: str, stream: ResumableStream, after: int,
                         shape: str, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await stream.wait_ready()
                if not stream.started:
                    await self.send(_router_error_frame(stream_id, *stream.refusal(shape)))
                    return
                id_json = orjson.dumps(stream_id)
                log_ = stream.log
                try:
                    if stream.is_sse:
                        while events := await log_.read_after(after):
                            for event in events:
                                if event.data != b"[DONE]":
                                    await self.send(event_frame(id_json, event))
                            after = events[-1].seq
                    elif (answer := await _whole_answer(log_)) and answer.seq > after:
                        await self.send(event_frame(id_json, answer))
                except EventsGone as exc:  # another reader of this stream ran far ahead
                    await self.send(error_frame(f"this connection fell behind: {exc}; resume "
                                                "from a later event", stream_id=stream_id,
                                                status=410))
                    return
                await self.send(done_frame(stream_id, log_.final))
        except SocketGone:
            pass  # the connection is ending; the stream stays resumable
        finally:
            self.gw.streams.detach(stream)
            if self.forwarders.get(stream_id) is scope:
                del self.forwarders[stream_id]


async def _whole_answer(log_: EventLog) -> LoggedEvent | None:
    """A JSON (`stream: false`) answer as one event, once the stream is done: whatever
    pieces the log holds, joined, from the first (`EventsGone` if that is no longer kept),
    never a part of it. Numbered as its last piece: a resume after that gets only `done`."""
    pieces: list[LoggedEvent] = []
    while events := await log_.read_after(pieces[-1].seq if pieces else 0):
        pieces += events
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0]
    return LoggedEvent(pieces[-1].seq, None, b"".join(p.data for p in pieces), pieces[-1].end)


def writer_for(gw: Gateway, scope: dict[str, Any],
               send: Callable[[Message], Awaitable[None]]) -> SocketWriter:
    """The socket's writer: gone when a ping (hypercorn pings every `WS_PING_INTERVAL_S`;
    any live client answers) went unanswered for two intervals, or when frames waited and
    none could be sent for two intervals but at least `WS_STALL_S`: a client that
    merely reads slowly, or a network that pauses for a handover, is left that long."""
    ping_s = gw.config.ws_ping_interval_s
    silent_s = 2.0 * ping_s if ping_s and ping_s > 0 else None
    if silent_s and unanswered_s(scope) is None:
        _warn_no_liveness()
    return SocketWriter(send, stall_s=max(silent_s or 0.0, gw.config.ws_stall_s), silent_s=silent_s,
                        liveness=partial(unanswered_s, scope))


@cache
def _warn_no_liveness() -> None:
    log.warning("the server does not record websocket pongs (record_peer_liveness not "
                "installed, or hypercorn changed): a vanished client is detected only once "
                "sends stall")


async def serve_websocket(gw: Gateway, scope: dict[str, Any],
                          receive: Callable[[], Awaitable[Message]],
                          send: Callable[[Message], Awaitable[None]]) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    headers = dict(scope.get("headers") or ())
    writer = writer_for(gw, scope, send)
    connections = gw.metrics.ws_connections  # aura_ws_connections: once per connection
    # This nursery owns the writer, whose send may be stuck in the server until TCP gives
    # up (hypercorn shields it, and would block in its own close after us anyway); the
    # connection inside ends as soon as the writer says the socket is gone, so its
    # streams detach (and the gauge drops) at once.
    async with trio.open_nursery() as writing:
        await writing.start(writer.run)
        connections.inc()
        try:
            code = await _serve_connection(gw, headers, receive, writer)
        finally:
            connections.dec()
        await writer.close(code, "no word from the client: resume on a new socket"
                           if writer.gone.is_set() else None)


async def _serve_connection(gw: Gateway, headers: dict[bytes, bytes],
                            receive: Callable[[], Awaitable[Message]],
                            writer: SocketWriter) -> int:
    """Serve the connection's frames until the peer leaves or the socket is gone; the
    close code to end with."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.cancel_when_gone, nursery.cancel_scope)
        conn = Connection(gw, writer, nursery)
        account = headers.get(b"x-aura-account")
        conn.account_header = account.decode("latin-1") if account else None
        credential = credential_in(headers)
        try:
            if credential is not None:
                authenticated = await conn.authenticate(credential)
            else:
                authenticated = await _first_frame_auth(conn, receive)
            if not authenticated:
                # The client hears why before the close: a close that overtakes its first
                # frame makes clients (trio-websocket) fail the send and take the refusal
                # for a network drop, so it gets a moment to read the error and leave.
                with trio.move_on_after(REFUSED_GRACE_S):
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                nursery.cancel_scope.cancel()
                return CLOSE_POLICY_VIOLATION
            # streams without a cancel keep running in the hub, whatever the close code
            await read_messages(receive, conn.on_frame, lambda: conn.send(
                error_frame("frames must be text (JSON), not binary")))
        except SocketGone:
            pass
        nursery.cancel_scope.cancel()
    return CLOSE_GOING_AWAY if writer.gone.is_set() else CLOSE_NORMAL


async def read_messages(receive: Callable[[], Awaitable[Message]],
                        on_text: Callable[[str], Awaitable[None]],
                        on_binary: Callable[[], Awaitable[None]]) -> int | None:
    """Hand each text message to `on_text` (a binary one to `on_binary`) until the peer
    leaves; the close code it left with (None: no close frame)."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message.get("code")
        if message["type"] != "websocket.receive":
            continue
        text = message.get("text")
        if text is None:
            await on_binary()
            continue
        await on_text(text)


async def _first_frame_auth(conn: Connection,
                            receive: Callable[[], Awaitable[Message]]) -> bool:
    """No credential on the upgrade: the first frame must be {"type": "auth", "token"}."""
    with trio.move_on_after(conn.config.ws_auth_timeout_s):
        message = await receive()
        if message["type"] != "websocket.receive":
            return False
        try:
            frame = orjson.loads(message.get("text") or b"")
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "auth" or not isinstance(
                frame.get("token"), str):
            await conn.send(error_frame("authenticate first: send {\"type\": \"auth\", "
                                        "\"token\": \"...\"} or an Authorization header",
                                        status=401, kind="authentication_error"))
            return False
        return await conn.authenticate(frame["token"])
    await conn.send(error_frame(f"no auth frame within {conn.config.ws_auth_timeout_s} s",
                                status=401, kind="authentication_error"))
    return False
