"""The HTTP edge: one ASGI callable in front of hypercorn.

Model calls (`/v1/chat/completions`, `/v1/responses`, `/v1/messages`) are the hot path
and are handled here directly on raw ASGI: Quart's request/response machinery costs 1-2
ms per request, more than the whole budget for time-to-first-token overhead. Everything
else (admin, usage, models, health) goes to the Quart app. `ROUTES` below is the one
routing table for the hot path; Quart's own table serves the rest. The runtime is a
`router.gateway.Gateway`: this module knows what it offers, not how it works.

The edge never hangs and never leaks (docs/api.md, "Limits"): a body is read within
`BODY_TIMEOUT_S` and at most `MAX_BODY_BYTES` (an oversize body is drained, up to a bound,
so the client can read its 413, then the connection closes); an answer sent before the
request's body was read whole closes its connection, so an unread body can never stall
the next request on it; the client's query string is bounded and reaches a provider only
where the provider reads it; admin paths are checked for the admin key before any
routing, and every answer is JSON.
"""

from __future__ import annotations

import re
import secrets
from functools import partial
from urllib.parse import parse_qs
from typing import Any, Awaitable, Callable

import trio

from router.auth.credentials import credential_in
from router.errors import (ApiShape, BadRequest, BodyTooLarge, EventsGone, Gone, NotFound,
                           RequestTimeout, RouterError)
from router.gateway import Gateway, ModelCall, ResumableStream, Settled
from router.protocols.formats import FORMATS
from router.transports.app import build_quart_app
from router.transports.background import (RESPONSES_PREFIX, background_call,
                                          cancel_response, find_response, response_json,
                                          response_target, retrieve_query, wants_background)
from router.transports.bedrock_surface import (bedrock_body, bedrock_target,
                                               event_stream_send)
from router.transports.client_gone import (SCOPE_KEY, ClientGone, UntilClientLeaves,
                                           client_gone)
from router.transports.cloud_surfaces import vertex_body, vertex_target
from router.transports.cors import CorsPolicy
from router.transports.guard import admin_refusal, closing_when_unread
from router.transports.sse import HEARTBEAT, number_events, parse_after, render
from router.transports.sse_keepalive import KeepAlive
from router.transports.responses_ws import serve_responses_websocket
from router.transports.websocket import serve_websocket

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LEGACY_PREFIX = "/api/latest/anthropic"
STREAMS_PREFIX = "/v1/streams/"
ROUTES: dict[str, str] = {"/v1/chat/completions": "openai.chat",
                          "/v1/responses": "openai.responses",
                          "/v1/messages": "anthropic.messages"}
_PASSTHROUGH = (b"anthropic-beta", b"anthropic-version")
MAX_QUERY_BYTES = 2048  # a client's query string (SDKs send `beta=true` at most)
# An oversize body is read and dropped up to this many bytes, so that the client, still
# sending, can read its 413; past it the connection is closed with the answer.
DRAIN_BYTES = 64 * 1024 * 1024
_CLOSE = (b"connection", b"close")


REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class AsgiSink:
    """The client side of one response on raw ASGI.

    SSE answers get an `id:` on every event (numbered here, unless they come from a
    stream log that numbered them) and, while open, a keep-alive comment when idle
    (router/transports/sse_keepalive.py). `gone` says when the client left
    (router/transports/client_gone.py).
    """

    __slots__ = ("_send", "_request_id", "gone", "_keep_alive", "started", "sse",
                 "next_seq", "last_write", "ended")

    def __init__(self, send: Send, request_id: str, gone: ClientGone | None = None,
                 keep_alive: KeepAlive | None = None) -> None:
        self._send = send
        self._request_id = request_id
        self.gone = gone
        self._keep_alive = keep_alive
        self.started = False
        self.sse = False
        self.next_seq = 1  # 0: the events are numbered already
        self.last_write = 0.0
        self.ended = False

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.started = True
        for name, value in headers:
            if name == b"content-type":
                self.sse = value.startswith(b"text/event-stream")
        if self.sse and self._keep_alive is not None:
            self.last_write = trio.current_time()
            self._keep_alive.add(self)
        await self._send({"type": "http.response.start", "status": status,
                          "headers": list(headers)})

    async def body(self, data: bytes) -> None:
        if self.sse:
            self.last_write = trio.current_time()
            if self.next_seq:
                data, self.next_seq = number_events(data, self.next_seq)
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def heartbeat(self) -> None:
        if not self.ended:
            await self.body(HEARTBEAT)

    async def error(self, error: RouterError, shape: ApiShape, *, close: bool = False
                    ) -> None:
        headers = error.headers() + [(b"x-request-id", self._request_id.encode())]
        if close:
            headers.append(_CLOSE)
        await self.start(error.status, tuple(headers))
        await self.body(error.body(shape))

    def settled(self, settled: Settled) -> None:
        pass  # an HTTP answer carries its usage in its own body

    async def end(self) -> None:
        self.close()
        if self.started:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def close(self) -> None:
        """No more writes (ended, or the client left): no more keep-alive comments."""
        self.ended = True
        if self._keep_alive is not None:
            self._keep_alive.discard(self)


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The whole body, or BodyTooLarge once it is known to be over `limit` (the rest is
    then drained, see `drain`). The caller bounds the time."""
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


async def drain(receive: Receive, bound: int) -> bool:
    """Read and drop the rest of a body, up to `bound` bytes; True if it ended."""
    seen = 0
    while seen <= bound:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


class RouterApp:
    """The ASGI callable hypercorn serves."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.config = gateway.config
        self.quart = build_quart_app(gateway)
        self.cors = CorsPolicy.from_setting(gateway.config.cors_origins)
        # Run by the server's owner (actors/root.py) beside hypercorn.
        self.keep_alive = KeepAlive(gateway.config.sse_heartbeat_s)

    def _sink(self, scope: Scope, send: Send, request_id: str) -> AsgiSink:
        return AsgiSink(send, request_id, scope.get(SCOPE_KEY), self.keep_alive)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client_gone(scope)  # before any copy of the scope: hypercorn holds this one
            origin = _header(scope, b"origin")
            if origin is not None:  # a browser page: CORS (SDKs and servers send none)
                if scope["method"] == "OPTIONS" and \
                        _header(scope, b"access-control-request-method") is not None:
                    await self._preflight(scope, send, origin)
                    return
                send = _with_headers(send, self.cors.response_headers(origin))
            path = scope["path"]
            if path.startswith(LEGACY_PREFIX + "/"):
                path = path[len(LEGACY_PREFIX):]
                scope = {**scope, "path": path, "raw_path": path.encode()}
            api = ROUTES.get(path)
            if api is not None and scope["method"] == "POST":
                await self._model_call(scope, receive, send, api)
                return
            vertex = vertex_target(path) if scope["method"] == "POST" else None
            if vertex is not None:  # a Vertex-shaped Claude call: a /v1/messages call
                await self._model_call(scope, receive, send, "anthropic.messages",
                                       partial(vertex_body, model=vertex[0],
                                               stream=vertex[1]))
                return
            bedrock = bedrock_target(scope) if scope["method"] == "POST" else None
            if bedrock is not None:  # a Bedrock-shaped Claude call (InvokeModel): the same
                await self._model_call(scope, receive, event_stream_send(send) if bedrock[1]
                                       else send, "anthropic.messages",
                                       partial(bedrock_body, model=bedrock[0],
                                               stream=bedrock[1]))
                return
            if path.startswith(STREAMS_PREFIX) and scope["method"] == "GET":
                await self._resume(scope, receive, send, path[len(STREAMS_PREFIX):])
                return
            if path.startswith(RESPONSES_PREFIX):
                target = response_target(path, scope["method"])
                if target is not None:
                    await self._stored_response(scope, receive, send, *target)
                    return
            receive, send = closing_when_unread(scope, receive, send)
            refusal = admin_refusal(path, dict(scope["headers"]), self.config.admin_api_key)
            if refusal is not None:
                sink = self._sink(scope, send, new_request_id())
                await sink.error(refusal, "openai")
                await sink.end()
                return
        elif scope["type"] == "websocket" and scope["path"] == "/v1/ws":
            await serve_websocket(self.gw, scope, receive, send)
            return
        elif scope["type"] == "websocket" and scope["path"] == "/v1/responses":
            await serve_responses_websocket(self.gw, scope, receive, send)
            return
        await self.quart(scope, receive, send)

    async def _preflight(self, scope: Scope, send: Send, origin: bytes) -> None:
        """Answered before any credential is asked for (browsers send none here)."""
        headers = self.cors.preflight_headers(
            origin, _header(scope, b"access-control-request-headers"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _model_call(self, scope: Scope, receive: Receive, send: Send, api: str,
                          reshape: Callable[[bytes], bytes] | None = None) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        request_id = new_request_id()
        sink = self._sink(scope, send, request_id)
        shape = FORMATS[api].shape
        declared = headers.get(b"content-length")
        query = scope.get("query_string", b"")
        try:
            if len(query) > MAX_QUERY_BYTES:
                raise BadRequest(f"the query string is {len(query)} bytes; the limit is "
                                 f"{MAX_QUERY_BYTES}", param="query")
            with trio.fail_after(self.config.body_timeout_s):
                body = await read_body(receive, self.config.max_body_bytes,
                                       int(declared) if declared and declared.isdigit()
                                       else None)
        except ConnectionAbortedError:
            return
        except (RouterError, trio.TooSlowError) as exc:
            await self._refuse_unread(exc, sink, receive, shape)
            return
        if reshape is not None:
            body = reshape(body)
        call = ModelCall(
            api=api, body=body, request_id=request_id, credential=credential_in(headers),
            query=query.decode("latin-1"),
            passthrough_headers=tuple((k.decode(), v.decode("latin-1"))
                                      for k, v in scope["headers"] if k in _PASSTHROUGH),
            account_header=_text(headers.get(b"x-aura-account")),
            idempotency_key=_text(headers.get(b"idempotency-key")),
            cache_hint=_text(headers.get(b"x-aura-cache")))
        if api == "openai.responses" and wants_background(body):
            await self._background_call(call, sink, receive)
            return
        if headers.get(b"x-aura-resumable", b"").lower() == b"true":
            await self._resumable_call(call, sink, receive, shape)
            return
        try:
            async with UntilClientLeaves(sink.gone, receive):
                await self.gw.model_call(call, sink)
                await sink.end()
        finally:
            sink.close()

    async def _refuse_unread(self, exc: Exception, sink: AsgiSink, receive: Receive,
                             shape: ApiShape) -> None:
        """Refuse a call whose body was not read whole: drop what the client is still
        sending (within the body timeout and a bound), so it can read the answer, and
        close the connection after it."""
        if isinstance(exc, trio.TooSlowError):
            error: RouterError = RequestTimeout(
                f"the request body did not arrive within {self.config.body_timeout_s:g} s")
        else:
            assert isinstance(exc, RouterError)
            error = exc
            with trio.move_on_after(self.config.body_timeout_s):
                await drain(receive, DRAIN_BYTES)
        await sink.error(error, shape, close=True)
        await sink.end()

    async def _resumable_call(self, call: ModelCall, sink: AsgiSink, receive: Receive,
                              shape: ApiShape) -> None:
        """Run the call in the hub, then serve it from its log: the client going away
        detaches it instead of cancelling it (docs/api.md)."""
        try:
            principal = await self.gw.authenticate(call.credential, call.account_header)
        except RouterError as exc:
            await sink.error(exc, shape)
            await sink.end()
            return
        stream = self.gw.streams.start(call, principal.account)
        await self._serve_stream(stream, sink, receive, 0, shape)

    async def _background_call(self, call: ModelCall, sink: AsgiSink, receive: Receive
                               ) -> None:
        """`"background": true` (router/transports/background.py)."""
        try:
            principal = await self.gw.authenticate(call.credential, call.account_header)
        except RouterError as exc:
            await sink.error(exc, "openai")
            await sink.end()
            return
        call, client_stream = background_call(call)
        stream = self.gw.streams.start(call, principal.account, background=True)
        if client_stream:
            await self._serve_stream(stream, sink, receive, 0, "openai")
            return
        await stream.wait_identified()
        await self._answer_object(stream, sink)

    async def _answer_object(self, stream: ResumableStream, sink: AsgiSink) -> None:
        try:
            body = response_json(stream)
        except RouterError as exc:
            await sink.error(exc, "openai")
        else:
            await sink.start(200, ((b"content-type", b"application/json"),
                                   (b"x-request-id", stream.request_id.encode())))
            await sink.body(body)
        await sink.end()

    async def _stored_response(self, scope: Scope, receive: Receive, send: Send,
                               response_id: str, action: str) -> None:
        """GET /v1/responses/{id} (optionally streamed) and POST .../cancel."""
        headers: dict[bytes, bytes] = dict(scope["headers"])
        sink = self._sink(scope, send, new_request_id())
        if action == "cancel":
            with trio.move_on_after(self.config.body_timeout_s):
                await drain(receive, DRAIN_BYTES)  # an SDK may send `{}`: read, ignored
        try:
            principal = await self.gw.authenticate(credential_in(headers),
                                                   _text(headers.get(b"x-aura-account")))
            stream = await find_response(self.gw, principal.account, response_id)
            streamed, after = retrieve_query(scope.get("query_string", b"")[:MAX_QUERY_BYTES]) \
                if action == "retrieve" else (False, 0)
            if streamed:
                await stream.log.check_after(after)
        except EventsGone as exc:
            await sink.error(Gone(f"cannot resume after that event: {exc}"), "openai")
            await sink.end()
            return
        except RouterError as exc:
            await sink.error(exc, "openai")
            await sink.end()
            return
        if action == "cancel":
            await cancel_response(self.gw, stream)
        elif streamed:
            await self._serve_stream(stream, sink, receive, after, "openai")
            return
        await self._answer_object(stream, sink)

    async def _resume(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """GET /v1/streams/{request_id}: replay after Last-Event-ID (or ?after=N), then live."""
        headers: dict[bytes, bytes] = dict(scope["headers"])
        if not REQUEST_ID.fullmatch(request_id):
            request_id = "req_unknown"  # never echo raw input into a header
        sink = self._sink(scope, send, request_id)
        shape: ApiShape = "anthropic" if b"anthropic-version" in headers else "openai"
        query = parse_qs(scope.get("query_string", b"")[:MAX_QUERY_BYTES].decode("latin-1"))
        last_id = headers.get(b"last-event-id")
        try:
            principal = await self.gw.authenticate(credential_in(headers),
                                                   _text(headers.get(b"x-aura-account")))
            stream = await self.gw.streams.locate(principal.account, request_id=request_id) \
                if request_id != "req_unknown" else None
            if stream is None:
                raise NotFound(f"no resumable stream {request_id!r} (streams are kept for "
                               f"{self.config.resume_window_s} s after their client left)")
            after = parse_after(last_id.decode("latin-1") if last_id else None,
                                query["after"][0] if "after" in query else None)
            if after is None:
                raise BadRequest("'Last-Event-ID' and 'after' must be a non-negative integer",
                                 param="after")
            try:
                await stream.log.check_after(after)
            except EventsGone as exc:
                raise Gone(f"cannot resume after event {after}: {exc}") from None
        except RouterError as exc:
            await sink.error(exc, shape)
            await sink.end()
            return
        await self._serve_stream(stream, sink, receive, after, shape)

    async def _serve_stream(self, stream: ResumableStream, sink: AsgiSink, receive: Receive,
                            after: int, shape: ApiShape) -> None:
        hub = self.gw.streams
        hub.attach(stream)
        try:
            async with UntilClientLeaves(sink.gone, receive):
                await stream.wait_ready()
                if not stream.started:
                    await sink.error(*stream.refusal(shape))
                else:
                    sink.next_seq = 0  # the log numbers the events
                    if not stream.is_sse:  # a JSON answer is one event: resume = all of it
                        after = 0
                    await sink.start(stream.status, stream.headers + (
                        (b"x-aura-resumable", b"true"),))
                    log = stream.log
                    try:
                        while events := await log.read_after(after):
                            await sink.body(b"".join(map(render, events)) if stream.is_sse
                                            else b"".join(e.data for e in events))
                            after = events[-1].seq
                    except EventsGone as exc:  # another reader ran far ahead of this one
                        await sink.body(Gone(f"this connection fell behind: {exc}; resume "
                                             "from a later event").sse_event(shape))
                await sink.end()
        finally:
            sink.close()
            hub.detach(stream)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """`send`, adding `extra` to the response's start (CORS for a browser's request)."""
    async def sending(message: dict) -> None:  # type: ignore[type-arg]
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)
    return sending


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def build_app(gateway: Gateway) -> RouterApp:
    return RouterApp(gateway)
