"""Prices and cost: decimal USD per million tokens in, integer micro-USD out.

A request's cost is computed exactly in Decimal and rounded up to the next micro-USD
once per request (docs/billing.md). USD per million tokens times tokens is exactly micro-USD,
so no scaling step can lose precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from router.errors import PriceError
from router.usage import Usage


def parse_price(value: object, field: str) -> Decimal:
    """A price from config: a decimal string (or int); floats are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise PriceError(f"{field} must be a decimal string such as \"0.15\", not a float")
    if not isinstance(value, (str, int)):
        raise PriceError(f"{field} must be a decimal string such as \"0.15\"")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise PriceError(f"{field} is not a decimal number: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise PriceError(f"{field} must be a finite, non-negative number")
    return price


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    # The four prices as integers over one common denominator (exact: a decimal is a
    # ratio of integers), so that costs are integer arithmetic, exact at any size and
    # cheap enough for every checkpoint of every stream.
    _scaled: tuple[int, int, int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ratios = [price.as_integer_ratio() for price in
                  (self.input, self.output, self.cache_read, self.cache_write)]
        scale = math.lcm(*(den for _, den in ratios))
        scaled = tuple(num * (scale // den) for num, den in ratios)
        object.__setattr__(self, "_scaled", (*scaled, scale))

    def cost_micros(self, usage: Usage) -> int:
        """Exact cost, rounded up to the next micro-USD (once, per request)."""
        inp, out, read, write, scale = self._scaled
        exact = (usage.input_tokens * inp + usage.output_tokens * out
                 + usage.cache_read_tokens * read + usage.cache_write_tokens * write)
        return -(-exact // scale)

    def bound_micros(self, input_tokens: int, output_tokens: int) -> int:
        """The worst case for a hold: every input token at the dearest input rate."""
        inp, out, read, write, scale = self._scaled
        return -(-(input_tokens * max(inp, read, write) + output_tokens * out) // scale)

    def affordable_output_tokens(self, budget_micros: int, input_tokens: int) -> int:
        """How many output tokens `budget_micros` pays for after the input bound."""
        left = budget_micros - self.bound_micros(input_tokens, 0)
        if left <= 0:
            return 0
        out, scale = self._scaled[1], self._scaled[4]
        if out == 0:
            return 1 << 62
        return left * scale // out

    def as_strings(self) -> dict[str, str]:
        return {"input_per_mtok": str(self.input), "output_per_mtok": str(self.output),
                "cache_read_per_mtok": str(self.cache_read),
                "cache_write_per_mtok": str(self.cache_write)}
