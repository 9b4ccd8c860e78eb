"""A provider's credential pool: which key the next call uses, and which keys rest.

Strategies (docs/configuration.md): `round_robin` takes the usable keys in turn, `priority` always the
first usable one in the configured order (the rest are spares), `least_used` the one with
the fewest calls in flight (then the fewest calls overall). A key that gets a 429 cools
down for the provider's `retry-after` (or `DEFAULT_COOLDOWN_S`); one that gets a 401 is
marked bad and skipped while any other key is usable. When every key is bad they are
still tried (a provider-side auth outage must not need a restart), and a bad key that
is accepted again is good again. Keys never leave this module except
into the provider's auth header: `describe` shows an index and a short prefix.

Pure: the caller passes the time (trio's clock), so tests run it with `autojump_clock`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_COOLDOWN_S = 30.0
MAX_COOLDOWN_S = 3600.0
PREFIX_CHARS = 6


@dataclass(eq=False)
class Credential:
    index: int
    key: str = field(repr=False)
    in_flight: int = 0
    uses: int = 0
    cooldown_until: float = 0.0
    bad: str | None = None  # why it was marked bad

    def usable(self, now: float) -> bool:
        return self.bad is None and now >= self.cooldown_until

    @property
    def prefix(self) -> str:
        return self.key[:PREFIX_CHARS] + "…" if len(self.key) > 2 * PREFIX_CHARS else "…"


def parse_retry_after(value: str | None) -> float:
    """Seconds from a `retry-after` header (seconds form); the default otherwise."""
    try:
        seconds = float(value) if value is not None else DEFAULT_COOLDOWN_S
    except ValueError:
        seconds = DEFAULT_COOLDOWN_S
    return min(max(seconds, 0.0), MAX_COOLDOWN_S)


class CredentialPool:
    def __init__(self, keys: tuple[str, ...], strategy: str = "round_robin") -> None:
        self.credentials = [Credential(i, key) for i, key in enumerate(keys)]
        self.strategy = strategy
        self._turn = 0

    def __len__(self) -> int:
        return len(self.credentials)

    def pick(self, now: float) -> Credential | None:
        """The credential for the next call (counted in flight), or None if all rest."""
        usable = [c for c in self.credentials if c.usable(now)] or [
            c for c in self.credentials if now >= c.cooldown_until]  # all bad: last resort
        if not usable:
            return None
        if self.strategy == "priority":
            chosen = usable[0]
        elif self.strategy == "least_used":
            chosen = min(usable, key=lambda c: (c.in_flight, c.uses, c.index))
        else:
            chosen = usable[self._turn % len(usable)]
            self._turn += 1
        chosen.in_flight += 1
        chosen.uses += 1
        return chosen

    def done(self, credential: Credential) -> None:
        credential.in_flight -= 1

    def rate_limited(self, credential: Credential, now: float, retry_after: str | None) -> None:
        credential.cooldown_until = now + parse_retry_after(retry_after)

    def refused(self, credential: Credential, status: int) -> None:
        credential.bad = f"the provider answered {status}"

    def accepted(self, credential: Credential) -> None:
        credential.bad = None

    def next_usable_in(self, now: float) -> float:
        """Seconds until a resting key is usable again."""
        return max(min(c.cooldown_until for c in self.credentials) - now, 0.0)

    def describe(self, now: float) -> list[dict[str, object]]:
        return [{"index": c.index, "prefix": c.prefix,
                 "state": "bad" if c.bad else "cooling_down" if not c.usable(now) else "ok",
                 "reason": c.bad,
                 "cooldown_s": round(max(c.cooldown_until - now, 0.0), 1),
                 "in_flight": c.in_flight, "uses": c.uses} for c in self.credentials]
