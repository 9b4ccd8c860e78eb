"""The SQLite file under DATA_DIR that every SQLite store shares: schema, migrations,
connections, and where each statement runs.

Statements are short (an indexed read, or a hold or settlement of a few rows), so the
server runs them inline on the event loop thread: a worker-thread round trip costs more
CPU and latency (~125 µs here) than the statements themselves. The inline connection
never waits for a lock (`busy_timeout=0`) and never checkpoints: when another process
(the CLI next to the server) holds the write lock, the call moves to a worker thread on a
second connection that may wait, one call at a time; checkpoints run in that thread too
(`checkpoint`, called by the `WalCheckpointer` actor), so no fsync ever blocks the loop.
Transactions are `BEGIN IMMEDIATE` ... `COMMIT`: no await happens inside one.
"""

from __future__ import annotations

import sqlite3
import time
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
    released INTEGER, created_at REAL NOT NULL, key_id TEXT);
CREATE INDEX IF NOT EXISTS open_holds ON holds(settled, deadline);
CREATE INDEX IF NOT EXISTS holds_by_key ON holds(key_id) WHERE key_id IS NOT NULL;
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
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, started_at REAL NOT NULL,
    lease_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    account TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL,
    request_id TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, status INTEGER,
    content_type TEXT, response BLOB, created_at REAL NOT NULL,
    PRIMARY KEY (account, key));
"""

# Columns added after the first release: (table, column, declaration), added in place to
# ledgers created before them.
COLUMNS = (
    ("holds", "owner", "TEXT"), ("holds", "model", "TEXT NOT NULL DEFAULT ''"),
    ("holds", "provider", "TEXT NOT NULL DEFAULT ''"),
    ("holds", "ck_input", "INTEGER NOT NULL DEFAULT 0"),
    ("holds", "ck_output", "INTEGER NOT NULL DEFAULT 0"),
    ("holds", "ck_cache_read", "INTEGER NOT NULL DEFAULT 0"),
    ("holds", "ck_cache_write", "INTEGER NOT NULL DEFAULT 0"),
    ("holds", "ck_reasoning", "INTEGER NOT NULL DEFAULT 0"),
    ("holds", "ck_cost", "INTEGER NOT NULL DEFAULT 0"), ("holds", "ck_at", "REAL"),
    ("usage", "overrun_micros", "INTEGER NOT NULL DEFAULT 0"),
    ("usage", "recovered", "INTEGER NOT NULL DEFAULT 0"),
)
INDEXES = """
CREATE INDEX IF NOT EXISTS idempotency_by_request ON idempotency(request_id) WHERE done = 0;
"""
# Versioned steps (`PRAGMA user_version`), each run once in the transaction that records
# it. 1: running counters, so that a hold under a key's spend cap and `/v1/usage` read
# one row instead of summing a history (filled from that history once).
STEPS: tuple[str, ...] = ("""
CREATE TABLE IF NOT EXISTS key_spend (key_id TEXT PRIMARY KEY, spent INTEGER NOT NULL);
INSERT OR REPLACE INTO key_spend (key_id, spent)
    SELECT key_id, SUM(CASE WHEN settled THEN captured ELSE amount END) FROM holds
    WHERE key_id IN (SELECT id FROM api_keys WHERE spend_cap_micros IS NOT NULL)
    GROUP BY key_id;
ALTER TABLE accounts ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET spent = (SELECT COALESCE(SUM(cost_micros), 0) FROM usage
                             WHERE usage.account = accounts.id);
""",
# 2: the outbox (docs/integration.md). Every usage row queues one event per configured
# derived sink in the transaction that inserts it, whoever settles (the request, or the
# sweeper after a crash); the body of a derived event is built from that row when it is
# shipped.
"""
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL, request_id TEXT NOT NULL, account TEXT NOT NULL, body BLOB,
    created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', last_error TEXT);
CREATE INDEX outbox_queues ON outbox(sink, account, seq) WHERE state = 'pending';
CREATE INDEX outbox_due ON outbox(next_at) WHERE state = 'pending';
CREATE TABLE outbox_sinks (sink TEXT PRIMARY KEY);
CREATE TRIGGER usage_outbox AFTER INSERT ON usage BEGIN
    INSERT OR IGNORE INTO outbox (event_id, sink, request_id, account, created_at, next_at)
        SELECT sink || '.' || NEW.request_id, sink, NEW.request_id, NEW.account, NEW.at,
               NEW.at FROM outbox_sinks;
END;
""",
# 3: the provider store (router/provider_store.py, router/ledger/sqlite/providers.py):
# providers managed at run time, their keys sealed; every change bumps the version that
# instances poll.
"""
CREATE TABLE providers (
    name TEXT PRIMARY KEY, settings TEXT NOT NULL, sealed_keys TEXT,
    key_count INTEGER NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE providers_version (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO providers_version (id, version) VALUES (1, 0);
""",
# 4: usage added up by time (`usage_totals`, router/ledger/sqlite/totals.py): the rows of
# a time range, with every column the totals read, from the index alone (the table was
# indexed by account only: a window of every account read the whole table). Built once
# from the rows already there, in the transaction that records the step.
"""
CREATE INDEX usage_by_time ON usage (at, model, cost_micros, input_tokens, output_tokens);
""")


def statements(script: str) -> list[str]:
    """The complete statements of a script (a trigger's body holds semicolons)."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out


def migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, add the columns an older ledger lacks, run the versioned steps
    it has not run. Safe when several processes start at once: each change happens in a
    `BEGIN IMMEDIATE` transaction that checks first."""
    conn.executescript(SCHEMA)
    with Transaction(conn):
        for table, column, declaration in COLUMNS:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    conn.executescript(INDEXES)
    for version, step in enumerate(STEPS, start=1):
        with Transaction(conn):
            if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
                continue
            for statement in statements(step):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")


def connect(path: Path, *, busy_timeout_ms: int, autocheckpoint: bool) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                           timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    _switch_to_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={1000 if autocheckpoint else 0}")
    return conn


def _switch_to_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another process holds the file: the
    switch needs the file to itself and SQLite does not wait for it (WORKERS=N opening a
    new file at once). A file already in WAL mode answers at once."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
        or "locked" in str(exc)


class SqliteDatabase:
    """The inline connection, the waiting one, and the gate in front of the latter."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._waiting = connect(path, busy_timeout_ms=10_000, autocheckpoint=True)
        migrate(self._waiting)
        self._inline = connect(path, busy_timeout_ms=0, autocheckpoint=False)
        self._gate = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._inline, *args)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        return await trio.to_thread.run_sync(fn, self._waiting, *args, limiter=self._gate)

    async def checkpoint(self) -> None:
        """Move the WAL into the main file, off the event loop thread."""
        await trio.to_thread.run_sync(_checkpoint, self._waiting, limiter=self._gate)

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """For the CLI, outside any event loop: waits for the lock like any client."""
        return fn(self._waiting, *args)

    def close(self) -> None:
        self._inline.close()
        self._waiting.close()


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


class Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
