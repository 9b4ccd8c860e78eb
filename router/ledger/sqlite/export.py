"""The usage export's read on SQLite: rows oldest first, `since` inclusive, `until`
exclusive, on a read-only connection of its own (a WAL reader takes no lock the
server's writers wait for)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from router.ledger.export import row_dict

_SELECT = ("SELECT request_id, account, model, provider, input_tokens, output_tokens, "
           "cache_read_tokens, cache_write_tokens, reasoning_tokens, reported, cost_micros, "
           "at, overrun_micros, recovered FROM usage")


def _where(account: str | None, since: float | None,
           until: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (("account = ?", account), ("at >= ?", since), ("at < ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def read_usage_rows(path: Path, account: str | None, since: float | None,
                    until: float | None, limit: int) -> list[dict[str, Any]]:
    """For a worker thread: opens, reads, closes."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        where, params = _where(account, since, until)
        sql = f"{_SELECT}{where} ORDER BY at, request_id LIMIT ?"
        return [row_dict(r) for r in conn.execute(sql, (*params, limit)).fetchall()]
    finally:
        conn.close()
