"""Rate limits shared through Redis: two limiters on one Redis, as two router instances
have, keep one limit between them (database 14 of the local Redis, flushed per test)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import trio

from router.errors import BillingUnavailable
from router.ratelimit import Limit, RateLimiter
from router.shared.ratelimit import SharedRateLimiter
from router.shared.redis import RedisSession
from tests.backends import fresh_redis_url, redis_db
from tests.tcp_proxy import TcpProxy


def account(n: int) -> Limit:
    return Limit("account:acct_1", n, "account")


def key(name: str, n: int) -> Limit:
    return Limit(f"key:{name}", n, "key")


@pytest.fixture
async def sessions() -> AsyncIterator[tuple[RedisSession, RedisSession]]:
    """Two sessions (two clients, two connection pools) on one fresh database."""
    url = fresh_redis_url(db=14)
    first, second = RedisSession(url), RedisSession(url)
    async with first.session(), second.session():
        yield first, second


async def test_a_limit_is_one_limit_across_two_instances(
        sessions: tuple[RedisSession, RedisSession]) -> None:
    one, two = SharedRateLimiter(sessions[0]), SharedRateLimiter(sessions[1])
    admitted = [await limiter.admit([account(5)]) is None
                for limiter in (one, two, one, two, one, two, one)]
    assert admitted == [True] * 5 + [False] * 2, "5 a minute, whichever instance is asked"
    refused = await two.admit([account(5)])
    assert refused is not None and refused.limit == account(5)
    assert 0 < refused.wait_s <= 120, "a burst slides out within two windows"
    count = await sessions[0].command("HGET", "aura:rl:account:acct_1", "c")
    assert int(count) == 5, "refused requests are not counted"
    assert await one.admit([Limit("account:acct_2", 5, "account")]) is None, \
        "another account has its own window"


async def test_account_and_key_limits_are_one_check_counted_in_both_or_neither(
        sessions: tuple[RedisSession, RedisSession]) -> None:
    one, two = SharedRateLimiter(sessions[0]), SharedRateLimiter(sessions[1])
    assert await one.admit([account(4), key("k1", 2)]) is None
    assert await two.admit([account(4), key("k1", 2)]) is None
    refused = await one.admit([account(4), key("k1", 2)])
    assert refused is not None and refused.limit.whose == "key"
    assert int(await sessions[0].command("HGET", "aura:rl:account:acct_1", "c")) == 2, \
        "a request the key refused does not count against the account"
    assert await two.admit([account(4), key("k2", 10)]) is None
    assert await one.admit([account(4), key("k2", 10)]) is None
    refused = await two.admit([account(4), key("k2", 10)])
    assert refused is not None and refused.limit.whose == "account"
    assert int(await sessions[0].command("HGET", "aura:rl:key:k2", "c")) == 2


async def test_retry_after_is_the_longest_wait_and_honouring_it_is_admitted(
        sessions: tuple[RedisSession, RedisSession]) -> None:
    # A one-second window, so the test can wait it out.
    one = SharedRateLimiter(sessions[0], window_s=1.0)
    two = SharedRateLimiter(sessions[1], window_s=1.0)
    for limiter in (one, two, one):
        assert await limiter.admit([account(3), key("k1", 3)]) is None
    refused = await two.admit([account(3), key("k1", 3)])
    assert refused is not None and 0 < refused.wait_s <= 2.0
    await trio.sleep(refused.wait_s + 0.01)
    assert await one.admit([account(3), key("k1", 3)]) is None, "admitted once it said so"
    # Both limits full: the answer is the one that waits longer, not the first.
    one, two = SharedRateLimiter(sessions[0]), SharedRateLimiter(sessions[1])
    for limiter in (one, two, one):
        assert await limiter.admit([key("k9", 3)]) is None
    assert await two.admit([key("k8", 1)]) is None
    both = await one.admit([key("k9", 3), key("k8", 1)])
    k9, k8 = [await one.admit([limit]) for limit in (key("k9", 3), key("k8", 1))]
    assert both is not None and k9 is not None and k8 is not None
    assert k9.wait_s < k8.wait_s - 0.2, "k8's window is fuller for its limit"
    assert both.limit == key("k8", 1) and abs(both.wait_s - k8.wait_s) < 0.05


async def test_redis_unreachable_while_running_fails_closed_then_recovers() -> None:
    fresh_redis_url(db=14)
    proxy = TcpProxy(6379)
    try:
        session = RedisSession(f"redis://127.0.0.1:{proxy.port}/{redis_db(14)}")
        async with session.session():
            limiter = SharedRateLimiter(session, timeout_s=1.0)
            assert await limiter.admit([account(100)]) is None
            proxy.cut()
            for _ in range(2):
                with pytest.raises(BillingUnavailable) as refused:
                    await limiter.admit([account(100)])
                assert refused.value.status == 503
                assert refused.value.extra_headers["retry-after"] == "1"
            proxy.restore()
            with trio.fail_after(5):
                while True:  # the first call after the cut may still meet a dead socket
                    try:
                        assert await limiter.admit([account(100)]) is None
                        break
                    except BillingUnavailable:
                        await trio.sleep(0.1)
    finally:
        proxy.close()


async def test_the_local_limiter_also_counts_in_both_or_neither() -> None:
    limiter = RateLimiter(clock=lambda: 600.0)
    assert await limiter.admit([account(3), key("k1", 1)]) is None
    refused = await limiter.admit([account(3), key("k1", 1)])
    assert refused is not None and refused.limit.whose == "key"
    assert await limiter.admit([account(3), key("k2", 5)]) is None
    assert await limiter.admit([account(3), key("k2", 5)]) is None, \
        "the refused request took no room from the account"
    assert await limiter.admit([account(3), key("k2", 5)]) is not None
