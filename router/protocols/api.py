"""What every client API format provides to the pipeline.

A format validates the client's body (400s that name the field), writes the body the
upstream gets (model id, output limit, usage reporting), and meters the response: it
decides which events the client sees and adds up the usage that will be billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from router.errors import ApiShape, BadRequest
from router.protocols.sse import SseEvent
from router.tokens import TextSize, count_output_tokens, measure
from router.usage import Usage


@dataclass
class ClientRequest:
    """A validated request body and what the pipeline needs to know of it."""

    body: dict[str, Any]
    model: str
    stream: bool
    max_output: int | None  # what the client asked for, if anything
    size: TextSize
    wants_usage: bool = True  # OpenAI streams: did the client ask for the usage chunk?
    # The body as sent, where parse() normalised `body` (Anthropic system entries hoisted)
    as_sent: dict[str, Any] | None = None


@dataclass
class Meter:
    """Running usage of one response; owned by the stream stage, read by settlement."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    output_bytes: int = 0
    output_deltas: int = 0
    upstream_error: str | None = None

    def add_text(self, text: str) -> None:
        if text:
            self.output_bytes += len(text.encode("utf-8")) if not text.isascii() else len(text)
            self.output_deltas += 1

    completed: bool = False  # the provider's answer arrived whole

    def reset(self) -> None:
        """Forget everything (an answer that never reached the client)."""
        self.__init__()  # type: ignore[misc]

    def usage(self, estimated_input: int) -> Usage:
        """The provider's word where it gave one; our count where it did not.

        An answer that ended before any output costs nothing (I6): the user got nothing.
        """
        if not self.completed and not self.output_deltas:
            return Usage()
        reported = (self.completed and self.input_tokens is not None
                    and self.output_tokens is not None)
        counted = count_output_tokens(self.output_bytes, self.output_deltas)
        output = self.output_tokens if reported else max(self.output_tokens or 0, counted)
        return Usage(input_tokens=self.input_tokens if self.input_tokens is not None
                     else estimated_input,
                     output_tokens=output or 0, cache_read_tokens=self.cache_read_tokens,
                     cache_write_tokens=self.cache_write_tokens,
                     reasoning_tokens=self.reasoning_tokens, reported=reported)


class ApiFormat(Protocol):
    name: str
    shape: ApiShape

    def parse(self, body: dict[str, Any]) -> ClientRequest: ...

    def upstream_body(self, request: ClientRequest, upstream_model: str,
                      max_output: int) -> bytes: ...

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        """Meter one streamed event; True if the client should see it."""
        ...

    def on_body(self, meter: Meter, body: bytes) -> None: ...


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
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer", param=name)
        return value
    return None


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
