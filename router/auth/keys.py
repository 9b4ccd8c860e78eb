"""Router API keys: `ar_sk_` + 43 url-safe random characters, stored only as a hash.

The keys carry 256 bits of entropy, so one SHA-256 is the right hash (as for GitHub or
Stripe tokens): a slow password hash would add milliseconds to every request for no
gain. The key is shown once, at issue; afterwards only its id and prefix are.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX = "ar_sk_"
MIN_RANDOM_CHARS = 32
SHOWN_PREFIX_CHARS = len(PREFIX) + 6


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(credential: str) -> bool:
    return credential.startswith(PREFIX) and len(credential) >= len(PREFIX) + MIN_RANDOM_CHARS


def shown_prefix(key: str) -> str:
    return key[:SHOWN_PREFIX_CHARS]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    account: str
    prefix: str
    label: str | None
    models: tuple[str, ...] | None
    rpm: int | None
    spend_cap_micros: int | None
    expires_at: float | None
    revoked_at: float | None
    created_at: float

    def usable_at(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, object]:
        return {"id": self.id, "account": self.account, "prefix": self.prefix,
                "label": self.label, "models": list(self.models) if self.models else None,
                "rpm": self.rpm, "spend_cap_micros": self.spend_cap_micros,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at,
                "created_at": self.created_at}
