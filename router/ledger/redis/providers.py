"""The provider store's rows in Redis (`router.provider_store.ProviderRows`), shared by
every instance on it: `providers` is a hash of name -> the row as JSON, and
`providers:version` a counter that each change bumps in the same script. Keys arrive
sealed; nothing here can open them."""

from __future__ import annotations

from typing import Any

import orjson

from router.ledger.redis.client import RedisSession, Script
from router.provider_store import SealedProvider

# ARGV: prefix, name, row JSON -> 1 when the name was new
PUT = Script("provider_put", r"""
local P = ARGV[1]
local new = redis.call('HSET', P .. 'providers', ARGV[2], ARGV[3])
redis.call('INCR', P .. 'providers:version')
return new
""")

# ARGV: prefix, name -> 1 when it was there
REMOVE = Script("provider_remove", r"""
local P = ARGV[1]
local gone = redis.call('HDEL', P .. 'providers', ARGV[2])
if gone == 1 then redis.call('INCR', P .. 'providers:version') end
return gone
""")


def _encode(row: SealedProvider) -> bytes:
    return orjson.dumps({"settings": row.settings, "sealed_keys": row.sealed_keys,
                         "key_count": row.key_count, "updated_at": row.updated_at})


def _decode(name: Any, raw: Any) -> SealedProvider:
    data = orjson.loads(raw)
    return SealedProvider(name.decode() if isinstance(name, bytes) else str(name),
                          data["settings"], data["sealed_keys"], int(data["key_count"]),
                          float(data["updated_at"]))


class RedisProviderRows:
    def __init__(self, redis: RedisSession) -> None:
        self.redis = redis

    async def put(self, row: SealedProvider) -> bool:
        return bool(await self.redis.script(PUT, row.name, _encode(row)))

    async def get(self, name: str) -> SealedProvider | None:
        raw = await self.redis.command(b"HGET", self.redis.prefix + "providers", name)
        return _decode(name, raw) if raw is not None else None

    async def list(self) -> list[SealedProvider]:
        reply = await self.redis.command(b"HGETALL", self.redis.prefix + "providers")
        items = list(reply.items()) if isinstance(reply, dict) else list(
            zip(reply[::2], reply[1::2]))
        rows = [_decode(name, raw) for name, raw in items]
        return sorted(rows, key=lambda row: row.name)

    async def remove(self, name: str) -> bool:
        return bool(await self.redis.script(REMOVE, name))

    async def version(self) -> int:
        raw = await self.redis.command(b"GET", self.redis.prefix + "providers:version")
        return int(raw) if raw is not None else 0
