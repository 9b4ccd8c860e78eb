"""The sliding-window rate limiter on trio's clock."""

from __future__ import annotations

import trio

from router.ratelimit import RateLimiter, retry_after_header


async def test_a_limit_per_minute_refuses_the_next_request_and_says_when(
        autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter()
    await trio.sleep(600)  # start on a window boundary
    for _ in range(10):
        assert limiter.check("a", 10, trio.current_time()) is None
    wait = limiter.check("a", 10, trio.current_time())
    assert wait is not None and 60 < wait <= 120  # until the burst has slid far enough
    assert limiter.check("b", 10, trio.current_time()) is None, "identities are separate"
    await trio.sleep(wait)
    assert limiter.check("a", 10, trio.current_time()) is None, "allowed once it said so"


async def test_the_window_slides_instead_of_resetting(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter()
    await trio.sleep(600)
    await trio.sleep(50)
    for _ in range(10):  # a burst at the end of one window
        assert limiter.check("a", 10, trio.current_time()) is None
    await trio.sleep(15)  # 5 s into the next window: most of the burst still counts
    assert limiter.check("a", 10, trio.current_time()) is not None
    await trio.sleep(50)  # 55 s in: the burst's share has slid away
    assert limiter.check("a", 10, trio.current_time()) is None


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(12.2) == "13"
