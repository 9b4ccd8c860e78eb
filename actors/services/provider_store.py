"""Providers at run time: the fleet of provider supervisors, the store watcher, and what
the admin API calls (`router.provider_store` is the store itself).

* `ProviderFleet` (a task in the root nursery) owns one supervisor per provider
  *version*, each in a cancel scope of its own inside the fleet's nursery. At start-up it
  puts the stored providers over the configured ones (`router.provider_store.overlay`)
  before any traffic. `apply` starts the new versions first, then swaps the runtime's
  `providers`, `provider_handles`, catalog (`rt.config`) and redactor in one step with no
  await in it, so a request sees either the old set or the new one; an old version then
  drains (its in-flight calls finish on the pool they started on) and its scope is
  cancelled, which closes its pool in the actor's shielded teardown. Nothing is
  orphaned: every version's lifetime ends inside the fleet's nursery.
* `ProviderStoreWatcher` (a supervised actor in the root nursery) reads the store's
  version every `POLL_S` seconds, or at once when this process's admin API rings it, and
  has the fleet apply what changed: another router on the same ledger (or the CLI) is
  noticed within a poll. A store that cannot be read is logged and tried again; it never
  stops the router.
* `ProviderControl` is what `router.transports.admin` calls (`router.gateway.Gateway.
  provider_admin`): put, describe, remove, each change applied before it answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio

from actors.mailbox import Actor, Handle
from actors.messages import PoolStats
from actors.services.outbox import Doorbell  # rung by the admin API: the watcher looks at once
from actors.services.providers import ProviderActor
from actors.supervisor import Supervisor
from router.catalog import Catalog, ProviderSpec
from router.errors import Conflict, NotFound
from router.provider_store import ProviderStore, StoredProvider, overlay, spec_view
from router.providers.base import Provider
from router.providers.registry import adapter
from router.redact import quote_input

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger("aura.provider_store")

POLL_S = 3.0  # how soon another process's change is noticed
APPLY_WAIT_S = 10.0  # how long an admin call waits for its change to be running
DRAIN_POLL_S = 0.1


@dataclass
class _Version:
    """One running provider version: its provider, its supervisor's handle, its scope."""

    provider: Provider
    handle: Handle[Any]
    scope: trio.CancelScope


class ProviderFleet:
    """Owns every provider version's supervisor; the one writer of the runtime's
    providers, handles, catalog and redactor."""

    def __init__(self, rt: "Runtime", store: ProviderStore | None) -> None:
        self.rt = rt
        self.store = store
        self.base: Catalog = rt.config.catalog  # the configured providers and routes
        self.running: dict[str, _Version] = {}
        self.stored: frozenset[str] = frozenset()
        self.applied = -1  # the store version last applied
        self._applied_event = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self._serving = False  # the first apply (at start-up) is over

    async def run(self, *, task_status: trio.TaskStatus["ProviderFleet"] =
                  trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.sync()
            task_status.started(self)
            await trio.sleep_forever()

    async def sync(self) -> None:
        """Read the store and apply it (one at a time)."""
        async with self._lock:
            version, stored = -1, []
            if self.store is not None:
                version = await self.store.version()
                good, bad = await self.store.rows_and_keys()
                for problem in bad.values():  # the others are served
                    log.error("provider store: %s", problem)
                stored = [p.spec() for p in good]
                # One that cannot be opened any more keeps running as it was.
                stored += [self.running[name].provider.spec for name in bad
                           if name in self.stored and name in self.running]
            await self._apply(stored)
            self.applied = version
            self._serving = True
            self._applied_event.set()
            self._applied_event = trio.Event()

    async def wait_applied(self, version: int) -> None:
        while self.applied < version:
            await self._applied_event.wait()

    async def _apply(self, stored: list[ProviderSpec]) -> None:
        assert self._nursery is not None
        rt = self.rt
        desired = {**self.base.providers, **{spec.name: spec for spec in stored}}
        started: dict[str, _Version] = {}
        for name, spec in desired.items():
            current = self.running.get(name)
            if current is not None and current.provider.spec == spec:
                continue
            # At start-up, the configured providers build_runtime made are used as they are.
            existing = None if self._serving else rt.providers.get(name)
            provider = existing if existing is not None and existing.spec == spec \
                else adapter(spec.kind).connect(spec)
            try:
                started[name] = await self._nursery.start(self._version, name, provider)
            except Exception as exc:  # noqa: BLE001 - one bad provider must not stop the rest
                log.error("provider %s cannot start (%s): %s", name, type(exc).__name__,
                          "keeping its previous version" if current else "not serving it")
        # A version that could not start is not gone: it keeps serving as it was.
        gone = [name for name in self.running if name not in desired]
        # From here to the end: no await, so a request sees the old set or the new one.
        retired = [self.running[name] for name in started if name in self.running]
        retired += [self.running.pop(name) for name in gone]
        self.running.update(started)
        # The catalog follows what runs: what differs from the configuration is the store's.
        running = {name: version.provider.spec for name, version in self.running.items()}
        effective = [spec for name, spec in running.items()
                     if self.base.providers.get(name) != spec]
        self.stored = frozenset({s.name for s in stored if running.get(s.name) == s}
                                | {s.name for s in effective})
        rt.config = replace(rt.config, catalog=overlay(self.base, effective))
        for name in gone:
            rt.providers.pop(name, None)
            rt.provider_handles.pop(name, None)
        for name, version in started.items():
            rt.providers[name] = version.provider
            rt.provider_handles[name] = version.handle
        rt.provider_sources.clear()
        rt.provider_sources.update({name: "store" for name in self.stored})
        rt.refresh_redactor()
        for name in sorted(set(started) | set(gone)):
            if self._serving or name in self.stored:  # at start-up: only the stored ones
                log.info("provider %s: %s", name, "removed" if name in gone else
                         "from the provider store" if name in self.stored else
                         "from the configuration")
        for version in retired:
            self._nursery.start_soon(self._retire, version)

    async def _version(self, name: str, provider: Provider, *,
                       task_status: trio.TaskStatus[_Version] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        probe_s = self.rt.config.provider_probe_s
        supervisor = Supervisor(f"provider:{name}", lambda: ProviderActor(
            provider, probe_s=probe_s))
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(supervisor.run)
                task_status.started(_Version(provider, handle, scope))

    async def _retire(self, version: _Version) -> None:
        """Let the calls already on this version finish (bounded by its own longest
        answer), then stop it: its actor's teardown closes the pool."""
        with trio.move_on_after(version.provider.spec.timeout_total_s):
            while (version.provider.stats() or {}).get("in_flight", 0) > 0:
                await trio.sleep(DRAIN_POLL_S)
        version.handle.close()
        version.scope.cancel()


class ProviderStoreWatcher(Actor[Any]):
    """Polls the store's version; a change (or a ring) makes the fleet apply it."""

    def __init__(self, fleet: ProviderFleet, bell: Doorbell, poll_s: float = POLL_S) -> None:
        self.fleet = fleet
        self.bell = bell
        self.poll_s = poll_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = self.fleet.store
        assert store is not None
        task_status.started()
        failing = False
        while True:
            await self.bell.wait(self.poll_s)
            try:
                if await store.version() != self.fleet.applied:
                    await self.fleet.sync()
                failing = False
            except Exception as exc:  # noqa: BLE001 - a store outage must not stop serving
                if not failing:
                    log.warning("provider store unreadable (%s): keeping the current "
                                "providers, retrying every %.0fs", type(exc).__name__,
                                self.poll_s)
                failing = True


class ProviderControl:
    """`Gateway.provider_admin`: the admin API's side of the provider store."""

    def __init__(self, rt: "Runtime", fleet: ProviderFleet, store: ProviderStore | None,
                 bell: Doorbell) -> None:
        self.rt = rt
        self.fleet = fleet
        self.store = store
        self.bell = bell

    def _store(self) -> ProviderStore:
        if self.store is None:
            raise NotFound("this ledger backend has no provider store")
        return self.store

    async def _applied(self) -> None:
        """Until this process runs what the store now says (bounded: the change is
        stored either way, and the watcher keeps at it)."""
        version = await self._store().version()
        self.bell.ring()
        with trio.move_on_after(APPLY_WAIT_S):
            await self.fleet.wait_applied(version)

    async def put(self, name: str, body: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        provider = StoredProvider.from_entry({**body, "name": name})
        created = await self._store().put(provider)
        await self._applied()
        return created, await self.describe(name)

    async def remove(self, name: str) -> dict[str, Any]:
        if not await self._store().remove(name):
            if name in self.fleet.base.providers:
                raise Conflict(f"provider {quote_input(name)} comes from the configuration "
                               "(aura-router.toml or the environment), not the provider "
                               "store: remove it there")
            raise NotFound(f"no stored provider {quote_input(name)}")
        await self._applied()
        return {"name": name, "deleted": True}

    async def describe(self, name: str) -> dict[str, Any]:
        """The public view (no key, prefix or ciphertext), its source, and its live
        figures when it runs in this process."""
        found = await self._store().public(name) if self.store is not None else []
        if found:
            view = found[0]
        elif name in self.fleet.base.providers:
            view = spec_view(self.fleet.base.providers[name], "config")
        else:
            raise NotFound(f"no provider {quote_input(name)}")
        handle = self.rt.provider_handles.get(name)
        if handle is not None:
            try:
                view["stats"] = await handle.ask(lambda reply: PoolStats(reply))
            except trio.ClosedResourceError:
                pass  # swapped out while we asked: no live figures for this answer
        return view


async def start_providers(rt: "Runtime", nursery: trio.Nursery) -> None:
    """The providers' supervisors (stored over configured, ready before traffic), and the
    watcher that keeps them in step with the store."""
    store = rt.stores.provider_store
    fleet: ProviderFleet = await nursery.start(ProviderFleet(rt, store).run)
    bell = Doorbell()
    rt.provider_admin = ProviderControl(rt, fleet, store, bell)
    if store is not None:
        await nursery.start(Supervisor("provider-store", lambda: ProviderStoreWatcher(
            fleet, bell)).run)


__all__ = ["ProviderControl", "ProviderFleet", "ProviderStoreWatcher",
           "start_providers"]
