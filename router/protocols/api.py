"""What every client API format provides to the pipeline.

A format validates the client's body (400s that name the field), writes the body the
upstream gets (model id, output limit in the field that provider honours, usage
reporting), and meters the response: it decides which events the client sees, adds up
the usage that will be billed, and can end an answer itself. The router never trusts an
upstream to stop at the limit or to report usage (docs/billing.md):

- `on_event` meters one upstream event and notes where the answer stands (choices that
  ended, the open content block, the last sequence number), so that
- `end_events` can close the answer in the upstream's own format when the router's count
  reaches the enforced limit (finish reason `length` / `max_tokens` / `incomplete`), and
- `usage_events` rewrites an event that carries usage when the upstream's figures are
  missing or zero (or adds the usage chunk a server never sent), so the client is shown
  the router's count, marked `"estimated": true`, which is exactly what is billed.

All three work in the upstream's format; a bridge then translates them like any event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from router.errors import ApiShape, BadRequest
from router.protocols.sse import SseEvent
from router.tokens import TextSize, count_output_tokens, measure
from router.usage import Usage


MAX_OUTPUT_LIMIT = 2**31 - 1  # an output limit beyond this is absurd: a 400


@dataclass
class ClientRequest:
    """A validated request body and what the pipeline needs to know of it."""

    body: dict[str, Any]
    model: str
    stream: bool
    max_output: int | None  # what the client asked for, if anything (per choice)
    size: TextSize
    wants_usage: bool = True  # OpenAI streams: did the client ask for the usage chunk?
    # The body as sent, where parse() normalised `body` (Anthropic system entries hoisted)
    as_sent: dict[str, Any] | None = None
    choices: int = 1  # outputs asked for (Chat Completions `n`): the hold multiplies by it


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """What the body sent to one provider depends on, besides the client's request."""

    model: str  # the provider's own model id
    max_output: int  # the enforced output limit, per choice
    limit_field: str  # where that provider reads it (e.g. max_tokens for llama.cpp)
    flatten_text: bool = False  # text-only content arrays become strings (compatible servers)


@dataclass
class Meter:
    """The running record of one upstream answer; owned by the stream stage, read by
    settlement and by the checkpoints of streamed usage.

    Besides usage it notes where the answer stands, so the router can end it in the
    upstream's own format: the chunk/response identity seen first, the choices
    that ended or the content block still open, the last sequence number.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    output_bytes: int = 0
    output_deltas: int = 0
    upstream_error: str | None = None
    upstream_error_type: str | None = None
    completed: bool = False  # the provider's answer arrived whole
    ended_by_router: bool = False  # cut at the enforced output limit: a whole answer too
    # An event just metered carries usage the router must supply (see `usage_events`).
    needs_usage: bool = False
    identity: dict[str, Any] | None = None  # chat chunk id/created/model; Responses object
    finished_choices: set[int] = field(default_factory=set)  # chat choices that ended
    open_block: int | None = None  # Anthropic content block open now
    blocks: int = 0  # Anthropic content blocks started
    last_seq: int = -1  # Responses sequence_number
    answer: list[str] | None = None  # the answer's text, kept only when it is stored

    def add_text(self, text: str) -> None:
        if text:
            self.output_bytes += len(text.encode("utf-8")) if not text.isascii() else len(text)
            self.output_deltas += 1
            if self.answer is not None:
                self.answer.append(text)

    def reset(self) -> None:
        """Forget everything (an answer that never reached the client)."""
        keeps_answer = self.answer is not None
        self.__init__()  # type: ignore[misc]
        if keeps_answer:
            self.answer = []

    @property
    def whole(self) -> bool:
        """The client got a whole answer (the provider's, or one the router ended)."""
        return self.completed or self.ended_by_router

    @property
    def content_started(self) -> bool:
        """Content, or the end of an empty answer, arrived: the client must see it."""
        return self.output_deltas > 0 or self.completed

    def counted_output(self) -> int:
        """Output tokens so far by the router's count (or the provider's running figure,
        if it is higher): what the output-limit guard compares with the limit."""
        return max(count_output_tokens(self.output_bytes, self.output_deltas),
                   self.output_tokens or 0)

    def usage(self, estimated_input: int, *, so_far: bool = False) -> Usage:
        """The provider's word where it gave one; our count where it did not.

        A reported input of 0 with no cached tokens is no report (the format's metering
        leaves `input_tokens` None), and neither is an output of 0 after content streamed.
        An answer that ended before any output costs nothing (I6): the user got nothing
        (`so_far`: the figures to show at the start of an answer, before any output).
        """
        if not so_far and not self.completed and not self.output_deltas:
            return Usage()
        output_known = self.output_tokens is not None and (
            self.output_tokens > 0 or not self.output_deltas)
        reported = self.completed and self.input_tokens is not None and output_known
        counted = count_output_tokens(self.output_bytes, self.output_deltas)
        output = self.output_tokens if reported else max(self.output_tokens or 0, counted)
        return Usage(input_tokens=self.input_tokens if self.input_tokens is not None
                     else estimated_input,
                     output_tokens=output or 0, cache_read_tokens=self.cache_read_tokens,
                     cache_write_tokens=self.cache_write_tokens,
                     reasoning_tokens=self.reasoning_tokens, reported=reported)

    def reported_input(self, tokens: Any, cached: int) -> None:
        """Record the provider's input figure; 0 with no cache counts as missing."""
        value = int(tokens) if tokens is not None else None
        self.input_tokens = None if (not value and not cached) else value


class ApiFormat(Protocol):
    name: str
    shape: ApiShape

    def parse(self, body: dict[str, Any]) -> ClientRequest: ...

    def upstream_body(self, request: ClientRequest, options: UpstreamOptions) -> bytes: ...

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        """Meter one streamed event; True if the client should see it. Sets
        `meter.needs_usage` when the event is where the client reads usage and the
        provider's figures are missing (`usage_events` then supplies them)."""
        ...

    def usage_events(self, request: ClientRequest, meter: Meter, event: SseEvent,
                     usage: Usage) -> list[tuple[SseEvent, bool]]:
        """`event` rewritten (or preceded by a usage event) to show `usage`, each with
        whether the client sees it."""
        ...

    def end_events(self, request: ClientRequest, meter: Meter, usage: Usage) -> list[SseEvent]:
        """The end of the answer, now, as the provider would have sent it at the limit."""
        ...

    def on_body(self, meter: Meter, body: bytes) -> None: ...

    def body_with_usage(self, body: bytes, usage: Usage) -> bytes:
        """A whole answer whose usage is the router's count (the provider gave none)."""
        ...


def upstream_json(body: dict[str, Any]) -> bytes:
    """The upstream request's body. orjson's result holds a 4 KiB allocation whatever
    its length, and this one lives as long as the answer (minutes, for a stream waiting
    for a resume): an exact-size copy costs a memcpy and saves ~3.8 KiB per stream."""
    return bytes(memoryview(orjson.dumps(body)))


def require_model_and_stream(body: dict[str, Any]) -> tuple[str, bool]:
    """The fields every format shares: model, stream."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    return model, stream


def json_object(body: bytes) -> dict[str, Any] | None:
    """A whole answer's JSON object, or None (metering then counts what it can)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def require_common(body: dict[str, Any]) -> tuple[str, bool, list[Any]]:
    """The fields both chat formats share: model, stream, messages."""
    model, stream = require_model_and_stream(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"'messages[{i}]' must be an object with a 'role'",
                             param=f"messages[{i}]")
    return model, stream, messages


def optional_limit(body: dict[str, Any], *names: str) -> int | None:
    """The client's output limit; every named field present must be valid, and the
    smallest wins (a client sending two limits expects the stricter one)."""
    found: int | None = None
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer", param=name)
        if value > MAX_OUTPUT_LIMIT:
            raise BadRequest(f"'{name}' must be at most {MAX_OUTPUT_LIMIT}", param=name)
        found = value if found is None else min(found, value)
    return found


def render_json_event(event: SseEvent, data: dict[str, Any]) -> SseEvent:
    """`event` with new data (its name kept), as the SSE bytes a client reads."""
    encoded = orjson.dumps(data)
    head = b"event: " + event.name + b"\n" if event.name is not None else b""
    return SseEvent(event.name, encoded, head + b"data: " + encoded + b"\n\n")


def new_event(name: str | None, data: dict[str, Any]) -> SseEvent:
    encoded = orjson.dumps(data)
    head = b"event: " + name.encode() + b"\n" if name is not None else b""
    return SseEvent(name.encode() if name is not None else None, encoded,
                    head + b"data: " + encoded + b"\n\n")


def new_request(body: dict[str, Any], max_names: tuple[str, ...]) -> ClientRequest:
    model, stream, _ = require_common(body)
    return ClientRequest(body=body, model=model, stream=stream,
                         max_output=optional_limit(body, *max_names), size=measure(body))


BILLED_SERVICE_TIERS = (None, "auto", "default")


def check_service_tier(body: dict[str, Any]) -> None:
    """Priority, scale and flex tiers are priced apart from the catalog: refused."""
    if body.get("service_tier") not in BILLED_SERVICE_TIERS:
        raise BadRequest(f"'service_tier' {body.get('service_tier')!r} is priced apart from "
                         "this router's catalog; use 'auto' or 'default'",
                         param="service_tier")
