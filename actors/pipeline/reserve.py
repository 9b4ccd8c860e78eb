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
from router.errors import InsufficientCredits, RateLimited
from router.ledger.base import InsufficientFunds, Ledger, SpendCapReached
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


def cap_reached(needed: int, remaining: int) -> RateLimited:
    """429 that retrying cannot fix (SPEC §8): the key has spent what it may."""
    return RateLimited(f"this key's spend cap is reached: the request needs a hold of "
                       f"{needed} micro-USD and {max(remaining, 0)} micro-USD is left under "
                       "the cap", retryable=False)


async def reserve(ledger: Ledger, principal: Principal, request: ClientRequest,
                  model: ModelSpec, request_id: str, *, now: float,
                  hold_ttl_s: float) -> Reservation:
    input_bound = request.size.input_bound(model.per_image_tokens)
    cap = principal.spend_cap_micros if principal.key_id else None
    if request.max_output is not None:
        max_output = min(request.max_output, model.max_output_tokens)
    else:
        available = (await ledger.account(principal.account)).available
        cap_left = (cap - await ledger.key_spent(principal.key_id or "")
                    if cap is not None else available)
        affordable = model.prices.affordable_output_tokens(min(available, cap_left),
                                                           input_bound)
        max_output = min(model.max_output_tokens, affordable)
        if max_output < 1:
            needed = model.prices.bound_micros(input_bound, 1)
            if cap_left < available:
                raise cap_reached(needed, cap_left)
            raise refuse(needed, available)
    amount = model.prices.bound_micros(input_bound, max_output)
    try:
        await ledger.hold(principal.account, request_id, amount, now + hold_ttl_s, now,
                          key_id=principal.key_id, key_cap=cap)
    except InsufficientFunds as exc:
        raise refuse(exc.needed, exc.available) from None
    except SpendCapReached as exc:
        raise cap_reached(exc.needed, exc.remaining) from None
    return Reservation(request_id, principal.account, amount, max_output, input_bound)
