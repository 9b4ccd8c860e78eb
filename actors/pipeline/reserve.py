"""Stage 2, reserve: hold the worst case before the provider is called (docs/billing.md).

The hold covers the input bound (bytes of the text parts, images at the model's
per-image maximum) at the dearest input price plus the output limit at the output
price, times the choices asked for (`n`). The limit is the client's (at most the
model's maximum); without one, the model's maximum or what `available` affords,
whichever is smaller. A client limit the account cannot afford is lowered to what it
can (`HOLD_POLICY=affordable`, the default) provided `MIN_OUTPUT_TOKENS` fit, or refused
(`strict`). The ledger checks and holds in one atomic step; the limit found here is the
one the stream stage enforces. Each ledger round trip's time is appended to the caller's
`ledger_s` (`aura_ledger_seconds{op}`), refused holds included.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

import trio

from router.auth.principal import Principal
from router.catalog import ModelSpec
from router.errors import InsufficientCredits, InsufficientFunds, RateLimited, SpendCapReached
from router.ledger.base import BillingLedger
from router.protocols.api import ClientRequest


@dataclass(frozen=True, slots=True)
class Reservation:
    request_id: str
    account: str
    hold_micros: int
    max_output: int  # the enforced output limit, per choice
    input_bound: int
    choices: int = 1
    lowered: bool = False  # the router chose the limit (the client's was absent or too dear)


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    affordable: bool = True  # lower an unaffordable client limit instead of refusing
    min_output_tokens: int = 256
    hold_ttl_s: float = 3600.0
    owner: str | None = None  # the instance that takes the holds (its lease covers them)


def _usd(micros: int) -> str:
    return f"${micros // 1_000_000}.{micros % 1_000_000:06d}"


def refuse(needed: int, available: int) -> InsufficientCredits:
    return InsufficientCredits(
        f"insufficient credits: this request needs a hold of {needed} micro-USD "
        f"({_usd(needed)}) and {max(available, 0)} micro-USD ({_usd(max(available, 0))}) "
        "is available")


def cap_reached(needed: int, remaining: int) -> RateLimited:
    """429 that retrying cannot fix (x-should-retry: false): the key has spent what it may."""
    return RateLimited(f"this key's spend cap is reached: the request needs a hold of "
                       f"{needed} micro-USD and {max(remaining, 0)} micro-USD is left under "
                       "the cap", retryable=False)


def _refusal(exc: InsufficientFunds | SpendCapReached, needed: int
             ) -> InsufficientCredits | RateLimited:
    if isinstance(exc, SpendCapReached):
        return cap_reached(needed, exc.remaining)
    return refuse(needed, exc.available)


LedgerTimes = list[tuple[str, float]]  # (op, seconds) per round trip


async def _hold(ledger: BillingLedger, principal: Principal, request_id: str, amount: int,
                cap: int | None, model: ModelSpec, now: float, policy: HoldPolicy,
                ledger_s: LedgerTimes) -> int:
    # Shielded: a hold the ledger wrote must reach the caller, which settles it, even if
    # the client hangs up while the answer travels back (a network ledger); each
    # backend bounds its own call.
    with trio.CancelScope(shield=True):
        started = perf_counter()
        try:
            await ledger.hold(principal.account, request_id, amount, now + policy.hold_ttl_s,
                              now, key_id=principal.key_id, key_cap=cap, owner=policy.owner,
                              model=model.id)
        finally:
            ledger_s.append(("hold", perf_counter() - started))
    return amount


async def reserve(ledger: BillingLedger, principal: Principal, request: ClientRequest,
                  model: ModelSpec, request_id: str, *, now: float,
                  policy: HoldPolicy, ledger_s: LedgerTimes | None = None) -> Reservation:
    ledger_s = [] if ledger_s is None else ledger_s
    input_bound = request.size.input_bound(model.per_image_tokens)
    choices = request.choices
    prices = model.prices
    cap = principal.spend_cap_micros if principal.key_id else None
    wanted = min(request.max_output or model.max_output_tokens, model.max_output_tokens)
    # The smallest limit worth lowering a client's limit to: the policy's minimum, or less
    # if that is all the client (or the model) wants. Without a client limit, any.
    floor = min(policy.min_output_tokens, wanted) \
        if policy.affordable and request.max_output is not None else 1
    lowerable = request.max_output is None or policy.affordable
    max_output = wanted
    if request.max_output is None:  # the router sets the limit: what available affords
        started = perf_counter()
        available = (await ledger.account(principal.account)).available
        ledger_s.append(("account", perf_counter() - started))
        cap_left = available
        if cap is not None:
            started = perf_counter()
            cap_left = cap - await ledger.key_spent(principal.key_id or "")
            ledger_s.append(("key_spent", perf_counter() - started))
        max_output = min(wanted, prices.affordable_output_tokens(
            min(available, cap_left), input_bound) // choices)
        if max_output < floor:
            needed = prices.bound_micros(input_bound, floor * choices)
            if cap_left < available:
                raise cap_reached(needed, cap_left)
            raise refuse(needed, available)
    try:
        amount = await _hold(ledger, principal, request_id,
                             prices.bound_micros(input_bound, max_output * choices), cap,
                             model, now, policy, ledger_s)
    except (InsufficientFunds, SpendCapReached) as exc:
        # Too dear (or the balance moved since it was read): lower once to what is left.
        left = exc.available if isinstance(exc, InsufficientFunds) else exc.remaining
        lowered = min(wanted, prices.affordable_output_tokens(left, input_bound) // choices) \
            if lowerable else 0
        if lowered < floor or lowered >= max_output:
            raise _refusal(exc, exc.needed if not lowerable
                           else prices.bound_micros(input_bound, floor * choices)) from None
        max_output = lowered
        try:
            amount = await _hold(ledger, principal, request_id,
                                 prices.bound_micros(input_bound, max_output * choices), cap,
                                 model, now, policy, ledger_s)
        except (InsufficientFunds, SpendCapReached) as again:
            raise _refusal(again, again.needed) from None
    return Reservation(request_id, principal.account, amount, max_output, input_bound,
                       choices, lowered=max_output != request.max_output)
