"""Provider actors: each owns its provider's connection pool for the process lifetime.

The supervisor starts one per provider in the root nursery before traffic is accepted.
Requests use the provider object directly (a message hop per request would only add
latency); the actor owns the pool's lifecycle (create, close, recreate after a crash)
and answers questions about it.

It also probes its upstream (`Provider.probe`: connect, plus the kind's cheap
authenticated call with each credential) once its pool exists and every
`PROVIDER_PROBE_S` seconds, in a task of a nursery the actor owns: the probe loop lives
and dies with the actor, and the first probe runs while the router already serves (a
dead host never delays the start). A provider swapped in at run time (`provider = ...`)
is probed again at once; until then its probe shows as pending.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from actors.mailbox import Actor
from actors.messages import PoolStats
from router.providers import probe as probes
from router.providers.base import Provider
from router.providers.probe import ProbeResult

log = logging.getLogger("aura.providers")

DEFAULT_PROBE_S = 30.0
NO_CREDENTIAL_RETRY_S = 1.0


class ProviderActor(Actor[Any]):
    def __init__(self, provider: Provider, probe_s: float = DEFAULT_PROBE_S) -> None:
        self._provider = provider
        self.probe_s = probe_s
        self.last_probe: ProbeResult | None = None  # of the current provider; None: pending
        self._wake = trio.Event()
        self._probes: trio.Nursery | None = None

    @property
    def provider(self) -> Provider:
        return self._provider

    @provider.setter
    def provider(self, new: Provider) -> None:
        """A provider swapped in (the provider store): its probe starts over, now."""
        self._provider = new
        self.last_probe = None
        self.reprobe()

    def reprobe(self) -> None:
        """Probe now rather than at the end of the interval."""
        self._wake.set()

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._probes = nursery
            try:
                await super().serve(mailbox, task_status=task_status)
            finally:
                self._probes = None
                nursery.cancel_scope.cancel()  # the mailbox closed or the actor crashed

    async def setup(self) -> None:
        await self.provider.start()
        if self._probes is not None:
            self._probes.start_soon(self._probe_loop)
            self._probes.start_soon(self.provider.watch)  # its pool's idle timeouts

    async def teardown(self) -> None:
        if self._probes is not None:
            self._probes.cancel_scope.cancel()  # no probe on a pool being closed
        await self.provider.aclose()

    async def _probe_loop(self) -> None:
        while True:
            self._wake = wake = trio.Event()
            provider = self._provider
            result = await probe_once(provider)
            if provider is self._provider:  # not swapped meanwhile
                self._note(result)
            # No credential yet may be a pool another actor fills after this one started
            # (a Vertex token, a Claude Code login): looking again costs no I/O.
            interval = min(self.probe_s, NO_CREDENTIAL_RETRY_S) \
                if result.reason == probes.NO_CREDENTIAL else self.probe_s
            with trio.move_on_after(interval):
                await wake.wait()

    def _note(self, result: ProbeResult) -> None:
        before = self.last_probe
        self.last_probe = result
        name = self._provider.spec.name
        if not result.ok and (before is None or before.ok or before.reason != result.reason):
            log.warning("provider %s: probe failed: %s (%s)", name, result.reason,
                        result.detail)
        elif result.ok and before is not None and not before.ok:
            log.info("provider %s: probe ok again (%s)", name, result.detail)
        elif result.ok and result.refused and (before is None or before.refused
                                               != result.refused):
            log.warning("provider %s: probe: %s", name, result.detail)

    async def handle(self, message: Any) -> None:
        if isinstance(message, PoolStats):
            message.reply.set(self.stats())

    def stats(self) -> dict[str, object]:
        provider = self.provider
        spec = provider.spec
        now = trio.current_time()
        credentials = provider.credentials.describe(now)
        breaker = provider.breaker.describe(now)
        running = provider.running
        probe = self.last_probe
        if probe is not None and probe.reason == probes.NO_CREDENTIAL and any(
                now < c.expires for c in provider.credentials.credentials):
            # Another actor has filled the pool since (a Vertex token, a Claude Code
            # login): that verdict is stale; look again now.
            probe = None
            self.reprobe()
        # A kind that needs a key, configured with none (ALLOW_PROVIDERS_WITHOUT_KEYS).
        missing_credential = not spec.has_credential
        usable = running and breaker["state"] != "open" and (
            not credentials and not provider.credentials.required
            or any(c["state"] not in ("bad", "expired") for c in credentials)) and (
            probe is None or probe.usable)
        return {"name": spec.name, "kind": spec.kind, "strategy": spec.strategy,
                "max_concurrent": spec.max_concurrent,
                "running": running, "usable": usable, "breaker": breaker,
                "credentials": credentials, "pool": provider.stats(),
                "missing_credential": missing_credential,
                "probe": probe.describe(time.time()) if probe is not None
                else probes.pending()}


async def probe_once(provider: Provider) -> ProbeResult:
    """The provider's probe, whatever goes wrong in it (a bug in a probe must not take
    the provider's actor down: it shows as the probe's `error`)."""
    try:
        return await provider.probe()
    except Exception as exc:  # noqa: BLE001 - reported as the probe's result
        log.warning("provider %s: probe raised %s", provider.spec.name, type(exc).__name__)
        return probes.Stopwatch().result(False, probes.ERROR, type(exc).__name__)
