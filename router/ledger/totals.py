"""`UsageReports.usage_totals`: the one rule for which bucket a usage row is in, and the
pieces every backend shares.

A row is in bucket k when `k * bucket_s <= at - since < (k + 1) * bucket_s`: one exactly
at `since + k * bucket_s` is in bucket k, one before `since` or at or after `since +
bucket_s * buckets` in none. `at - since` is the float subtraction every backend does
alike (IEEE doubles in Python, SQLite, PostgreSQL and Lua), exact for the times of any
real window (Sterbenz: two unix times of one day are within a factor of two of each
other); `k * bucket_s` is an integer below 2**52 (`check`), exact too.

`at - since` only grows with `at`, so each bucket is a plain range of `at`:
`edges(...)[k] <= at < edges(...)[k + 1]`, where an edge is the least float time whose
difference reaches the bucket's start (found next to `since + k * bucket_s`, which may
have rounded). The backends read those ranges off an index on `at`, with no slack and
no filter. Where a backend numbers a row's bucket instead (PostgreSQL, Redis), it takes
`floor((at - since) / bucket_s)` in floats, which is exact as well: when `k * bucket_s`
is a float, the float just below it divided by `bucket_s` lies more than half a float
spacing below k, so rounding never lifts a quotient to k (nor drops one from it).
tests/unit/test_usage_totals.py checks every backend against `Fraction` arithmetic, a
float either side of boundaries included.

Sums are integers from end to end: SQL sums of integer columns read back as `int`, and
Redis's partial sums (Lua numbers, exact below 2**53) added up here (`added_up`).
"""

from __future__ import annotations

import math
from typing import Iterable

from router.ledger.base import UsageTotal

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


def edge(since: float, offset: int) -> float:
    """The least float `at` with `at - since >= offset` (in floats): where a bucket
    starting `offset` seconds after `since` starts."""
    since = float(since)
    at = since + offset  # within a float or two of the edge
    while at - since < offset:
        at = math.nextafter(at, math.inf)
    while math.nextafter(at, -math.inf) - since >= offset:
        at = math.nextafter(at, -math.inf)
    return at


def edges(since: float, bucket_s: int, buckets: int) -> list[float]:
    """The `buckets + 1` edges of the window: bucket k is `edges[k] <= at < edges[k+1]`
    (`edges[0]` is `since`)."""
    return [edge(since, k * bucket_s) for k in range(buckets + 1)]


def added_up(parts: Iterable[Part]) -> list[UsageTotal]:
    """Partial totals (several may share a bucket and model) as one total each."""
    sums: dict[tuple[int, str], list[int]] = {}
    for bucket, model, *figures in parts:
        into = sums.setdefault((bucket, model), [0, 0, 0, 0, 0])
        for i, figure in enumerate(figures):
            into[i] += figure
    return [UsageTotal(bucket, model, *figures) for (bucket, model), figures in sums.items()]
