"""A provider's credential pool: which key the next call uses, and which keys rest.

Strategies (docs/configuration.md): `round_robin` takes the usable keys in turn, `priority` always the
first usable one in the configured order (the rest are spares), `least_used` the one with
the fewest calls in flight (then the fewest calls overall). A key that gets a 429 cools
down for the provider's `retry-after` (or `DEFAULT_COOLDOWN_S`); one that gets a 401 is
marked bad and skipped while any other key is usable. When every key is bad they are
still tried (a provider-side auth outage must not need a restart), and a bad key that
is accepted again is good again. Keys never leave this module except
into the provider's auth header: `describe` shows an index and a short prefix.

A key is an API key (a plain `str`) or an `OAuthToken` (a Claude Code login, kept in sync
with its credentials file by `actors.services.credential_files` through `sync_accounts`):
the kind's adapter signs each the way its provider expects, and an OAuth token past its
expiry is never picked.

Pure: the caller passes the time (trio's clock), so tests run it with `autojump_clock`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

DEFAULT_COOLDOWN_S = 30.0
MAX_COOLDOWN_S = 3600.0
PREFIX_CHARS = 6


class OAuthToken(str):
    """A credential that is an OAuth access token, not an API key (the type is the tag:
    `isinstance` on the hot path, nothing else to carry)."""

    __slots__ = ()


@dataclass(eq=False)
class Credential:
    index: int
    key: str = field(repr=False)
    in_flight: int = 0
    uses: int = 0
    cooldown_until: float = 0.0
    bad: str | None = None  # why it was marked bad
    account: str | None = None  # an OAuth login: where it was read (for display)
    expires: float = math.inf  # the pool's clock: never picked from then on
    expires_at: float | None = None  # the same instant, unix seconds (for display)

    def usable(self, now: float) -> bool:
        return self.bad is None and self.cooldown_until <= now < self.expires

    @property
    def oauth(self) -> bool:
        return isinstance(self.key, OAuthToken)

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
        # An empty pool sends no credential (a keyless local server), unless it stands for
        # OAuth logins: then no usable login means no call.
        self.required = False

    def __len__(self) -> int:
        return len(self.credentials)

    def pick(self, now: float) -> Credential | None:
        """The credential for the next call (counted in flight), or None if all rest."""
        usable = [c for c in self.credentials if c.usable(now)] or [
            c for c in self.credentials if c.cooldown_until <= now < c.expires]  # all bad
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
        """Seconds until a resting key is usable again (expired ones never are: the
        default cooldown, for a login refreshed meanwhile)."""
        resting = [c.cooldown_until for c in self.credentials if now < c.expires]
        return max(min(resting) - now, 0.0) if resting else DEFAULT_COOLDOWN_S

    def unusable_reason(self, now: float) -> str:
        """Why `pick` found nothing (for the caller's error)."""
        if not self.credentials:
            return "the provider has no credential (no OAuth login found)"
        if all(now >= c.expires for c in self.credentials):
            return "every credential of the provider has expired (an OAuth login is " \
                   "refreshed when its owner next runs Claude Code)"
        return "every credential of the provider is resting after rate limits"

    def sync_accounts(self, accounts: Iterable[tuple[str, OAuthToken, float, float | None]]
                      ) -> None:
        """Make the pool's OAuth tokens `accounts`: (account, token, expires on the pool's
        clock, expires_at in unix seconds) each. An account seen before keeps its
        cooldown and counters (a 429 is about the account, not the token); a new token
        is no longer bad. API keys stay as they are, first."""
        before = {c.account: c for c in self.credentials if c.oauth}
        kept = [c for c in self.credentials if not c.oauth]
        for account, token, expires, expires_at in accounts:
            credential = before.pop(account, None) or Credential(0, token, account=account)
            if credential.key != token:
                credential.key, credential.bad = token, None
            credential.expires, credential.expires_at = expires, expires_at
            kept.append(credential)
        for index, credential in enumerate(kept):
            credential.index = index
        self.credentials = kept
        self.required = True

    def describe(self, now: float) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for c in self.credentials:
            shown: dict[str, object] = {
                "index": c.index, "prefix": c.prefix, "kind": "oauth" if c.oauth else "api_key",
                "state": "expired" if now >= c.expires else "bad" if c.bad
                else "cooling_down" if not c.usable(now) else "ok",
                "reason": c.bad, "cooldown_s": round(max(c.cooldown_until - now, 0.0), 1),
                "in_flight": c.in_flight, "uses": c.uses}
            if c.oauth:
                shown.update(account=c.account, expires_at=c.expires_at,
                             expires_in_s=round(c.expires - now, 1)
                             if c.expires != math.inf else None)
            out.append(shown)
        return out
