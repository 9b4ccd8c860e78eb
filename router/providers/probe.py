"""Active health probes: what a provider's last look at its upstream found.

Each provider's supervisor actor (`actors.services.providers`) calls its provider's
`probe()` at start-up and every `PROVIDER_PROBE_S` seconds. A probe is a connect plus,
where the kind has one, a free authenticated read-only call (the kind's adapter names it:
`ProviderAdapter.probe_call`), made once per credential through the provider's own pool,
so a wrong key among several shows, and is set aside exactly as a real 401 would.

`ProbeResult.reason` is a short word from a closed set (`REASONS`, or `bad_status_<n>`),
fit for `/ready`, `/admin/providers` and metrics labels; `detail` is the router's own
words, never a credential or an upstream URL. Pure: no I/O here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CONNECT_FAILED = "connect_failed"
TIMEOUT = "timeout"
AUTH_REFUSED = "auth_refused"
NO_CREDENTIAL = "no_credential"
NOT_RUNNING = "not_running"
ERROR = "error"  # the probe itself failed in a way no other word covers
REASONS = (CONNECT_FAILED, TIMEOUT, AUTH_REFUSED, NO_CREDENTIAL, NOT_RUNNING, ERROR)
# A provider whose last probe ended with one of these is not usable: its upstream cannot
# be reached or will not take any of its credentials. Other failures (a 5xx, a 429) say
# it is unwell, not that every call must fail.
UNUSABLE = frozenset({CONNECT_FAILED, TIMEOUT, AUTH_REFUSED, NO_CREDENTIAL, NOT_RUNNING})


def bad_status(status: int) -> str:
    return f"bad_status_{status}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    checked_at: float  # unix seconds
    latency_ms: int
    reason: str | None = None  # None when ok; else one of REASONS or bad_status_<n>
    detail: str = ""  # the router's own words: what was checked, how many keys refused
    refused: tuple[int, ...] = field(default=())  # indices of credentials refused

    @property
    def usable(self) -> bool:
        return self.ok or self.reason not in UNUSABLE

    def describe(self, now: float) -> dict[str, object]:
        """For `/admin/providers` and `/ready`: state, reason, age."""
        return {"state": "ok" if self.ok else "failed", "reason": self.reason,
                "detail": self.detail, "latency_ms": self.latency_ms,
                "checked_at": round(self.checked_at, 3),
                "age_s": round(max(now - self.checked_at, 0.0), 1),
                "refused_credentials": list(self.refused)}


class Stopwatch:
    """Times one probe (trio's clock is not wall time: `checked_at` is unix seconds)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.at = time.time()

    def result(self, ok: bool, reason: str | None = None, detail: str = "",
               refused: tuple[int, ...] = ()) -> ProbeResult:
        elapsed = int((time.monotonic() - self.started) * 1000)
        return ProbeResult(ok, self.at, elapsed, None if ok else reason, detail, refused)


def pending() -> dict[str, object]:
    """What `/admin/providers` shows before the first probe has finished."""
    return {"state": "pending", "reason": None, "detail": "first probe under way",
            "latency_ms": None, "checked_at": None, "age_s": None, "refused_credentials": []}
