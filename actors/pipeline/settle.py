"""Stage 4, settle: capture what was used, release the rest, exactly once.

Runs whatever happened before (success, provider error, client gone, cancel), shielded
from cancellation with a deadline of its own. The provider's reported usage is the
truth; without it, output is counted from what was streamed and input estimated from
the request (SPEC §4.4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from actors.pipeline.reserve import Reservation
from router.catalog import ModelSpec
from router.ledger.base import Ledger, Settlement, UsageRecord
from router.protocols.api import ClientRequest, Meter
from router.usage import Usage

SETTLE_DEADLINE_S = 30.0
log = logging.getLogger("aura.settle")


@dataclass(frozen=True, slots=True)
class Settled:
    """What a request was billed, for transports that report it (websocket `done`)."""

    usage: Usage
    cost_micros: int
    settlement: Settlement | None  # None: the ledger missed the deadline (swept later)


async def settle(ledger: Ledger, reservation: Reservation, request: ClientRequest,
                 model: ModelSpec, meter: Meter, provider: str | None, *,
                 now: float) -> Settled:
    usage = meter.usage(request.size.input_estimate(model.per_image_tokens))
    cost = model.prices.cost_micros(usage)
    if cost > reservation.hold_micros:
        log.warning("request %s cost %d micro-USD over its hold of %d; capturing the hold",
                    reservation.request_id, cost, reservation.hold_micros)
    record = UsageRecord(reservation.request_id, reservation.account, model.id,
                         provider or "", usage, cost, now)
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + SETTLE_DEADLINE_S
        settlement = await ledger.settle(reservation.request_id, cost, record, now)
        return Settled(usage, settlement.captured, settlement)
    log.error("settlement of %s missed its deadline; the sweeper will settle it",
              reservation.request_id)
    return Settled(usage, min(cost, reservation.hold_micros), None)
