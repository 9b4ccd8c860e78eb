"""Rows of the SQL backends (SQLite, PostgreSQL) as the ledger's values: what both store
the same way (a key's record, an idempotent request's body hash)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from router.auth.keys import KeyRecord

KEY_COLUMNS = ("id, account, prefix, label, models, rpm, spend_cap_micros, expires_at, "
               "revoked_at, created_at")


def key_record(row: tuple[Any, ...]) -> KeyRecord:
    """A row of KEY_COLUMNS (`models` is a JSON list, or NULL for every model)."""
    models = tuple(orjson.loads(row[4])) if row[4] else None
    return KeyRecord(row[0], row[1], row[2], row[3], models, row[5], row[6], row[7], row[8],
                     row[9])


def models_column(models: list[str] | None) -> str | None:
    return orjson.dumps(models).decode() if models else None


def body_hash(body: bytes) -> str:
    """What an Idempotency-Key's claim remembers of the request body."""
    return hashlib.sha256(body).hexdigest()
