"""Resumable streams' event logs kept in Redis, so that a client resumes (and cancels,
`router.shared.stream_directory`) a stream on any instance, not only on the one running
it. The owner publishes its stream's events (`LogPublisher`); a reader on another
instance reads them (`RemoteLog`, a `router.stream_log.EventLog`).

One Redis stream per request, `aura:slog:<request id>`; one XADD per batch of events
(a Lua script, one round trip). A batch's entry id is `<its last seq>-0` and the done
marker's `<last seq>-1` (`0-1` for a stream without events), so "the events after n" is
a plain XREAD from `<n>-0`, dropping the events of the first batch at or before n.
Entry fields: `f` (the batch's first seq; seqs in a batch are consecutive), `e` (bytes
of batches ever appended, up to this one) and `b` (the events: per event a big-endian
int32 name length, -1 for none, a uint32 data length, the name, the data: any bytes,
no escaping); the done marker has `d` ("0": no final, "1" + final).

Bounded by bytes: after an XADD the script deletes the oldest batches while the kept
ones exceed `max_bytes` (never the batch just added). A reader whose next event was
trimmed gets `EventsGone` (`check_after` before it starts, `read_after` on the gap).
A retried XADD whose answer was lost is recognised by its id and not added twice.

TTLs: each flush sets every key of the stream to expire `window_s` later; a stream that
publishes nothing for `window_s / 3` refreshes them; a remote reader refreshes them
(and its reader lease) every `window_s / 4` while it reads.

Readers block efficiently: XREAD BLOCK (at most `block_s`, below the session's command
timeout) on a connection of its own while it waits (coredis takes blocking commands
out of the shared pool). At most `max_blocking_reads` readers block at once per
instance, so that readers cannot take every pooled connection from the ledger; readers
beyond that poll with a plain XREAD every `poll_s`. `read_after` returns [] once it read
the done marker and everything before it; a log and directory entry that both expired
under a waiting reader is `EventsGone`.

Redis down: `add` never raises. Unflushed events are kept up to `max_bytes` (then `add`
waits, as for a slow Redis) while the flush is retried with backoff; after `give_up_s` of
failed flushes the publisher gives up: it logs once, drops what it buffered, and `add`
and `finish` return at once from then on (`broken`). The stream itself carries on for
its local readers; only resumes from other instances are lost (they end in `EventsGone`
once the keys expire). Readers get `RedisUnavailable` (503) from a failed read.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Callable

import trio

from router.errors import EventsGone
from router.ledger.redis.client import Script
from router.shared.redis import REDIS_ERRORS, RedisSession
from router.shared.stream_directory import (LUA_PRELUDE, RedisUnavailable,
                                            StreamDirectory, StreamMeta)
from router.stream_log import LoggedEvent

__all__ = ["LogPublisher", "RedisStreamLogs", "RedisUnavailable", "RemoteLog",
           "StreamMeta", "decode_batch", "encode_batch"]

log = logging.getLogger("aura.streams")

_FRAME = struct.Struct(">iI")
READ_COUNT = 64  # entries per XREAD

# ARGV: prefix, request id, window ms, max bytes, last seq, first seq, batch ("" for
# none), done marker ("" for none). 0 if the log was already finished, else 1.
APPEND = Script("stream_log_append", LUA_PRELUDE + """
local rid, ms, max = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local last, batch, done = ARGV[5], ARGV[7], ARGV[8]
local key = log_key(rid)
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
end
local tail = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
local tail_seq, base = -1, 0
if tail then
  local seq, sub = string.match(tail[1], '^(%d+)-(%d+)$')
  if sub == '1' then return 0 end
  tail_seq, base = tonumber(seq), tonumber(field(tail, 'e'))
end
if batch ~= '' and tonumber(last) > tail_seq then
  local id, e = last .. '-0', base + #batch
  redis.call('XADD', key, id, 'f', ARGV[6], 'e', string.format('%d', e), 'b', batch)
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  while head and head[1] ~= id and
      e - (tonumber(field(head, 'e')) - #field(head, 'b')) > max do
    redis.call('XDEL', key, head[1])
    head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  end
end
if done ~= '' then redis.call('XADD', key, last .. '-1', 'd', done) end
redis.call('PEXPIRE', key, ms)
touch(rid, ms)
return 1
""")

# ARGV: prefix, request id. {first entry id, its first seq} or {false, meta exists}.
HEAD = Script("stream_log_head", LUA_PRELUDE + """
local head = redis.call('XRANGE', log_key(ARGV[2]), '-', '+', 'COUNT', 1)[1]
if not head then return {false, redis.call('EXISTS', meta_key(ARGV[2]))} end
local f = head[2]
for i = 1, #f, 2 do if f[i] == 'f' then return {head[1], f[i + 1]} end end
return {head[1], false}
""")


def encode_batch(events: list[tuple[bytes | None, bytes]]) -> bytes:
    parts: list[bytes] = []
    for name, data in events:
        parts += (_FRAME.pack(-1 if name is None else len(name), len(data)), name or b"",
                  data)
    return b"".join(parts)


def decode_batch(first: int, start: int, batch: bytes) -> list[LoggedEvent]:
    """The events of a batch whose first seq is `first`, `start` bytes into the log."""
    events, pos, seq = [], 0, first
    while pos < len(batch):
        name_len, data_len = _FRAME.unpack_from(batch, pos)
        pos += _FRAME.size
        name = None
        if name_len >= 0:
            name, pos = batch[pos:pos + name_len], pos + name_len
        data, pos = batch[pos:pos + data_len], pos + data_len
        events.append(LoggedEvent(seq, name, data, start + pos))
        seq += 1
    return events


def _entry_id(raw: Any) -> tuple[int, int]:
    seq, _, sub = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("-")
    return int(seq), int(sub or 0)


class RedisStreamLogs(StreamDirectory):
    """Shared stream logs and their directory, on one `RedisSession`."""

    def __init__(self, session: RedisSession, *, max_bytes: int, window_s: float,
                 flush_bytes: int = 16 * 1024, flush_s: float = 0.02,
                 give_up_s: float = 10.0, max_blocking_reads: int = 16,
                 block_s: float = 5.0, poll_s: float = 0.1) -> None:
        super().__init__(session, window_s=window_s)
        self.max_bytes = max_bytes
        self.flush_bytes = flush_bytes
        self.flush_s = flush_s
        self.give_up_s = give_up_s
        self.block_s = max(min(block_s, session.command_timeout_s - 1.0), 0.05)
        self.poll_s = poll_s
        self.blocking_reads = trio.CapacityLimiter(max(max_blocking_reads, 1))

    def publisher(self, request_id: str) -> LogPublisher:
        return LogPublisher(self, request_id)

    def reader(self, request_id: str) -> RemoteLog:
        return RemoteLog(self, request_id)

    async def _head(self, request_id: str) -> tuple[tuple[int, int] | None, int]:
        """(the first entry's id, the first seq kept), or (None, 1 if the stream's
        directory entry still exists else 0)."""
        head_id, value = await self._script(HEAD, request_id)
        if not head_id:
            return None, int(value)
        return _entry_id(head_id), int(value) if value else 0


class LogPublisher:
    """The producer's side, on the instance that runs the stream: `add` each event,
    `finish` once, and `run` the flush loop in the stream's nursery meanwhile."""

    def __init__(self, logs: RedisStreamLogs, request_id: str) -> None:
        self.logs = logs
        self.request_id = request_id
        self.broken = False  # gave up publishing (Redis was away too long)
        self._pending: list[tuple[int, bytes | None, bytes]] = []  # (size, name, data)
        self._pending_bytes = 0
        self._flushed_seq = 0  # the last seq in Redis
        self._next_seq = 1
        self._final: tuple[bytes | None] | None = None  # set by finish
        self._inflight: tuple[int, int, bytes, bytes] | None = None
        self._closed = False  # the done marker is in Redis, or publishing gave up
        self._running = False
        self._failing_since: float | None = None
        self._backoff = 0.05
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def add(self, seq: int, name: bytes | None, data: bytes) -> None:
        """Buffer event `seq` (the next number); waits while `max_bytes` are unflushed."""
        if self._closed:
            return
        if seq != self._next_seq or self._final is not None:
            raise ValueError(f"event {seq} out of order (next: {self._next_seq}, "
                             f"finished: {self._final is not None})")
        await self._until(lambda: self._pending_bytes < self.logs.max_bytes
                          or self._closed)
        if self._closed:
            return
        size = len(data) + len(name or b"") + _FRAME.size
        self._pending.append((size, name, data))
        self._pending_bytes += size
        self._next_seq += 1
        if len(self._pending) == 1 or self._pending_bytes >= self.logs.flush_bytes:
            self._notify()  # a batch begins (its flush_s starts) or is full

    async def finish(self, final: bytes | None) -> None:
        """Flush what is buffered and the done marker (with `final`); returns once they
        are in Redis or publishing gave up. From a cancelled scope, call it shielded:
        it takes at most about `give_up_s`."""
        if self._final is None:
            self._final = (final,)
        self._notify()
        while not self._closed:
            if self._running:
                await self._changed.wait()
            else:  # the flush loop is not running (over, or cancelled): flush from here
                await self._flush_once()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """The flush loop: a batch every `flush_s`, or as soon as `flush_bytes` are
        buffered; returns once the done marker is in Redis (or publishing gave up)."""
        refresh_s = max(self.logs.window_s / 3, 0.01)
        self._running = True
        task_status.started()
        try:
            while not self._closed:
                if not self._pending and self._final is None:
                    with trio.move_on_after(refresh_s) as idle:
                        await self._until(lambda: bool(self._pending)
                                          or self._final is not None)
                    if idle.cancelled_caught:
                        await self._refresh()
                        continue
                if self._pending_bytes < self.logs.flush_bytes and self._final is None:
                    with trio.move_on_after(self.logs.flush_s):
                        await self._until(
                            lambda: self._pending_bytes >= self.logs.flush_bytes
                            or self._final is not None)
                await self._flush_once()
        finally:
            self._running = False
            self._notify()  # a waiting `finish` flushes by itself now

    async def _refresh(self) -> None:
        try:
            await self.logs.touch(self.request_id)
        except RedisUnavailable:
            log.debug("stream %s: TTL refresh failed", self.request_id)

    def _next_batch(self) -> tuple[int, int, bytes, bytes]:
        """(events taken, last seq, batch, done marker): up to `flush_bytes` of events,
        and the done marker if they are the last."""
        taken = size = 0
        while taken < len(self._pending) and size < self.logs.flush_bytes:
            size += self._pending[taken][0]
            taken += 1
        batch = encode_batch([(name, data) for _, name, data in self._pending[:taken]])
        done = b""
        if taken == len(self._pending) and self._final is not None:
            final = self._final[0]
            done = b"0" if final is None else b"1" + final
        return taken, self._flushed_seq + taken, batch, done

    async def _flush_once(self) -> None:
        if self._inflight is None:
            self._inflight = self._next_batch()
        taken, last, batch, done = self._inflight
        try:
            await self.logs._script(APPEND, self.request_id, self.logs._window_ms,
                                    str(self.logs.max_bytes), str(last),
                                    str(self._flushed_seq + 1), batch, done,
                                    timeout_s=self._attempt_s())
        except RedisUnavailable as exc:
            now = trio.current_time()
            if self._failing_since is None:
                self._failing_since = now
                log.warning("stream %s: events cannot be published to Redis (%s); "
                            "retrying", self.request_id, exc.__cause__ or exc)
            elif now - self._failing_since >= self.logs.give_up_s:
                self._give_up()
                return
            await trio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, 1.0)
            return
        self._inflight, self._failing_since, self._backoff = None, None, 0.05
        self._pending_bytes -= sum(size for size, _, _ in self._pending[:taken])
        del self._pending[:taken]
        self._flushed_seq = last
        if done:
            self._closed = True
        self._notify()

    def _attempt_s(self) -> float:
        """How long this flush may take: what is left of `give_up_s` while failing."""
        limit = min(self.logs.session.command_timeout_s, self.logs.give_up_s)
        if self._failing_since is None:
            return limit
        left = self.logs.give_up_s - (trio.current_time() - self._failing_since)
        return min(max(left, 0.01), limit)

    def _give_up(self) -> None:
        log.error("stream %s: Redis unreachable for %.0f s; no longer published (it "
                  "cannot be resumed on another instance)", self.request_id,
                  self.logs.give_up_s)
        self.broken = self._closed = True
        self._pending.clear()
        self._pending_bytes = 0
        self._inflight = None
        self._notify()


class RemoteLog:
    """A stream's log kept in Redis, as a reader on any instance sees it (`EventLog`)."""

    def __init__(self, logs: RedisStreamLogs, request_id: str) -> None:
        self.logs = logs
        self.request_id = request_id
        self.done = False
        self.final: bytes | None = None
        self._end_seq = 0  # the last seq, once done
        self._key = f"{logs.session.prefix}slog:{request_id}"
        self._touched_at: float | None = None
        self._checked_at = 0.0

    async def check_after(self, after: int) -> None:
        """`EventsGone` if a reader starting after `after` would miss events."""
        head, known = await self.logs._head(self.request_id)
        if head is None:
            if not known:
                raise EventsGone(f"stream {self.request_id} is no longer kept")
            return
        (seq, sub), first = head, known
        if sub == 1 and seq > after:
            raise EventsGone(f"events {after + 1} to {seq} are no longer kept")
        if sub == 0 and first > after + 1:
            raise EventsGone(f"events {after + 1} to {first - 1} are no longer kept")

    async def read_after(self, after: int) -> list[LoggedEvent]:
        """The next events after `after`, waiting for some; [] once done and all read."""
        cursor = f"{after}-0"  # the entry id XREAD goes on from
        while True:
            if self.done and after >= self._end_seq:
                return []
            await self._touch()
            entries = await self._read(cursor)
            if not entries:
                if trio.current_time() - self._checked_at >= self.logs.block_s:
                    self._checked_at = trio.current_time()
                    if (await self.logs._head(self.request_id)) == (None, 0):
                        raise EventsGone(f"stream {self.request_id} is no longer kept")
                continue
            events: list[LoggedEvent] = []
            cursor = entries[-1].identifier.decode()
            for entry in entries:
                seq, sub = _entry_id(entry.identifier)
                fields = entry.field_values
                if sub == 1:
                    marker = fields.get(b"d", b"0")
                    self.done, self._end_seq = True, seq
                    self.final = marker[1:] if marker[:1] == b"1" else None
                    break
                first, batch = int(fields[b"f"]), fields[b"b"]
                seen = events[-1].seq if events else after
                if first > seen + 1:
                    raise EventsGone(f"events {seen + 1} to {first - 1} are no longer kept")
                start = int(fields[b"e"]) - len(batch)
                events += (e for e in decode_batch(first, start, batch) if e.seq > seen)
            if events:
                return events

    async def _touch(self) -> None:
        """Every `window_s / 4`: tell the owner a reader is here, keep the keys alive."""
        now = trio.current_time()
        if self._touched_at is None or now - self._touched_at >= self.logs.window_s / 4:
            self._touched_at = now
            await self.logs.touch_reader(self.request_id)

    async def _read(self, cursor: str) -> tuple[Any, ...]:
        """The entries after id `cursor`, blocking up to `block_s` for some (or one
        poll, when `max_blocking_reads` readers of this instance block already)."""
        slot, limiter = object(), self.logs.blocking_reads
        try:
            limiter.acquire_on_behalf_of_nowait(slot)
            block_ms: int | None = round(self.logs.block_s * 1000)
        except trio.WouldBlock:
            block_ms = None
        try:
            with trio.fail_after(self.logs.block_s + self.logs.session.command_timeout_s):
                reply = await self.logs.session.client.xread(
                    {self._key: cursor}, count=READ_COUNT, block=block_ms)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable("the stream cannot be read right now (the shared "
                                   "state is unreachable); retry shortly",
                                   headers={"retry-after": "1"}) from exc
        finally:
            if block_ms is not None:
                limiter.release_on_behalf_of(slot)
        entries = tuple((reply or {}).get(self._key.encode(), ()))
        if not entries and block_ms is None:
            await trio.sleep(self.logs.poll_s)
        return entries
