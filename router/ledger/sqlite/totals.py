"""`usage_totals` on SQLite: usage rows added up per bucket and model in the database,
on a read-only connection of its own (a WAL reader takes no lock the server's writers
wait for), in a worker thread: a busy day is hundreds of thousands of rows, too long to
add up on the event loop.

One read transaction (one snapshot) and one statement per bucket, each a range of the
covering index `usage_by_time (at, model, cost_micros, input_tokens, output_tokens)`
(migration step 4, db.py) between the bucket's edges (router/ledger/totals.py), grouped
by model. SQLite groups with a sorter, whatever the group count; a bucket's sorter
holds one bucket's rows, which measured about twice as fast as one statement grouping
the whole window by bucket and model (a day of 325 000 rows: 0.2-0.3 s). SUM of
INTEGER columns is an integer in SQLite (it raises on overflow, never rounds).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from router.ledger.base import UsageTotal
from router.ledger.totals import edges

_BUCKET = ("SELECT model, COUNT(*), SUM(cost_micros > 0), SUM(cost_micros), "
           "SUM(input_tokens), SUM(output_tokens) FROM usage "
           "WHERE at >= ? AND at < ? GROUP BY model")


def read_usage_totals(path: Path, since: float, bucket_s: int,
                      buckets: int) -> list[UsageTotal]:
    """For a worker thread: opens, reads, closes."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10,
                           isolation_level=None)
    try:
        conn.execute("BEGIN")  # every bucket from one snapshot
        out: list[UsageTotal] = []
        bounds = edges(since, bucket_s, buckets)
        for k in range(buckets):
            out += [UsageTotal(k, model, calls, billed, cost, input_tokens, output_tokens)
                    for model, calls, billed, cost, input_tokens, output_tokens
                    in conn.execute(_BUCKET, (bounds[k], bounds[k + 1]))]
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()
