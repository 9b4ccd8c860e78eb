"""router/pricing.py: exact costs in integer micro-USD, price parsing, hold bounds (docs/billing.md).

Expected values are computed by hand or with Decimal + math.ceil in the test, never by
the code under test.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from router.pricing import PriceError, Prices, parse_price
from router.usage import Usage


def prices(inp: str, out: str, cache_read: str | None = None,
           cache_write: str | None = None) -> Prices:
    return Prices(Decimal(inp), Decimal(out), Decimal(cache_read or inp),
                  Decimal(cache_write or inp))


GPT_4O_MINI = prices("0.15", "0.60", "0.075", "0.15")


# --- cost_micros ---------------------------------------------------------------------------

def test_one_token_at_fifteen_cents_per_mtok_costs_one_micro() -> None:
    # 1 token * $0.15 / 1e6 tokens = 0.15 micro-USD -> rounded up to 1
    assert GPT_4O_MINI.cost_micros(Usage(input_tokens=1)) == 1
    assert GPT_4O_MINI.cost_micros(Usage(output_tokens=1)) == 1


def test_no_tokens_cost_nothing() -> None:
    assert GPT_4O_MINI.cost_micros(Usage()) == 0


def test_rounded_up_once_per_request_not_per_kind() -> None:
    # 7 * 0.15 = 1.05 and 3 * 0.60 = 1.80; ceil(2.85) = 3 (per-kind rounding would give 2 + 2 = 4)
    assert GPT_4O_MINI.cost_micros(Usage(input_tokens=7, output_tokens=3)) == 3
    # 1 * 0.15 + 1 * 0.60 = 0.75 -> 1 (per-kind rounding would give 2)
    assert GPT_4O_MINI.cost_micros(Usage(input_tokens=1, output_tokens=1)) == 1


def test_exact_decimal_no_float_error() -> None:
    # 100 * 0.07 is 7.000000000000001 in floats (ceil 8); exactly 7 micro-USD in decimal.
    p = prices("0.07", "0")
    assert p.cost_micros(Usage(input_tokens=100)) == 7
    # 50 * 1.1 is 55.00000000000001 in floats.
    assert prices("0", "1.1").cost_micros(Usage(output_tokens=50)) == 55


def test_a_million_tokens_cost_the_list_price() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert GPT_4O_MINI.cost_micros(usage) == 150_000 + 600_000


def test_cache_read_and_write_have_their_own_rates() -> None:
    sonnet = prices("3.00", "15.00", "0.30", "3.75")
    # 1000 cache reads * 0.30 = 300; 2000 cache writes * 3.75 = 7500
    assert sonnet.cost_micros(Usage(cache_read_tokens=1000)) == 300
    assert sonnet.cost_micros(Usage(cache_write_tokens=2000)) == 7500
    # everything together: 100*3 + 50*15 + 1000*0.30 + 2000*3.75 = 300 + 750 + 300 + 7500
    full = Usage(input_tokens=100, output_tokens=50, cache_read_tokens=1000,
                 cache_write_tokens=2000)
    assert sonnet.cost_micros(full) == 8850


def test_reasoning_tokens_are_not_billed_twice() -> None:
    # reasoning tokens are already part of output_tokens
    usage = Usage(output_tokens=10, reasoning_tokens=8)
    assert prices("1", "2").cost_micros(usage) == 20


# --- strategies ----------------------------------------------------------------------------

# Prices in USD per Mtok with up to 4 decimal places, between 0 and 200.
price_st = st.integers(0, 2_000_000).map(lambda n: Decimal(n).scaleb(-4))
tokens_st = st.integers(0, 2_000_000)


@st.composite
def realistic_prices(draw: st.DrawFn) -> Prices:
    """Any prices where a cache read is no dearer than input or a cache write (as for every
    real model)."""
    inp, out, write = draw(price_st), draw(price_st), draw(price_st)
    read = Decimal(draw(st.integers(0, int(max(inp, write).scaleb(4))))).scaleb(-4)
    return Prices(inp, out, read, write)


@given(p=st.builds(Prices, price_st, price_st, price_st, price_st),
       i=tokens_st, o=tokens_st, r=tokens_st, w=tokens_st)
def test_cost_matches_exact_decimal_rounded_up(p: Prices, i: int, o: int, r: int, w: int) -> None:
    exact = i * p.input + o * p.output + r * p.cache_read + w * p.cache_write
    cost = p.cost_micros(Usage(i, o, r, w))
    assert isinstance(cost, int)
    assert cost == math.ceil(exact)
    assert cost - 1 < exact <= cost


# --- parse_price ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("0.15", Decimal("0.15")), ("3", Decimal(3)), ("0", Decimal(0)),
    ("15.00", Decimal("15")), ("0.0000001", Decimal("0.0000001")),
    (0, Decimal(0)), (2, Decimal(2)), (1000, Decimal(1000)),
])
def test_parse_price_accepts_decimal_strings_and_ints(value: object, expected: Decimal) -> None:
    parsed = parse_price(value, "input_per_mtok")
    assert isinstance(parsed, Decimal)
    assert parsed == expected


def test_parse_price_keeps_the_exact_decimal() -> None:
    assert parse_price("0.1", "x") * 3 == Decimal("0.3")


@pytest.mark.parametrize("value", [
    0.15, 1.0, 0.0,                                   # floats, never
    True, False,                                      # bools are ints in Python; not prices
    "-0.01", -1, "-5",                                # negative
    "NaN", "nan", "sNaN", "Infinity", "inf", "-Infinity",
    "abc", "", "0.15 USD", "$0.15", "0,15", "1/2", "0x10",
    None, [], {}, ["0.15"],
])
def test_parse_price_refuses_bad_values(value: object) -> None:
    with pytest.raises(PriceError) as info:
        parse_price(value, "output_per_mtok")
    assert "output_per_mtok" in str(info.value)


def test_price_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_price(0.15, "x")


# --- bound_micros (the hold) ---------------------------------------------------------------

def test_bound_covers_input_at_the_dearest_input_rate() -> None:
    # Anthropic: a cache write (3.75) is dearer than plain input (3.00); the hold must assume
    # every input token might be written to the cache.
    sonnet = prices("3.00", "15.00", "0.30", "3.75")
    assert sonnet.bound_micros(1000, 0) == 3750
    assert sonnet.bound_micros(1000, 100) == 3750 + 1500
    assert sonnet.bound_micros(0, 0) == 0


@given(p=realistic_prices(), bound_in=tokens_st, bound_out=tokens_st, data=st.data())
def test_bound_is_never_below_the_cost_of_any_usage_within_it(
        p: Prices, bound_in: int, bound_out: int, data: st.DataObject) -> None:
    inp = data.draw(st.integers(0, bound_in), label="input")
    read = data.draw(st.integers(0, bound_in - inp), label="cache_read")
    write = data.draw(st.integers(0, bound_in - inp - read), label="cache_write")
    out = data.draw(st.integers(0, bound_out), label="output")
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=read,
                  cache_write_tokens=write)
    assert p.cost_micros(usage) <= p.bound_micros(bound_in, bound_out)


def test_bound_covers_cache_reads_priced_above_input() -> None:
    # A config is free to set cache_read_per_mtok above input (nothing refuses it).
    odd = prices("0.10", "1.00", "5.00", "0.20")
    # 1000 cache-read tokens cost 1000 * 5.00 = 5000 micro-USD
    assert odd.cost_micros(Usage(cache_read_tokens=1000)) == 5000
    assert odd.bound_micros(1000, 0) >= 5000


# --- affordable_output_tokens --------------------------------------------------------------

def test_affordable_output_by_hand() -> None:
    p = prices("1", "2")  # 1 micro per input token, 2 per output token
    # 100 micro budget, 10 input tokens (10 micro): 90 left -> 45 output tokens
    assert p.affordable_output_tokens(100, 10) == 45
    assert p.bound_micros(10, 45) == 100


def test_affordable_output_is_zero_when_input_alone_exceeds_budget() -> None:
    p = prices("1", "2")
    assert p.affordable_output_tokens(100, 101) == 0
    assert p.affordable_output_tokens(100, 100) == 0  # nothing left for output
    assert p.affordable_output_tokens(0, 1) == 0
    assert GPT_4O_MINI.affordable_output_tokens(5, 1_000_000) == 0


@given(p=realistic_prices(), budget=st.integers(0, 10**9), inp=tokens_st)
def test_affordable_output_never_exceeds_the_budget(p: Prices, budget: int, inp: int) -> None:
    n = p.affordable_output_tokens(budget, inp)
    assert n >= 0
    if p.bound_micros(inp, 0) >= budget:
        assert n == 0
    if n > 0:
        assert p.bound_micros(inp, n) <= budget
    if n > 0 and p.output > 0:
        # and it is not stingy: one more token would reach (or pass) the budget
        assert p.bound_micros(inp, n + 1) >= budget


@given(budget=st.integers(1, 10**9), inp=st.integers(0, 1000))
def test_affordable_output_when_output_is_free(budget: int, inp: int) -> None:
    p = prices("0.001", "0")
    assume(p.bound_micros(inp, 0) < budget)
    n = p.affordable_output_tokens(budget, inp)
    assert n > 1_000_000
    assert p.bound_micros(inp, n) <= budget
