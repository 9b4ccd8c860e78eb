"""The billing invariants (docs/billing.md), property-tested with a hypothesis state machine.

The same random sequence of grants, adjustments, holds, settlements, replays, unknown
requests, checkpoints of streamed usage, router crashes and restarts, requests that lose
track of their hold, and sweeps drives the pure `LedgerModel` (the oracle) and every
ledger backend (`BACKENDS`: SQLite, PostgreSQL, Redis) through its public async interfaces (one
`trio.run` per step). After every step
both must agree, and I1-I5, I7 (a crashed router's holds are settled from their last
checkpoint, streamed usage never at 0) and I8-style replays must hold on both.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, invariant,
                                 precondition, rule)

from actors.services.ledger_maintenance import sweep_abandoned_holds
from router.errors import (DuplicateRequest, InsufficientFunds, LedgerError, SpendCapReached,
                           UnknownRequest)
from router.ledger.base import Checkpoint, Instance, LedgerModel, UsageRecord
from router.config import load_config
from router.ledger.stores import BACKENDS, Stores, open_stores
from router.usage import Usage
from tests.backends import backend_env

T = TypeVar("T")
ACCOUNTS = st.sampled_from(["alice", "bob", "carol"])
AMOUNTS = st.integers(min_value=1, max_value=5_000_000)
LEASE_S = 15.0
HOST = "h1"  # the sweeping instance's host; instances elsewhere die only by their lease


def _fresh_stores(backend: str, directory: Path) -> Stores:
    """The backend's stores on an empty ledger (tests/backends.py)."""
    return open_stores(load_config(env=backend_env(backend, directory), cwd=directory))


def _outcome(fn: Any, *args: Any) -> Any:
    """What a call returned, or the kind of refusal it raised."""
    try:
        return fn(*args)
    except (InsufficientFunds, DuplicateRequest, UnknownRequest, SpendCapReached) as exc:
        return type(exc).__name__
    except LedgerError:
        return "LedgerError"


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.dir = tempfile.TemporaryDirectory()
        self.stores = _fresh_stores(self.backend, Path(self.dir.name))
        self.real = self.stores.billing
        self.now = 1_000.0
        self.next_id = 0
        self.settled: dict[str, int] = {}  # request id -> captured, as first reported
        self.instances: dict[str, Instance] = {}
        self.crashed: set[str] = set()
        self.live: set[str] = set()  # requests still running in a live instance
        self.owner_of: dict[str, str] = {}
        self.checkpointed: dict[str, int] = {}  # request id -> highest checkpointed cost
        self.next_pid = 100
        for host in (HOST, HOST, "h2"):
            self._start_instance(host)

    def _start_instance(self, host: str) -> Instance:
        self.next_pid += 1
        instance = Instance(f"{host}:{self.next_pid}", host, self.next_pid, self.now,
                            self.now + LEASE_S)
        self.instances[instance.id] = instance
        self._both("register_instance", instance)
        return instance

    def _alive(self) -> list[str]:
        return sorted(i for i in self.instances if i not in self.crashed)

    def teardown(self) -> None:
        self.stores.close()
        self.dir.cleanup()

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One step's calls, in one event loop, inside the stores' session."""
        async def in_session() -> T:
            async with self.stores.session():
                return await fn(*args)
        return trio.run(in_session)

    def _real(self, method: str, *args: Any) -> Any:
        return _outcome(lambda: self._run(getattr(self.real, method), *args))

    def _both(self, method: str, *args: Any) -> Any:
        expected = _outcome(getattr(self.model, method), *args)
        actual = self._real(method, *args)
        assert actual == expected, \
            f"{method}{args}: {self.backend} {actual!r} != model {expected!r}"
        return actual

    def _record(self, request_id: str, account: str, cost: int) -> UsageRecord:
        return UsageRecord(request_id, account, "m", "p", Usage(1, 1), cost, self.now)

    @invariant()
    def key_spend_counters_agree(self) -> None:
        """A key's running spend (captured + held) is the model's sum over its holds."""
        for key in ("k1", "k2"):
            assert self._run(self.real.key_spent, key) == self.model.key_spent(key), key

    @invariant()
    def instances_agree(self) -> None:
        assert self._run(self.real.instances) == self.model.instances()

    @rule(account=ACCOUNTS, amount=AMOUNTS)
    def grant(self, account: str, amount: int) -> None:
        self._both("grant", account, amount, "grant", self.now)

    @rule(account=ACCOUNTS, amount=AMOUNTS)
    def adjust_down(self, account: str, amount: int) -> None:
        self._both("grant", account, -amount, "adjust", self.now)

    @rule(target=holds, account=ACCOUNTS, amount=st.integers(0, 3_000_000),
          ttl=st.sampled_from([5.0, 50.0, 500.0]), which=st.integers(0, 5))
    def hold(self, account: str, amount: int, ttl: float, which: int) -> tuple[str, str, int]:
        return self._owned_hold(account, amount, self.now + ttl, which)

    @rule(held=holds, cost_factor=st.fractions(0, 2), tokens=st.integers(0, 5_000))
    def checkpoint_streamed_usage(self, held: tuple[str, str, int], cost_factor: Any,
                                  tokens: int) -> None:
        request_id, _account, amount = held
        if amount < 0:
            return
        cost = int(amount * cost_factor)
        point = Checkpoint(request_id, "p", Usage(7, tokens), cost, self.now)
        self._both("checkpoint", [point])
        if request_id not in self.settled:
            self.checkpointed[request_id] = max(cost, self.checkpointed.get(request_id, 0))

    @rule(held=holds)
    def request_loses_track_of_its_hold(self, held: tuple[str, str, int]) -> None:
        """A settlement that never ran in a live router: the hold waits for its deadline."""
        self.live.discard(held[0])

    @precondition(lambda self: len(self._alive()) > 1)
    @rule(held=holds, cost_factor=st.fractions(0, 2), restart=st.booleans())
    def a_router_dies_while_its_request_streams(self, held: tuple[str, str, int],
                                                cost_factor: Any, restart: bool) -> None:
        """The crash I7 is about: usage checkpointed, then kill -9 of the request's owner."""
        request_id = held[0]
        owner = self.owner_of.get(request_id)
        if request_id not in self.live or owner in self.crashed or owner is None:
            return
        self.checkpoint_streamed_usage(held, cost_factor, 40)
        self._kill(owner, restart)

    @precondition(lambda self: len(self._alive()) > 1)
    @rule(which=st.integers(0, 5), restart=st.booleans())
    def a_router_is_killed(self, which: int, restart: bool) -> None:
        alive = self._alive()
        self._kill(alive[which % len(alive)], restart)

    def _kill(self, victim: str, restart: bool) -> None:
        self.crashed.add(victim)
        self.live -= {r for r, o in self.owner_of.items() if o == victim}
        if restart:  # the same host comes back at once: it settles its predecessor's holds
            me = self._start_instance(self.instances[victim].host)
            self._sweep(me)

    def _sweep(self, me: Instance) -> None:
        """The model's verdict, then the real sweeper's, then the I7 checks."""
        dead = {i for i in self.crashed
                if self.instances[i].host == me.host or self.instances[i].lease_until < self.now}
        recovered = []
        for request_id, _account, _amount, deadline in self.model.open_holds():
            owner = self.owner_of.get(request_id)
            if request_id in self.live:
                continue
            if owner in dead or (owner in (None, me.id) and deadline < self.now):
                recovered.append(request_id)
                self.settled[request_id] = self.model.recover(request_id, self.now).captured
        pids = {i.pid for i in self.instances.values() if i.id not in self.crashed}
        self._run(partial(sweep_abandoned_holds, exists=lambda pid: pid in pids),
                 self.real, self.live, self.now, me)
        for request_id in recovered:  # I7: what was checkpointed is billed, up to the hold
            amount = self.model.holds[request_id].amount
            assert self.settled[request_id] == min(self.checkpointed.get(request_id, 0), amount)

    def _owned_hold(self, account: str, amount: int, deadline: float, which: int,
                    **caps: Any) -> tuple[str, str, int]:
        """A hold taken by one of the live routers, for a request that is now streaming."""
        self.next_id += 1
        request_id = f"req-{self.next_id}"
        alive = self._alive()
        owner = alive[which % len(alive)]
        expected = _outcome(lambda: self.model.hold(account, request_id, amount, deadline,
                                                    self.now, owner=owner, model="m", **caps))
        actual = _outcome(lambda: self._run(partial(self.real.hold, owner=owner, model="m",
                                                   **caps),
                                           account, request_id, amount, deadline, self.now))
        assert actual == expected, f"hold: {self.backend} {actual!r} != model {expected!r}"
        if isinstance(actual, str):
            return (request_id, account, -1)
        self.live.add(request_id)
        self.owner_of[request_id] = owner
        return (request_id, account, amount)

    @rule(target=holds, account=ACCOUNTS, delta=st.integers(-1, 1), which=st.integers(0, 5))
    def hold_at_the_edge_of_available(self, account: str, delta: int,
                                      which: int) -> tuple[str, str, int]:
        amount = max(self.model.state(account).available + delta, 0)
        return self._owned_hold(account, amount, self.now + 50, which)

    @rule(target=holds, account=ACCOUNTS, key=st.sampled_from(["k1", "k2"]),
          amount=st.integers(0, 2_000_000), cap=st.sampled_from([1_000, 1_000_000, 3_000_000]),
          which=st.integers(0, 5))
    def hold_under_a_key_spend_cap(self, account: str, key: str, amount: int,
                                   cap: int, which: int) -> tuple[str, str, int]:
        held = self._owned_hold(account, amount, self.now + 50, which, key_id=key, key_cap=cap)
        assert self.model.key_spent(key) == self._run(self.real.key_spent, key)
        return held

    @rule(held=holds)
    def hold_again_with_the_same_id(self, held: tuple[str, str, int]) -> None:
        request_id, account, amount = held
        if amount >= 0:
            assert self._both("hold", account, request_id, 1, self.now + 5,
                              self.now) == "DuplicateRequest"

    @rule(held=holds, cost_factor=st.fractions(0, 2))
    def settle(self, held: tuple[str, str, int], cost_factor: Any) -> None:
        request_id, account, amount = held
        if self.owner_of.get(request_id) in self.crashed:
            return  # a dead router settles nothing
        cost = int(max(amount, 0) * cost_factor)
        result = self._both("settle", request_id, cost, self._record(request_id, account, cost),
                            self.now)
        if isinstance(result, str):
            assert amount < 0 and result == "UnknownRequest"
            return
        assert result.captured <= amount  # I4
        if request_id in self.settled:  # a replay is billed once (I4, I8)
            assert result.replay and result.captured == self.settled[request_id]
        else:
            assert not result.replay and result.captured == min(cost, amount)
            self.settled[request_id] = result.captured
        self.live.discard(request_id)

    @rule(request_id=st.text("xyz", min_size=1, max_size=3))
    def settle_unknown(self, request_id: str) -> None:
        record = self._record(request_id, "alice", 5)
        assert self._both("settle", request_id, 5, record, self.now) == "UnknownRequest"

    @rule(seconds=st.sampled_from([1.0, 10.0, 100.0, 1000.0]), which=st.integers(0, 5))
    def time_passes_and_the_sweeper_runs(self, seconds: float, which: int) -> None:
        self.now += seconds
        for instance_id in self._alive():  # live routers renew their leases
            self._both("renew_lease", instance_id, self.now + LEASE_S)
            old = self.instances[instance_id]
            self.instances[instance_id] = Instance(old.id, old.host, old.pid, old.started_at,
                                                   self.now + LEASE_S)
        alive = [i for i in self._alive() if self.instances[i].host == HOST]
        if alive:
            self._sweep(self.instances[alive[which % len(alive)]])

    async def _snapshot(self, account: str) -> tuple[Any, ...]:
        return (await self.real.account(account),
                await self.real.entries(account, 0, 1_000_000),
                await self.real.open_holds(account),
                await self.real.recent_usage(account, 1_000_000),
                await self.real.spent(account))

    @invariant()
    def backends_agree_and_invariants_hold(self) -> None:
        for account in ("alice", "bob", "carol"):
            expected = self.model.state(account)
            actual, entries, open_holds, usage, spent = self._run(self._snapshot, account)
            assert (actual.balance, actual.held) == (expected.balance, expected.held)
            assert actual.available >= 0  # I3
            assert sum(e.amount for e in entries) == actual.balance  # I1
            assert sum(e.held_delta for e in entries) == actual.held
            assert sum(h[2] for h in open_holds) == actual.held  # I2
            captures = Counter(e.request_id for e in entries if e.kind == "capture")
            assert all(n == 1 for n in captures.values())  # I4: at most once
            captured = -sum(e.amount for e in entries if e.kind == "capture")
            assert captured == sum(r.cost_micros for r in usage) == spent  # I5, the counter
            assert sorted(usage, key=lambda r: r.request_id) == sorted(
                (r for r in self.model.usage.values() if r.account == account),
                key=lambda r: r.request_id)
            model_entries = [(e.kind, e.amount, e.held_delta) for e in self.model.log
                             if e.account == account]
            assert [(e.kind, e.amount, e.held_delta) for e in entries] == model_entries


for _name in BACKENDS:
    _machine = type(f"{_name.title()}LedgerMachine", (LedgerMachine,), {"backend": _name})
    _case = _machine.TestCase
    # the loaded profile (ci, or --hypothesis-profile=thorough) decides how many examples
    # A network backend pays a fresh schema or database per example and a connection per
    # step: a tenth as many in the default (CI) profile; the thorough profile runs
    # thousands on each.
    _examples = settings.default.max_examples
    _case.settings = settings(stateful_step_count=30, max_examples=_examples
                              if _name == "sqlite" or _examples > 100 else _examples // 10)
    globals()[f"TestLedgerMachine{_name.title()}"] = _case
del _name, _machine, _case, _examples  # else pytest collects `_case` a second time
