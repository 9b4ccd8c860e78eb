"""A provider's circuit breaker and credential pool, as pure state machines on trio's
clock (autojump_clock makes the cooldowns instant and exact)."""

from __future__ import annotations

import trio

from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool


async def test_breaker_opens_after_consecutive_failures_probes_once_then_closes(
        autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=30)
    for _ in range(2):
        assert breaker.allow(trio.current_time())
        breaker.record_failure(trio.current_time())
    breaker.record_success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.allow(trio.current_time())
        breaker.record_failure(trio.current_time())
    assert breaker.state == "open" and not breaker.allow(trio.current_time())
    await trio.sleep(29)
    assert not breaker.allow(trio.current_time())
    await trio.sleep(1)
    assert breaker.allow(trio.current_time()), "half-open: one probe"
    assert breaker.state == "half_open" and not breaker.allow(trio.current_time())
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow(trio.current_time())


async def test_a_failed_probe_opens_the_breaker_for_another_cooldown(
        autojump_clock: trio.abc.Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.record_failure(trio.current_time())
    await trio.sleep(10)
    assert breaker.allow(trio.current_time())
    breaker.record_failure(trio.current_time())
    assert breaker.state == "open" and breaker.describe(trio.current_time())["retry_in_s"] == 10
    await trio.sleep(5)
    assert not breaker.allow(trio.current_time())
    breaker.release()  # an abandoned call is no verdict
    await trio.sleep(5)
    assert breaker.allow(trio.current_time())
    breaker.release()
    assert breaker.allow(trio.current_time()), "a released probe may be tried again"
    assert breaker.describe(trio.current_time())["times_opened"] == 2


def test_round_robin_priority_and_least_used() -> None:
    keys = ("sk-aaaaaaaaaaaaaaaa", "sk-bbbbbbbbbbbbbbbb", "sk-cccccccccccccccc")
    round_robin = CredentialPool(keys)
    picked = [round_robin.pick(0.0) for _ in range(6)]
    assert [c.index for c in picked if c] == [0, 1, 2, 0, 1, 2]
    priority = CredentialPool(keys, "priority")
    assert {priority.pick(0.0).index for _ in range(5)} == {0}  # type: ignore[union-attr]
    least = CredentialPool(keys, "least_used")
    first, second = least.pick(0.0), least.pick(0.0)
    assert first and second and {first.index, second.index} == {0, 1}
    least.done(first)
    third = least.pick(0.0)
    assert third is not None and third.index == 2, "the one with nothing in flight"


async def test_a_rate_limited_key_rests_for_its_retry_after(
        autojump_clock: trio.abc.Clock) -> None:
    pool = CredentialPool(("sk-one-xxxxxxxxxxxx", "sk-two-xxxxxxxxxxxx"), "priority")
    first = pool.pick(trio.current_time())
    assert first is not None and first.index == 0
    pool.rate_limited(first, trio.current_time(), "20")
    assert pool.pick(trio.current_time()).index == 1  # type: ignore[union-attr]
    spare = pool.credentials[1]
    pool.rate_limited(spare, trio.current_time(), None)  # no header: the default, 30 s
    assert pool.pick(trio.current_time()) is None
    assert pool.next_usable_in(trio.current_time()) == 20
    await trio.sleep(20)
    assert pool.pick(trio.current_time()).index == 0  # type: ignore[union-attr]


def test_a_refused_key_is_skipped_used_as_a_last_resort_and_healed_by_success() -> None:
    pool = CredentialPool(("sk-bad-xxxxxxxxxxxx", "sk-good-xxxxxxxxxxx"))
    bad = pool.credentials[0]
    pool.refused(bad, 401)
    assert {pool.pick(0.0).index for _ in range(4)} == {1}  # type: ignore[union-attr]
    pool.refused(pool.credentials[1], 401)
    assert pool.pick(0.0) is not None, "all bad: still tried, an auth outage must heal"
    pool.accepted(bad)
    states = pool.describe(0.0)
    assert [s["state"] for s in states] == ["ok", "bad"]
    assert all("xxxx" not in str(s) for s in states), "never the key, only its prefix"
    assert states[0]["prefix"] == "sk-bad…"
