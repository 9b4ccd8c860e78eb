"""Idempotency keys in Redis (router.ledger.base.IdempotencyStore), with the semantics
of the SQLite store: the first request with a key claims it (with a hash of its body); a
second one while it runs is `in_flight`, one with another body a `mismatch`; a finished
first answer is replayed; a failed first attempt frees the key; a claim older than
`stale_after_s` whose answer never came is taken over.

It needs only a `RedisSession`, so a router whose ledger lives elsewhere (SQLite,
PostgreSQL) can still share claims across instances through Redis. `forget_request`
frees the claim of a request that died (its hold was recovered): the Redis ledger's
`recover` does that in its own script; with another ledger, call it after `recover`.
"""

from __future__ import annotations

from router.ledger.base import Claim
from router.ledger.redis import scripts
from router.ledger.redis.client import RedisSession
from router.ledger.rows import body_hash


def claim_name(account: str, key: str) -> str:
    """The claim's key (after `idem:`): unambiguous for any account and key."""
    return f"{len(account)}:{account}:{key}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisIdempotency:
    def __init__(self, redis: RedisSession, stale_after_s: float) -> None:
        self.redis = redis
        self.stale_after_s = stale_after_s

    async def begin(self, account: str, key: str, body: bytes, request_id: str,
                    now: float) -> Claim:
        reply = await self.redis.script(scripts.BEGIN_CLAIM, claim_name(account, key),
                                        request_id, body_hash(body), repr(float(now)),
                                        repr(float(self.stale_after_s)))
        kind, first = _text(reply[0]), _text(reply[1])
        if kind != "replay":
            return Claim(kind, first)
        return Claim(kind, first, int(reply[2] or 0), _text(reply[3] or b""),
                     bytes(reply[4] or b""))

    async def finish(self, account: str, key: str, status: int, content_type: str,
                     response: bytes) -> None:
        await self.redis.script(scripts.FINISH_CLAIM, claim_name(account, key), str(status),
                                content_type, bytes(response))

    async def abandon(self, account: str, key: str) -> None:
        await self.redis.script(scripts.ABANDON_CLAIM, claim_name(account, key))

    async def forget_request(self, request_id: str) -> bool:
        """Free the unfinished claim held by `request_id`; True if there was one."""
        return bool(await self.redis.script(scripts.FORGET_REQUEST, request_id))
