"""AWS event streams (`application/vnd.amazon.eventstream`), as Bedrock frames
`InvokeModelWithResponseStream` and `ConverseStream` answers.

A message is: a prelude (total length, headers length: big-endian uint32 each) and its
CRC32, the headers (name length uint8, name, value type uint8, value), the payload, and
the CRC32 of everything before it. Decoding is botocore's (`EventStreamBuffer`, which
verifies both checksums); botocore has no encoder, so `encode_message` writes the frame
(string headers only, which is all Bedrock's answers carry).

Bedrock's Anthropic stream: each event is `:message-type: event`, `:event-type: chunk`,
`:content-type: application/json`, with the payload `{"bytes": "<base64 of the Anthropic
event JSON>"}`. A failure mid-stream is `:message-type: exception` with
`:exception-type` (`throttlingException`, `modelStreamErrorException`, ...) and a JSON
payload `{"message": "..."}`.
"""

from __future__ import annotations

import base64
import logging
import struct
import zlib
from typing import Iterable

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from router.protocols.sse import SseEvent

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7
_PRELUDE = struct.Struct(">II")

# Bedrock's stream exceptions, as the Anthropic error type a Messages client reads (and
# the router's pipeline maps to a status: docs/providers.md#aws-bedrock).
EXCEPTION_TO_ANTHROPIC = {
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "overloaded_error",
    "modelNotReadyException": "overloaded_error",
    "validationException": "invalid_request_error",
    "modelTimeoutException": "timeout",
    "modelStreamErrorException": "api_error",
    "internalServerException": "api_error",
}
ANTHROPIC_TO_EXCEPTION = {
    "rate_limit_error": "throttlingException",
    "overloaded_error": "serviceUnavailableException",
    "invalid_request_error": "validationException",
    "timeout": "modelTimeoutException",
}


def encode_message(headers: Iterable[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string-valued headers."""
    encoded = bytearray()
    for name, value in headers:
        raw_name, raw_value = name.encode(), value.encode()
        encoded += bytes((len(raw_name),)) + raw_name + bytes((_STRING,))
        encoded += struct.pack(">H", len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + bytes(encoded) + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk_message(event_json: bytes) -> bytes:
    """An Anthropic event as Bedrock's `chunk` event."""
    payload = orjson.dumps({"bytes": base64.b64encode(event_json).decode()})
    return encode_message(((":event-type", "chunk"), (":content-type", "application/json"),
                           (":message-type", "event")), payload)


def exception_message(exception_type: str, message: str) -> bytes:
    return encode_message(((":exception-type", exception_type),
                           (":content-type", "application/json"),
                           (":message-type", "exception")),
                          orjson.dumps({"message": message}))


def sse_event(name: str, data: bytes) -> SseEvent:
    return SseEvent(name.encode(), data, b"event: " + name.encode() + b"\ndata: " + data
                    + b"\n\n")


def error_event(error_type: str, message: str) -> SseEvent:
    return sse_event("error", orjson.dumps({"type": "error", "error": {"type": error_type,
                                                                   "message": message}}))


class AnthropicEventStreamDecoder:
    """Bedrock's `InvokeModelWithResponseStream` bytes -> the Anthropic SSE events inside
    (a `StreamDecoder`). An exception frame becomes an Anthropic `error` event; a frame
    that fails its checksum (or cannot be parsed) becomes one `error` event, and every
    byte after it is dropped: the stream cannot be re-synchronised."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._broken = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._broken:
            return []
        self._buffer.add_data(chunk)
        events: list[SseEvent] = []
        try:
            for message in self._buffer:
                if message.headers.get(":message-type") == "event" and message.headers.get(
                        ":event-type") not in (None, "chunk"):
                    try:
                        events += self.other(str(message.headers[":event-type"]),
                                             message.payload)
                    except (ValueError, TypeError, AttributeError, KeyError):
                        log.warning("skipped an upstream event that could not be read")
                    continue
                event = self._event(message.headers, message.payload)
                if event is not None:
                    events.append(event)
        except ParserError as exc:
            self._broken = True
            events.append(error_event("api_error", "the provider's event stream could not "
                                      f"be read ({type(exc).__name__})"))
        return events

    def other(self, event_type: str, payload: bytes) -> list[SseEvent]:
        """Events other than `chunk` (ConverseStream's: a subclass translates them)."""
        return []

    @staticmethod
    def _event(headers: dict[str, object], payload: bytes) -> SseEvent | None:
        kind = headers.get(":message-type")
        if kind in ("exception", "error"):
            exception = str(headers.get(":exception-type") or headers.get(":error-code")
                            or "internalServerException")
            try:
                text = str(orjson.loads(payload).get("message") or exception)
            except (orjson.JSONDecodeError, AttributeError):
                text = exception
            return error_event(EXCEPTION_TO_ANTHROPIC.get(exception, "api_error"),
                               f"{exception}: {text}"[:300])
        if kind != "event" or headers.get(":event-type") != "chunk":
            return None
        try:
            data = base64.b64decode(orjson.loads(payload)["bytes"])
            event = orjson.loads(data)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return error_event("api_error", "the provider sent a chunk that could not be read")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return None
        if "amazon-bedrock-invocationMetrics" in event:  # Bedrock's own; not Anthropic's
            event.pop("amazon-bedrock-invocationMetrics")
            data = orjson.dumps(event)
        return sse_event(event["type"], data)


class SseToEventStream:
    """The other way, for the Bedrock-shaped inbound routes: the router's Anthropic SSE
    answer -> event-stream frames (`chunk` events; an `error` event as an exception
    frame). Comment lines (heartbeats) and `id:` numbers are dropped."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        buffer = (self._pending + data).replace(b"\r\n", b"\n")
        out = bytearray()
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            block, start = buffer[start:end], end + 2
            name, lines = None, []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    lines.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    name = line[6:].strip()
            if not lines:
                continue
            payload = b"\n".join(lines)
            if name == b"error":
                out += self._exception(payload)
            else:
                out += chunk_message(payload)
        self._pending = buffer[start:]
        return bytes(out)

    @staticmethod
    def _exception(payload: bytes) -> bytes:
        try:
            error = orjson.loads(payload).get("error") or {}
        except (orjson.JSONDecodeError, AttributeError):
            error = {}
        kind = str(error.get("type") or "api_error")
        return exception_message(ANTHROPIC_TO_EXCEPTION.get(kind, "internalServerException"),
                                 str(error.get("message") or kind))
