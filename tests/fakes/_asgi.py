"""Raw-ASGI plumbing shared by the fake OpenAI and Anthropic apps.

Reading and recording the request, sending JSON / SSE responses, dropping a
connection mid-stream, and provider-style random ids.  No framework: the fakes are
also the upstream of the benchmark, so they stay thin.
"""

from __future__ import annotations

import random
import string
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from itertools import islice
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


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol (nothing to set up or tear down) until shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    """The whole request body (what arrived before a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            break
    return b"".join(chunks)


def parse_json(raw: bytes) -> tuple[Any, bool]:
    """``(body, json_error)``: the parsed JSON (None for an empty body) and whether a
    non-empty body failed to parse."""
    if not raw:
        return None, False
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        return None, True


def request_path(scope: Scope) -> str:
    """The path, with ``?query`` when there is one."""
    query = scope.get("query_string", b"")
    return scope["path"] + ("?" + query.decode("latin-1") if query else "")


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone (``http.disconnect``)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_request(scope: Scope, receive: Receive, state: FakeState) -> ReceivedRequest:
    """Read the whole body, parse it as JSON if possible, record and return it."""
    raw = await read_body(receive)
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    body, json_error = parse_json(raw)
    request = ReceivedRequest(
        method=scope.get("method", "GET"),
        path=request_path(scope),
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


_ONE_WRITE_MAX = 8192  # no delay: up to this many chunks go out in one write (else in batches)


async def stream_events(
    send: Send,
    head: list[bytes],
    chunks: Iterable[bytes],
    tail: Iterable[bytes],
    chunk_delay_s: float,
    cut_after: int | None,
    receive: Receive | None = None,
    held: Callable[[], bool] | None = None,
    first_now: bool = False,
) -> None:
    """Send `head`, the content `chunks`, then `tail` as one SSE body.

    ``chunks`` (and ``tail``) may be lazy iterables: they are consumed as they are sent, so
    an effectively endless reply never sits in memory; ``tail`` is only read once
    ``chunks`` is exhausted.  Without a delay a stream of up to ``_ONE_WRITE_MAX`` chunks
    goes out in one write (longer ones in batches of that size).  With ``cut_after`` set,
    only the first ``cut_after`` chunks are sent and the app returns without finishing
    the body, which makes hypercorn drop the connection (no terminating chunk).  When
    the stream takes more than one write and ``receive`` is given, a client disconnect
    (``http.disconnect``) stops it quietly.  While ``held()`` is true (with a delay set),
    the stream waits after its first content chunk: a test can keep every stream
    mid-answer until it has done what it wants done meanwhile. With ``first_now`` the
    first content chunk goes out at once, the delay applying from the second on (many
    slow streams opened quickly: the memory benchmark).
    """
    it: Iterator[bytes] = iter(chunks)
    if cut_after is not None:
        it = islice(it, max(cut_after, 0))
        tail = ()
    finish = cut_after is None
    if chunk_delay_s <= 0:
        first = list(islice(it, _ONE_WRITE_MAX))
        if len(first) < _ONE_WRITE_MAX:  # `it` is exhausted: the whole body in one write
            body = b"".join([*head, *first, *tail])
            await send({"type": "http.response.body", "body": body, "more_body": not finish})
            return

    async def body_writer() -> None:
        if chunk_delay_s <= 0:
            await send({"type": "http.response.body", "body": b"".join([*head, *first]),
                        "more_body": True})
            while batch := list(islice(it, _ONE_WRITE_MAX)):
                await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
        else:
            await send({"type": "http.response.body", "body": b"".join(head), "more_body": True})
            for sent, chunk in enumerate(it):
                if sent or not first_now:
                    await trio.sleep(chunk_delay_s)
                while sent == 1 and held is not None and held():
                    await trio.sleep(0.01)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if finish:
            await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})

    if receive is None:
        await body_writer()
    else:
        await until_disconnect(receive, body_writer)


async def until_disconnect(receive: Receive, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job`; cancel it quietly if the client disconnects first."""
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await wait_disconnect(receive)
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await job()
        nursery.cancel_scope.cancel()


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


def split_stream_lazy(events: Iterable[tuple[bool, bytes]],
                      n_head: int) -> tuple[list[bytes], Iterator[bytes], Iterator[bytes]]:
    """`split_stream` for a lazy event iterable: chunks and tail are generators.

    The tail generator yields what followed the last delta, so it must be read only after
    the chunks are exhausted (`stream_events` does exactly that).
    """
    source = iter(events)
    head = [data for _, data in islice(source, n_head)]
    pending: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for is_delta, data in source:
            pending.append(data)
            if is_delta:
                yield b"".join(pending)
                pending.clear()

    def tail() -> Iterator[bytes]:
        yield from pending

    return head, chunks(), tail()


async def sleep_if(delay_s: float) -> None:
    if delay_s > 0:
        await trio.sleep(delay_s)
