"""A ledger written before the running spend counters existed is upgraded in place: the
counters are filled from its history once, then kept by every hold and settlement."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from router.ledger.base import UsageRecord
from router.ledger.sqlite import SqliteDatabase, SqliteLedger
from router.ledger.sqlite.db import COLUMNS, SCHEMA
from router.usage import Usage


def _old_ledger(path: Path) -> None:
    """The schema of the release before the counters, with some history in it."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    for table, column, declaration in COLUMNS:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    conn.execute("INSERT INTO accounts (id, balance, held, created_at) VALUES "
                 "('alice', 1000000, 300, 0)")
    conn.executemany("INSERT INTO api_keys (id, account, prefix, hash, spend_cap_micros, "
                     "created_at) VALUES (?, 'alice', 'ar_sk_x', ?, ?, 0)",
                     [("k1", "h1", 10_000), ("k3", "h3", None)])
    conn.executemany(
        "INSERT INTO holds (request_id, account, amount, deadline, settled, captured, "
        "released, created_at, key_id) VALUES (?, 'alice', ?, 9e9, ?, ?, ?, 0, ?)",
        [("r1", 500, 1, 120, 380, "k1"), ("r2", 300, 0, None, None, "k1"),
         ("r3", 900, 1, 900, 0, "k3")])
    conn.executemany(
        "INSERT INTO usage (request_id, account, model, provider, input_tokens, "
        "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, reported, "
        "cost_micros, at) VALUES (?, 'alice', 'm', 'p', 1, 1, 0, 0, 0, 1, ?, 0)",
        [("r1", 120), ("r3", 900)])
    conn.commit()
    conn.close()


async def test_an_old_ledger_gets_its_counters_from_its_history(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _old_ledger(path)
    db = SqliteDatabase(path)
    ledger = SqliteLedger(db)
    assert await ledger.key_spent("k1") == 120 + 300, "captured + still held under the key"
    assert await ledger.key_spent("k3") == 0, "a key without a cap is not counted"
    assert await ledger.spent("alice") == 1020
    await ledger.settle("r2", 100, UsageRecord("r2", "alice", "m", "p", Usage(1, 1), 100, 1),
                        1.0)
    assert await ledger.key_spent("k1") == 220 and await ledger.spent("alice") == 1120
    db.close()
    again = SqliteDatabase(path)  # a restart runs no step twice
    assert await SqliteLedger(again).key_spent("k1") == 220
    again.close()


def test_processes_opening_a_new_ledger_file_at_once_all_start(tmp_path: Path) -> None:
    """WORKERS=N start together on a fresh DATA_DIR, each writing as soon as it is up:
    switching the file to WAL must wait for the others, not fail with 'database is
    locked'."""
    script = ("import sys; from pathlib import Path; from router.ledger.sqlite import "
              "SqliteDatabase; from router.ledger.sqlite.ledger import _grant; "
              "db = SqliteDatabase(Path(sys.argv[1])); "
              "[db.run_blocking(_grant, 'a', 1, None, 1.0) for _ in range(300)]; db.close()")
    for round_ in range(2):
        path = tmp_path / f"round{round_}" / "ledger.sqlite3"
        starts = [subprocess.Popen([sys.executable, "-c", script, str(path)],
                                   stderr=subprocess.PIPE, text=True) for _ in range(6)]
        failures = [p.communicate()[1] for p in starts if p.wait() != 0]
        assert failures == [], failures[0]
