"""The provider actor's probe loop, on trio's mock clock: probed once started, again every
interval, at once when its provider is swapped, and a probe that raises is a failed probe
(never a dead actor). The probes' wire behaviour is in tests/e2e/test_readiness.py."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from actors.messages import PoolStats
from actors.services.providers import ProviderActor
from actors.supervisor import Supervisor
from router.providers import probe as probes
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool
from router.providers.registry import adapter
from router.providers.spec import ProviderSpec


class ProbedProvider:
    """A running provider whose probe answers what the test says, and counts the calls."""

    running = True

    def __init__(self, name: str, verdicts: list[str | None | Exception]) -> None:
        self.spec = ProviderSpec(name, "openai", "http://upstream.invalid")
        self.adapter = adapter("openai")
        self.credentials = CredentialPool(("sk-test-0000000000",))
        self.breaker = CircuitBreaker()
        self.verdicts = verdicts
        self.probed_at: list[float] = []

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def watch(self) -> None: ...

    def stats(self) -> None:
        return None

    async def probe(self) -> probes.ProbeResult:
        self.probed_at.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        verdict = self.verdicts[min(len(self.probed_at), len(self.verdicts)) - 1]
        if isinstance(verdict, Exception):
            raise verdict
        return probes.Stopwatch().result(verdict is None, verdict)


async def stats(handle: Any) -> dict[str, Any]:
    return await handle.ask(lambda reply: PoolStats(reply))  # type: ignore[no-any-return]


async def test_probed_on_start_then_every_interval_and_a_failure_makes_it_unusable(
        autojump_clock: trio.testing.MockClock) -> None:
    provider = ProbedProvider("p", [None, probes.CONNECT_FAILED, None])
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(Supervisor("provider:p", lambda: ProviderActor(
            provider, probe_s=10.0)).run)
        await trio.sleep(0.001)
        shown = await stats(handle)
        assert shown["probe"]["state"] == "ok" and shown["usable"]
        await trio.sleep(10)
        shown = await stats(handle)
        assert shown["probe"]["reason"] == probes.CONNECT_FAILED and not shown["usable"]
        await trio.sleep(10)
        assert (await stats(handle))["usable"]
        assert len(provider.probed_at) == 3
        nursery.cancel_scope.cancel()


async def test_a_swapped_provider_is_probed_at_once_and_shows_pending_until_then(
        autojump_clock: trio.testing.MockClock) -> None:
    old, new = ProbedProvider("p", [None]), ProbedProvider("p", [probes.AUTH_REFUSED])
    actors: list[ProviderActor] = []

    def make() -> ProviderActor:
        actors.append(ProviderActor(old, probe_s=30.0))
        return actors[-1]

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(Supervisor("provider:p", make).run)
        await trio.sleep(1)
        swapped_at = trio.current_time()
        actors[-1].provider = new
        assert (await stats(handle))["probe"]["state"] == "pending"
        await trio.sleep(0.001)
        assert new.probed_at and new.probed_at[0] - swapped_at < 0.01, "not a whole interval"
        assert (await stats(handle))["probe"]["reason"] == probes.AUTH_REFUSED
        nursery.cancel_scope.cancel()


async def test_a_probe_that_raises_is_a_failed_probe_not_a_dead_actor(
        autojump_clock: trio.testing.MockClock) -> None:
    provider = ProbedProvider("p", [RuntimeError("bug"), None])
    supervisor = Supervisor("provider:p", lambda: ProviderActor(provider, probe_s=5.0))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(supervisor.run)
        await trio.sleep(0.001)
        shown = await stats(handle)
        assert shown["probe"]["reason"] == probes.ERROR
        assert shown["probe"]["detail"] == "RuntimeError"
        await trio.sleep(5)
        assert (await stats(handle))["probe"]["state"] == "ok"
        assert supervisor.restarts == 0
        nursery.cancel_scope.cancel()
