"""OpenAI's Responses websocket mode (`GET /v1/responses`, upgrade; docs/websocket.md):
what the official SDKs open with `client.responses.connect()`, served to any model.

The credential is on the upgrade (`Authorization`, as on HTTP); a refused one refuses the
upgrade with its HTTP status and an OpenAI error body. Client messages are
`response.create` events (the body of `POST /v1/responses`; `stream` is implied, and
`background` is refused, as OpenAI does); the answer is the same `response.*` events the
SSE stream carries, one JSON message each, with the `stream_id` of the create echoed on
each. Creates with the same `stream_id` (a lane; none is a lane too) run one after
another; lanes run side by side, at most `WS_MAX_STREAMS` of them. Errors are
`{"type": "error", "status": ..., "error": {"type", "code", "message", "param"}}`.

Every response runs in the stream hub, numbered by the router (`sequence_number` is the
event's place in the stream, from 0): a socket that drops leaves it running for
`RESUME_WINDOW_S`, and a socket opened with `?resume=<response id>&starting_after=<n>`
(what an SDK's `on_reconnecting` hook sets) replays the events after n and continues
live, exactly once. A socket the client closes normally (code 1000) cancels what it was
still reading: the user closed it on purpose and pays only for what was produced.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

import orjson
import trio

from router.auth.credentials import credential_in
from router.errors import (BadRequest, BodyTooLarge, EventsGone, Gone, NotFound, ProviderFailed,
                           RateLimited, RouterError, StreamCancelled)
from router.gateway import Gateway, ModelCall, ResumableStream
from router.protocols.responses_state import log_after
from router.redact import quote_input
from router.transports.websocket import (CLOSE_GOING_AWAY, CLOSE_NORMAL, read_messages,
                                         writer_for)
from router.transports.ws_writer import SocketGone, SocketWriter

log = logging.getLogger("aura.ws")
Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]
MAX_LANE_LENGTH = 128
MAX_QUEUED_PER_LANE = 16
_TERMINAL_EVENTS = (b"response.completed", b"response.incomplete", b"response.failed")


def ws_error(error: RouterError, lane: str | None = None) -> bytes:
    """An error message as the SDK's `ResponseWsError` reads it."""
    frame: dict[str, Any] = {"type": "error", "status": error.status, "error": {
        "type": error.openai_type, "code": error.code, "message": error.message,
        "param": error.param}}
    if lane is not None:
        frame["stream_id"] = lane
    return orjson.dumps(frame)


def ws_event(data: bytes, lane_json: bytes | None) -> bytes:
    """One logged SSE event's data as a websocket message: the same JSON, with the lane
    spliced in (not re-encoded); an error written as `{"error": ...}` (the SSE form the
    SDK's HTTP stream reads) becomes a typed `error` event."""
    if data.startswith(b'{"error":'):
        data = b'{"type":"error",' + data[1:]
    end = data.rstrip()
    if lane_json is None or not end.endswith(b"}"):
        return data
    return end[:-1] + b',"stream_id":' + lane_json + b"}"


@dataclass(eq=False)
class Lane:
    """A `stream_id`'s responses, one after another."""

    name: str | None
    queue: deque[ModelCall | tuple[ResumableStream, int]] = field(default_factory=deque)


class ResponsesSocket:
    """One Responses websocket: its account and the lanes it runs."""

    def __init__(self, gw: Gateway, account: str, credential: str | None,
                 account_header: str | None, writer: SocketWriter,
                 nursery: trio.Nursery) -> None:
        self.gw = gw
        self.config = gw.config
        self.account = account
        self.credential = credential
        self.account_header = account_header
        self.writer = writer
        self.nursery = nursery
        self.lanes: dict[str | None, Lane] = {}
        self.reading: set[ResumableStream] = set()

    async def send(self, frame: bytes) -> None:
        """Raises `SocketGone` once the socket is gone: the caller's task ends."""
        await self.writer.send_text(frame)

    # --- client messages ----------------------------------------------------------------

    async def on_message(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > self.config.ws_max_frame_bytes:
            await self.send(ws_error(BodyTooLarge(
                f"message of {size} bytes is over the limit of "
                f"{self.config.ws_max_frame_bytes}")))
            return
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.send(ws_error(BadRequest("the message is not JSON")))
            return
        if not isinstance(event, dict):
            await self.send(ws_error(BadRequest("a message must be a JSON object")))
            return
        kind = event.get("type")
        if kind != "response.create":
            what = "is not supported by this router" if kind == "response.steer" else \
                "is not a client event; send response.create"
            await self.send(ws_error(BadRequest(f"'type' {quote_input(str(kind)[:64])} {what}",
                                                param="type")))
            return
        lane = event.get("stream_id")
        if lane is not None and (not isinstance(lane, str)
                                 or not 0 < len(lane) <= MAX_LANE_LENGTH):
            await self.send(ws_error(BadRequest(
                f"'stream_id' must be a string of 1 to {MAX_LANE_LENGTH} characters",
                param="stream_id")))
            return
        if event.get("background"):
            await self.send(ws_error(BadRequest(
                "'background' is not supported over the websocket; use POST /v1/responses",
                param="background"), lane))
            return
        body = {k: v for k, v in event.items() if k not in ("type", "stream_id", "stream")}
        body["stream"] = True
        call = ModelCall(api="openai.responses", body=orjson.dumps(body),
                         credential=self.credential,
                         request_id="req_" + secrets.token_hex(12),
                         account_header=self.account_header, cache_hint="false")
        await self._enqueue(lane, call)

    async def resume(self, response_id: str, starting_after: str | None) -> None:
        """`?resume=<response id>&starting_after=<n>` on the upgrade."""
        if starting_after is not None and not starting_after.isdigit():
            await self.send(ws_error(BadRequest(
                "'starting_after' must be a non-negative integer", param="starting_after")))
            return
        after = log_after(int(starting_after) if starting_after is not None else None)
        stream = await self.gw.streams.locate(self.account, response_id=response_id[:256])
        if stream is None:
            await self.send(ws_error(NotFound(
                f"no response {quote_input(response_id[:256])} to resume (responses are "
                f"kept {self.config.resume_window_s} s after their client left)",
                param="resume")))
            return
        try:
            await stream.log.check_after(after)
        except EventsGone as exc:
            await self.send(ws_error(Gone(f"cannot resume after that event: {exc}",
                                          param="starting_after"), stream.lane))
            return
        await self._enqueue(stream.lane, (stream, after))

    async def _enqueue(self, name: str | None,
                       job: ModelCall | tuple[ResumableStream, int]) -> None:
        lane = self.lanes.get(name)
        if lane is not None:
            if len(lane.queue) >= MAX_QUEUED_PER_LANE:
                await self.send(ws_error(RateLimited(
                    f"at most {MAX_QUEUED_PER_LANE} responses may wait on a stream_id"),
                    name))
                return
            lane.queue.append(job)
            return
        if len(self.lanes) >= self.config.ws_max_streams:
            await self.send(ws_error(RateLimited(
                f"at most {self.config.ws_max_streams} stream_id lanes at once on a "
                "connection"), name))
            return
        lane = self.lanes[name] = Lane(name)
        lane.queue.append(job)
        self.nursery.start_soon(self._run_lane, lane)

    # --- answers --------------------------------------------------------------------------

    async def _run_lane(self, lane: Lane) -> None:
        try:
            while lane.queue:
                job = lane.queue.popleft()
                if isinstance(job, ModelCall):
                    stream = self.gw.streams.start(job, self.account, lane=lane.name)
                    await self._forward(stream, 0, lane.name)
                else:
                    await self._forward(job[0], job[1], lane.name)
        except SocketGone:
            pass  # the socket is gone: its responses run on, for a resume
        finally:
            del self.lanes[lane.name]

    async def _forward(self, stream: ResumableStream, after: int, lane: str | None) -> None:
        hub = self.gw.streams
        hub.attach(stream)
        self.reading.add(stream)
        lane_json = orjson.dumps(lane) if lane is not None else None
        try:
            await stream.wait_ready()
            if not stream.started:
                await self.send(ws_error(stream.refusal("openai")[0], lane))
                return
            ended = False
            try:
                while events := await stream.log.read_after(after):
                    for event in events:
                        if event.data != b"[DONE]":
                            ended = ended or event.name in _TERMINAL_EVENTS
                            await self.send(ws_event(event.data, lane_json))
                    after = events[-1].seq
            except EventsGone as exc:  # another reader of it ran far ahead of this one
                await self.send(ws_error(Gone(f"this connection fell behind: {exc}; "
                                              "reconnect with a later starting_after"), lane))
                return
            if not ended:
                await self.send(ws_error(_unfinished(stream), lane))
        finally:
            self.reading.discard(stream)
            hub.detach(stream)

    def cancel_reading(self) -> None:
        for stream in list(self.reading):
            self.gw.streams.cancel(stream)


def _unfinished(stream: ResumableStream) -> RouterError:
    """Why a response ended without a final event (cancelled, or cut upstream)."""
    body = stream.response_object() or {}
    if body.get("status") == "cancelled":
        return StreamCancelled("the response was cancelled")
    return ProviderFailed(str((body.get("error") or {}).get("message")
                              or "the response ended before it completed"))


async def serve_responses_websocket(gw: Gateway, scope: dict[str, Any],
                                    receive: Callable[[], Awaitable[Message]],
                                    send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    headers: dict[bytes, bytes] = dict(scope.get("headers") or ())
    credential = credential_in(headers)
    account_header = headers.get(b"x-aura-account")
    account_text = account_header.decode("latin-1") if account_header else None
    try:
        principal = await gw.authenticate(credential, account_text)
    except RouterError as exc:
        await _refuse_upgrade(scope, send, exc)
        return
    await send({"type": "websocket.accept"})
    writer = writer_for(gw, scope, send)
    connections = gw.metrics.ws_connections
    # As for /v1/ws (router/transports/websocket.py): this nursery owns the writer, whose
    # send may be stuck until TCP gives up; the connection inside ends as soon as the
    # writer says the socket is gone, so its responses detach at once, resumable.
    async with trio.open_nursery() as writing:
        await writing.start(writer.run)
        connections.inc()
        try:
            code = await _serve_socket(gw, scope, principal.account, credential,
                                       account_text, receive, writer)
        finally:
            connections.dec()
        await writer.close(code, "no word from the client: resume on a new socket"
                           if writer.gone.is_set() else None)


async def _serve_socket(gw: Gateway, scope: dict[str, Any], account: str,
                        credential: str | None, account_header: str | None,
                        receive: Callable[[], Awaitable[Message]],
                        writer: SocketWriter) -> int:
    """Serve the socket's messages until the peer leaves or the socket is gone; the close
    code to end with."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.cancel_when_gone, nursery.cancel_scope)
        conn = ResponsesSocket(gw, account, credential, account_header, writer, nursery)
        try:
            query = parse_qs(scope.get("query_string", b"")[:2048].decode("latin-1"))
            if "resume" in query:
                await conn.resume(query["resume"][0], query.get("starting_after", [None])[0])
            code = await read_messages(receive, conn.on_message, lambda: conn.send(
                ws_error(BadRequest("messages must be text (JSON)"))))
            if code == CLOSE_NORMAL:
                conn.cancel_reading()  # closed on purpose: stop paying for it
            # otherwise its responses run on, for a resume
        except SocketGone:
            pass
        nursery.cancel_scope.cancel()
    return CLOSE_GOING_AWAY if writer.gone.is_set() else CLOSE_NORMAL


async def _refuse_upgrade(scope: dict[str, Any], send: Send, error: RouterError) -> None:
    """The upgrade refused with an HTTP answer, as OpenAI refuses a bad key (where the
    server offers the ASGI denial-response extension; else a policy-violation close)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "websocket.http.response.body", "body": error.body("openai")})
        return
    await send({"type": "websocket.close", "code": 1008})
