"""Stage 3, stream: call the route's targets in order and push the answer to the client.

Writes straight into the transport's `ClientSink`, whose send is flow-controlled by the
server: a slow client slows the upstream read instead of growing a buffer. (A child task
and a memory channel per request cost ~15% of the router's CPU in `scripts/bench` and
bought nothing that the sink's own backpressure does not give.) Before the first byte a
failing target (unreachable, timeout, 5xx, 429) is skipped for the next; after it, a
failure ends the stream with an error event in the client's format and the meter keeps
what was streamed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from typing import Protocol

import orjson
import trio

from actors.pipeline.plan import Leg
from actors.pipeline.settle import Settled
from router.errors import (ApiShape, BadRequest, NoProvider, ProviderFailed, ProviderTimeout,
                           RateLimited, RouterError, from_provider_status)
from router.protocols.api import ApiFormat, ClientRequest, Meter
from router.protocols.sse import SseParser
from router.protocols.translate import Bridge
from router.providers.base import UpstreamRequest, UpstreamUnavailable
from router.providers.breaker import CircuitBreaker

log = logging.getLogger("aura.stream")
MAX_ERROR_BODY = 64 * 1024
MAX_ANSWER_BODY = 64 * 1024 * 1024
_SSE_HEADERS = ((b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))
_JSON_HEADERS = ((b"content-type", b"application/json"),)


class ClientSink(Protocol):
    """The transport's side of a response."""

    started: bool

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None: ...

    async def body(self, data: bytes) -> None: ...

    async def error(self, error: RouterError, shape: str) -> None: ...

    def settled(self, settled: Settled) -> None:
        """What the request was billed (after settlement, whatever happened)."""
        ...


@dataclass
class StreamOutcome:
    """What settlement and the request log need to know of the upstream call."""

    provider: str | None = None
    status: int = 0
    judged: bool = False  # the provider's breaker got a verdict from this attempt


def provider_message(status: int, body: bytes) -> str:
    """A provider's error, safe to show: only its message for client errors, never
    anything for auth errors (those are about the platform's key, not the user)."""
    if status in (401, 403):
        return "the provider refused the platform's credentials"
    if status >= 500 or status == 429:
        return f"the provider failed (status {status})"
    try:
        parsed = orjson.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if not message and isinstance(parsed, dict):
            message = parsed.get("detail") or parsed.get("message")
    except orjson.JSONDecodeError:
        message = None
    text = str(message) if message else f"the provider refused the request (status {status})"
    return text[:500]


def _translated_body(bridge: Bridge, body: bytes, request: ClientRequest) -> bytes:
    try:
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict):
            raise TypeError("not an object")
        return orjson.dumps(bridge.response(parsed, request.body, request.wants_usage))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        raise ProviderFailed("the provider's answer could not be read") from None


def _judge(breaker: CircuitBreaker, status: int) -> bool:
    """Tell the breaker what the provider's answer says of its health; False if nothing
    (a rate limit is about a key, not the provider)."""
    if status >= 500:
        breaker.record_failure(trio.current_time())
        return True
    if status == 429 or status == 0:
        return False
    breaker.record_success()
    return True


# Our statuses for provider failures that another target might not have.
_FAILOVER_STATUSES = frozenset({429, 502, 503, 504})


async def run_stream(legs: list[Leg], fmt: ApiFormat, request: ClientRequest,
                     max_output: int, base_headers: tuple[tuple[bytes, bytes], ...],
                     query: str, passthrough: tuple[tuple[str, str], ...], meter: Meter,
                     outcome: StreamOutcome, out: ClientSink) -> RouterError | None:
    """None once an answer went to the client; else why no target could answer."""
    error: RouterError = ProviderFailed("no provider could serve this request")
    for leg in legs:
        try:
            body = leg.native.upstream_body(leg.request, leg.target.upstream_model, max_output)
        except (TypeError, ValueError) as exc:  # e.g. nesting orjson will not encode
            return BadRequest(f"the request body cannot be encoded for the provider: {exc}")
        # The client's query string and headers are for its own API, not a translated one.
        upstream = (UpstreamRequest(fmt.name, body, request.stream, query, passthrough)
                    if leg.bridge is None else UpstreamRequest(leg.native.name, body,
                                                               request.stream))
        breaker = leg.provider.breaker
        if not breaker.allow(trio.current_time()):
            error = NoProvider(f"provider {leg.target.provider!r} is failing (its circuit "
                               f"is {breaker.state.replace('_', '-')})")
            continue
        total_s = leg.provider.spec.timeout_total_s
        outcome.status, outcome.judged = 0, False
        try:
            with trio.move_on_after(total_s) as deadline:  # the whole answer's deadline
                failed = await _try_target(leg, fmt.shape, request, upstream, base_headers,
                                           meter, outcome, out)
            if deadline.cancelled_caught:  # may be a slow client too: not the provider's fault
                raise UpstreamUnavailable(f"the provider did not finish within {total_s:g} s",
                                          timeout=True, ours=True)
        except UpstreamUnavailable as exc:
            if exc.retry_after is not None:  # the provider is fine; its keys are resting
                failed = RateLimited(str(exc), headers={
                    "retry-after": str(math.ceil(exc.retry_after))})
            else:
                if not exc.ours:
                    breaker.record_failure(trio.current_time())
                    outcome.judged = True
                failed = (ProviderTimeout if exc.timeout else ProviderFailed)(str(exc))
            if out.started:  # mid-stream: the client has bytes already
                await out.body(failed.sse_event(fmt.shape))
                return None
        finally:
            if not outcome.judged:
                breaker.release()
        if failed is None:
            return None
        error = failed
        if error.status not in _FAILOVER_STATUSES:
            break
    return error


async def _try_target(leg: Leg, shape: ApiShape, request: ClientRequest,
                      upstream: UpstreamRequest,
                      base_headers: tuple[tuple[bytes, bytes], ...], meter: Meter,
                      outcome: StreamOutcome, out: ClientSink) -> RouterError | None:
    """None once the answer went to the client; else why this target failed.

    The leg's native format meters what the provider sent (so the bill is the
    provider's word); a bridge, if any, rewrites it for the client.
    """
    target, native, bridge = leg.target, leg.native, leg.bridge
    async with leg.provider.open(upstream) as response:
        outcome.status = response.status
        # The verdict comes with the status: a half-open probe must not hold the provider
        # shut for the whole length of a healthy stream.
        outcome.judged = _judge(leg.provider.breaker, response.status)
        if response.status != 200:
            body = await response.read(MAX_ERROR_BODY)
            error = from_provider_status(response.status,
                                         provider_message(response.status, body))
            if response.status == 429 and response.retry_after:
                error.extra_headers["retry-after"] = response.retry_after
            return error
        outcome.provider = target.provider
        headers = base_headers + ((b"x-aura-provider", target.provider.encode()),)
        if not request.stream:
            body = await response.read(MAX_ANSWER_BODY)
            native.on_body(meter, body)
            if bridge is not None:
                try:
                    body = _translated_body(bridge, body, request)
                except ProviderFailed as exc:  # the client gets nothing: it pays nothing
                    meter.reset()
                    outcome.provider = None
                    return exc
            await out.start(200, headers + _JSON_HEADERS)
            await out.body(body)
            return None
        await out.start(200, headers + _SSE_HEADERS)
        parser = SseParser()
        translator = bridge.stream(request.body, request.wants_usage) if bridge else None
        upstream_request = leg.request
        unreadable = False  # an upstream event we could not meter or translate
        async for chunk in response.aiter_bytes():
            events = parser.feed(chunk)
            if not events:
                continue
            forward: list[bytes] = []
            for event in events:
                try:
                    shown = native.on_event(upstream_request, meter, event)
                    if translator is not None:
                        forward.append(translator.feed(event))
                    elif shown:
                        forward.append(event.raw)
                except Exception:  # noqa: BLE001 - a provider's garbage must not end the request
                    unreadable = True
                    log.warning("skipped an upstream event that could not be read")
            if forward:
                data = forward[0] if len(forward) == 1 else b"".join(forward)
                if data:
                    await out.body(data)
        if meter.upstream_error is None and (not meter.completed or unreadable):
            # The client must see that its answer is not whole (it got no end event, or
            # lost one); a provider's own error event already said so.
            await out.body(ProviderFailed("the provider stream ended before the answer was "
                                          "complete").sse_event(shape))
        return None
