"""The actor runtime: request/reply, crash and restart, restart budget, cancellation."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from actors.mailbox import Actor, Reply
from actors.supervisor import RestartBudgetExceeded, RestartPolicy, Supervisor


@dataclass(frozen=True)
class Add:
    n: int
    reply: Reply[int] = field(compare=False)


@dataclass(frozen=True)
class Crash:
    reply: Reply[int] = field(compare=False)


class Counter(Actor[object]):
    """Counts; its state is its own and is lost when it crashes."""

    instances = 0
    torn_down = 0

    def __init__(self) -> None:
        Counter.instances += 1
        self.total = 0

    async def teardown(self) -> None:
        Counter.torn_down += 1

    async def handle(self, message: object) -> None:
        if isinstance(message, Crash):
            raise RuntimeError("boom")
        assert isinstance(message, Add)
        self.total += message.n
        message.reply.set(self.total)


@pytest.fixture(autouse=True)
def reset_counts() -> None:
    Counter.instances = 0
    Counter.torn_down = 0


async def test_ask_gets_the_actors_answer() -> None:
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(Supervisor("counter", Counter).run)
        assert await handle.ask(lambda r: Add(2, r)) == 2
        assert await handle.ask(lambda r: Add(3, r)) == 5
        nursery.cancel_scope.cancel()


async def test_crash_answers_the_asker_then_restarts_on_the_same_handle(
        autojump_clock: trio.testing.MockClock) -> None:
    supervisor = Supervisor("counter", Counter, RestartPolicy(backoff_initial_s=1.0))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(supervisor.run)
        await handle.ask(lambda r: Add(10, r))
        with pytest.raises(RuntimeError, match="boom"):
            await handle.ask(Crash)
        started = trio.current_time()
        assert await handle.ask(lambda r: Add(1, r)) == 1  # a fresh actor, same handle
        assert trio.current_time() - started >= 0.5  # it backed off before restarting
        assert Counter.instances == 2 and supervisor.restarts == 1
        assert Counter.torn_down == 1
        nursery.cancel_scope.cancel()


async def test_restart_budget_exhausted_propagates_to_the_owner(
        autojump_clock: trio.testing.MockClock) -> None:
    policy = RestartPolicy(max_restarts=2, window_s=60, backoff_initial_s=0.1)
    with pytest.raises(BaseExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(Supervisor("counter", Counter, policy).run)
            for _ in range(5):
                with pytest.raises(RuntimeError):
                    await handle.ask(Crash)
    assert raised.group_contains(RestartBudgetExceeded)
    assert Counter.instances == 3  # the first one and two restarts


async def test_crashes_spread_beyond_the_window_do_not_exhaust_the_budget(
        autojump_clock: trio.testing.MockClock) -> None:
    policy = RestartPolicy(max_restarts=1, window_s=10, backoff_initial_s=0.1)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(Supervisor("counter", Counter, policy).run)
        for _ in range(4):
            with pytest.raises(RuntimeError):
                await handle.ask(Crash)
            await trio.sleep(30)
        assert await handle.ask(lambda r: Add(1, r)) == 1
        nursery.cancel_scope.cancel()


async def test_cancellation_leaves_nothing_running() -> None:
    before = trio.lowlevel.current_statistics().tasks_living
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(Supervisor("counter", Counter).run)
            await handle.ask(lambda r: Add(1, r))
            scope.cancel()
    assert Counter.torn_down == 1  # teardown ran, shielded, on the way out
    assert trio.lowlevel.current_statistics().tasks_living == before
