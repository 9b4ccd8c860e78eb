"""A provider's circuit breaker: stop sending traffic to a provider that keeps failing.

A pure state machine; the caller passes the time (trio's clock in the pipeline, so tests
run it with `autojump_clock`). Closed: every call goes through; `failure_threshold`
consecutive failures open it. Open: calls are refused (the route moves on to its next
target at once) until `cooldown_s` has passed; then it is half-open and lets exactly one
probe through. The probe's success closes it; its failure opens it again for another
cooldown. Only the provider's own sickness counts (unreachable, timeouts, 5xx), not
answers about the request (4xx) or a credential's rate limit (429: that credential
cools down instead, see `credentials.py`).
"""

from __future__ import annotations

from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    __slots__ = ("failure_threshold", "cooldown_s", "state", "failures", "opened_at",
                 "probing", "opened_count")

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.state: State = "closed"
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.probing = False  # a half-open probe is in flight
        self.opened_count = 0

    def allow(self, now: float) -> bool:
        """May a call go to this provider now? (A True in half-open is the probe.)"""
        if self.state == "closed":
            return True
        if self.state == "open":
            if now - self.opened_at < self.cooldown_s:
                return False
            self.state = "half_open"
        if self.probing:
            return False
        self.probing = True
        return True

    def record_success(self) -> None:
        self.state, self.failures, self.probing = "closed", 0, False

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            if self.state != "open":
                self.opened_count += 1
            self.state, self.opened_at, self.probing = "open", now, False

    def release(self) -> None:
        """A call that ended without a verdict (cancelled by its client): a half-open
        breaker may probe again."""
        self.probing = False

    def describe(self, now: float) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state, "consecutive_failures": self.failures,
                                  "times_opened": self.opened_count}
        if self.state == "open":
            out["retry_in_s"] = round(max(self.cooldown_s - (now - self.opened_at), 0.0), 1)
        return out
