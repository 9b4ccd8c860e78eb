"""Server-sent events: an incremental parser that keeps each event's raw bytes.

Pass-through streaming forwards the raw bytes of each event untouched and only looks at
the `event:` and `data:` fields for metering, so nothing is re-encoded on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    name: bytes | None
    data: bytes
    raw: bytes  # the event as received, ending with the blank line


def _fields(block: bytes) -> tuple[bytes | None, bytes]:
    name: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, b"\n".join(data)


class SseParser:
    """Feed bytes as they arrive; get back the complete events they finish."""

    __slots__ = ("_buffer",)  # one per stream, sometimes two: no instance dict

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:  # normalised after joining: a CRLF may straddle two chunks
            buffer = buffer.replace(b"\r\n", b"\n")
        events: list[SseEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            if block.strip():
                name, data = _fields(block)
                events.append(SseEvent(name, data, block + b"\n\n"))
        self._buffer = buffer[start:]
        return events

    @property
    def pending(self) -> bytes:
        return self._buffer
