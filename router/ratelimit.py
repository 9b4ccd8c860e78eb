"""Requests per minute, per account and per key: a sliding window, local to this process.

Each identity keeps two counters: the current 60 s window and the previous one. The
rate seen at time t is `current + previous * (the share of the previous window still
inside the last 60 s)`, the sliding-window counter of Cloudflare and nginx: O(1) memory
per identity and within a few percent of an exact log. A request that would take the
rate to the limit is refused with the seconds until it would fit (`retry-after`).

A request is counted against all of its limits (its account's and its key's) or none:
`check_all` refuses it if any limit is reached, and then counts nothing. A `Limiter` is
what the pipeline calls: `RateLimiter` here (pure, per process: each instance has its
own windows) or `router.shared.ratelimit.SharedRateLimiter` (one window per identity in
Redis, for every instance, when `REDIS_URL` is set). Both answer alike.

Pure: the caller passes the time (`admit` reads the clock it was given).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

WINDOW_S = 60.0
MAX_IDENTITIES = 200_000  # oldest windows are dropped past this (bounded memory)


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit a request must pass: `per_minute` requests for `identity`."""

    identity: str  # "account:<id>", "key:<id>"
    per_minute: int
    whose: str  # what the client is told is limited: "account", "key"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The limit that refused a request, and the seconds until it would be admitted."""

    limit: Limit
    wait_s: float


class Limiter(Protocol):
    async def admit(self, limits: Sequence[Limit]) -> Refusal | None:
        """Count one request against every limit in `limits`, or against none of them:
        None if each has room; else the refusal that waits longest. Raises
        `router.errors.BillingUnavailable` when it cannot tell."""
        ...


@dataclass(slots=True)
class _Window:
    start: float
    current: int = 0
    previous: int = 0


class RateLimiter:
    """This process's windows (a `Limiter` for one instance)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._windows: dict[str, _Window] = {}
        self.clock = clock

    async def admit(self, limits: Sequence[Limit]) -> Refusal | None:
        return self.check_all(limits, self.clock())

    def _window(self, identity: str, now: float) -> _Window:
        window = self._windows.get(identity)
        if window is None:
            if len(self._windows) >= MAX_IDENTITIES:
                for stale in [k for k, w in self._windows.items()
                              if now - w.start >= 2 * WINDOW_S]:
                    del self._windows[stale]
            window = self._windows[identity] = _Window(now - now % WINDOW_S)
        elapsed = now - window.start
        if elapsed >= WINDOW_S:
            windows_passed = int(elapsed // WINDOW_S)
            window.previous = window.current if windows_passed == 1 else 0
            window.current = 0
            window.start += windows_passed * WINDOW_S
        return window

    def check(self, identity: str, limit: int, now: float) -> float | None:
        """Count a request; None if it is within `limit` per minute, else the seconds to
        wait (the request is not counted then)."""
        window = self._window(identity, now)
        wait = self._wait(window, limit, now)
        if wait is None:
            window.current += 1
        return wait

    def check_all(self, limits: Sequence[Limit], now: float) -> Refusal | None:
        """`check` for several limits at once: all counted, or none (see `Limiter`)."""
        worst: Refusal | None = None
        windows = []
        for limit in limits:
            window = self._window(limit.identity, now)
            windows.append(window)
            wait = self._wait(window, limit.per_minute, now)
            if wait is not None and (worst is None or wait > worst.wait_s):
                worst = Refusal(limit, wait)
        if worst is None:
            for window in windows:
                window.current += 1
        return worst

    @staticmethod
    def _wait(window: _Window, limit: int, now: float) -> float | None:
        """None if one more request fits in `window`, else the seconds until it would."""
        weight = 1.0 - (now - window.start) / WINDOW_S
        rate = window.current + window.previous * weight
        if rate + 1 <= limit:
            return None
        # When will the previous window's share have shrunk enough (or the window roll)?
        excess = rate + 1 - limit
        if window.previous and excess <= window.previous * weight:
            wait = excess / window.previous * WINDOW_S
        else:  # after this window ends, this window's count slides out in turn
            wait = WINDOW_S - (now - window.start) + max(
                0.0, WINDOW_S * (1 - (limit - 1) / window.current)) if window.current else \
                WINDOW_S - (now - window.start)
        return max(wait, 0.001)


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
