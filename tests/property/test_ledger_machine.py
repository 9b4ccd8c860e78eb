"""The billing invariants (SPEC §4.5), property-tested with a hypothesis state machine.

The same random sequence of grants, adjustments, holds, settlements, replays, unknown
requests and sweeps drives the pure `LedgerModel` (the oracle) and the SQLite backend
through its public async interface (one `trio.run` per step). After every step both
must agree, and I1-I5 and I8-style replays must hold on both.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, invariant,
                                 precondition, rule)

from actors.ledger_maintenance import sweep_expired_holds
from router.ledger.base import (DuplicateRequest, InsufficientFunds, LedgerError, LedgerModel,
                                SpendCapReached, UnknownRequest, UsageRecord)
from router.ledger.sqlite import SqliteLedger
from router.ledger.sqlite_db import SqliteDatabase
from router.usage import Usage

ACCOUNTS = st.sampled_from(["alice", "bob", "carol"])
AMOUNTS = st.integers(min_value=1, max_value=5_000_000)


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

    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.dir = tempfile.TemporaryDirectory()
        self.db = SqliteDatabase(Path(self.dir.name) / "ledger.sqlite3")
        self.sqlite = SqliteLedger(self.db)
        self.now = 1_000.0
        self.next_id = 0
        self.settled: dict[str, int] = {}  # request id -> captured, as first reported

    def teardown(self) -> None:
        self.db.close()
        self.dir.cleanup()

    def _real(self, method: str, *args: Any) -> Any:
        return _outcome(lambda: trio.run(getattr(self.sqlite, method), *args))

    def _both(self, method: str, *args: Any) -> Any:
        expected = _outcome(getattr(self.model, method), *args)
        actual = self._real(method, *args)
        assert actual == expected, f"{method}{args}: sqlite {actual!r} != model {expected!r}"
        return actual

    def _record(self, request_id: str, account: str, cost: int) -> UsageRecord:
        return UsageRecord(request_id, account, "m", "p", Usage(1, 1), cost, self.now)

    @rule(account=ACCOUNTS, amount=AMOUNTS)
    def grant(self, account: str, amount: int) -> None:
        self._both("grant", account, amount, "grant", self.now)

    @rule(account=ACCOUNTS, amount=AMOUNTS)
    def adjust_down(self, account: str, amount: int) -> None:
        self._both("grant", account, -amount, "adjust", self.now)

    @rule(target=holds, account=ACCOUNTS, amount=st.integers(0, 3_000_000),
          ttl=st.sampled_from([5.0, 50.0, 500.0]))
    def hold(self, account: str, amount: int, ttl: float) -> tuple[str, str, int]:
        self.next_id += 1
        request_id = f"req-{self.next_id}"
        result = self._both("hold", account, request_id, amount, self.now + ttl, self.now)
        return (request_id, account, amount if not isinstance(result, str) else -1)

    @rule(target=holds, account=ACCOUNTS, delta=st.integers(-1, 1))
    def hold_at_the_edge_of_available(self, account: str, delta: int) -> tuple[str, str, int]:
        amount = max(self.model.state(account).available + delta, 0)
        self.next_id += 1
        request_id = f"req-{self.next_id}"
        result = self._both("hold", account, request_id, amount, self.now + 50, self.now)
        return (request_id, account, amount if not isinstance(result, str) else -1)

    @rule(target=holds, account=ACCOUNTS, key=st.sampled_from(["k1", "k2"]),
          amount=st.integers(0, 2_000_000), cap=st.sampled_from([1_000, 1_000_000, 3_000_000]))
    def hold_under_a_key_spend_cap(self, account: str, key: str, amount: int,
                                   cap: int) -> tuple[str, str, int]:
        self.next_id += 1
        request_id = f"req-{self.next_id}"
        expected = _outcome(lambda: self.model.hold(account, request_id, amount, self.now + 50,
                                                    self.now, key_id=key, key_cap=cap))
        actual = _outcome(lambda: trio.run(partial(self.sqlite.hold, key_id=key, key_cap=cap),
                                           account, request_id, amount, self.now + 50,
                                           self.now))
        assert actual == expected
        assert self.model.key_spent(key) == trio.run(self.sqlite.key_spent, key)
        return (request_id, account, amount if not isinstance(actual, str) else -1)

    @rule(held=holds)
    def hold_again_with_the_same_id(self, held: tuple[str, str, int]) -> None:
        request_id, account, amount = held
        if amount >= 0:
            assert self._both("hold", account, request_id, 1, self.now + 5,
                              self.now) == "DuplicateRequest"

    @rule(held=holds, cost_factor=st.fractions(0, 2))
    def settle(self, held: tuple[str, str, int], cost_factor: Any) -> None:
        request_id, account, amount = held
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

    @rule(request_id=st.text("xyz", min_size=1, max_size=3))
    def settle_unknown(self, request_id: str) -> None:
        record = self._record(request_id, "alice", 5)
        assert self._both("settle", request_id, 5, record, self.now) == "UnknownRequest"

    @rule(seconds=st.sampled_from([1.0, 10.0, 100.0, 1000.0]))
    def time_passes_and_the_sweeper_runs(self, seconds: float) -> None:
        self.now += seconds
        live: set[str] = set()
        for request_id, account, _amount, deadline in self.model.open_holds():
            if deadline < self.now:
                settlement = self.model.settle(request_id, 0,
                                               UsageRecord(request_id, account, "", "sweeper",
                                                           Usage(), 0, self.now), self.now)
                self.settled[request_id] = settlement.captured
        trio.run(sweep_expired_holds, self.sqlite, live, self.now)

    async def _snapshot(self, account: str) -> tuple[Any, ...]:
        return (await self.sqlite.account(account),
                await self.sqlite.entries(account, 0, 1_000_000),
                await self.sqlite.open_holds(account),
                await self.sqlite.recent_usage(account, 1_000_000))

    @invariant()
    def backends_agree_and_invariants_hold(self) -> None:
        for account in ("alice", "bob", "carol"):
            expected = self.model.state(account)
            actual, entries, open_holds, usage = trio.run(self._snapshot, account)
            assert (actual.balance, actual.held) == (expected.balance, expected.held)
            assert actual.available >= 0  # I3
            assert sum(e.amount for e in entries) == actual.balance  # I1
            assert sum(e.held_delta for e in entries) == actual.held
            assert sum(h[2] for h in open_holds) == actual.held  # I2
            captures = Counter(e.request_id for e in entries if e.kind == "capture")
            assert all(n == 1 for n in captures.values())  # I4: at most once
            captured = -sum(e.amount for e in entries if e.kind == "capture")
            assert captured == sum(r.cost_micros for r in usage)  # I5
            model_entries = [(e.kind, e.amount, e.held_delta) for e in self.model.log
                             if e.account == account]
            assert [(e.kind, e.amount, e.held_delta) for e in entries] == model_entries


TestLedgerMachine = LedgerMachine.TestCase
# the loaded profile (ci, or --hypothesis-profile=thorough) decides how many examples
TestLedgerMachine.settings = settings(stateful_step_count=30)
