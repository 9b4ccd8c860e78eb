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

from array import array
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
    """One stream's events in this process.

    Kept compact because a detached stream may sit here for minutes (and its events are
    most of what it costs then): a kept event is a list slot, two integers in `array`s
    (its end offset; how much it shares with the stream's template) and the part of its
    data that differs from the template, the stream's first event (kept for the stream's
    life: at most one event beyond the bound). A provider's chunks repeat the same JSON
    around a few changing bytes (id, model, `"delta":{"content":` ... `"finish_reason":
    null}]}`): ~80 bytes an event in all instead of ~400 (docs/benchmarks.md). Names (interned:
    a stream has few) are kept only once some event had one; the `LoggedEvent` objects
    readers get are made when they read. Trimmed entries are dropped by moving a head
    index and compacting the lists now and then (amortised O(1), no deque block each).
    """

    __slots__ = ("max_bytes", "_datas", "_names", "_ends", "_cuts", "_template", "_head",
                 "_appended", "_dropped", "_read_offset", "_next_seq", "_read_upto",
                 "_changed", "done", "final")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._datas: list[bytes] = []  # from index `_head` on: the kept events' data
        self._names: list[bytes | None] | None = None  # in step with `_datas`, once needed
        self._ends = array("q")  # in step with `_datas`: `LoggedEvent.end` of each
        self._cuts = array("q")  # in step: prefix << 32 | suffix shared with `_template`
        self._template = b""  # the first event's data
        self._head = 0  # entries before it were trimmed away (compacted now and then)
        self._appended = 0  # bytes ever appended
        self._dropped = 0  # bytes of the events trimmed away
        self._read_offset = 0  # bytes up to the last event a reader took
        self._next_seq = 1
        self._read_upto = 0  # highest sequence number a reader has taken
        self._changed: trio.Event | None = None  # made by the first waiter (idle: none)
        self.done = False
        self.final: Any = None  # what the stream ended with (its settlement, for `done`)

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def first_kept(self) -> int:
        return self._next_seq - (len(self._datas) - self._head)

    @property
    def kept_bytes(self) -> int:
        return self._appended - self._dropped

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = trio.Event()
        await self._changed.wait()

    async def append(self, name: bytes | None, data: bytes) -> int:
        """Add an event; waits while it would take the unread events past `max_bytes`
        (an event larger than that on its own waits until everything else was read)."""
        size = len(data) + EVENT_OVERHEAD_BYTES
        while (unread := self._appended - self._read_offset) and \
                unread + size > self.max_bytes and not self.done:
            await self._wait_changed()
        self._appended += size
        seq = self._next_seq
        self._next_seq += 1
        if name is not None and self._names is None:
            self._names = [None] * len(self._datas)
        if self._names is not None:
            self._names.append(_interned(name))
        if not self._template:
            self._template = data
        prefix, suffix = _shared(self._template, data)
        self._datas.append(data[prefix:len(data) - suffix] if prefix or suffix else data)
        self._cuts.append(prefix << 32 | suffix)
        self._ends.append(self._appended)
        self._trim()
        self._notify()
        return seq

    def finish(self, final: Any) -> None:
        self.done, self.final = True, final
        self._notify()

    def _trim(self) -> None:
        head, ends = self._head, self._ends
        first = self.first_kept
        while self.kept_bytes > self.max_bytes and head < len(ends) and first <= self._read_upto:
            self._dropped = ends[head]
            head += 1
            first += 1
        if head == self._head:
            return
        if head * 2 >= len(ends):  # compact: each entry is moved at most once on average
            del self._datas[:head]
            del self._ends[:head]
            del self._cuts[:head]
            if self._names is not None:
                del self._names[:head]
            head = 0
        else:
            self._datas[self._head:head] = [b""] * (head - self._head)  # free them now
        self._head = head

    def _taken(self, last: LoggedEvent) -> None:
        if last.seq <= self._read_upto:
            return
        self._read_upto, self._read_offset = last.seq, last.end
        self._trim()
        self._notify()

    def available_after(self, after: int) -> list[LoggedEvent]:
        """The kept events after `after` (may be empty); `EventsGone` if some are lost."""
        first = self.first_kept
        if after + 1 < first:
            raise EventsGone(f"events {after + 1} to {first - 1} are no longer kept")
        if after >= self.last_seq:
            return []
        start = self._head + max(after + 1 - first, 0)
        seq0 = first - self._head  # the sequence number of index 0
        datas, ends, names = self._datas, self._ends, self._names
        return [LoggedEvent(seq0 + i, names[i] if names is not None else None, self._data(i),
                            ends[i]) for i in range(start, len(datas))]

    def _data(self, i: int) -> bytes:
        cut = self._cuts[i]
        if not cut:
            return self._datas[i]
        template, prefix, suffix = self._template, cut >> 32, cut & 0xFFFFFFFF
        return template[:prefix] + self._datas[i] + template[len(template) - suffix:]

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
            await self._wait_changed()


MIN_SHARED = 24  # below this, an event is kept whole (slicing would not pay)


def _shared(template: bytes, data: bytes) -> tuple[int, int]:
    """How many leading and trailing bytes `data` shares with `template` (not
    overlapping in either); (0, 0) when that is too little to be worth keeping apart."""
    limit = min(len(template), len(data))
    lo, hi = 0, limit  # binary search on slices: a few C compares instead of a byte loop
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if template[:mid] == data[:mid]:
            lo = mid
        else:
            hi = mid - 1
    prefix = lo
    lo, hi = 0, limit - prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if template[len(template) - mid:] == data[len(data) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return (prefix, lo) if prefix + lo >= MIN_SHARED else (0, 0)


_NAMES: dict[bytes, bytes] = {}  # SSE event names seen: a few per API, shared by streams
_MAX_NAMES = 1024


def _interned(name: bytes | None) -> bytes | None:
    if name is None:
        return None
    known = _NAMES.get(name)
    if known is not None:
        return known
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[name] = name
    return name
