"""Raw-ASGI plumbing shared by the fake OpenAI and Anthropic apps.

Reading and recording the request, sending JSON / SSE responses, dropping a
connection mid-stream, and provider-style random ids.  No framework: the fakes are
also the upstream of the benchmark, so they stay thin.
"""

from __future__ import annotations

import random
import string
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import trio

from .state import FakeState, ReceivedRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = b"application/json"

_ALNUM = string.ascii_letters + string.digits
_rng = random.Random()


def rand_id(prefix: str, length: int) -> str:
    return prefix + "".join(_rng.choices(_ALNUM, k=length))


def rand_hex(prefix: str, length: int) -> str:
    return prefix + "".join(_rng.choices("0123456789abcdef", k=length))


async def read_request(scope: Scope, receive: Receive, state: FakeState) -> ReceivedRequest:
    """Read the whole body, parse it as JSON if possible, record and return it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            break
    raw = b"".join(chunks)
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    query = scope.get("query_string", b"")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    body: Any = None
    json_error = False
    if raw:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            json_error = True
    request = ReceivedRequest(
        method=scope.get("method", "GET"),
        path=path,
        headers=headers,
        body=body,
        raw_body=raw,
        json_error=json_error,
    )
    state.record(request)
    return request


async def send_json(send: Send, status: int, payload: bytes, extra: Headers) -> None:
    headers: Headers = [
        (b"content-type", JSON_CONTENT_TYPE),
        (b"content-length", str(len(payload)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def start_sse(send: Send, extra: Headers) -> None:
    headers: Headers = [
        (b"content-type", SSE_CONTENT_TYPE),
        (b"cache-control", b"no-cache"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def stream_events(
    send: Send,
    head: list[bytes],
    chunks: list[bytes],
    tail: list[bytes],
    chunk_delay_s: float,
    cut_after: int | None,
) -> None:
    """Send `head`, the content `chunks`, then `tail` as one SSE body.

    Without a delay everything goes out in one write.  With ``cut_after`` set, only
    the first ``cut_after`` chunks are sent and the app returns without finishing the
    body, which makes hypercorn drop the connection (no terminating chunk).
    """
    if cut_after is not None:
        chunks = chunks[: max(cut_after, 0)]
        tail = []
    finish = cut_after is None
    if chunk_delay_s <= 0:
        body = b"".join([*head, *chunks, *tail])
        await send({"type": "http.response.body", "body": body, "more_body": not finish})
        return
    await send({"type": "http.response.body", "body": b"".join(head), "more_body": True})
    for chunk in chunks:
        await trio.sleep(chunk_delay_s)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if finish:
        await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})


def split_stream(events: list[tuple[bool, bytes]],
                 n_head: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Group SSE events into `stream_events`' (head, chunks, tail).

    ``events`` are ``(is_content_delta, bytes)`` in wire order; the first ``n_head`` form the
    head.  Every content delta becomes one chunk, carrying the structural events (block
    stops / starts) that precede it; whatever follows the last delta is the tail.
    """
    head = [data for _, data in events[:n_head]]
    chunks: list[bytes] = []
    pending: list[bytes] = []
    for is_delta, data in events[n_head:]:
        pending.append(data)
        if is_delta:
            chunks.append(b"".join(pending))
            pending = []
    return head, chunks, pending


async def sleep_if(delay_s: float) -> None:
    if delay_s > 0:
        await trio.sleep(delay_s)
