"""The response cache (`RESPONSE_CACHE=memory|redis`, docs/configuration.md#response-cache):
an exact-match cache of whole answers to deterministic requests.

What may be cached is decided here, purely: a request whose `temperature` is 0, or whose
client sent `x-aura-cache: true`, that defines no tools (so its answer can call none),
answered 200 in full. The key is a hash of the client's API, the body as parsed (keys
sorted, so the order a client wrote them in does not matter), whether it streams, and
the account (`CACHE_SCOPE=account`, the default: one account never sees another's
answers) or nothing (`global`). An entry keeps the exact bytes the client was sent
(a stream as its events) and the usage they cost, so a hit is answered in the client's
own format and billed `CACHE_HIT_PRICE` times that usage's list price.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import orjson

from router.usage import Usage

MAX_ENTRY_BYTES = 1024 * 1024
MEMORY_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CachedAnswer:
    content_type: str
    body: bytes
    usage: Usage
    model: str  # the catalog id that answered

    def dumps(self) -> bytes:
        u = self.usage
        return orjson.dumps({"content_type": self.content_type, "body": self.body.decode(),
                             "model": self.model,
                             "usage": [u.input_tokens, u.output_tokens, u.cache_read_tokens,
                                       u.cache_write_tokens, u.reasoning_tokens, u.reported]})

    @classmethod
    def loads(cls, raw: bytes) -> "CachedAnswer":
        data = orjson.loads(raw)
        return cls(data["content_type"], data["body"].encode(), Usage(*data["usage"]),
                   data["model"])


def wants_cache(body: Mapping[str, Any], header: str | None) -> bool:
    """Deterministic and tool-free: `temperature` 0 or `x-aura-cache: true`."""
    if body.get("tools") or body.get("functions"):
        return False
    if header is not None and header.strip().lower() in ("false", "0", "no"):
        return False
    asked = header is not None and header.strip().lower() in ("true", "1", "yes")
    return asked or body.get("temperature") == 0


def cache_key(api: str, body: Mapping[str, Any], stream: bool, scope: str | None) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256()
    for part in (api.encode(), b"s" if stream else b"w", (scope or "").encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


class ResponseStore(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None: ...


class MemoryStore:
    """Per process: least recently used first out past its byte budget."""

    def __init__(self, budget_bytes: int = MEMORY_BUDGET_BYTES) -> None:
        self.budget = budget_bytes
        self.used = 0
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + ttl_s, answer)
        self.used += len(answer.body)
        while self.used > self.budget and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, answer = self._entries.pop(key)
        self.used -= len(answer.body)


class RedisStore:
    """Shared by every instance on the Redis (`aura:cache:<key>`, expiring by itself)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def get(self, key: str) -> CachedAnswer | None:
        raw = await self.session.command("GET", f"aura:cache:{key}")
        return None if raw is None else CachedAnswer.loads(raw)

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        await self.session.command("SET", f"aura:cache:{key}", answer.dumps(), "PX",
                                   max(1, int(ttl_s * 1000)))
