"""Stage 2, reserve: hold the worst case before the provider is called (SPEC §4.3).

The hold covers the input bound (bytes of the text parts, images at the model's
per-image maximum) at the dearest input price plus the output limit at the output
price. A request without an output limit gets the model's maximum or what `available`
affords, whichever is smaller. The ledger checks and holds in one atomic step.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.auth.principal import Principal
from router.catalog import ModelSpec
from router.errors import InsufficientCredits
from router.ledger.base import InsufficientFunds, Ledger
from router.protocols.api import ClientRequest


@dataclass(frozen=True, slots=True)
class Reservation:
    request_id: str
    account: str
    hold_micros: int
    max_output: int
    input_bound: int


def _usd(micros: int) -> str:
    return f"${micros // 1_000_000}.{micros % 1_000_000:06d}"


def refuse(needed: int, available: int) -> InsufficientCredits:
    return InsufficientCredits(
        f"insufficient credits: this request needs a hold of {needed} micro-USD "
        f"({_usd(needed)}) and {max(available, 0)} micro-USD ({_usd(max(available, 0))}) "
        "is available")


async def reserve(ledger: Ledger, principal: Principal, request: ClientRequest,
                  model: ModelSpec, request_id: str, *, now: float,
                  hold_ttl_s: float) -> Reservation:
    input_bound = request.size.input_bound(model.per_image_tokens)
    if request.max_output is not None:
        max_output = min(request.max_output, model.max_output_tokens)
    else:
        available = (await ledger.account(principal.account)).available
        affordable = model.prices.affordable_output_tokens(available, input_bound)
        max_output = min(model.max_output_tokens, affordable)
        if max_output < 1:
            raise refuse(model.prices.bound_micros(input_bound, 1), available)
    amount = model.prices.bound_micros(input_bound, max_output)
    try:
        await ledger.hold(principal.account, request_id, amount, now + hold_ttl_s, now)
    except InsufficientFunds as exc:
        raise refuse(exc.needed, exc.available) from None
    return Reservation(request_id, principal.account, amount, max_output, input_bound)
