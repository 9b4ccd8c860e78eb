"""Stage 3, stream: call the route's targets in order and push the answer to the client.

Writes straight into the transport's `ClientSink`, whose send is flow-controlled by the
server: a slow client slows the upstream read instead of growing a buffer. (A child task
and a memory channel per request cost ~15% of the router's CPU in `scripts/bench` and
bought nothing that the sink's own backpressure does not give.)

The status line waits for the answer's first content event (at most the first-event
grace, then 200 and heartbeats): until then a failing target (unreachable, timeout, 5xx,
429, an error event or a cut before any content) is an HTTP error the next target can
hide. After it, a failure ends the stream with an error event in the client's format and
the meter keeps what was streamed.

The router enforces the output limit it held for: it counts output as it streams and,
when the upstream goes past the limit, ends the answer itself (in the upstream's format,
translated like any event) and closes the upstream at once. Where the upstream reports
no usage, the client is shown the router's count, which is what is billed. Before the
first content reaches the client, its `Delivery` makes the bill durable (a checkpoint of
streamed usage, or the settlement of a whole answer), so a crash cannot lose it.

A provider's words reach the client only through the router: error bodies redacted and
bounded (`router.redact`), error events rebuilt in the router's own words.

For the metrics and the request log, the `Outcome` gets the instant the first content
left (time to first token) and one `(provider, reason)` per failed attempt, recorded
where the failure is seen (once per attempt, never per chunk).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Protocol

import orjson
import trio

from actors.pipeline.context import Outcome, RequestContext
from actors.pipeline.plan import Leg
from router.errors import (AnswerDeadline, BadRequest, NoProvider, ProviderFailed,
                           RouterError, UpstreamError, UpstreamTimeout, UpstreamUnreachable,
                           from_provider_status)
from router.gateway import ClientSink
from router.protocols.api import ClientRequest, Meter, UpstreamOptions
from router.protocols.translate import Bridge
from router.providers.base import UpstreamRequest, UpstreamResponse, limit_field
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import DEFAULT_COOLDOWN_S
from router.redact import Redactor

log = logging.getLogger("aura.stream")
MAX_ERROR_BODY = 64 * 1024
MAX_ANSWER_BODY = 64 * 1024 * 1024
_SSE_HEADERS = ((b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))
_JSON_HEADERS = ((b"content-type", b"application/json"),)


class Delivery(Protocol):
    """Called once, right before the first bytes of an answer's content reach the client."""

    async def before_content(self, whole: bool) -> None: ...


def provider_message(status: int, body: bytes, redactor: Redactor) -> str:
    """A provider's error, safe to show: only its message for client errors (redacted,
    bounded), never anything for auth errors (those are about the platform's key, not
    the user) or its own failures."""
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
        message = None  # a body that is not JSON is not shown at all
    if not message:
        return f"the provider refused the request (status {status})"
    return redactor.redact(str(message))


def _translated_body(bridge: Bridge, body: bytes, request: ClientRequest) -> bytes:
    try:
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict):
            raise TypeError("not an object")
        return orjson.dumps(bridge.response(parsed, request.body, request.wants_usage))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        raise ProviderFailed("the provider's answer could not be read") from None


def failure_reason(status: int) -> str:
    """A failed attempt's reason (aura_provider_failures_total) from the status it gave."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "status_429"
    return "status_5xx" if status >= 500 else "status_4xx"


def _upstream_reason(exc: UpstreamError, started: bool) -> str:
    if isinstance(exc, (UpstreamTimeout, AnswerDeadline)):
        return "timeout"  # silent, or too slow overall: before or after the answer started
    if isinstance(exc, UpstreamUnreachable):
        return "midstream" if started else "connect"
    return "unavailable"  # our side: no connection slot, no rested key, not running


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
# An error event before any content, by the provider's error type.
_EVENT_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429,
                       "rate_limit_exceeded": 429, "invalid_request_error": 400,
                       "timeout": 504}


def _upstream_error_event(meter: Meter, when: str) -> RouterError:
    """An upstream's error event, in the router's own words (its type, never its text)."""
    kind = "".join(c for c in (meter.upstream_error_type or "error")[:40]
                   if c.isalnum() or c == "_")
    status = _EVENT_ERROR_STATUS.get(kind, 502)
    return from_provider_status(status, f"the provider failed {when} ({kind})")


async def run_stream(ctx: RequestContext, meter: Meter, outcome: Outcome, out: ClientSink,
                     delivery: Delivery, redactor: Redactor) -> RouterError | None:
    """None once an answer went to the client; else why no target could answer."""
    error: RouterError = ProviderFailed("no provider could serve this request")
    request, shape, call = ctx.request, ctx.fmt.shape, ctx.call
    for leg in ctx.legs:
        provider = leg.provider
        spec = provider.spec
        try:
            body = leg.native.upstream_body(leg.request, UpstreamOptions(
                leg.target.upstream_model, ctx.max_output,
                limit_field(provider, leg.native.name), provider.adapter.flattens_text))
        except (TypeError, ValueError) as exc:  # e.g. nesting orjson will not encode
            return BadRequest(f"the request body cannot be encoded for the provider: {exc}")
        # The client's query string and headers are for its own API, not a translated one.
        upstream = (UpstreamRequest(ctx.fmt.name, leg.target.upstream_model, body,
                                    request.stream, call.query, call.passthrough_headers)
                    if leg.bridge is None else UpstreamRequest(
                        leg.native.name, leg.target.upstream_model, body, request.stream))
        breaker = provider.breaker
        if not breaker.allow(trio.current_time()):
            error = NoProvider(f"provider {leg.target.provider!r} is failing (its circuit "
                               f"is {breaker.state.replace('_', '-')})")
            continue
        total_s = spec.timeout_total_s
        outcome.status, outcome.judged = 0, False
        try:
            with trio.move_on_after(total_s) as deadline:  # the whole answer's deadline
                failed = await _try_target(leg, ctx, upstream, meter, outcome, out, delivery,
                                           redactor)
            if deadline.cancelled_caught:  # may be a slow client too: not the provider's fault
                raise AnswerDeadline(f"the provider did not finish within {total_s:g} s")
        except UpstreamError as exc:
            outcome.attempt_failed(leg.target.provider, _upstream_reason(exc, out.started))
            if exc.sick:
                breaker.record_failure(trio.current_time())
                outcome.judged = True
            failed = exc.as_refusal()
            if out.started:  # mid-stream: the client has bytes already
                await out.body(failed.sse_event(shape))
                return None
        finally:
            if not outcome.judged:
                breaker.release()
        if failed is None:
            return None
        meter.reset()  # nothing of a failed target reached the client: it costs nothing
        outcome.provider = None
        error = failed
        if error.status not in _FAILOVER_STATUSES:
            break
    return error


async def _try_target(leg: Leg, ctx: RequestContext, upstream: UpstreamRequest,
                      meter: Meter, outcome: Outcome, out: ClientSink, delivery: Delivery,
                      redactor: Redactor) -> RouterError | None:
    """None once the answer went to the client; else why this target failed.

    The leg's native format meters what the provider sent (so the bill is the
    provider's word); a bridge, if any, rewrites it for the client.
    """
    target, native, bridge, request = leg.target, leg.native, leg.bridge, ctx.request
    async with leg.provider.open(upstream) as response:
        outcome.status = response.status
        # The verdict comes with the status (for a stream, with its first content or its
        # failure before it): a half-open probe must not hold the provider shut for the
        # whole length of a healthy stream.
        if response.status != 200 or not request.stream:
            outcome.judged = _judge(leg.provider.breaker, response.status)
        if response.status != 200:
            outcome.attempt_failed(target.provider, failure_reason(response.status))
            body = await response.read(MAX_ERROR_BODY)
            error = from_provider_status(response.status,
                                         provider_message(response.status, body, redactor))
            if response.status == 429:  # as long as the key rests: the provider's word, or
                # (no Retry-After) the rest the credential pool gives it
                error.extra_headers["retry-after"] = response.retry_after or \
                    str(math.ceil(DEFAULT_COOLDOWN_S))
            return error
        outcome.provider = target.provider
        headers = ctx.base_headers + ((b"x-aura-provider", target.provider.encode()),)
        if not request.stream:
            body = await response.read(MAX_ANSWER_BODY)
            native.on_body(meter, body)
            try:
                if meter.completed and (meter.input_tokens is None or meter.output_tokens
                                        is None or not meter.output_tokens
                                        and meter.output_deltas):
                    # no usage (or zero) reported: the client reads the bill it pays
                    body = native.body_with_usage(body, meter.usage(ctx.estimated_input))
                if bridge is not None:
                    body = _translated_body(bridge, body, leg.request)
            except (ValueError, TypeError, AttributeError, ProviderFailed):
                outcome.attempt_failed(target.provider, "bad_response")
                return ProviderFailed("the provider's answer could not be read")
            await delivery.before_content(whole=True)
            await out.start(200, headers + _JSON_HEADERS)
            outcome.first_content_at = time.perf_counter()
            await out.body(body)
            return None
        return await _stream_answer(leg, ctx, response, headers, meter, outcome, out,
                                    delivery)


class _Pump:
    """Turns upstream bytes into the client's bytes: meters each event, supplies missing
    usage, enforces the output limit, translates. Synchronous: the awaits are the
    caller's, so the first-event grace can wrap reading alone."""

    __slots__ = ("native", "upstream_request", "translator", "meter", "estimated_input",
                 "limit", "decoder", "shape", "at_limit", "cut", "unreadable", "errored")

    def __init__(self, leg: Leg, ctx: RequestContext, meter: Meter) -> None:
        request = ctx.request
        self.native, self.upstream_request = leg.native, leg.request
        self.translator = leg.bridge.stream(request.body, request.wants_usage) \
            if leg.bridge else None
        self.meter, self.estimated_input = meter, ctx.estimated_input
        self.limit = ctx.max_output * request.choices
        self.decoder = leg.provider.adapter.decoder()
        self.shape = ctx.fmt.shape
        self.at_limit = self.cut = self.unreadable = self.errored = False

    def _emit(self, pairs: Any, forward: list[bytes]) -> None:
        for event, shown in pairs:
            if self.translator is not None:
                forward.append(self.translator.feed(event))
            elif shown:
                forward.append(event.raw)

    def feed(self, chunk: bytes) -> list[bytes]:
        native, meter, translator, limit = self.native, self.meter, self.translator, self.limit
        forward: list[bytes] = []
        for event in self.decoder.feed(chunk):
            if self.at_limit:
                before = (meter.output_bytes, meter.output_deltas)
            try:
                shown = native.on_event(self.upstream_request, meter, event)
                if self.at_limit and meter.output_deltas > before[1]:
                    # Content past the enforced limit: the upstream ignores it. The router
                    # ends the answer here, and bills none of what it did not pass on.
                    meter.output_bytes, meter.output_deltas = before
                    meter.ended_by_router = self.cut = True
                    self._emit(native.end_events(self.upstream_request, meter,
                                                 meter.usage(self.estimated_input)), forward)
                    break
                if meter.upstream_error is not None and not self.errored:
                    # The provider's error event: the client hears of it in the router's
                    # words, in its own API's shape (never the provider's text).
                    self.errored = True
                    forward.append(_upstream_error_event(meter, "mid-answer")
                                   .sse_event(self.shape))
                    continue
                if meter.needs_usage:
                    meter.needs_usage = False
                    self._emit(native.usage_events(self.upstream_request, meter, event,
                                                   meter.usage(self.estimated_input,
                                                               so_far=True)), forward)
                elif translator is not None:
                    forward.append(translator.feed(event))
                elif shown:
                    forward.append(event.raw)
            except Exception:  # noqa: BLE001 - a provider's garbage must not end the request
                self.unreadable = True
                log.warning("skipped an upstream event that could not be read")
            if not self.at_limit and (meter.output_deltas >= limit or (
                    meter.output_tokens or 0) >= limit) and meter.counted_output() >= limit:
                self.at_limit = True
        return forward


async def _stream_answer(leg: Leg, ctx: RequestContext, response: UpstreamResponse,
                         headers: tuple[tuple[bytes, bytes], ...], meter: Meter,
                         outcome: Outcome, out: ClientSink,
                         delivery: Delivery) -> RouterError | None:
    pump = _Pump(leg, ctx, meter)
    breaker = leg.provider.breaker

    def failed(error: RouterError, reason: str) -> RouterError:
        """The provider failed before any content: its breaker hears of it."""
        outcome.attempt_failed(leg.target.provider, reason)
        if error.status >= 500:
            breaker.record_failure(trio.current_time())
            outcome.judged = True
        return error

    # Until the first content, what arrives is held back and the status line waits, so
    # that a failure is still an HTTP error the next target can hide (at most the grace).
    forward: list[bytes] = []  # held back until the first content, then what goes next
    ended = False
    with trio.move_on_after(ctx.first_event_grace_s):
        while not (meter.content_started or meter.upstream_error or pump.cut):
            chunk = await response.next_chunk()  # cancel-safe: the grace may end it
            if chunk is None:
                ended = True
                break
            forward += pump.feed(chunk)
    if meter.upstream_error is not None:
        error = _upstream_error_event(meter, "before answering")
        return failed(error, failure_reason(error.status))
    if ended and not meter.content_started:
        return failed(ProviderFailed("the provider ended the stream before answering"),
                      "bad_response")
    # Content, or the grace is over (heartbeats keep a slow start alive): the answer starts.
    outcome.judged = _judge(breaker, 200)
    await out.start(200, headers + _SSE_HEADERS)
    durable = False
    while True:
        if not durable and meter.content_started:
            # A checkpoint (~20 µs), even for an answer already whole: settling first would
            # put the whole settlement (~100 µs) in front of the first token.
            await delivery.before_content(whole=False)
            durable = True
            outcome.first_content_at = time.perf_counter()
        # What went out is not kept while the next chunk is awaited (most open streams
        # are waiting there).
        data, forward = b"".join(forward), []
        if data:
            await out.body(data)
        del data
        if pump.cut or ended:
            break
        chunk = await response.next_chunk()
        if chunk is None:
            break
        forward = pump.feed(chunk)
        del chunk  # (as `data` above)
    if meter.upstream_error is not None:
        outcome.attempt_failed(leg.target.provider, "midstream")
    elif not meter.whole or pump.unreadable:
        outcome.attempt_failed(leg.target.provider, "midstream" if not meter.whole
                               else "bad_response")
        # The client must see that its answer is not whole (it got no end event, or
        # lost one); a provider's own error event already said so.
        await out.body(ProviderFailed("the provider stream ended before the answer was "
                                      "complete").sse_event(ctx.fmt.shape))
    return None
