"""One model call, end to end: the per-request nursery that runs the four stages.

auth -> reserve run in order in the request's own task (each needs the previous one's
answer); the stream stage runs as a child task feeding a bounded channel that this task
drains into the client; settlement runs in `finally`, shielded, whatever happened.
Cancelling the caller's scope (the client went away) closes the upstream at once.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import orjson
import trio

from actors.messages import ModelCall, ResponseStart, StreamFailed
from actors.pipeline.reserve import reserve
from actors.pipeline.settle import settle
from actors.pipeline.stream import StreamOutcome, run_stream
from router.errors import BadRequest, Forbidden, NotFound, RouterError
from router.protocols.api import Meter
from router.protocols.formats import FORMATS

log = logging.getLogger("aura.request")
STREAM_CHANNEL_SIZE = 8


class ClientSink(Protocol):
    """The transport's side of a response."""

    started: bool

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None: ...

    async def body(self, data: bytes) -> None: ...

    async def error(self, error: RouterError, shape: str) -> None: ...


def parse_body(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


async def run_model_call(rt: "Runtime", call: ModelCall, sink: ClientSink) -> None:  # noqa: F821
    fmt = FORMATS[call.api]
    started_at = time.perf_counter()
    try:
        principal = await rt.auth.authenticate(call.credential, call.account_header)
        request = fmt.parse(parse_body(call.body))
        model = rt.config.catalog.resolve(request.model)
        if model is None:
            raise NotFound(f"model {request.model!r} does not exist or has no price",
                           param="model")
        if not principal.may_use(model.id):
            raise Forbidden(f"this key may not use model {model.id!r}")
        if any(rt.providers[t.provider].spec.api not in (fmt.name, "any") for t in model.route):
            raise BadRequest(f"model {model.id!r} is served in another API format; "
                             "call it through its own endpoint", param="model")
        reservation = await reserve(rt.ledger, principal, request, model, call.request_id,
                                    now=rt.clock(), hold_ttl_s=rt.config.hold_ttl_s)
    except RouterError as exc:
        await sink.error(exc, fmt.shape)
        rt.log_request(call, None, None, exc.status, None, started_at)
        return

    meter, outcome = Meter(), StreamOutcome()
    base_headers = ((b"x-request-id", call.request_id.encode()),
                    (b"x-aura-model", model.id.encode()))
    settlement = None
    try:
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[object](STREAM_CHANNEL_SIZE)
            nursery.start_soon(run_stream, rt.providers, fmt, request, model,
                               reservation.max_output, base_headers, call.query,
                               call.passthrough_headers, meter, outcome, send)
            async with receive:
                async for item in receive:
                    if isinstance(item, bytes):
                        await sink.body(item)
                    elif isinstance(item, ResponseStart):
                        await sink.start(item.status, item.headers)
                    elif isinstance(item, StreamFailed):
                        outcome.status = item.error.status
                        await sink.error(item.error, fmt.shape)
    finally:
        settlement = await settle(rt.ledger, reservation, request, model, meter,
                                  outcome.provider, now=rt.clock())
        rt.log_request(call, model.id, outcome.provider, outcome.status, settlement, started_at)
