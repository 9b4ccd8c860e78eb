"""Circuit-breaker verdicts shared by every instance: what is in Redis and on the wire.

When a breaker opens, its instance sets `aura:breaker:<provider>` (value: when, in
Redis's clock, and by whom) with a TTL of the cooldown, and publishes the verdict on
`aura:breaker-verdicts`; when it closes (a probe succeeded), it deletes the key and
publishes that. Both in one Lua script, one round trip, off the request path (the
actor in `actors.services.shared_verdicts` does it). A late "closed" (queued while Redis
was away) does not delete a key another instance set after it.

An instance that starts, or reconnects, reads the keys of its providers: an open
verdict still in force, with its remaining TTL, or none.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Sequence

import orjson

from router.ledger.redis.client import Script
from router.providers.breaker import Verdict
from router.shared.redis import RedisSession

CHANNEL = "breaker-verdicts"  # after the prefix


@dataclass(frozen=True, slots=True)
class BreakerVerdict:
    provider: str
    verdict: Verdict
    retry_in_s: float  # "open": how long from now calls stay refused; "closed": 0
    by: str  # the instance whose breaker decided

    def encode(self) -> bytes:
        return orjson.dumps({"provider": self.provider, "verdict": self.verdict,
                             "retry_in_ms": round(self.retry_in_s * 1000), "by": self.by})

    @staticmethod
    def decode(data: bytes | str) -> "BreakerVerdict | None":
        """The verdict in a message, or None if it is not one (never raises)."""
        try:
            raw = orjson.loads(data)
            verdict = raw["verdict"]
            if verdict not in ("open", "closed"):
                return None
            return BreakerVerdict(str(raw["provider"]), verdict,
                                  max(float(raw["retry_in_ms"]) / 1000, 0.0), str(raw["by"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


# ARGV: prefix, provider, verdict, TTL in ms (open), the verdict's age in ms, who, the
# message. Returns the number of receivers, or -1 for a stale close (not published).
PUBLISH = Script("breaker_publish", """
local P, key = ARGV[1], ARGV[1] .. 'breaker:' .. ARGV[2]
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[5])
if ARGV[3] == 'open' then
  redis.call('SET', key, string.format('%d', at) .. ' ' .. ARGV[6], 'PX', ARGV[4])
else
  local held = redis.call('GET', key)
  if held and tonumber(string.match(held, '^(%d+)')) > at then return -1 end
  redis.call('DEL', key)
end
return redis.call('PUBLISH', P .. 'breaker-verdicts', ARGV[7])
""")

# ARGV: prefix, then providers. Returns, for each, its key's value (or false) and PTTL.
READ = Script("breaker_read", """
local P, out = ARGV[1], {}
for i = 2, #ARGV do
  local key = P .. 'breaker:' .. ARGV[i]
  out[2 * i - 3] = redis.call('GET', key)
  out[2 * i - 2] = redis.call('PTTL', key)
end
return out
""")


class VerdictBoard:
    """This instance's view of the shared verdicts: publish, read, subscribe."""

    def __init__(self, redis: RedisSession, instance: str) -> None:
        self.redis = redis
        self.instance = instance

    async def publish(self, verdict: BreakerVerdict, age_s: float = 0.0) -> bool:
        """Record and announce `verdict`, reached `age_s` ago; False if it was stale (an
        open whose cooldown ran out, or a close older than another instance's open)."""
        retry_in_ms = round((verdict.retry_in_s - age_s) * 1000)
        if verdict.verdict == "open" and retry_in_ms <= 0:
            return False
        live = BreakerVerdict(verdict.provider, verdict.verdict,
                              max(retry_in_ms, 0) / 1000, verdict.by)
        receivers = await self.redis.script(
            PUBLISH, verdict.provider, verdict.verdict, str(max(retry_in_ms, 1)),
            str(round(age_s * 1000)), verdict.by, live.encode())
        return int(receivers) >= 0

    async def current(self, providers: Sequence[str]) -> dict[str, BreakerVerdict | None]:
        """The open verdict in force for each provider, or None."""
        if not providers:
            return {}
        answer = await self.redis.script(READ, *providers)
        out: dict[str, BreakerVerdict | None] = {}
        for i, provider in enumerate(providers):
            value, ttl_ms = answer[2 * i], int(answer[2 * i + 1])
            if not value or ttl_ms <= 0:
                out[provider] = None
                continue
            text = value.decode() if isinstance(value, bytes) else str(value)
            out[provider] = BreakerVerdict(provider, "open", ttl_ms / 1000,
                                           text.partition(" ")[2])
        return out

    def subscription(self) -> AbstractAsyncContextManager[Any]:
        """The verdict channel's messages (an async iterator of coredis messages). It
        does not reconnect by itself: a lost connection ends it with an error, so that
        its user reads the keys again before it trusts the channel anew."""
        return self.redis.client.pubsub(channels=[self.redis.prefix + CHANNEL],
                                        ignore_subscribe_messages=True, retry_policy=None)
