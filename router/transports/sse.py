"""SSE on the way out: event ids, heartbeats, and streams served from a stream log.

Every event a client gets carries `id: <seq>` (docs/api.md), so a client that lost its
connection knows where it was. On the plain path the ids are written into the bytes the
pipeline passes through (complete events, split at their blank line); streams served
from the hub's log render each logged event with its own sequence number, so a resume
(`GET /v1/streams/{request_id}` with `Last-Event-ID` or `?after=N`) continues the same
numbering. A comment line every `SSE_HEARTBEAT_S` of silence keeps idle proxies open.
"""

from __future__ import annotations

from router.stream_log import LoggedEvent

HEARTBEAT = b": keep-alive\n\n"


def number_events(data: bytes, next_seq: int) -> tuple[bytes, int]:
    """Prefix each complete event in `data` with `id: N`; returns the bytes and the next N.

    Comment-only blocks (heartbeats) get no id."""
    parts: list[bytes] = []
    start = 0
    while True:
        end = data.find(b"\n\n", start)
        if end < 0:
            break
        block = data[start:end + 2]
        if block.startswith(b":"):
            parts.append(block)
        else:
            parts.append(b"id: %d\n" % next_seq + block)
            next_seq += 1
        start = end + 2
    if start < len(data):  # not an event boundary: pass it on as it is
        parts.append(data[start:])
    return b"".join(parts), next_seq


def render(event: LoggedEvent) -> bytes:
    """A logged event as SSE, with its sequence number as id."""
    head = b"id: %d\n" % event.seq
    if event.name is not None:
        head += b"event: " + event.name + b"\n"
    if b"\n" in event.data:
        return head + b"".join(b"data: " + line + b"\n" for line in event.data.split(b"\n")) \
            + b"\n"
    return head + b"data: " + event.data + b"\n\n"


def parse_after(last_event_id: str | None, after: str | None) -> int | None:
    """Where a resume starts: `?after=N` wins over `Last-Event-ID`; None if neither is a
    non-negative integer (0 replays everything kept)."""
    for value in (after, last_event_id):
        if value is not None:
            value = value.strip()
            return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 \
                else None
    return 0
