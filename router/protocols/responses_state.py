"""A Responses stream as something to come back to: its id, its state, its numbering.

Background responses (`POST /v1/responses` with `"background": true`) and the Responses
websocket mode are read again later by the response id: `GET /v1/responses/{id}` for the
response object, `?stream=true&starting_after=N` and a websocket's
`?resume=<id>&starting_after=N` for the events after sequence number N
(docs/websocket.md). So the router, not the upstream, owns the numbering of these
streams: each event's `sequence_number` is set to its place in the stream's log minus
one (the log counts from 1, the Responses API from 0), whatever the upstream or a
translation put there. A resume after sequence number N is then a read of the log after
N + 1, the same on every instance. `ResponseWatch` does that per event, and keeps the
latest response object the lifecycle events carried (`response.created` ...
`response.completed`), which is what a retrieve returns.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["ResponseWatch", "log_after", "renumber", "retrieved"]

# The top-level key only: inside a JSON string a quote is always escaped, so an
# unescaped `"sequence_number":` can only be a key (and nested objects carry none).
_SEQUENCE = re.compile(rb'(?<!\\)"sequence_number"\s*:\s*-?\d+')
_LIFECYCLE = frozenset((b"response.queued", b"response.created", b"response.in_progress",
                        b"response.completed", b"response.incomplete", b"response.failed"))
TERMINAL = frozenset(("completed", "incomplete", "failed", "cancelled"))


def renumber(data: bytes, number: int) -> bytes:
    """`data` (one event's JSON) with its `sequence_number` set to `number`; an event
    without one (an error the router wrote) gets it added."""
    replacement = b'"sequence_number":%d' % number
    renumbered, count = _SEQUENCE.subn(replacement, data, count=1)
    if count:
        return renumbered
    if data[:1] == b"{" and data.rstrip()[-1:] == b"}":
        body = data.rstrip()[:-1].rstrip()
        return body + (b"," if body != b"{" else b"") + replacement + b"}"
    return data


def log_after(starting_after: int | None) -> int:
    """The log position a reader starts after, for a client's `starting_after` (the last
    sequence number it has; None: from the start)."""
    return 0 if starting_after is None else starting_after + 1


class ResponseWatch:
    """Numbers a Responses stream's events and keeps its latest response object."""

    __slots__ = ("response_id", "snapshot", "background")

    def __init__(self, background: bool = False) -> None:
        self.response_id: str | None = None
        self.snapshot: dict[str, Any] | None = None
        self.background = background

    def event(self, name: bytes | None, data: bytes, seq: int) -> bytes:
        """The event's data as the stream's log keeps it (it will be number `seq`)."""
        data = renumber(data, seq - 1)
        if name in _LIFECYCLE:
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                return data
            response = payload.get("response") if isinstance(payload, dict) else None
            if isinstance(response, dict):
                if self.background and not response.get("background"):
                    response["background"] = True
                    data = orjson.dumps(payload)
                self.snapshot = response
                if self.response_id is None and isinstance(response.get("id"), str):
                    self.response_id = response["id"]
        return data


def retrieved(snapshot: dict[str, Any] | None, *, done: bool, cancelled: bool,
              error: tuple[str, str] | None = None) -> dict[str, Any] | None:
    """The response object `GET /v1/responses/{id}` returns, from the latest snapshot and
    what became of the stream (`error`: code and message of a stream that failed)."""
    if snapshot is None:
        return None
    response = dict(snapshot)
    status = response.get("status")
    if cancelled and status not in TERMINAL:
        response["status"] = "cancelled"
    elif done and status not in TERMINAL:
        # Ended without a final lifecycle event: cut mid-stream, or an error event.
        response["status"] = "failed"
        code, message = error or ("server_error", "the response ended before it completed")
        response["error"] = {"code": code, "message": message}
    return response
