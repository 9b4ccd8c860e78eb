"""What the console's overview charts (`GET /admin/activity`, docs/api.md): calls, errors
and spend over the last hour or day, in buckets.

Two sources, each the right one for its figure:
- spend, billed calls (a usage row with a cost above zero) and tokens come from the
  ledger, added up there per bucket and model (`usage_totals`), so they cover every
  worker and instance and survive restarts;
- answered calls and errors (a status of 400 or more: refused, limited, failed upstream)
  come from `ActivityLog`, this process's count per minute of every call it answered
  (fed by a request observer, once per call). A call refused before any hold leaves no
  row in the ledger, so nothing else sees it. With `WORKERS=N` a process counts only its
  own calls: the answer says so (`calls_scope`).

Pure: no I/O; money is integer micro-USD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from router.ledger.base import UsageTotal
from router.ledger.export import iso_utc

KEPT_MINUTES = 24 * 60 + 1


@dataclass(frozen=True)
class Window:
    name: str
    bucket_s: int
    buckets: int


WINDOWS = {"hour": Window("hour", 300, 12), "day": Window("day", 3600, 24)}


class ActivityLog:
    """This process's answered calls and errors per minute, for the last day."""

    def __init__(self) -> None:
        self._minutes: dict[int, list[int]] = {}  # minute -> [calls, 4xx, 5xx]
        self._oldest = 0

    def record(self, status: int, at: float) -> None:
        minute = int(at // 60)
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = [0, 0, 0]
            if minute - self._oldest >= KEPT_MINUTES:
                self._forget_before(minute - KEPT_MINUTES + 1)
        counts[0] += 1
        if 400 <= status < 500:
            counts[1] += 1
        elif status >= 500:
            counts[2] += 1

    def _forget_before(self, minute: int) -> None:
        for old in [m for m in self._minutes if m < minute]:
            del self._minutes[old]
        self._oldest = min(self._minutes, default=minute)

    def between(self, since: float, until: float) -> Iterable[tuple[int, list[int]]]:
        """(minute start in unix seconds, [calls, 4xx, 5xx]) for minutes in the span."""
        first, last = int(since // 60), int(until // 60)
        return ((m * 60, c) for m, c in sorted(self._minutes.items()) if first <= m <= last)


def window_start(window: Window, now: float) -> float:
    """The first bucket's start: the current bucket is the last of `window.buckets`."""
    return (now // window.bucket_s - (window.buckets - 1)) * window.bucket_s


def summarize(window: Window, now: float, totals: list[UsageTotal], calls: ActivityLog,
              calls_scope: str) -> dict[str, Any]:
    """The answer of `GET /admin/activity` from the ledger's totals of the window
    (`usage_totals`, per bucket and model) and this process's call counts."""
    since = window_start(window, now)
    buckets = [{"start": iso_utc(since + i * window.bucket_s), "calls": 0,
                "client_errors": 0, "server_errors": 0, "billed": 0, "cost_micros": 0,
                "input_tokens": 0, "output_tokens": 0} for i in range(window.buckets)]
    by_model: dict[str, dict[str, Any]] = {}
    for total in totals:
        if not 0 <= total.bucket < window.buckets:
            continue
        bucket = buckets[total.bucket]
        bucket["billed"] += total.billed
        bucket["cost_micros"] += total.cost_micros
        bucket["input_tokens"] += total.input_tokens
        bucket["output_tokens"] += total.output_tokens
        model = by_model.setdefault(total.model, {"model": total.model, "billed": 0,
                                                  "cost_micros": 0})
        model["billed"] += total.billed
        model["cost_micros"] += total.cost_micros
    for start, (count, client_errors, server_errors) in calls.between(since, now):
        index = int((start - since) // window.bucket_s)
        if 0 <= index < window.buckets:
            bucket = buckets[index]
            bucket["calls"] += count
            bucket["client_errors"] += client_errors
            bucket["server_errors"] += server_errors
    summed = {name: sum(b[name] for b in buckets)  # type: ignore[misc]
              for name in ("calls", "client_errors", "server_errors", "billed",
                           "cost_micros", "input_tokens", "output_tokens")}
    return {"window": window.name, "bucket_s": window.bucket_s, "since": iso_utc(since),
            "until": iso_utc(now), "buckets": buckets, "totals": summed,
            "by_model": sorted(by_model.values(), key=lambda m: -m["cost_micros"]),
            "calls_scope": calls_scope}
