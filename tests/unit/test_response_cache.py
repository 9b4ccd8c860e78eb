"""What the response cache keeps and under which key (router/response_cache.py), and its
two stores: in memory (expiry, a byte budget) and in Redis (shared, expiring by itself)."""

from __future__ import annotations

import pytest

from router.response_cache import (CachedAnswer, MemoryStore, RedisStore, cache_key,
                                   wants_cache)
from router.usage import Usage
from tests.backends import fresh_redis_url

ANSWER = CachedAnswer("application/json", b'{"ok": "\xc3\xa9"}', Usage(3, 4, reported=True), "m")


def test_only_deterministic_tool_free_requests_are_kept() -> None:
    assert wants_cache({"temperature": 0}, None)
    assert not wants_cache({"temperature": 0.2}, None)
    assert wants_cache({"temperature": 0.2}, "true")
    assert not wants_cache({"temperature": 0}, "false"), "the client may say no"
    assert not wants_cache({"temperature": 0, "tools": [{"name": "f"}]}, "true")


def test_the_key_ignores_key_order_and_tells_streams_apis_and_accounts_apart() -> None:
    a = cache_key("openai.chat", {"model": "m", "messages": []}, False, "alice")
    assert a == cache_key("openai.chat", {"messages": [], "model": "m"}, False, "alice")
    others = {cache_key("openai.chat", {"model": "m", "messages": []}, True, "alice"),
              cache_key("anthropic.messages", {"model": "m", "messages": []}, False, "alice"),
              cache_key("openai.chat", {"model": "m", "messages": []}, False, "bob"),
              cache_key("openai.chat", {"model": "m", "messages": []}, False, None)}
    assert a not in others and len(others) == 4


async def test_the_memory_store_expires_and_keeps_to_its_budget() -> None:
    store = MemoryStore(budget_bytes=40)
    await store.put("k1", ANSWER, ttl_s=60)
    assert await store.get("k1") == ANSWER
    await store.put("gone", ANSWER, ttl_s=-1)
    assert await store.get("gone") is None, "expired"
    for i in range(5):
        await store.put(f"k{i + 2}", ANSWER, ttl_s=60)
    assert store.used <= 40 and await store.get("k1") is None, "the oldest went first"
    assert await store.get("k6") == ANSWER


async def test_the_redis_store_round_trips_an_answer_and_expires_it() -> None:
    from router.ledger.redis import RedisSession, check_url

    session = RedisSession(check_url(fresh_redis_url(13)))
    async with session.session():
        store = RedisStore(session)
        await store.put("k", ANSWER, ttl_s=60)
        assert await store.get("k") == ANSWER
        await store.put("short", ANSWER, ttl_s=30)
        assert 0 < await session.command("PTTL", "aura:cache:short") <= 30_000, \
            "Redis expires it by itself"
        assert await store.get("never") is None


def test_an_entry_survives_its_serialisation() -> None:
    assert CachedAnswer.loads(ANSWER.dumps()) == ANSWER
    with pytest.raises(ValueError):
        CachedAnswer.loads(b"not json")
