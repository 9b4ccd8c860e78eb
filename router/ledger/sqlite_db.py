"""One SQLite file under DATA_DIR, shared by the ledger and the key store.

All statements run on one connection in a worker thread, one call at a time (a
`CapacityLimiter(1)`), so a transaction is never interleaved with another from this
process; other processes (the CLI next to a running server) are serialised by SQLite
itself (`BEGIN IMMEDIATE`, WAL, busy_timeout).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, TypeVar

import trio

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, balance INTEGER NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, kind TEXT NOT NULL,
    amount INTEGER NOT NULL, held_delta INTEGER NOT NULL, request_id TEXT,
    balance_after INTEGER NOT NULL, reason TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries(account, seq);
CREATE TABLE IF NOT EXISTS holds (
    request_id TEXT PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL,
    deadline REAL NOT NULL, settled INTEGER NOT NULL DEFAULT 0, captured INTEGER,
    released INTEGER, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS open_holds ON holds(settled, deadline);
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY, account TEXT NOT NULL, model TEXT NOT NULL,
    provider TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, reported INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS usage_by_account ON usage(account, at);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, label TEXT, models TEXT, rpm INTEGER,
    spend_cap_micros INTEGER, expires_at REAL, revoked_at REAL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS keys_by_account ON api_keys(account);
"""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                           timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.executescript(SCHEMA)
    return conn


class SqliteDatabase:
    """The connection and the one-at-a-time gate in front of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._gate = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, self._conn, *args, limiter=self._gate)

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """For the CLI, outside any event loop."""
        return fn(self._conn, *args)

    def close(self) -> None:
        self._conn.close()


class Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
