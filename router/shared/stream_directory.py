"""The directory of resumable streams shared by every instance: which streams exist,
whose they are, which instance runs them, how far they got; and cancels across
instances. `router.shared.stream_logs` keeps their events.

Keys (after the session's prefix, "aura:"), all built by the Lua scripts below:

- `stream:<request id>`: a hash, the stream's `StreamMeta` (fields a, o, api, c, r, st,
  h, sse, state, resp, fin, l, bg, cancel).
- `stream-by:<bytes of account>:<account>:c:<client id>` and `...:r:<response id>`:
  the request id, so that a websocket lane or a Responses id finds its stream. The
  account's length makes two accounts' keys distinct whatever they contain; a lookup
  still checks the account in the hash (another account's stream: None).
- `streams-of:<owner>`: a sorted set of the streams an instance runs (score: when last
  touched, Redis's clock), so that an owner that (re)subscribes finds cancels it missed.
- `stream-reader:<request id>`: set (TTL: the window) while a reader on another
  instance is attached: the owner does not expire a stream whose remote reader is there.
- `slog:<request id>`: the events (`router.shared.stream_logs`).
- Channel `stream-cancel:<owner>`: request ids to cancel, published by any instance.

TTLs: every key of a stream expires `window_s` after its last write; each write (an
update, a flushed batch of events, a reader's touch) refreshes all of them, and the
publisher refreshes them while a stream runs quietly. Nothing stays in Redis for good.

Cancels: `request_cancel` sets `cancel` in the hash and publishes the request id on the
owner's channel. `watch_cancels` subscribes, then reads the flags of the owner's
streams (so a message published while it was not subscribed is not lost), and on a lost
connection does both again; `on_cancel` may hence hear a request id more than once.

Nothing but what the caller gives is stored (no credentials: the headers are those of
the answer). Redis unreachable: `RedisUnavailable` (503) from every call, except
`watch_cancels`, which retries with backoff for as long as it runs.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Callable

import orjson
import trio

from router.errors import RouterError
from router.ledger.redis.client import Script
from router.shared.redis import REDIS_ERRORS, RedisSession

__all__ = ["RedisUnavailable", "StreamDirectory", "StreamMeta", "LUA_PRELUDE"]

log = logging.getLogger("aura.streams")

STATES = ("running", "done", "cancelled")


class RedisUnavailable(RouterError):
    """The shared stream state cannot be reached: a resume or a cancel through another
    instance cannot be served now."""

    status = 503
    anthropic_type = "overloaded_error"
    code = "streams_unavailable"


@dataclass(frozen=True, slots=True)
class StreamMeta:
    request_id: str  # "req_<24 hex>"
    account: str
    owner: str  # the instance id running the stream
    api: str  # "openai.chat" | "openai.responses" | "anthropic.messages"
    client_id: str | None = None  # a websocket frame id / lane, for resumes by it
    response_id: str | None = None  # "resp_..." for Responses streams, once known
    status: int = 0  # of the answer, once started
    headers: tuple[tuple[bytes, bytes], ...] = ()
    is_sse: bool = False
    state: str = "running"  # "running" | "done" | "cancelled"
    response: bytes | None = None  # the latest Responses object
    final: bytes | None = None  # the settlement (JSON), once done
    cancel_requested: bool = False
    lane: str | None = None  # a Responses websocket's `stream_id`, echoed on its events
    background: bool = False  # a background response: runs on without any reader

    @property
    def started(self) -> bool:
        return self.status != 0


# Lua helpers every script of ours starts with. P is the key prefix (ARGV[1]).
LUA_PRELUDE = """
local P = ARGV[1]
local function meta_key(rid) return P .. 'stream:' .. rid end
local function log_key(rid) return P .. 'slog:' .. rid end
local function index_key(account, kind, value)
  return P .. 'stream-by:' .. #account .. ':' .. account .. ':' .. kind .. ':' .. value
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Every key of the stream lives `ms` more; false if the stream is not known (expired).
local function touch(rid, ms)
  local m = redis.call('HMGET', meta_key(rid), 'a', 'o', 'c', 'r')
  if not m[1] then return false end
  redis.call('PEXPIRE', meta_key(rid), ms)
  redis.call('PEXPIRE', log_key(rid), ms)
  if m[3] then redis.call('PEXPIRE', index_key(m[1], 'c', m[3]), ms) end
  if m[4] then redis.call('PEXPIRE', index_key(m[1], 'r', m[4]), ms) end
  local owned = P .. 'streams-of:' .. m[2]
  redis.call('ZADD', owned, 'XX', now_ms(), rid)
  redis.call('PEXPIRE', owned, ms)
  return true
end
"""

# ARGV: prefix, request id, window ms, then the hash's field/value pairs.
REGISTER = Script("stream_register", LUA_PRELUDE + """
local rid, ms = ARGV[2], tonumber(ARGV[3])
local key = meta_key(rid)
redis.call('DEL', key)
for i = 4, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
local m = redis.call('HMGET', key, 'a', 'o', 'c', 'r')
if m[3] then redis.call('SET', index_key(m[1], 'c', m[3]), rid, 'PX', ms) end
if m[4] then redis.call('SET', index_key(m[1], 'r', m[4]), rid, 'PX', ms) end
local owned, now = P .. 'streams-of:' .. m[2], now_ms()
redis.call('ZREMRANGEBYSCORE', owned, '-inf', now - ms)
redis.call('ZADD', owned, now, rid)
return touch(rid, ms) and 1 or 0
""")

# ARGV: prefix, request id, window ms, then field/value pairs. 0: the stream is gone.
UPDATE = Script("stream_update", LUA_PRELUDE + """
local rid, ms = ARGV[2], tonumber(ARGV[3])
local key = meta_key(rid)
local account = redis.call('HGET', key, 'a')
if not account then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'r' then redis.call('SET', index_key(account, 'r', ARGV[i + 1]), rid) end
end
touch(rid, ms)
return 1
""")

# ARGV: prefix, kind ("id", "c" or "r"), account, value. The hash's pairs, or {}.
LOOKUP = Script("stream_lookup", LUA_PRELUDE + """
local rid = ARGV[4]
if ARGV[2] ~= 'id' then
  rid = redis.call('GET', index_key(ARGV[3], ARGV[2], ARGV[4]))
  if not rid then return {} end
end
local meta = redis.call('HGETALL', meta_key(rid))
if #meta > 0 then table.insert(meta, 'rid'); table.insert(meta, rid) end
return meta
""")

# ARGV: prefix, request id. 1: flagged and announced; 0: no such stream.
CANCEL = Script("stream_cancel", LUA_PRELUDE + """
local rid = ARGV[2]
local owner = redis.call('HGET', meta_key(rid), 'o')
if not owner then return 0 end
redis.call('HSET', meta_key(rid), 'cancel', '1')
redis.call('PUBLISH', P .. 'stream-cancel:' .. owner, rid)
return 1
""")

# ARGV: prefix, owner. The owner's running streams with a cancel asked for; forgets
# the members whose stream expired.
PENDING_CANCELS = Script("stream_pending_cancels", LUA_PRELUDE + """
local owned, out = P .. 'streams-of:' .. ARGV[2], {}
for _, rid in ipairs(redis.call('ZRANGE', owned, 0, -1)) do
  local m = redis.call('HMGET', meta_key(rid), 'cancel', 'state')
  if not m[2] then
    redis.call('ZREM', owned, rid)
  elseif m[1] == '1' and m[2] == 'running' then
    table.insert(out, rid)
  end
end
return out
""")

# ARGV: prefix, request id, window ms. 1 if the stream is known.
TOUCH_READER = Script("stream_touch_reader", LUA_PRELUDE + """
local rid, ms = ARGV[2], tonumber(ARGV[3])
if not touch(rid, ms) then return 0 end
redis.call('SET', P .. 'stream-reader:' .. rid, '1', 'PX', ms)
return 1
""")

# ARGV: prefix, request id, window ms. Refreshes the TTLs of a quietly running stream.
TOUCH = Script("stream_touch", LUA_PRELUDE + """
return touch(ARGV[2], tonumber(ARGV[3])) and 1 or 0
""")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(**fields: Any) -> list[bytes | str]:
    """The hash's field/value pairs for `StreamMeta` attributes (None: left out)."""
    names = {"account": "a", "owner": "o", "api": "api", "client_id": "c",
             "response_id": "r", "status": "st", "headers": "h", "is_sse": "sse",
             "state": "state", "response": "resp", "final": "fin", "lane": "l",
             "background": "bg"}
    out: list[bytes | str] = []
    for name, value in fields.items():
        if name not in names:
            raise TypeError(f"not a stream field: {name}")
        if value is None:
            continue
        if name == "headers":
            value = orjson.dumps([[k.decode("latin-1"), v.decode("latin-1")]
                                  for k, v in value])
        elif name in ("is_sse", "background"):
            value = "1" if value else "0"
        elif name == "status":
            value = str(int(value))
        elif name == "state" and value not in STATES:
            raise ValueError(f"not a stream state: {value}")
        out += (names[name], value)
    return out


def _meta(pairs: list[Any]) -> StreamMeta:
    raw = {_text(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)}

    def text(name: str) -> str | None:
        return _text(raw[name]) if name in raw else None

    headers = tuple((k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in orjson.loads(raw["h"])) if "h" in raw else ()
    return StreamMeta(
        request_id=text("rid") or "", account=text("a") or "", owner=text("o") or "",
        api=text("api") or "", client_id=text("c"), response_id=text("r"),
        status=int(text("st") or 0), headers=headers, is_sse=text("sse") == "1",
        state=text("state") or "running", response=raw.get("resp"), final=raw.get("fin"),
        cancel_requested=text("cancel") == "1", lane=text("l"),
        background=text("bg") == "1")


class StreamDirectory:
    """The shared directory of streams, on one `RedisSession`."""

    def __init__(self, session: RedisSession, *, window_s: float) -> None:
        self.session = session
        self.window_s = window_s
        self._window_ms = str(max(int(window_s * 1000), 1))

    async def _script(self, script: Script, *args: Any, timeout_s: float | None = None
                      ) -> Any:
        try:
            with trio.fail_after(timeout_s or self.session.command_timeout_s):
                return await self.session.script(script, *args)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable("resumable streams cannot be reached right now (the "
                                   "shared state is unreachable); retry shortly",
                                   headers={"retry-after": "1"}) from exc

    async def register(self, meta: StreamMeta) -> None:
        """Record a new stream (replacing a stale one of the same id), its indexes and
        its owner, all expiring `window_s` from now."""
        await self._script(REGISTER, meta.request_id, self._window_ms, *_fields(
            account=meta.account, owner=meta.owner, api=meta.api,
            client_id=meta.client_id, response_id=meta.response_id,
            status=meta.status or None, headers=meta.headers or None,
            is_sse=meta.is_sse, state=meta.state, response=meta.response,
            final=meta.final, lane=meta.lane, background=meta.background))

    async def update(self, request_id: str, **fields: Any) -> bool:
        """Set `StreamMeta` fields (status, headers, is_sse, response_id (indexed too),
        state, response, final); None leaves a field as it was. False if the stream is
        no longer known."""
        pairs = _fields(**fields)
        if not pairs:
            return True
        return bool(await self._script(UPDATE, request_id, self._window_ms, *pairs))

    async def lookup(self, account: str, *, request_id: str | None = None,
                     client_id: str | None = None, response_id: str | None = None
                     ) -> StreamMeta | None:
        """The stream of this account with that id; another account's: None."""
        kind, value = next(((k, v) for k, v in (("id", request_id), ("c", client_id),
                                                ("r", response_id)) if v is not None),
                           (None, None))
        if kind is None or value is None:
            raise TypeError("lookup needs a request_id, a client_id or a response_id")
        pairs = await self._script(LOOKUP, kind, account, value)
        if not pairs:
            return None
        meta = _meta(pairs)
        return meta if meta.account == account else None

    async def request_cancel(self, request_id: str) -> bool:
        """Ask the stream's owner, wherever it runs, to cancel it. False if unknown."""
        return bool(await self._script(CANCEL, request_id))

    async def cancel_requested(self, request_id: str) -> bool:
        try:
            with trio.fail_after(self.session.command_timeout_s):
                flag = await self.session.command(
                    "HGET", f"{self.session.prefix}stream:{request_id}", "cancel")
        except REDIS_ERRORS as exc:
            raise RedisUnavailable("resumable streams cannot be reached right now") \
                from exc
        return flag in (b"1", "1")

    async def touch(self, request_id: str) -> bool:
        """Refresh the TTLs of every key of the stream (its owner, while it runs)."""
        return bool(await self._script(TOUCH, request_id, self._window_ms))

    async def touch_reader(self, request_id: str) -> bool:
        """A reader on another instance is attached: the owner keeps the stream for a
        window from now, and every key of it lives as long. False if unknown."""
        return bool(await self._script(TOUCH_READER, request_id, self._window_ms))

    async def remote_reader_active(self, request_id: str) -> bool:
        """A remote reader touched the stream within the window."""
        try:
            with trio.fail_after(self.session.command_timeout_s):
                found = await self.session.command(
                    "EXISTS", f"{self.session.prefix}stream-reader:{request_id}")
        except REDIS_ERRORS as exc:
            raise RedisUnavailable("resumable streams cannot be reached right now") \
                from exc
        return int(found) > 0

    async def watch_cancels(self, owner: str, on_cancel: Callable[[str], None], *,
                            backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        """Forever: `on_cancel(request id)` for each cancel asked of `owner`'s streams.
        Started once subscribed and caught up (or once the first attempt failed: the
        instance serves anyway and retries)."""
        started, outage, backoff = False, False, backoff_initial_s
        channel = f"{self.session.prefix}stream-cancel:{owner}"
        while True:
            try:
                async with self.session.client.pubsub(
                        channels=[channel], ignore_subscribe_messages=True,
                        retry_policy=None) as messages:
                    for rid in await self.session.script(PENDING_CANCELS, owner):
                        on_cancel(_text(rid))
                    if not started:
                        started = True
                        task_status.started()
                    if outage:
                        outage = False
                        log.warning("stream cancels from other instances are heard again")
                    backoff = backoff_initial_s
                    async for message in messages:
                        if message.get("type") == "message" and message.get("data"):
                            on_cancel(_text(message["data"]))
                    raise ConnectionError("the stream cancel subscription ended")
            except* REDIS_ERRORS as failed:
                if not outage:
                    outage = True
                    log.warning("stream cancels from other instances cannot be heard "
                                "(%s); retrying", type(failed.exceptions[0]).__name__)
            if not started:
                started = True
                task_status.started()
            await trio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, backoff_max_s)
