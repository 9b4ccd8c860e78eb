"""The external credit service backend (`BILLING_BACKEND=http`, docs/integration.md):
balances at the service, everything else (holds that survive crashes, usage, keys,
Idempotency-Key claims, the outbox) in the SQLite ledger under DATA_DIR."""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.errors import ConfigError
from router.ledger.http.client import CreditService, CreditServiceDown
from router.ledger.http.ledger import HttpBillingLedger
from router.ledger.sqlite.mirror import SqliteMirror
from router.ledger.stores import Stores

if TYPE_CHECKING:
    from router.config import Config


def open(config: "Config", local: Stores) -> Stores:  # noqa: A001 - the backend's entry point
    """Wrap the local SQLite stores: the service decides the holds."""
    if not config.z_billing_url:
        raise ConfigError("BILLING_BACKEND=http needs Z_BILLING_URL (the credit service)")
    try:
        service = CreditService(config.z_billing_url, config.z_billing_api_key,
                                timeout_s=config.z_billing_timeout_s)
    except ValueError:
        raise ConfigError("Z_BILLING_URL must be an http(s) URL") from None
    db = local.billing.db  # type: ignore[attr-defined]
    ledger = HttpBillingLedger(local.billing, SqliteMirror(db),  # type: ignore[arg-type]
                               service, config.z_billing_mode)
    local.backend = "http"
    local.billing = ledger
    local.accounts = ledger
    local.reports = ledger
    local.ping = ledger.ping
    local.where = f"{service.where} ({config.z_billing_mode}; local records in {db.path})"
    local.details["credit_service"] = service
    return local


__all__ = ["CreditService", "CreditServiceDown", "HttpBillingLedger", "open"]
