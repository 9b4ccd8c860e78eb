"""`scripts/bench --backends`: the router's cost per request on each ledger backend.

Each run starts two fakes (plain and paced) and, for each backend in turn (the order
rotates between runs: this machine drifts), fresh routers on an empty ledger of that
backend, measured like `--workers-scaling` (benchlib/scaling.py): non-streaming requests
on `--concurrency` connections, then `--paced` paced streams. PostgreSQL gets a schema of
its own (dropped after), Redis a database of its own (`BENCH_REDIS_DB`, flushed); both
are the machine's local services. The figure that matters is router CPU per request
(hold, settlement and the rest of the request, all in the router process); the
services' own CPU is not counted in it but shares the same cores.
"""

from __future__ import annotations

import secrets
import socket
import statistics
from typing import Any, Callable

from benchlib.procs import Children
from benchlib.scaling import PACED_DELAY_S, PACED_WORDS, Figures, measure

BACKENDS = ("sqlite", "postgres", "redis")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_REDIS_DB = 12
ROWS = (("non-streaming req/s", "ns_rps", 0), ("  router CPU per request (ms)", "ns_cpu_ms", 3),
        ("paced streams: content tokens/s", "ps_tokens_per_s", 0),
        ("  router CPU per stream (ms)", "ps_cpu_ms", 2),
        ("  router CPU per token (µs)", "ps_cpu_us_per_token", 1))


def _flush_redis(db: int) -> None:
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as sock:
        sock.sendall(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n*1\r\n$7\r\nFLUSHDB\r\n"
                     % (len(str(db)), db))
        sock.recv(64)


class _Ledgers:
    """A fresh, empty ledger per router, and the cleanup."""

    def __init__(self) -> None:
        self.schemas: list[str] = []

    def env(self, backend: str) -> dict[str, str]:
        if backend == "postgres":
            import psycopg

            schema = f"aura_bench_{secrets.token_hex(4)}"
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            self.schemas.append(schema)
            return {"BILLING_BACKEND": "postgres",
                    "DATABASE_URL": f"{POSTGRES}?options=-csearch_path%3D{schema}"}
        if backend == "redis":
            _flush_redis(BENCH_REDIS_DB)
            return {"BILLING_BACKEND": "redis",
                    "REDIS_URL": f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}"}
        return {"BILLING_BACKEND": "sqlite"}

    def close(self) -> None:
        if self.schemas:
            import psycopg

            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                for schema in self.schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        _flush_redis(BENCH_REDIS_DB)


def run(args: Any, children: Children, log: Callable[[str], None]) -> int:
    runs: list[dict[str, Figures]] = []
    ledgers = _Ledgers()
    try:
        for i in range(args.runs):
            log(f"run {i + 1}/{args.runs}")
            plain = children.start_fake(reply_words=args.reply_words)
            paced = children.start_fake(reply_words=PACED_WORDS, chunk_delay_s=PACED_DELAY_S)
            order = BACKENDS[i % 3:] + BACKENDS[:i % 3]
            run_: dict[str, Figures] = {}
            for backend in order:
                run_[backend] = measure(children, 1, plain, paced, args,
                                        env=ledgers.env(backend), label=backend)
            children.stop(paced)
            children.stop(plain)
            runs.append(run_)
    finally:
        ledgers.close()
    print(f"\nLedger backends, one router process: medians of {len(runs)} run(s), "
          f"{args.concurrency} connections non-streaming, {args.paced} paced streams "
          f"({PACED_WORDS} tokens, {PACED_DELAY_S * 1000:.0f} ms apart); ratios are "
          "medians of per-run ratios to sqlite")
    print("| figure | " + " | ".join(BACKENDS) + " | postgres / sqlite | redis / sqlite |")
    print("|---|" + "--:|" * (len(BACKENDS) + 2))
    for label, key, digits in ROWS:
        cells = [f"{statistics.median(r[b][key] for r in runs):,.{digits}f}" for b in BACKENDS]
        ratios = [f"{statistics.median(r[b][key] / r['sqlite'][key] for r in runs):.2f}×"
                  if all(r["sqlite"][key] for r in runs) else "" for b in BACKENDS[1:]]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return 0
