"""Usage export (`GET /admin/usage`, `aura-router usage export`; docs/api.md).

The shape of an exported usage row and its CSV, whatever the backend (each backend's
`usage_rows` reads the rows; the admin route and the CLI both call it). Rows come out
oldest first, `since` inclusive and `until` exclusive, so consecutive windows never
count a request twice. Money stays an integer number of micro-USD in every format: no
float ever touches it. `parse_time` reads the bounds the admin gives.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.ledger.base import UsageRecord

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000

COLUMNS: tuple[str, ...] = (
    "request_id", "account", "model", "provider", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "reported",
    "cost_micros", "at", "overrun_micros", "recovered")

_UNIX_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")


def iso_utc(at: float) -> str:
    """`2026-11-22T10:00:00Z`: the shape `/v1/usage` uses for `at`."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def row_dict(r: tuple[Any, ...]) -> dict[str, Any]:
    """A usage row (in COLUMNS order) as the export shows it."""
    return {"request_id": r[0], "account": r[1], "model": r[2], "provider": r[3],
            "input_tokens": int(r[4]), "output_tokens": int(r[5]),
            "cache_read_tokens": int(r[6]), "cache_write_tokens": int(r[7]),
            "reasoning_tokens": int(r[8]), "reported": bool(r[9]),
            "cost_micros": int(r[10]), "at": iso_utc(r[11]),
            "overrun_micros": int(r[12]), "recovered": bool(r[13])}


def record_dict(r: "UsageRecord") -> dict[str, Any]:
    """A settled call's record in the same shape as an export row."""
    u = r.usage
    return {"request_id": r.request_id, "account": r.account, "model": r.model,
            "provider": r.provider, "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens, "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "reasoning_tokens": u.reasoning_tokens, "reported": u.reported,
            "cost_micros": r.cost_micros, "at": iso_utc(r.at),
            "overrun_micros": r.overrun_micros, "recovered": r.recovered}


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    """A header row, then one row per usage; integers written as integers."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _csv_value(row[name]) for name in COLUMNS})
    return out.getvalue()


def _from_unix(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number of seconds")
    return value


def _from_iso(text: str) -> float:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:  # a date, or a time without offset: read as UTC like `at`
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_time(text: str) -> float:
    """Unix seconds from ISO-8601 (`...Z`, `...+02:00`, `2026-11-22`) or unix seconds.

    All-digit text (with an optional fraction) is unix seconds; ISO text without an
    offset is read as UTC, the zone every exported `at` is written in."""
    cleaned = text.strip()
    try:
        if _UNIX_SECONDS.fullmatch(cleaned):
            return _from_unix(cleaned)
        return _from_iso(cleaned)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is not a time: use ISO-8601 such as "
                         "'2026-11-22T10:00:00Z', '2026-11-22T12:00:00+02:00' or "
                         "'2026-11-22', or unix seconds such as '1795341600'") from None
