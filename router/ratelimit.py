"""Requests per minute, per account and per key: a sliding window, local to this process.

Each identity keeps two counters: the current 60 s window and the previous one. The
rate seen at time t is `current + previous * (the share of the previous window still
inside the last 60 s)`, the sliding-window counter of Cloudflare and nginx: O(1) memory
per identity and within a few percent of an exact log. A request that would take the
rate to the limit is refused with the seconds until it would fit (`retry-after`).

Pure: the caller passes the time. Limits are per process for now; a shared Redis
window comes with the Redis backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW_S = 60.0
MAX_IDENTITIES = 200_000  # oldest windows are dropped past this (bounded memory)


@dataclass(slots=True)
class _Window:
    start: float
    current: int = 0
    previous: int = 0


class RateLimiter:
    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

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
        weight = 1.0 - (now - window.start) / WINDOW_S
        rate = window.current + window.previous * weight
        if rate + 1 <= limit:
            window.current += 1
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
