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


def usage_row_dict(r: tuple[Any, ...]) -> dict[str, Any]:
    """A usage row with its hold's time, in the columns order of `_usage_row`."""
    return {"request_id": r[0], "account": r[1], "model": r[2], "provider": r[3],
            "input_tokens": int(r[4]), "output_tokens": int(r[5]),
            "cache_read_tokens": int(r[6]), "cache_write_tokens": int(r[7]),
            "reasoning_tokens": int(r[8]), "reported": bool(r[9]),
            "cost_micros": int(r[10]), "at": float(r[11]), "overrun_micros": int(r[12]),
            "recovered": bool(r[13]),
            "started_at": float(r[14]) if r[14] is not None else float(r[11])}
