"""The configured ledger backend: one `Stores` for the server, the CLI and the admin API.

`open_stores(config)` is the only place that chooses a backend by name
(`BILLING_BACKEND`); everything else holds the interfaces of `router.ledger.base`. A
backend is one package under `router/ledger/` (`sqlite`, `postgres`, `redis`) whose `open` builds
its `Stores`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from router.errors import ConfigError
from router.ledger.base import (AccountBook, BillingLedger, IdempotencyStore, KeyStore,
                                Outbox, UsageReports)

if TYPE_CHECKING:
    from router.config import Config
    from router.provider_store import ProviderStore

BACKENDS = ("sqlite", "postgres", "redis")
# Backends whose balances live elsewhere (not in the invariant suites over BACKENDS).
EXTERNAL_BACKENDS = ("http",)


@dataclass
class Stores:
    """Every store of one backend, and its upkeep."""

    backend: str
    billing: BillingLedger
    accounts: AccountBook
    reports: UsageReports
    keys: KeyStore
    idempotency: IdempotencyStore
    outbox: Outbox
    where: str  # where the data lives, for `doctor` (never a credential)
    ping: Callable[[], Awaitable[bool]]
    close: Callable[[], None]
    # Periodic upkeep the backend needs (SQLite: move its WAL into the main file), run
    # by a supervised actor every `upkeep_interval_s`.
    upkeep: Callable[[], Awaitable[None]] | None = None
    upkeep_interval_s: float = 1.0
    # What must be open while the stores are used inside one `trio.run` (a network
    # client's connections and the tasks that read them); entered by whoever runs the
    # event loop: the server's root, each CLI command, a test.
    session: Callable[[], AbstractAsyncContextManager[Any]] = nullcontext
    details: dict[str, Any] = field(default_factory=dict)
    # Providers managed at run time (router/provider_store.py), in this backend (with
    # BILLING_BACKEND=http: in the local SQLite file, beside the keys and the outbox).
    provider_store: "ProviderStore | None" = None


def ledger_file(config: "Config") -> "Path | None":
    """The SQLite file this backend keeps under DATA_DIR (`http` keeps its keys and outbox
    there), or None where the ledger is a service. The CLI checks it exists before opening."""
    if config.billing_backend not in ("sqlite", "http"):
        return None
    from router.ledger.sqlite import path_of
    return path_of(config)


def open_stores(config: "Config") -> Stores:
    if config.billing_backend == "sqlite":
        from router.ledger import sqlite
        stores = sqlite.open(config)
        if config.redis_url:
            _claims_in_redis(stores, config)
        return stores
    if config.billing_backend == "postgres":
        from router.ledger import postgres
        return postgres.open(config)
    if config.billing_backend == "redis":
        from router.ledger import redis
        return redis.open(config)
    if config.billing_backend == "http":
        from router.ledger import http, sqlite
        local = sqlite.open(config)
        if config.redis_url:
            _claims_in_redis(local, config)
        return http.open(config, local)
    raise ConfigError(f"BILLING_BACKEND={config.billing_backend!r} is not available in this "
                      f"build; use one of {', '.join(BACKENDS + EXTERNAL_BACKENDS)}")


def _claims_in_redis(stores: Stores, config: "Config") -> None:
    """With REDIS_URL set, Idempotency-Key claims live in Redis, so that a key replayed on
    another machine's instance is billed once. (The PostgreSQL backend keeps its claims
    in the shared database, freed in the same transaction as a dead request's hold; the
    Redis backend in Redis already.)"""
    from router.ledger.redis import RedisIdempotency, RedisSession, check_url

    session = RedisSession(check_url(config.redis_url))
    stores.idempotency = RedisIdempotency(session, stale_after_s=config.hold_ttl_s)
    stores.session = session.session
    stores.details["redis_session"] = session
