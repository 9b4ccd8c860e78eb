"""A resumable stream's events: numbered, kept for replay, bounded in memory.

The producer (the request running in the stream hub) appends SSE events as they leave
the pipeline; each gets the next sequence number (1, 2, ...). Readers (an SSE response,
a websocket stream) read from any point: `events_after(n)` replays what is kept, then
waits for more. Events are kept after delivery because a client whose network dropped
may not have received what was sent: it resumes from the last number it saw.

Memory is bounded by `max_bytes`: events delivered to a reader are dropped oldest-first
beyond it (a resume from before them is refused as gone), and the producer waits while
`max_bytes` of events nobody has read yet are kept: a slow or absent reader slows the
upstream read (TCP backpressure to the provider) instead of growing a buffer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from router.errors import EventsGone

__all__ = ["EventLog", "EventsGone", "LoggedEvent", "StreamLog"]

DEFAULT_MAX_BYTES = 1024 * 1024


EVENT_OVERHEAD_BYTES = 64  # what an event costs beyond its payload, roughly


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    seq: int
    name: bytes | None  # the SSE `event:` field, if any
    data: bytes  # the SSE `data:` payload
    end: int  # bytes appended to the log up to and including this event


class EventLog(Protocol):
    """A stream's log as its readers see it: this process's `StreamLog`, or one kept in
    Redis by the instance that runs the stream (`router.shared.stream_logs`)."""

    @property
    def done(self) -> bool: ...

    @property
    def final(self) -> Any:
        """What the stream ended with (its settlement), once `done`."""
        ...

    async def check_after(self, after: int) -> None:
        """`EventsGone` if a reader starting after `after` would miss events."""
        ...

    async def read_after(self, after: int) -> list[LoggedEvent]:
        """The next events after `after`, waiting for some; [] once done and all read."""
        ...


class StreamLog:
    __slots__ = ("max_bytes", "_events", "_appended", "_dropped", "_read_offset", "_next_seq",
                 "_read_upto", "_changed", "done", "final")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._events: deque[LoggedEvent] = deque()
        self._appended = 0  # bytes ever appended
        self._dropped = 0  # bytes of the events trimmed away
        self._read_offset = 0  # bytes up to the last event a reader took
        self._next_seq = 1
        self._read_upto = 0  # highest sequence number a reader has taken
        self._changed = trio.Event()
        self.done = False
        self.final: Any = None  # what the stream ended with (its settlement, for `done`)

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def first_kept(self) -> int:
        return self._events[0].seq if self._events else self._next_seq

    @property
    def kept_bytes(self) -> int:
        return self._appended - self._dropped

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def append(self, name: bytes | None, data: bytes) -> int:
        """Add an event; waits while it would take the unread events past `max_bytes`
        (an event larger than that on its own waits until everything else was read)."""
        size = len(data) + EVENT_OVERHEAD_BYTES
        while (unread := self._appended - self._read_offset) and \
                unread + size > self.max_bytes and not self.done:
            await self._changed.wait()
        self._appended += size
        event = LoggedEvent(self._next_seq, name, data, self._appended)
        self._next_seq += 1
        self._events.append(event)
        self._trim()
        self._notify()
        return event.seq

    def finish(self, final: Any) -> None:
        self.done, self.final = True, final
        self._notify()

    def _trim(self) -> None:
        while self.kept_bytes > self.max_bytes and self._events and \
                self._events[0].seq <= self._read_upto:
            self._dropped = self._events.popleft().end

    def _taken(self, last: LoggedEvent) -> None:
        if last.seq <= self._read_upto:
            return
        self._read_upto, self._read_offset = last.seq, last.end
        self._trim()
        self._notify()

    def available_after(self, after: int) -> list[LoggedEvent]:
        """The kept events after `after` (may be empty); `EventsGone` if some are lost."""
        if after + 1 < self.first_kept:
            raise EventsGone(f"events {after + 1} to {self.first_kept - 1} are no longer kept")
        if after >= self.last_seq:
            return []
        start = after + 1 - self.first_kept
        return [self._events[i] for i in range(max(start, 0), len(self._events))]

    async def check_after(self, after: int) -> None:
        """`EventsGone` if a reader starting after `after` would miss events (the same
        question a log kept in Redis answers with a round trip, hence async)."""
        self.available_after(after)

    async def read_after(self, after: int) -> list[LoggedEvent]:
        """The next events after `after`, waiting for some; [] once the stream is done
        and everything was read."""
        while True:
            events = self.available_after(after)
            if events:
                self._taken(events[-1])
                return events
            if self.done:
                return []
            await self._changed.wait()
