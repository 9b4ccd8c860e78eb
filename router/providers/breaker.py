"""A provider's circuit breaker: stop sending traffic to a provider that keeps failing.

A pure state machine; the caller passes the time (trio's clock in the pipeline, so tests
run it with `autojump_clock`). Closed: every call goes through; `failure_threshold`
consecutive failures open it. Open: calls are refused (the route moves on to its next
target at once) until `cooldown_s` has passed; then it is half-open and lets exactly one
probe through. The probe's success closes it; its failure opens it again for another
cooldown. Only the provider's own sickness counts (unreachable, timeouts, 5xx), not
answers about the request (4xx) or a credential's rate limit (429: that credential
cools down instead, see `credentials.py`).

Many instances (`REDIS_URL`): a breaker tells `on_verdict` when it opens or closes (its
own verdicts only; a synchronous call that must not block), and `apply_verdict` takes
another instance's verdict without telling anyone, so verdicts do not echo. Only "open"
and "closed" travel: half-open is each instance's own probe.
"""

from __future__ import annotations

from typing import Callable, Literal

State = Literal["closed", "open", "half_open"]
Verdict = Literal["open", "closed"]


class CircuitBreaker:
    __slots__ = ("failure_threshold", "cooldown_s", "state", "failures", "opened_at",
                 "probing", "opened_count", "on_verdict", "shared")

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.state: State = "closed"
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.probing = False  # a half-open probe is in flight
        self.opened_count = 0
        # Told this breaker's own transitions to "open" (with the cooldown) or "closed".
        self.on_verdict: Callable[[Verdict, float], None] | None = None
        self.shared = False  # the current open state is another instance's verdict

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
        changed = self.state != "closed"
        self.state, self.failures, self.probing, self.shared = "closed", 0, False, False
        if changed and self.on_verdict is not None:
            self.on_verdict("closed", 0.0)

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            opened = self.state != "open"
            if opened:
                self.opened_count += 1
            self.state, self.opened_at, self.probing, self.shared = "open", now, False, False
            if opened and self.on_verdict is not None:
                self.on_verdict("open", self.cooldown_s)

    def release(self) -> None:
        """A call that ended without a verdict (cancelled by its client): a half-open
        breaker may probe again."""
        self.probing = False

    def apply_verdict(self, verdict: Verdict, retry_in_s: float, now: float) -> None:
        """Another instance's verdict. "open": refuse calls for `retry_in_s` more
        seconds (a local open that lasts longer is kept); "closed": the provider answered
        that instance's probe, so calls go through again. A probe in flight here still
        reports its own verdict when it ends."""
        if verdict == "open":
            opened_at = now + retry_in_s - self.cooldown_s
            if self.state == "open" and opened_at <= self.opened_at:
                return
            self.state, self.opened_at, self.shared = "open", opened_at, True
        elif self.state != "closed":
            self.state, self.failures, self.shared = "closed", 0, False

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 unless open)."""
        if self.state != "open":
            return 0.0
        return max(self.cooldown_s - (now - self.opened_at), 0.0)

    def describe(self, now: float) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state, "consecutive_failures": self.failures,
                                  "times_opened": self.opened_count}
        if self.state == "open":
            out["retry_in_s"] = round(self.retry_in(now), 1)
            if self.shared:
                out["opened_by"] = "another instance"
        return out
