"""Who is calling: the account a request is billed to, and the limits it carries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    account: str
    key_id: str | None = None  # None for JWT and service callers
    allowed_models: frozenset[str] | None = None  # None: every model
    rpm: int | None = None
    spend_cap_micros: int | None = None
    via: str = "key"  # key | jwt | service

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models
