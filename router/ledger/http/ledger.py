"""`BILLING_BACKEND=http`: the external credit service owns the balances; the local SQLite
ledger keeps everything else (docs/integration.md).

`two_phase`: a request's hold is placed at the service (`POST /v1/holds`, idempotent by
request id) after the local hold that carries it through crashes and checkpoints; the
capture or release that settles it leaves through the durable outbox (`billing` events,
queued with the settlement). `check_debit`: the service's balance is read (`GET
/v1/accounts/{account}`) and the local ledger holds on top of it, counting this
instance's open holds and the debits it has not delivered yet, so one instance never
spends more than the service holds; the debit leaves through the outbox. Either way the
router fails closed (503 `billing_unavailable`, nothing sent to a provider) while the
service cannot be asked, and never lets a hold with an unknown outcome linger: it is
released locally and a release is queued for the service.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from router.errors import BillingUnavailable, InsufficientFunds, LedgerError
from router.ledger.base import (AccountState, Checkpoint, Entry, Instance, LeasedHold,
                                Settlement, UsageRecord, UsageTotal)
from router.ledger.http.client import CreditService, CreditServiceDown
from router.ledger.sqlite.ledger import SqliteLedger
from router.ledger.sqlite.mirror import SqliteMirror

LISTING_READS = 16  # balances of one listing asked of the service at once
UNAVAILABLE = ("credits cannot be checked right now (the credit service does not answer); "
               "nothing was charged: try again shortly")


class HttpBillingLedger:
    """`BillingLedger`, `AccountBook` and `UsageReports` over the credit service and the
    local ledger."""

    def __init__(self, local: SqliteLedger, mirror: SqliteMirror, service: CreditService,
                 mode: str) -> None:
        self.local = local
        self.mirror = mirror
        self.service = service
        self.mode = mode

    # --- what the service decides ---------------------------------------------------

    async def account(self, account: str) -> AccountState:
        read_at = time.time()
        try:
            state = await self.service.account(account)
        except CreditServiceDown:
            raise BillingUnavailable(UNAVAILABLE) from None
        if state is None:
            return AccountState(account, 0, 0)
        if self.mode == "check_debit":  # the service does not know our holds and debits
            held, pending = await self.mirror.local_figures(account, read_at)
            return AccountState(account, state.balance - pending, held)
        return state

    async def listing(self, prefix: str | None, after: str | None,
                      limit: int) -> list[AccountState]:
        """The accounts this router knows, with the balances the service gives.

        The service has no listing (docs/integration.md: it answers for one account at a
        time), so the ids are those of the local records: accounts opened, given a key
        or billed through this router (the local ledger's `listing`: same order, same
        prefix rules). An account the service alone knows is not listed, one it does
        not know is listed at 0, as `account()` answers. Each figure is `account()`'s
        (in `check_debit`, the service's balance less the debits not delivered yet, and
        this ledger's open holds), read `LISTING_READS` at a time; if the service cannot
        be asked the listing fails closed with `BillingUnavailable` (503), as
        `account()` does, rather than show local figures as if they were balances."""
        known = await self.local.listing(prefix, after, limit)
        states: list[AccountState | None] = [None] * len(known)
        failure: list[BaseException] = []
        slots = trio.CapacityLimiter(LISTING_READS)

        async def read(i: int, account: str, cancel: trio.CancelScope) -> None:
            async with slots:
                try:
                    states[i] = await self.account(account)
                except Exception as exc:  # noqa: BLE001 - raised below, unwrapped
                    failure.append(exc)
                    cancel.cancel()

        async with trio.open_nursery() as nursery:
            for i, state in enumerate(known):
                nursery.start_soon(read, i, state.account, nursery.cancel_scope)
        if failure:
            raise failure[0]
        return [state for state in states if state is not None]

    async def hold(self, account: str, request_id: str, amount: int, deadline: float,
                   at: float, *, key_id: str | None = None, key_cap: int | None = None,
                   owner: str | None = None, model: str = "") -> AccountState:
        if amount < 0:
            raise LedgerError("a hold cannot be negative")
        if self.mode == "check_debit":
            try:
                state = await self.service.account(account)
            except CreditServiceDown:
                raise BillingUnavailable(UNAVAILABLE) from None
            return await self.mirror.hold(account, request_id, amount, deadline, at,
                                          key_id=key_id, key_cap=key_cap, owner=owner,
                                          model=model,
                                          service_balance=state.balance if state else 0)
        # two_phase: the local hold first (a crash from here on is settled from it, and
        # its settlement releases whatever the service placed), then the service's.
        local = await self.mirror.hold(account, request_id, amount, deadline, at,
                                       key_id=key_id, key_cap=key_cap, owner=owner,
                                       model=model, service_balance=None)
        try:
            answer = await self.service.hold(account, request_id, amount, deadline)
        except CreditServiceDown:
            await self.mirror.release(request_id, at, tell_service=True)
            raise BillingUnavailable(UNAVAILABLE) from None
        except BaseException:
            await self.mirror.release(request_id, at, tell_service=True)
            raise
        if not answer.placed:
            await self.mirror.release(request_id, at, tell_service=False)
            raise InsufficientFunds(amount, answer.available)
        return local

    async def grant(self, account: str, amount: int, reason: str | None,
                    at: float) -> AccountState:
        raise LedgerError("credits are kept by the credit service (BILLING_BACKEND=http): "
                          "grant them there")

    async def open_account(self, account: str, starting_grant: int, at: float) -> bool:
        # The service opens accounts and grants their credits; locally only the record.
        return await self.local.open_account(account, 0, at)

    async def ping(self) -> bool:
        await self.local.ping()
        reason = await self.service.probe()
        if reason is not None:
            raise BillingUnavailable(reason)
        return True

    # --- what the local ledger keeps ------------------------------------------------

    async def checkpoint(self, points: list[Checkpoint]) -> None:
        await self.local.checkpoint(points)

    async def recover(self, request_id: str, at: float) -> Settlement:
        return await self.local.recover(request_id, at)

    async def leased_holds(self) -> list[LeasedHold]:
        return await self.local.leased_holds()

    async def register_instance(self, instance: Instance) -> None:
        await self.local.register_instance(instance)

    async def renew_lease(self, instance_id: str, until: float) -> None:
        await self.local.renew_lease(instance_id, until)

    async def instances(self) -> list[Instance]:
        return await self.local.instances()

    async def key_spent(self, key_id: str) -> int:
        return await self.local.key_spent(key_id)

    async def settle(self, request_id: str, cost_micros: int, record: UsageRecord,
                     at: float, transcript: bytes | None = None) -> Settlement:
        return await self.local.settle(request_id, cost_micros, record, at, transcript)

    async def exists(self, account: str) -> bool:
        return await self.local.exists(account)

    async def entries(self, account: str, after: int = 0, limit: int = 100) -> list[Entry]:
        return await self.local.entries(account, after, limit)

    async def open_holds(self, account: str | None = None
                         ) -> list[tuple[str, str, int, float]]:
        return await self.local.open_holds(account)

    async def spent(self, account: str) -> int:
        return await self.local.spent(account)

    async def recent_usage(self, account: str, limit: int = 20) -> list[UsageRecord]:
        return await self.local.recent_usage(account, limit)

    async def usage_rows(self, account: str | None, since: float | None,
                         until: float | None, limit: int) -> list[dict[str, Any]]:
        return await self.local.usage_rows(account, since, until, limit)

    async def usage_totals(self, since: float, bucket_s: int,
                           buckets: int) -> list[UsageTotal]:
        return await self.local.usage_totals(since, bucket_s, buckets)
