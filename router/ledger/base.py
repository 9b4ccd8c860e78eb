"""The ledger's interface, its value types, and the in-memory model that is its oracle.

Money is integer micro-USD. Every change to an account is an append-only entry with a
balance delta (`amount`) and a held delta (`held_delta`), so that at every moment
`balance == sum(amount)` and `held == sum(held_delta)` over the account's entries (I1,
I2). `LedgerModel` states the rules in plain Python; every backend must agree with it.

Crash safety (I7): a hold names the router instance that took it (`owner`) and the
model it is for; while the answer streams, its running usage and cost are checkpointed
on the hold (never lowered). Instances register and renew a lease. A hold whose owner
died is settled by `recover` from its last checkpoint: captured `min(checkpoint, hold)`,
a usage row marked recovered, released at 0 only if nothing was checkpointed, and the
Idempotency-Key claim of its request freed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from router.auth.keys import KeyRecord
from router.errors import (DuplicateRequest, InsufficientFunds, LedgerError, SpendCapReached,
                           UnknownRequest)
from router.usage import Usage

__all__ = ["AccountBook", "AccountState", "BillingLedger", "Checkpoint", "Claim",
           "DERIVED_SINKS", "DuplicateRequest", "Entry", "IdempotencyStore", "Instance",
           "InsufficientFunds", "KeyStore", "LeasedHold", "LedgerError", "LedgerModel",
           "OUTBOX_SINKS", "Outbox", "OutboxEvent", "Settlement", "SpendCapReached",
           "UnknownRequest", "UsageRecord", "UsageReports", "UsageTotal", "event_id"]

MAX_IDEMPOTENCY_KEY = 255  # characters of an Idempotency-Key
MAX_STORED_ANSWER = 4 * 1024 * 1024  # bytes of a first answer kept for replays


@dataclass(frozen=True, slots=True)
class AccountState:
    account: str
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    account: str
    kind: str  # grant | adjust | hold | capture | release | refund
    amount: int  # balance delta
    held_delta: int
    request_id: str | None
    balance_after: int
    reason: str | None
    at: float


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    account: str
    model: str
    provider: str
    usage: Usage
    cost_micros: int  # what was captured
    at: float
    overrun_micros: int = 0  # the cost beyond the hold: the platform's loss
    recovered: bool = False  # settled after its router died, from a checkpoint


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """The usage rows of one time bucket and one model, added up (`usage_totals`)."""

    bucket: int  # 0 .. buckets-1: floor((at - since) / bucket_s)
    model: str
    calls: int  # usage rows (settled calls), whatever their cost
    billed: int  # rows with cost_micros > 0
    cost_micros: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A streaming request's running usage, written while output arrives."""

    request_id: str
    provider: str
    usage: Usage
    cost_micros: int
    at: float


@dataclass(frozen=True, slots=True)
class Instance:
    """One router process incarnation and its lease."""

    id: str
    host: str
    pid: int
    started_at: float
    lease_until: float


@dataclass(frozen=True, slots=True)
class LeasedHold:
    request_id: str
    owner: str | None
    deadline: float


@dataclass(frozen=True, slots=True)
class Settlement:
    request_id: str
    captured: int
    released: int
    balance: int
    held: int
    replay: bool = False  # True when the request had been settled before

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Claim:
    """An Idempotency-Key's state when a request claims it."""

    kind: str  # "new" | "in_flight" | "mismatch" | "replay"
    request_id: str
    status: int = 0
    content_type: str = ""
    response: bytes = b""


class BillingLedger(Protocol):
    """The pipeline's money: holds, checkpoints of streamed usage, settlement, and the
    leases that let any instance settle a dead one's holds (I7)."""

    async def account(self, account: str) -> AccountState: ...

    async def hold(self, account: str, request_id: str, amount: int, deadline: float,
                   at: float, *, key_id: str | None = None, key_cap: int | None = None,
                   owner: str | None = None, model: str = "") -> AccountState: ...

    async def checkpoint(self, points: list[Checkpoint]) -> None:
        """Record running usage on open holds (one transaction); never lowers a figure."""
        ...

    async def recover(self, request_id: str, at: float) -> Settlement:
        """Settle an abandoned hold from its last checkpoint (a replay if settled)."""
        ...

    async def leased_holds(self) -> list[LeasedHold]: ...

    async def register_instance(self, instance: Instance) -> None: ...

    async def renew_lease(self, instance_id: str, until: float) -> None: ...

    async def instances(self) -> list[Instance]: ...

    async def key_spent(self, key_id: str) -> int:
        """Captured plus still held under this key, by the holds taken under its spend
        cap: what the cap counts (a running counter, not a scan of the key's history;
        keys without a cap are not counted, and a key's cap is fixed when it is issued)."""
        ...

    async def settle(self, request_id: str, cost_micros: int, record: UsageRecord,
                     at: float, transcript: bytes | None = None) -> Settlement:
        """Capture `min(cost, hold)`, release the rest, record the usage row, and in the
        same transaction queue its outbox events: one per derived sink (`Outbox.
        configure`) and, with `transcript`, a `messages` event carrying it."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event on its way to a sink (docs/integration.md). Derived sinks (`usage`,
    `billing`) carry no body: it is built from the usage row when the event is shipped;
    a `messages` event carries its body."""

    event_id: str  # "<sink>.<request id>": the same settlement can never make two
    sink: str
    request_id: str
    account: str
    body: bytes | None
    created_at: float
    attempts: int
    next_at: float
    state: str  # "pending" | "dead"
    last_error: str | None = None


DERIVED_SINKS = ("usage", "billing")  # written for every settlement once configured
OUTBOX_SINKS = ("usage", "messages", "billing")


def event_id(sink: str, request_id: str) -> str:
    return f"{sink}.{request_id}"


class Outbox(Protocol):
    """The durable outbox (docs/integration.md): events written with the settlements they describe,
    claimed by one shipper at a time, in order per (sink, account)."""

    async def configure(self, sinks: frozenset[str]) -> None:
        """The derived sinks every settlement from now on writes an event for (shared by
        every instance on this ledger: the deployment's, not the process's)."""
        ...

    async def claim(self, now: float, limit: int, lease_s: float) -> list[OutboxEvent]:
        """Up to `limit` due events, each the oldest pending one of its (sink, account);
        claimed for `lease_s` (another shipper skips them meanwhile)."""
        ...

    async def delivered(self, event: OutboxEvent, at: float) -> None:
        """The sink took it: it leaves the outbox (a debit a local ledger counts against
        a credit service's balance is kept a while as `sent`, docs/integration.md)."""
        ...

    async def retry_at(self, event: OutboxEvent, next_at: float, error: str) -> None: ...

    async def park(self, event: OutboxEvent, error: str, at: float) -> None:
        """Dead: kept and listed, never retried until `revive`; later events of its
        (sink, account) go on."""
        ...

    async def listing(self, state: str | None, limit: int) -> list[OutboxEvent]: ...

    async def revive(self, event_id: str, now: float) -> bool:
        """A dead event pending again (at the end of its queue); False if none."""
        ...

    async def pending(self) -> dict[str, int]:
        """Pending events per sink (`aura_outbox_pending{sink}`)."""
        ...

    async def usage_row(self, request_id: str) -> dict[str, Any] | None:
        """What a derived event is built from: the request's usage row (export shape)
        with `started_at`, the time its hold was taken."""
        ...


class AccountBook(Protocol):
    """Accounts as the admin API, the CLI and JWT sign-up see them."""

    async def grant(self, account: str, amount: int, reason: str | None,
                    at: float) -> AccountState:
        """Credits (negative: an adjustment, refused below available 0)."""
        ...

    async def open_account(self, account: str, starting_grant: int, at: float) -> bool:
        """Create the account with its starting grant if it is new; True if it was."""
        ...

    async def account(self, account: str) -> AccountState: ...

    async def exists(self, account: str) -> bool: ...

    async def listing(self, prefix: str | None, after: str | None,
                      limit: int) -> list[AccountState]:
        """At most `limit` accounts (none if `limit` < 1) whose id starts with `prefix`
        (literally and case-sensitively; None or "": all) and comes after `after` (a
        cursor: the last id of the previous page; None: from the first), in id order
        (code point order, the same in every backend: router/ledger/listing.py), each
        with the figures `account()` gives."""
        ...

    async def entries(self, account: str, after: int, limit: int) -> list[Entry]: ...

    async def open_holds(self, account: str | None = None
                         ) -> list[tuple[str, str, int, float]]: ...


class UsageReports(Protocol):
    """What was used and billed, for `/v1/usage`, `/admin/usage` and the CLI export."""

    async def spent(self, account: str) -> int:
        """Everything captured from the account (a running counter)."""
        ...

    async def recent_usage(self, account: str, limit: int) -> list[UsageRecord]: ...

    async def usage_rows(self, account: str | None, since: float | None,
                         until: float | None, limit: int) -> list[dict[str, Any]]:
        """Usage rows oldest first, `since <= at < until`, at most `limit` (export shape,
        router.ledger.export)."""
        ...

    async def usage_totals(self, since: float, bucket_s: int,
                           buckets: int) -> list[UsageTotal]:
        """Usage rows with since <= at < since + bucket_s * buckets, added up per bucket
        and model (any order; no total for a bucket and model without rows). A row is in
        bucket k when k * bucket_s <= at - since < (k + 1) * bucket_s, compared exactly
        (router/ledger/totals.py): one at exactly `since + k * bucket_s` is in bucket k.
        Every backend adds up in the store, never by reading the rows out. ValueError
        for a window no rule is exact for: `bucket_s` not an int >= 1, `buckets` not an
        int >= 0, `since` not finite, or the window past 2**52 s."""
        ...


class KeyStore(Protocol):
    """Router API keys, stored only as a hash."""

    async def issue(self, account: str, *, label: str | None = None,
                    models: list[str] | None = None, rpm: int | None = None,
                    spend_cap_micros: int | None = None, expires_at: float | None = None,
                    at: float) -> tuple[str, KeyRecord]:
        """A new key and its record: the only time the key is seen."""
        ...

    async def find(self, key: str) -> KeyRecord | None: ...

    async def list(self, account: str | None = None) -> list[KeyRecord]: ...

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None: ...


class IdempotencyStore(Protocol):
    """Idempotency keys (I8): the same key from the same account is billed once. A
    replay while the first runs or with another body is refused; a finished first
    answer is replayed; a failed first attempt frees the key."""

    async def begin(self, account: str, key: str, body: bytes, request_id: str,
                    now: float) -> Claim: ...

    async def finish(self, account: str, key: str, status: int, content_type: str,
                     response: bytes) -> None: ...

    async def abandon(self, account: str, key: str) -> None: ...

    async def forget_request(self, request_id: str) -> bool:
        """Free the unfinished claim of a request that died (its hold was recovered from
        its checkpoint): a retry with the same key is accepted again. True if there was
        one."""
        ...


@dataclass
class _Hold:
    account: str
    amount: int
    deadline: float
    key_id: str | None = None
    settled: Settlement | None = None
    owner: str | None = None
    model: str = ""
    checkpoint: Checkpoint | None = None


@dataclass
class LedgerModel:
    """The rules, in memory and synchronous: the oracle for the property tests."""

    balances: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    holds: dict[str, _Hold] = field(default_factory=dict)
    log: list[Entry] = field(default_factory=list)
    usage: dict[str, UsageRecord] = field(default_factory=dict)
    instance_table: dict[str, Instance] = field(default_factory=dict)

    def state(self, account: str) -> AccountState:
        return AccountState(account, self.balances.get(account, 0), self.held.get(account, 0))

    def _append(self, account: str, kind: str, amount: int, held_delta: int,
                request_id: str | None, reason: str | None, at: float) -> None:
        self.balances[account] = self.balances.get(account, 0) + amount
        self.held[account] = self.held.get(account, 0) + held_delta
        self.log.append(Entry(len(self.log) + 1, account, kind, amount, held_delta, request_id,
                              self.balances[account], reason, at))

    def grant(self, account: str, amount: int, reason: str | None, at: float) -> AccountState:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise LedgerError("amount must be a non-zero integer number of micro-USD")
        if amount < 0 and self.state(account).available + amount < 0:
            raise InsufficientFunds(-amount, self.state(account).available)
        self._append(account, "grant" if amount > 0 else "adjust", amount, 0, None, reason, at)
        return self.state(account)

    def key_spent(self, key_id: str) -> int:
        return sum(h.settled.captured if h.settled else h.amount
                   for h in self.holds.values() if h.key_id == key_id)

    def hold(self, account: str, request_id: str, amount: int, deadline: float,
             at: float, *, key_id: str | None = None, key_cap: int | None = None,
             owner: str | None = None, model: str = "") -> AccountState:
        if amount < 0:
            raise LedgerError("a hold cannot be negative")
        if request_id in self.holds:
            raise DuplicateRequest(request_id)
        available = self.state(account).available
        if amount > available:
            raise InsufficientFunds(amount, available)
        if key_id is not None and key_cap is not None:
            remaining = key_cap - self.key_spent(key_id)
            if amount > remaining:
                raise SpendCapReached(amount, max(remaining, 0))
        # Only a key with a spend cap has its spend counted (a key's cap is fixed at issue).
        counted_key = key_id if key_cap is not None else None
        self.holds[request_id] = _Hold(account, amount, deadline, counted_key, owner=owner,
                                       model=model)
        self._append(account, "hold", 0, amount, request_id, None, at)
        return self.state(account)

    def settle(self, request_id: str, cost_micros: int, record: UsageRecord,
               at: float, transcript: bytes | None = None) -> Settlement:
        hold = self.holds.get(request_id)
        if hold is None:
            raise UnknownRequest(request_id)
        if hold.settled is not None:  # a replay: the first result, today's balance
            first, state = hold.settled, self.state(hold.account)
            return Settlement(request_id, first.captured, first.released, state.balance,
                              state.held, replay=True)
        if cost_micros < 0:
            raise LedgerError("a cost cannot be negative")
        captured = min(cost_micros, hold.amount)
        released = hold.amount - captured
        if captured:
            self._append(hold.account, "capture", -captured, -captured, request_id, None, at)
        if released:
            self._append(hold.account, "release", 0, -released, request_id, None, at)
        self.usage[request_id] = UsageRecord(record.request_id, record.account, record.model,
                                             record.provider, record.usage, captured, record.at,
                                             cost_micros - captured, record.recovered)
        state = self.state(hold.account)
        hold.settled = Settlement(request_id, captured, released, state.balance, state.held)
        return hold.settled

    def checkpoint(self, points: list[Checkpoint]) -> None:
        for point in points:
            hold = self.holds.get(point.request_id)
            if hold is None or hold.settled is not None:
                continue
            if hold.checkpoint is None or hold.checkpoint.cost_micros <= point.cost_micros:
                hold.checkpoint = point

    def recover(self, request_id: str, at: float) -> Settlement:
        hold = self.holds.get(request_id)
        if hold is None:
            raise UnknownRequest(request_id)
        point = hold.checkpoint
        usage, cost, provider = ((point.usage, point.cost_micros, point.provider)
                                 if point is not None else (Usage(), 0, ""))
        return self.settle(request_id, cost, UsageRecord(
            request_id, hold.account, hold.model, provider, usage, cost, at,
            recovered=True), at)

    def leased_holds(self) -> list[LeasedHold]:
        return [LeasedHold(rid, h.owner, h.deadline) for rid, h in self.holds.items()
                if h.settled is None]

    def register_instance(self, instance: Instance) -> None:
        self.instance_table[instance.id] = instance

    def renew_lease(self, instance_id: str, until: float) -> None:
        old = self.instance_table.get(instance_id)
        if old is None:
            return
        self.instance_table[instance_id] = Instance(old.id, old.host, old.pid,
                                                    old.started_at, until)

    def instances(self) -> list[Instance]:
        return sorted(self.instance_table.values(), key=lambda i: i.id)

    def open_holds(self, account: str | None = None) -> list[tuple[str, str, int, float]]:
        return [(rid, h.account, h.amount, h.deadline) for rid, h in self.holds.items()
                if h.settled is None and (account is None or h.account == account)]
