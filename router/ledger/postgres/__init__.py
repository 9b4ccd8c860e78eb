"""The PostgreSQL backend (`BILLING_BACKEND=postgres`, `DATABASE_URL`): the ledger of
record that router instances on many machines share.

`open(config)` connects (refusing to start with one line naming DATABASE_URL when it
cannot), runs the schema's migrations and builds the `Stores`: ledger, keys and
idempotency claims, all on one connection pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.ledger.postgres.db import PostgresDatabase
from router.ledger.postgres.idempotency import PostgresIdempotency
from router.ledger.postgres.keys import PostgresKeyStore
from router.ledger.postgres.ledger import PostgresLedger
from router.ledger.postgres.outbox import PostgresOutbox
from router.ledger.postgres import providers as provider_statements
from router.ledger.sql_providers import SqlProviderRows
from router.ledger.stores import Stores
from router.provider_store import ProviderStore, key_box
from router.redact import display_url

if TYPE_CHECKING:
    from router.config import Config


def open(config: "Config") -> Stores:  # noqa: A001 - the backend's one entry point
    assert config.database_url is not None  # load_config requires it for this backend
    db = PostgresDatabase(config.database_url)
    ledger = PostgresLedger(db)
    return Stores(backend="postgres", billing=ledger, accounts=ledger, reports=ledger,
                  keys=PostgresKeyStore(db),
                  idempotency=PostgresIdempotency(db, stale_after_s=config.hold_ttl_s),
                  outbox=PostgresOutbox(db),
                  where=display_url(config.database_url), ping=ledger.ping, close=db.close,
                  provider_store=ProviderStore(SqlProviderRows(db, provider_statements),
                                               key_box(config.router_secret_key)))


__all__ = ["PostgresDatabase", "PostgresIdempotency", "PostgresKeyStore", "PostgresLedger",
           "PostgresOutbox", "open"]
