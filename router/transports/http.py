"""The HTTP edge: one ASGI callable in front of hypercorn.

Model calls (`/v1/chat/completions`, `/v1/messages`) are the hot path and are handled
here directly on raw ASGI: Quart's request/response machinery costs 1-2 ms per request,
more than the whole budget for time-to-first-token overhead. Everything else (admin,
usage, models, health) goes to the Quart app. `ROUTES` below is the one routing table
for the hot path; Quart's own table serves the rest.
"""

from __future__ import annotations

import secrets
from typing import Any, Awaitable, Callable

import trio

from actors.messages import ModelCall
from actors.pipeline.auth import credential_from
from actors.pipeline.request import run_model_call
from actors.root import Runtime
from router.errors import BodyTooLarge, RouterError
from router.protocols.formats import FORMATS
from router.transports.app import build_quart_app

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LEGACY_PREFIX = "/api/latest/anthropic"
ROUTES: dict[str, str] = {"/v1/chat/completions": "openai.chat",
                          "/v1/responses": "openai.responses",
                          "/v1/messages": "anthropic.messages"}
_PASSTHROUGH = (b"anthropic-beta", b"anthropic-version")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class AsgiSink:
    """The client side of one response on raw ASGI."""

    __slots__ = ("_send", "_request_id", "started")

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self.started = False

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status,
                          "headers": list(headers)})

    async def body(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def error(self, error: RouterError, shape: str) -> None:
        headers = error.headers() + [(b"x-request-id", self._request_id.encode())]
        await self.start(error.status, tuple(headers))
        await self.body(error.body(shape))  # type: ignore[arg-type]

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


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


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
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope)
            await run_model_call(self.rt, call, sink)
            await sink.end()
            nursery.cancel_scope.cancel()


def build_app(rt: Runtime) -> RouterApp:
    return RouterApp(rt)
