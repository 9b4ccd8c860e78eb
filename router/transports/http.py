"""The HTTP edge: one ASGI callable in front of hypercorn.

Model calls (`/v1/chat/completions`, `/v1/messages`) are the hot path and are handled
here directly on raw ASGI: Quart's request/response machinery costs 1-2 ms per request,
more than the whole budget for time-to-first-token overhead. Everything else (admin,
usage, models, health) goes to the Quart app. `ROUTES` below is the one routing table
for the hot path; Quart's own table serves the rest.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs
from typing import Any, Awaitable, Callable

import trio

from actors.messages import ModelCall
from actors.pipeline.auth import credential_from
from actors.pipeline.request import run_model_call
from actors.pipeline.settle import Settled
from actors.root import Runtime
from actors.stream_hub import HubStream
from router.errors import ApiShape, BadRequest, BodyTooLarge, Gone, NotFound, RouterError
from router.protocols.formats import FORMATS
from router.stream_log import EventsGone
from router.transports.sse import HEARTBEAT, number_events, parse_after, render
from router.transports.websocket import serve_websocket
from router.transports.app import build_quart_app

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LEGACY_PREFIX = "/api/latest/anthropic"
STREAMS_PREFIX = "/v1/streams/"
ROUTES: dict[str, str] = {"/v1/chat/completions": "openai.chat",
                          "/v1/responses": "openai.responses",
                          "/v1/messages": "anthropic.messages"}
_PASSTHROUGH = (b"anthropic-beta", b"anthropic-version")


REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class AsgiSink:
    """The client side of one response on raw ASGI.

    SSE answers get an `id:` on every event (numbered here, unless they come from a
    stream log that numbered them) and a heartbeat comment when idle (see `_watch`).
    """

    __slots__ = ("_send", "_request_id", "started", "sse", "next_seq", "last_write")

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self.started = False
        self.sse = False
        self.next_seq = 1  # 0: the events are numbered already
        self.last_write = 0.0

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.started = True
        for name, value in headers:
            if name == b"content-type":
                self.sse = value.startswith(b"text/event-stream")
        await self._send({"type": "http.response.start", "status": status,
                          "headers": list(headers)})

    async def body(self, data: bytes) -> None:
        if self.sse:
            self.last_write = trio.current_time()
            if self.next_seq:
                data, self.next_seq = number_events(data, self.next_seq)
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def heartbeat(self) -> None:
        await self.body(HEARTBEAT)

    async def error(self, error: RouterError, shape: str) -> None:
        headers = error.headers() + [(b"x-request-id", self._request_id.encode())]
        await self.start(error.status, tuple(headers))
        await self.body(error.body(shape))  # type: ignore[arg-type]

    def settled(self, settled: Settled) -> None:
        pass  # an HTTP answer carries its usage in its own body

    async def end(self) -> None:
        if self.started:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away while sending the body")
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _watch(receive: Receive, scope: trio.CancelScope, sink: AsgiSink,
                 heartbeat_s: float) -> None:
    """Cancel the response when the client goes away; keep an idle SSE answer alive."""
    while True:
        with trio.move_on_after(heartbeat_s):
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
            continue
        if sink.sse and trio.current_time() - sink.last_write >= heartbeat_s * 0.9:
            await sink.heartbeat()


class RouterApp:
    """The ASGI callable hypercorn serves."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.quart = build_quart_app(rt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(LEGACY_PREFIX + "/"):
                path = path[len(LEGACY_PREFIX):]
                scope = {**scope, "path": path, "raw_path": path.encode()}
            api = ROUTES.get(path)
            if api is not None and scope["method"] == "POST":
                await self._model_call(scope, receive, send, api)
                return
            if path.startswith(STREAMS_PREFIX) and scope["method"] == "GET":
                await self._resume(scope, receive, send, path[len(STREAMS_PREFIX):])
                return
        elif scope["type"] == "websocket" and scope["path"] == "/v1/ws":
            await serve_websocket(self.rt, scope, receive, send)
            return
        await self.quart(scope, receive, send)

    async def _model_call(self, scope: Scope, receive: Receive, send: Send, api: str) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        request_id = new_request_id()
        sink = AsgiSink(send, request_id)
        shape = FORMATS[api].shape
        declared = headers.get(b"content-length")
        try:
            body = await read_body(receive, self.rt.config.max_body_bytes,
                                   int(declared) if declared and declared.isdigit() else None)
        except BodyTooLarge as exc:
            await sink.error(exc, shape)
            await sink.end()
            return
        except ConnectionAbortedError:
            return
        authorization = headers.get(b"authorization")
        api_key = headers.get(b"x-api-key")
        account = headers.get(b"x-aura-account")
        idempotency_key = headers.get(b"idempotency-key")
        call = ModelCall(
            api=api, body=body, request_id=request_id,
            credential=credential_from(authorization.decode("latin-1") if authorization else None,
                                       api_key.decode("latin-1") if api_key else None),
            query=scope.get("query_string", b"").decode("latin-1"),
            passthrough_headers=tuple((k.decode(), v.decode("latin-1"))
                                      for k, v in scope["headers"] if k in _PASSTHROUGH),
            account_header=account.decode("latin-1") if account else None,
            idempotency_key=idempotency_key.decode("latin-1") if idempotency_key else None)
        if headers.get(b"x-aura-resumable", b"").lower() == b"true":
            await self._resumable_call(call, sink, receive, shape)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, receive, nursery.cancel_scope, sink,
                               self.rt.config.sse_heartbeat_s)
            await run_model_call(self.rt, call, sink)
            await sink.end()
            nursery.cancel_scope.cancel()

    async def _resumable_call(self, call: ModelCall, sink: AsgiSink, receive: Receive,
                              shape: ApiShape) -> None:
        """Run the call in the hub, then serve it from its log: the client going away
        detaches it instead of cancelling it (SPEC §5)."""
        assert self.rt.hub is not None
        try:
            principal = await self.rt.auth.authenticate(call.credential, call.account_header)
        except RouterError as exc:
            await sink.error(exc, shape)
            await sink.end()
            return
        stream = self.rt.hub.start(call, principal.account)
        await self._serve_stream(stream, sink, receive, 0, shape)

    async def _resume(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """GET /v1/streams/{request_id}: replay after Last-Event-ID (or ?after=N), then live."""
        assert self.rt.hub is not None
        headers: dict[bytes, bytes] = dict(scope["headers"])
        if not REQUEST_ID.fullmatch(request_id):
            request_id = "req_unknown"  # never echo raw input into a header
        sink = AsgiSink(send, request_id)
        shape: ApiShape = "anthropic" if b"anthropic-version" in headers else "openai"
        authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        last_id = headers.get(b"last-event-id")
        try:
            principal = await self.rt.auth.authenticate(
                credential_from(authorization.decode("latin-1") if authorization else None,
                                api_key.decode("latin-1") if api_key else None),
                headers[b"x-aura-account"].decode("latin-1")
                if b"x-aura-account" in headers else None)
            stream = self.rt.hub.find(principal.account, request_id=request_id) \
                if request_id != "req_unknown" else None
            if stream is None:
                raise NotFound(f"no resumable stream {request_id!r} (streams are kept for "
                               f"{self.rt.config.resume_window_s} s after their client left)")
            after = parse_after(last_id.decode("latin-1") if last_id else None,
                                query["after"][0] if "after" in query else None)
            if after is None:
                raise BadRequest("'Last-Event-ID' and 'after' must be a non-negative integer",
                                 param="after")
            try:
                stream.log.available_after(after)
            except EventsGone as exc:
                raise Gone(f"cannot resume after event {after}: {exc}") from None
        except RouterError as exc:
            await sink.error(exc, shape)
            await sink.end()
            return
        await self._serve_stream(stream, sink, receive, after, shape)

    async def _serve_stream(self, stream: HubStream, sink: AsgiSink, receive: Receive,
                            after: int, shape: ApiShape) -> None:
        hub = self.rt.hub
        assert hub is not None
        hub.attach(stream)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch, receive, nursery.cancel_scope, sink,
                                   self.rt.config.sse_heartbeat_s)
                await stream.sink.wait_ready()
                if not stream.sink.started:
                    await sink.error(*stream.refusal(shape))
                else:
                    sink.next_seq = 0  # the log numbers the events
                    await sink.start(stream.sink.status, stream.sink.headers + (
                        (b"x-aura-resumable", b"true"),))
                    log = stream.log
                    try:
                        while events := await log.read_after(after):
                            await sink.body(b"".join(map(render, events)) if stream.sink.is_sse
                                            else b"".join(e.data for e in events))
                            after = events[-1].seq
                    except EventsGone as exc:  # another reader ran far ahead of this one
                        await sink.body(Gone(f"this connection fell behind: {exc}; resume "
                                             "from a later event").sse_event(shape))
                await sink.end()
                nursery.cancel_scope.cancel()
        finally:
            hub.detach(stream)


def build_app(rt: Runtime) -> RouterApp:
    return RouterApp(rt)
