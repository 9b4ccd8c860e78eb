"""`UsageReports.usage_totals`: the one rule for which bucket a usage row is in, and the
pieces every backend shares.

A row is in bucket k when `k * bucket_s <= at - since < (k + 1) * bucket_s`. `at -
since` is a float subtraction, exact for any two times of a window (Sterbenz: they are
within a factor of two of each other), and `k * bucket_s` is an integer a float holds
exactly, so the comparison is exact: no division decides a boundary, and a row exactly
at `since + k * bucket_s` is in bucket k (floor((at - since) / bucket_s) in exact
arithmetic). A row before `since`, or at or after `since + bucket_s * buckets`, is in
none.

The backends read an index on `at` between loose bounds (`scan_bounds`: a second wider
on each side than the float sums `since + k * bucket_s`, which are within half a second
of the exact ones for any time below 2**52 s) and keep the rows the exact comparison
admits. Sums are integers from end to end: SQL sums of integer columns read back as
`int`, and Redis's partial sums (Lua numbers, exact below 2**53) added up here.
"""

from __future__ import annotations

import math
from typing import Iterable

from router.ledger.base import UsageTotal

SLACK_S = 1.0  # how much wider than the float bucket bounds an index range is read

# (bucket, model, calls, billed, cost_micros, input_tokens, output_tokens)
Part = tuple[int, str, int, int, int, int, int]


def check(since: float, bucket_s: int, buckets: int) -> None:
    """Refuse a window no bucket rule can be exact for (a caller's mistake)."""
    if not isinstance(since, (int, float)) or isinstance(since, bool) \
            or not math.isfinite(since):
        raise ValueError(f"since must be a finite number of seconds, not {since!r}")
    for name, value, least in (("bucket_s", bucket_s, 1), ("buckets", buckets, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, not {value!r}")
    if abs(since) + bucket_s * buckets >= 2**52:
        raise ValueError("the window is beyond the times a float holds to the second")


def scan_bounds(since: float, bucket_s: int, first: int, end: int) -> tuple[float, float]:
    """Inclusive bounds on `at` that hold every row of buckets `first` .. `end - 1`
    (and a few rows beside them, which the exact comparison then leaves out)."""
    return since + first * bucket_s - SLACK_S, since + end * bucket_s + SLACK_S


def added_up(parts: Iterable[Part]) -> list[UsageTotal]:
    """Partial totals (several may share a bucket and model) as one total each."""
    sums: dict[tuple[int, str], list[int]] = {}
    for bucket, model, *figures in parts:
        into = sums.setdefault((bucket, model), [0, 0, 0, 0, 0])
        for i, figure in enumerate(figures):
            into[i] += figure
    return [UsageTotal(bucket, model, *figures) for (bucket, model), figures in sums.items()]
