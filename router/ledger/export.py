"""Usage export (SPEC §7 `GET /admin/usage`, SPEC §10 `aura-router usage export`).

One read of the `usage` table, shared by the admin route (through `SqliteDatabase.run`)
and the CLI (through `SqliteDatabase.run_blocking`); both call `usage_rows(conn, ...)`.
Rows come out oldest first, `since` inclusive and `until` exclusive, so consecutive
windows never count a request twice. Money stays an integer number of micro-USD in
every format: no float ever touches it. `parse_time` reads the bounds the admin gives.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sqlite3
from datetime import datetime, timezone
from typing import Any

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000

COLUMNS: tuple[str, ...] = (
    "request_id", "account", "model", "provider", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "reported",
    "cost_micros", "at", "overrun_micros", "recovered")

_SELECT = ("SELECT request_id, account, model, provider, input_tokens, output_tokens, "
           "cache_read_tokens, cache_write_tokens, reasoning_tokens, reported, cost_micros, "
           "at, overrun_micros, recovered FROM usage")
_UNIX_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")


def iso_utc(at: float) -> str:
    """`2026-11-22T10:00:00Z`: the shape `/v1/usage` uses for `at`."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _where(account: str | None, since: float | None,
           until: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if account is not None:
        clauses.append("account = ?")
        params.append(account)
    if since is not None:
        clauses.append("at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("at < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {"request_id": r[0], "account": r[1], "model": r[2], "provider": r[3],
            "input_tokens": int(r[4]), "output_tokens": int(r[5]),
            "cache_read_tokens": int(r[6]), "cache_write_tokens": int(r[7]),
            "reasoning_tokens": int(r[8]), "reported": bool(r[9]),
            "cost_micros": int(r[10]), "at": iso_utc(r[11]),
            "overrun_micros": int(r[12]), "recovered": bool(r[13])}


def usage_rows(conn: sqlite3.Connection, account: str | None, since: float | None,
               until: float | None, limit: int) -> list[dict[str, Any]]:
    """Usage rows oldest first: `account` exact, `since <= at < until`, at most `limit`."""
    where, params = _where(account, since, until)
    sql = f"{_SELECT}{where} ORDER BY at, request_id LIMIT ?"
    return [_row(r) for r in conn.execute(sql, (*params, limit)).fetchall()]


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
