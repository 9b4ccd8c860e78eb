"""`UsageReports.usage_totals` adds up in every ledger backend (SQLite, PostgreSQL, Redis,
and http through its local SQLite) exactly what a plain Python pass over the same usage
rows adds up: rows at a bucket's first instant, a float's width either side of a
boundary, `since` itself, just before `since` and at the window's end; two models; a
call settled at 0 (counted, not billed); ties of equal `at` across Redis's pages; a
`since` from which `since + bucket_s` rounds short of the bucket's edge; and figures
past what a Lua number holds exactly. Then what is SQLite's own: the index the
sums read, added to a ledger written before it."""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from router.config import load_config
from router.ledger.base import UsageRecord, UsageTotal
from router.ledger.export import iso_utc
from router.ledger.http.ledger import HttpBillingLedger
from router.ledger.redis import ledger as redis_ledger
from router.ledger.sqlite import SqliteDatabase, SqliteLedger
from router.ledger.sqlite.db import COLUMNS, SCHEMA
from router.ledger.sqlite.mirror import SqliteMirror
from router.ledger.sqlite.totals import _BUCKET
from router.ledger.stores import Stores, open_stores
from router.ledger.totals import edge, edges
from router.usage import Usage
from tests.backends import backend_env, fresh_postgres_url

HOUR = 1_763_805_600.0  # 2025-11-22T10:00:00Z: a start on a bucket boundary of unix time
ODD = 1_763_805_637.123_456  # a start on no boundary, not even a binary fraction
BUCKET_S, BUCKETS = 300, 12

# (at, model, cost, input tokens, output tokens)
Call = tuple[float, str, int, int, int]


def _calls(since: float) -> list[Call]:
    """Each call's `at` and figures; `at` as the float a router would have stored."""
    end = since + BUCKET_S * BUCKETS
    ats = [since - 3_600, math.nextafter(since, -math.inf), since - 0.001, since,
           since, math.nextafter(since, math.inf), since + 0.5,
           math.nextafter(since + BUCKET_S, -math.inf), since + BUCKET_S,
           math.nextafter(since + BUCKET_S, math.inf), since + 2 * BUCKET_S - 0.000_001,
           since + 5 * BUCKET_S, since + 5 * BUCKET_S, since + 5 * BUCKET_S,
           since + 5 * BUCKET_S, since + 5 * BUCKET_S, since + 7 * BUCKET_S + 123.25,
           math.nextafter(end, -math.inf), end - 0.5, end, math.nextafter(end, math.inf),
           end + 1, end + BUCKET_S]
    ats += [since + k * BUCKET_S for k in range(BUCKETS + 1)]  # every boundary, the end too
    models = ["gpt-4o", "meta/llama-3.1 \"ünï\""]  # JSON escapes a / and a " in Redis
    return [(at, models[n % 2], 0 if n % 3 == 0 else 100 + 37 * n, 10 * n + 1, 3 * n)
            for n, at in enumerate(ats)]


async def _settle(billing: Any, settle_via: Any, account: str, calls: list[Call],
                  tag: str) -> dict[str, float]:
    """Each call held and settled through the ledger's public interface; its `at`."""
    at_of: dict[str, float] = {}
    for n, (at, model, cost, inputs, outputs) in enumerate(calls):
        request_id = f"{tag}-{n:03d}"
        await billing.hold(account, request_id, cost, at + 99.0, at, model=model)
        record = UsageRecord(request_id, account, model, "p", Usage(inputs, outputs,
                                                                    reported=True),
                             cost, at)
        settled = await settle_via.settle(request_id, cost, record, at)
        assert settled.captured == cost
        at_of[request_id] = at
    return at_of


async def _expected(reports: Any, at_of: dict[str, float], since: float,
                    bucket_s: int, buckets: int) -> list[UsageTotal]:
    """A plain pass over the usage rows, each bucket found in exact arithmetic."""
    rows = await reports.usage_rows(None, None, None, 100_000)
    assert sorted(r["request_id"] for r in rows) == sorted(at_of)
    sums: dict[tuple[int, str], Counter[str]] = {}
    for row in rows:
        at = at_of[row["request_id"]]
        assert row["at"] == iso_utc(at)
        bucket = math.floor((Fraction(at) - Fraction(since)) / bucket_s)
        if not 0 <= bucket < buckets:
            continue
        into = sums.setdefault((bucket, row["model"]), Counter())
        into.update(calls=1, billed=int(row["cost_micros"] > 0),
                    cost_micros=row["cost_micros"], input_tokens=row["input_tokens"],
                    output_tokens=row["output_tokens"])
    return _sorted([UsageTotal(bucket, model, c["calls"], c["billed"], c["cost_micros"],
                               c["input_tokens"], c["output_tokens"])
                    for (bucket, model), c in sums.items()])


def _sorted(totals: list[UsageTotal]) -> list[UsageTotal]:
    """In (bucket, model) order, each figure checked to be an int."""
    for total in totals:
        assert type(total.model) is str, total
        for figure in (total.bucket, total.calls, total.billed, total.cost_micros,
                       total.input_tokens, total.output_tokens):
            assert type(figure) is int, total  # never a float, a Decimal or a bool
    return sorted(totals, key=lambda t: (t.bucket, t.model))


@pytest.fixture(autouse=True)
def small_redis_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 4 rows in Redis, so that a walk resumes many times, inside ties too."""
    monkeypatch.setattr(redis_ledger, "TOTALS_PAGE", 4)


@pytest.mark.parametrize("since", [HOUR, ODD])
async def test_the_totals_are_the_rows_added_up(stores: Stores, since: float) -> None:
    calls = _calls(since)
    await stores.accounts.grant("acct", 10**9, "t", 1.0)
    at_of = await _settle(stores.billing, stores.billing, "acct", calls, "r")
    expected = await _expected(stores.reports, at_of, since, BUCKET_S, BUCKETS)
    got = _sorted(await stores.reports.usage_totals(since, BUCKET_S, BUCKETS))
    assert got == expected
    # What the rows were chosen for, stated without the oracle:
    first = {t.model: t for t in got if t.bucket == 0}
    assert sum(t.calls for t in first.values()) == 6, \
        "since three times, a float after it, +0.5, a float before the next bucket"
    assert sum(t.calls for t in got if t.bucket == 1) == 4
    assert sum(t.calls for t in got if t.bucket == 5) == 6, "six calls at one instant"
    assert sum(t.calls for t in got if t.bucket == 11) == 3
    assert sum(t.calls for t in got) == 28
    assert any(t.billed < t.calls for t in got), "a call settled at 0 is not billed"
    assert {t.model for t in got} == {"gpt-4o", 'meta/llama-3.1 "ünï"'}
    assert {t.bucket for t in got} == set(range(BUCKETS))
    # Other windows over the same rows: one bucket, hour-long buckets, a shifted start.
    for window in ((since, BUCKET_S, 1), (since, 3_600, 1), (since + 150, 60, 70),
                   (since - 3_600, 900, 9), (since + 10 * BUCKET_S, 1, 600)):
        assert _sorted(await stores.reports.usage_totals(*window)) == \
            await _expected(stores.reports, at_of, *window), window
    assert await stores.reports.usage_totals(since, BUCKET_S, 0) == []
    assert await stores.reports.usage_totals(since + 10**6, BUCKET_S, BUCKETS) == []


async def test_a_bucket_starts_at_its_edge_where_since_plus_bucket_s_rounds(
        stores: Stores) -> None:
    """Past 2**31 s (2038) a float holds half as many fractions of a second: from this
    `since`, `since + 300` rounds to a float 2**-22 s short of 300 s after it, in bucket
    0; bucket 1 starts one float later (`edge`)."""
    since = 2_147_483_500.123_457_2
    assert since + BUCKET_S < edge(since, BUCKET_S), "the float sum is short of the edge"
    ats = []
    for k in range(BUCKETS + 1):
        start = edge(since, k * BUCKET_S)
        ats += [since + k * BUCKET_S, start, math.nextafter(start, -math.inf),
                math.nextafter(start, math.inf)]
    calls = [(at, "m", n % 3, 1, 1) for n, at in enumerate(ats)]
    await stores.accounts.grant("acct", 10**9, "t", 1.0)
    at_of = await _settle(stores.billing, stores.billing, "acct", calls, "e")
    got = _sorted(await stores.reports.usage_totals(since, BUCKET_S, BUCKETS))
    assert got == await _expected(stores.reports, at_of, since, BUCKET_S, BUCKETS)
    # since + k * 300 is the float before edge k here (two rows at it): bucket 0 holds
    # since twice, the float after it and two at since + 300; each other bucket its
    # edge, the float after it and two at the float sum that ends it (since + 3600 is
    # in the window, its edge is not).
    assert [t.calls for t in got] == [5] + [4] * (BUCKETS - 1)
    for window in ((since, BUCKET_S, 1), (since + 1, BUCKET_S, 2)):
        assert _sorted(await stores.reports.usage_totals(*window)) == \
            await _expected(stores.reports, at_of, *window), window


def test_an_edge_is_the_least_time_whose_difference_reaches_it() -> None:
    rng = random.Random(7)
    moved = 0
    for _ in range(20_000):
        since = rng.choice([rng.uniform(1e9, 2.2e9), rng.uniform(-1e9, 1e9),
                            rng.uniform(0, 1)])
        offset = rng.randrange(0, 10 ** rng.randrange(1, 9))
        start = edge(since, offset)
        assert start - since >= offset > math.nextafter(start, -math.inf) - since
        moved += start != since + offset
    assert moved > 100, "cases where the float sum is not the edge were tried"
    assert edges(HOUR, BUCKET_S, 2) == [HOUR, HOUR + 300, HOUR + 600]
    assert edge(0.0, 0) == 0.0


async def test_figures_past_2_to_the_53_are_added_up_exactly(stores: Stores) -> None:
    """Redis adds up in Lua numbers: a sum past 2**53 - 1, or a row's figure past it,
    must come out exact all the same (as SQL's integers do)."""
    big = 2**52 + 1
    calls = [(HOUR + 10, "m", big, 2**53 + 1, 1), (HOUR + 20, "m", big, 2**52 + 3, 2**52 + 1),
             (HOUR + 30, "m", 5, 2**52 + 5, 2**52 + 3), (HOUR + 40, "m", 0, 1, 1)]
    at_of: dict[str, float] = {}
    for n, call in enumerate(calls):  # an account each: no balance past 2**53 either
        account = f"whale-{n}"
        await stores.accounts.grant(account, max(call[2], 1), "t", 1.0)
        at_of |= await _settle(stores.billing, stores.billing, account, [call], f"w{n}")
    [total] = _sorted(await stores.reports.usage_totals(HOUR, BUCKET_S, BUCKETS))
    assert total == UsageTotal(0, "m", 4, 3, *(sum(c[i] for c in calls) for i in (2, 3, 4)))
    assert total.input_tokens == 2**54 + 10 and total.output_tokens == 2**53 + 6
    assert [total] == await _expected(stores.reports, at_of, HOUR, BUCKET_S, BUCKETS)


@pytest.mark.parametrize("window", [(math.nan, 300, 12), (HOUR, 0, 12), (HOUR, 300, -1),
                                    (HOUR, 300.0, 12), (HOUR, True, 12), (2.0**52, 300, 1)])
async def test_a_window_no_rule_is_exact_for_is_refused(stores: Stores,
                                                        window: tuple[Any, Any, Any]) -> None:
    with pytest.raises(ValueError):
        await stores.reports.usage_totals(*window)


async def test_http_adds_up_its_local_rows(tmp_path: Path) -> None:
    """BILLING_BACKEND=http keeps its usage rows in the local SQLite file: their totals."""
    local = open_stores(load_config(env=backend_env("sqlite", tmp_path), cwd=tmp_path))
    db = local.billing.db  # type: ignore[attr-defined]
    ledger = HttpBillingLedger(local.billing, SqliteMirror(db),  # type: ignore[arg-type]
                               None, "two_phase")  # type: ignore[arg-type]
    await local.accounts.grant("acct", 10**9, "t", 1.0)
    at_of = await _settle(local.billing, ledger, "acct", _calls(HOUR), "h")
    assert _sorted(await ledger.usage_totals(HOUR, BUCKET_S, BUCKETS)) == \
        await _expected(ledger, at_of, HOUR, BUCKET_S, BUCKETS)
    local.close()


# --- SQLite: the index the sums read ------------------------------------------------

def _plan(conn: sqlite3.Connection) -> str:
    return " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + _BUCKET,
                                                         (0.0, 1.0)))


def test_sqlite_reads_a_bucket_from_the_covering_index_alone(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "ledger.sqlite3")
    conn = sqlite3.connect(db.path)
    assert "USING COVERING INDEX usage_by_time" in _plan(conn)
    conn.close()
    db.close()


async def test_an_old_sqlite_ledger_gets_the_index_and_its_rows_add_up(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path)  # a ledger of the release before step 4, with rows
    conn.executescript(SCHEMA)
    for table, column, declaration in COLUMNS:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    conn.executemany(
        "INSERT INTO usage (request_id, account, model, provider, input_tokens, "
        "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, reported, "
        "cost_micros, at) VALUES (?, 'old', ?, 'p', ?, 1, 0, 0, 0, 1, ?, ?)",
        [("o1", "m", 5, 120, HOUR), ("o2", "m", 7, 0, HOUR + 299.5),
         ("o3", "n", 1, 900, HOUR + 300), ("o4", "m", 1, 1, HOUR - 1)])
    conn.commit()
    assert "usage_by_time" not in _plan(conn)
    conn.close()
    db = SqliteDatabase(path)
    conn = sqlite3.connect(path)
    assert "USING COVERING INDEX usage_by_time" in _plan(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()
    totals = await SqliteLedger(db).usage_totals(HOUR, BUCKET_S, 2)
    assert _sorted(totals) == [UsageTotal(0, "m", 2, 1, 120, 12, 2),
                              UsageTotal(1, "n", 1, 1, 900, 1, 1)]
    db.close()


# --- PostgreSQL: the index the sums read ----------------------------------------------

def test_postgres_gets_the_covering_index_and_the_sums_read_it_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from router.ledger.postgres import schema
    from router.ledger.postgres.ledger import _TOTALS

    url = fresh_postgres_url()
    with psycopg.connect(url, autocommit=True) as conn:
        monkeypatch.setattr(schema, "STEPS", schema.STEPS[:4])  # the release before
        schema.migrate(conn)
        conn.execute(
            "INSERT INTO usage (request_id, account, model, provider, input_tokens, "
            "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
            "reported, cost_micros, at) SELECT 'r' || n, 'a', 'm', 'p', 1, 1, 0, 0, 0, "
            "TRUE, n, %s + n FROM generate_series(1, 4000) AS n", (HOUR,))
        monkeypatch.undo()
        schema.migrate(conn)
        assert conn.execute("SELECT max(version) FROM aura_schema").fetchone() == (5,)
        conn.execute("VACUUM ANALYZE usage")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        params = (HOUR, 300.0, HOUR, HOUR + 3_600)
        plan = " ".join(row[0] for row in conn.execute("EXPLAIN " + _TOTALS, params))
        assert "Index Only Scan using usage_totals" in plan, plan
        rows = conn.execute(_TOTALS, params).fetchall()
        assert sorted((k, calls, int(cost)) for k, _, calls, _, cost, _, _ in rows) == \
            [(k, 300 - (k == 0), sum(range(max(1, 300 * k), 300 * (k + 1))))
             for k in range(12)]
