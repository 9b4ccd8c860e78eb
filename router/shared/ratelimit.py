"""Rate limits shared by every instance: the sliding-window counter of
`router.ratelimit`, kept in Redis, so a limit of 60 a minute is 60 across all routers.

One round trip per request: a Lua script reads the windows of all the request's limits
(its account's and its key's), and counts the request in all of them only if each has
room; otherwise it counts nothing and answers the limit that waits longest, with the
wait. The time is Redis's own (`TIME`), so instances whose clocks disagree still share
one window. One hash per identity (`aura:rl:<identity>`), expiring two windows after
its last use.

Redis unreachable, slow or failing: `BillingUnavailable` (503). Failing closed refuses
traffic for as long as Redis is down; failing open would silently multiply every limit
by the number of instances, and nothing would say so.
"""

from __future__ import annotations

import logging
from typing import Sequence

import trio

from router.errors import BillingUnavailable
from router.ledger.redis.client import Script
from router.ratelimit import WINDOW_S, Limit, Refusal
from router.shared.redis import REDIS_ERRORS, RedisSession

log = logging.getLogger("aura.ratelimit")

# ARGV: the key prefix, the window in ms, then (identity, limit) for each limit.
# Returns {0, 0} when admitted (and counted), else {i, wait in ms} for the limit that
# waits longest. Each hash holds w (the window's number), c (its count), p (the previous
# window's count): `RateLimiter._window` and `_wait`, in Lua.
ADMIT = Script("ratelimit_admit", """
local P, window = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local index = math.floor(now / window)
local elapsed = now - index * window
local weight = 1 - elapsed / window
local n = (#ARGV - 2) / 2
local current, previous = {}, {}
local worst, worst_wait = 0, 0
for i = 1, n do
  local key, limit = P .. 'rl:' .. ARGV[2 * i + 1], tonumber(ARGV[2 * i + 2])
  local h = redis.call('HMGET', key, 'w', 'c', 'p')
  local w, c, p = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  if w ~= index then
    if w == index - 1 then p = c else p = 0 end
    c = 0
  end
  current[i], previous[i] = c, p
  local rate = c + p * weight
  if rate + 1 > limit then
    local excess = rate + 1 - limit
    local wait
    if p > 0 and excess <= p * weight then
      wait = excess / p * window
    elseif c > 0 then
      wait = window - elapsed + math.max(0, window * (1 - (limit - 1) / c))
    else
      wait = window - elapsed
    end
    if worst == 0 or wait > worst_wait then worst, worst_wait = i, wait end
  end
end
if worst > 0 then return {worst, math.max(1, math.ceil(worst_wait))} end
for i = 1, n do
  local key = P .. 'rl:' .. ARGV[2 * i + 1]
  redis.call('HSET', key, 'w', string.format('%d', index), 'c', current[i] + 1,
             'p', previous[i])
  redis.call('PEXPIRE', key, 2 * window)
end
return {0, 0}
""")


class SharedRateLimiter:
    """A `router.ratelimit.Limiter` on Redis, for every instance that uses the same one."""

    def __init__(self, redis: RedisSession, *, timeout_s: float = 2.0,
                 window_s: float = WINDOW_S) -> None:
        self.redis = redis
        self.timeout_s = timeout_s  # one check's deadline: then it fails closed
        self._window_ms = str(int(window_s * 1000))
        self._failing = False  # log an outage once, and its end once

    async def admit(self, limits: Sequence[Limit]) -> Refusal | None:
        if not limits:
            return None
        args: list[str] = [self._window_ms]
        for limit in limits:
            args += (limit.identity, str(limit.per_minute))
        try:
            with trio.fail_after(self.timeout_s):
                which, wait_ms = await self.redis.script(ADMIT, *args)
        except REDIS_ERRORS as exc:
            if not self._failing:
                self._failing = True
                log.error("rate limits cannot be checked, requests are refused (503) until "
                          "Redis answers again: %s", type(exc).__name__)
            raise BillingUnavailable("rate limits cannot be checked right now (the shared "
                                     "state is unreachable); retry shortly",
                                     headers={"retry-after": "1"}) from None
        if self._failing:
            self._failing = False
            log.warning("rate limits are checked again: Redis answers")
        if not which:
            return None
        return Refusal(limits[int(which) - 1], int(wait_ms) / 1000)
