"""What `doctor` should say about the Redis that holds the ledger.

Redis answers a write before it is on disk unless AOF is on with `appendfsync always`:
otherwise a Redis crash loses the captures (and holds) of its last second, or of
everything since the last snapshot.
"""

from __future__ import annotations

from typing import Any

from coredis.exceptions import RedisError

from router.errors import BillingUnavailable
from router.ledger.redis.client import RedisSession


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _settings(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    return {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply), 2)}


async def persistence_warning(client: Any) -> str | None:
    """One line when this Redis can lose acknowledged ledger writes on a crash, else
    None. `client`: a `RedisSession` (inside its session) or an open coredis client."""
    try:
        if isinstance(client, RedisSession):
            reply = await client.command(b"CONFIG", "GET", "append*")
        else:
            reply = await client.config_get(["appendonly", "appendfsync"])
    except (RedisError, BillingUnavailable) as exc:
        return (f"cannot check Redis persistence (CONFIG GET refused: {exc}): make sure "
                "AOF is on with appendfsync always, or captures can be lost on a Redis crash")
    settings = _settings(reply)
    if settings.get("appendonly") != "yes":
        return ("Redis runs without AOF (appendonly no): captures and holds since its last "
                "snapshot are lost if Redis crashes; set appendonly yes and appendfsync always")
    if settings.get("appendfsync") != "always":
        return (f"Redis AOF syncs {settings.get('appendfsync', '?')}, not always: up to a "
                "second of captures can be lost if Redis crashes; set appendfsync always")
    return None
