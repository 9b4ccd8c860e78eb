"""Stage 4, settle: capture what was used, release the rest, exactly once.

`Billing` is one request's money after its hold. While the answer streams, the lease
keeper reads its running usage for the batched checkpoints (`due_checkpoint`); right
before the first content reaches the client it writes one itself (`before_content`), so
that a crash after that moment can never bill streamed tokens at 0 (I7). A whole answer
is settled before it is sent. `settle` runs whatever happened before (success, provider
error, client gone, cancel), shielded from cancellation with a deadline of its own; it
runs once; while the ledger's service cannot be reached it retries until its deadline,
then the lease keeper takes over. The provider's reported usage is the truth; without it, output is counted
from what was streamed and input estimated from the request (docs/billing.md). Capture never
exceeds the hold; a cost beyond it is logged and recorded as the platform's loss. Each
ledger round trip's time goes to the `Outcome` (`aura_ledger_seconds{op}`).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Callable

import trio

from actors.pipeline.context import Outcome, RequestContext
from router.errors import BillingUnavailable
from router.gateway import Settled
from router.ledger.base import BillingLedger, Checkpoint, Settlement, UsageRecord
from router.protocols.api import Meter

SETTLE_DEADLINE_S = 30.0
RETRY_FIRST_S, RETRY_MAX_S = 0.05, 2.0  # while the ledger's service cannot be reached
log = logging.getLogger("aura.settle")


class Billing:
    """The money of one request between its hold and its settlement."""

    def __init__(self, ledger: BillingLedger, ctx: RequestContext, meter: Meter,
                 outcome: Outcome, clock: Callable[[], float],
                 transcript: Callable[[], bytes] | None = None) -> None:
        self.ledger = ledger
        self.transcript = transcript  # the storage sink's event, with the settlement
        self.reservation = ctx.reservation
        self.model = ctx.model
        self.meter = meter
        self.outcome = outcome
        self.estimated_input = ctx.estimated_input
        self.streamed = ctx.request.stream  # an open stream, for aura_active_streams
        self.clock = clock
        self.settled: Settled | None = None
        self._checkpointed: tuple[int, int | None, bool] = (0, None, False)  # meter as written

    @property
    def request_id(self) -> str:
        return self.reservation.request_id

    def due_checkpoint(self) -> Checkpoint | None:
        """The running usage, if it grew since the last checkpoint."""
        meter = self.meter
        seen = (meter.output_deltas, meter.output_tokens, meter.completed)
        if seen == self._checkpointed or self.settled is not None and not self.unsettled:
            return None  # cheap enough to ask of every live stream every interval
        self._checkpointed = seen
        return self._running_point()

    def _running_point(self) -> Checkpoint | None:
        usage = self.meter.usage(self.estimated_input)
        if usage.is_empty:
            return None
        cost = min(self.model.prices.cost_micros(usage), self.reservation.hold_micros)
        return Checkpoint(self.request_id, self.outcome.provider or "", usage, cost,
                          self.clock())

    async def before_content(self, whole: bool) -> None:
        """The answer is about to reach the client: make its bill durable first (a whole
        answer is settled; a stream gets a first checkpoint of what it streamed)."""
        if whole:
            await self.settle()
            return
        # Written here even if the lease keeper's batch already took this usage: that
        # batch may still be on its way to a network ledger when the content leaves.
        point = self._running_point()
        if point is not None:
            with trio.CancelScope(shield=True):
                started = perf_counter()
                await self.ledger.checkpoint([point])
                self.outcome.ledger_s.append(("checkpoint", perf_counter() - started))

    async def settle(self) -> Settled:
        if self.settled is not None and self.settled.settlement is not None:
            return self.settled
        reservation = self.reservation
        usage = self.meter.usage(self.estimated_input)
        cost = self.model.prices.cost_micros(usage)
        if cost > reservation.hold_micros:
            self.outcome.overrun_micros = cost - reservation.hold_micros
            log.warning("request %s cost %d micro-USD over its hold of %d; capturing the "
                        "hold, the rest is the platform's loss", reservation.request_id,
                        cost, reservation.hold_micros)
        now = self.clock()
        record = UsageRecord(reservation.request_id, reservation.account, self.model.id,
                             self.outcome.provider or "", usage, cost, now)
        transcript = self.transcript() if self.transcript is not None else None
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + SETTLE_DEADLINE_S
            pause = RETRY_FIRST_S
            settlement: Settlement | None
            while True:
                started = perf_counter()
                try:
                    settlement = await self.ledger.settle(reservation.request_id, cost, record,
                                                          now, transcript)
                except BillingUnavailable:
                    settlement = None
                self.outcome.ledger_s.append(("settle", perf_counter() - started))
                if settlement is None:  # the ledger's service is away: it comes back
                    await trio.sleep(pause)
                    pause = min(pause * 2, RETRY_MAX_S)
                    continue
                self.settled = Settled(usage, settlement.captured, settlement)
                return self.settled
        log.error("settlement of %s missed its deadline; the lease keeper retries it",
                  reservation.request_id)
        self.settled = Settled(usage, min(cost, reservation.hold_micros), None)
        return self.settled

    @property
    def unsettled(self) -> bool:
        """Settlement was tried and missed its deadline: the lease keeper retries it."""
        return self.settled is not None and self.settled.settlement is None
