"""The SQLite backend (the default): one WAL file under DATA_DIR that several router
processes on one machine, and the CLI beside them, share.

`open(config)` builds its `Stores`: the ledger (billing, accounts, usage reports), the
key store and the idempotency store, all on one `SqliteDatabase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from router.ledger.sqlite.db import SqliteDatabase
from router.ledger.sqlite.idempotency import SqliteIdempotency
from router.ledger.sqlite.keys import SqliteKeyStore
from router.ledger.sqlite.ledger import SqliteLedger
from router.ledger.sqlite.outbox import SqliteOutbox
from router.ledger.sqlite import providers as provider_statements
from router.ledger.sql_providers import SqlProviderRows
from router.ledger.stores import Stores
from router.provider_store import ProviderStore, key_box

if TYPE_CHECKING:
    from router.config import Config

FILE_NAME = "ledger.sqlite3"


def path_of(config: "Config") -> Path:
    return Path(config.data_dir) / FILE_NAME


def open(config: "Config") -> Stores:  # noqa: A001 - the backend's one entry point
    db = SqliteDatabase(path_of(config))
    ledger = SqliteLedger(db)
    return Stores(backend="sqlite", billing=ledger, accounts=ledger, reports=ledger,
                  keys=SqliteKeyStore(db),
                  idempotency=SqliteIdempotency(db, stale_after_s=config.hold_ttl_s),
                  outbox=SqliteOutbox(db),
                  where=str(db.path), ping=ledger.ping, close=db.close,
                  upkeep=db.checkpoint, upkeep_interval_s=1.0,
                  provider_store=ProviderStore(SqlProviderRows(db, provider_statements),
                                               key_box(config.router_secret_key)))


__all__ = ["SqliteDatabase", "SqliteIdempotency", "SqliteKeyStore", "SqliteLedger",
           "SqliteOutbox", "open", "path_of"]
