"""`scripts/bench --floor`: the router against the floor of its own stack.

The floor is `benchlib/floor_app.py`: hypercorn + trio answering the same requests with
pre-encoded bytes and nothing else (no auth, credits, upstream or settlement), once as
hypercorn ships (`hypercorn`) and once with the router's patches of it
(`hypercorn, patched`); and the floor of a gateway (`pass-through`): the patched
hypercorn forwarding each request unchanged to the bench's fake provider with the
router's upstream client, and its bytes back. Each run measures, for the three floors and
the router (both in front of the same kind of fake provider), in an order that alternates
between runs:

* server CPU per non-streaming request and per streaming request (12 words in one
  write) at `--concurrency` connections;
* server CPU per paced chunk: `--paced` streams (default 100) of one word per SSE event,
  20 ms apart, at 10 and 110 words; the extra CPU per extra chunk;
* time to first token at concurrency 1 (`--ttft-requests` sequential streams), and for
  the pass-through and the router its overhead over calling the fake directly.

`scripts/bench --floor-streams N` measures memory instead: RSS per open stream with N
streams open at once (the bench's slow fake: the first chunk at once, then one every
10 s), for the patched floor (hypercorn holding N client connections, each app asleep
between events), the pass-through (each stream also holding its upstream connection) and
the router.

What the router spends above the patched floor is its own work (and its upstream
client's); the floor is what no router code on this stack can go below.
"""

from __future__ import annotations

import statistics
import time
from argparse import Namespace
from functools import partial
from typing import Any, Callable

import trio

from benchlib import load
from benchlib.procs import (UPSTREAM_KEY, Child, Children, cpu_seconds, raise_open_files,
                            rss_kib)

PACED_WORDS = (10, 110)
PACED_DELAY_S = 0.02
KINDS = ("hypercorn", "hypercorn, patched", "pass-through", "router")
FIGURES = (("ns_cpu_ms", "CPU per non-streaming request (ms)", 3),
           ("st_cpu_ms", "CPU per streaming request, one write (ms)", 3),
           ("chunk_us", "CPU per paced chunk (µs)", 1),
           ("ttft_ms", "time to first token p50, concurrency 1 (ms)", 3),
           ("ttft_over_ms", "its overhead over the fake called directly (ms)", 3))


def _servers(children: Children) -> dict[tuple[str, str], tuple[Child, str]]:
    """(kind, "plain" | "paced10" | "paced110") -> (server, key)."""
    shapes = {"plain": (12, 0.0), **{f"paced{w}": (w, PACED_DELAY_S) for w in PACED_WORDS}}
    servers: dict[tuple[str, str], tuple[Child, str]] = {}
    for shape, (words, delay) in shapes.items():
        for kind in KINDS[:2]:
            servers[(kind, shape)] = (children.start_floor(
                reply_words=words, chunk_delay_s=delay, patched=kind != "hypercorn"), "unused")
        fake = children.start_fake(reply_words=words, chunk_delay_s=delay)
        servers[("pass-through", shape)] = (children.start_floor(
            reply_words=words, chunk_delay_s=delay, patched=True, upstream=fake), "unused")
        servers[("direct", shape)] = (fake, UPSTREAM_KEY)
        fake = children.start_fake(reply_words=words, chunk_delay_s=delay)
        servers[("router", shape)] = children.start_router(fake)
    return servers


def _target(server: Child, key: str) -> load.Target:
    return load.Target(server.host, server.port, key,
                       "bench-model" if server.name == "router" else "gpt-4o-mini")


def _ttft_ms(args: Namespace, server: Child, key: str, run: Callable[..., Any]) -> float:
    samples, errors = run("raw", 1, _target(server, key), load.run_ttft, args.ttft_requests)
    if errors or not samples:
        raise RuntimeError(f"{errors} failed streams against {server.name}")
    return float(statistics.median(samples))


def _cpu_ms(args: Namespace, server: Child, key: str, stream: bool, concurrency: int,
            duration_s: float, run: Callable[..., Any]) -> float:
    target = _target(server, key)

    def probe() -> dict[str, float]:
        return {"server": cpu_seconds(server.pid), "fake": 0.0}

    res = run("raw", concurrency, target, load.run_load, stream, concurrency, args.warmup,
              duration_s, probe)
    if res.phase.errors:
        raise RuntimeError(f"{res.phase.errors} failed requests against {server.name}")
    return float(res.per_request_ms("server"))


def run(args: Namespace, children: Children, log: Callable[[str], None],
        run_load: Callable[..., Any]) -> int:
    paced = args.paced or 100
    servers = _servers(children)
    runs: list[dict[str, dict[str, float]]] = []
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs}")
        figures: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
        for kind in (KINDS if i % 2 == 0 else tuple(reversed(KINDS))):
            cpu = partial(_cpu_ms, args, run=run_load)
            server, key = servers[(kind, "plain")]
            figures[kind]["ns_cpu_ms"] = cpu(server, key, False, args.concurrency,
                                             args.duration)
            figures[kind]["st_cpu_ms"] = cpu(server, key, True, args.concurrency,
                                             args.duration)
            per_stream = {w: cpu(*servers[(kind, f"paced{w}")], True, paced,
                                 max(args.duration, 6.0)) for w in PACED_WORDS}
            low, high = PACED_WORDS
            figures[kind]["chunk_us"] = (per_stream[high] - per_stream[low]) * 1000 / (high - low)
            figures[kind]["ttft_ms"] = _ttft_ms(args, server, key, run_load)
            if kind in ("pass-through", "router"):
                direct = _ttft_ms(args, *servers[("direct", "plain")], run_load)
                figures[kind]["ttft_over_ms"] = figures[kind]["ttft_ms"] - direct
            log(f"  {kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures[kind].items()))
        runs.append(figures)
    print(f"\n| figure (medians of {args.runs} runs) | " + " | ".join(KINDS)
          + " | router / patched floor | router minus patched floor |")
    print("|---|" + "--:|" * (len(KINDS) + 2))
    for key, label, digits in FIGURES:
        med = {kind: statistics.median(r[kind][key] for r in runs) if key in runs[0][kind]
               else float("nan") for kind in KINDS}
        floor = "pass-through" if key == "ttft_over_ms" else "hypercorn, patched"
        ratio = statistics.median(r["router"][key] / r[floor][key] for r in runs)
        cells = ["—" if v != v else f"{v:.{digits}f}" for v in med.values()]
        print(f"| {label} | " + " | ".join(cells)
              + f" | ×{ratio:.2f} | {med['router'] - med[floor]:.{digits}f} |")
    print("\n| figure (medians of per-run ratios) | router / pass-through | router minus "
          "pass-through |\n|---|--:|--:|")
    for key, label, digits in FIGURES:
        if key in runs[0]["pass-through"]:
            ratio = statistics.median(r["router"][key] / r["pass-through"][key] for r in runs)
            over = statistics.median(r["router"][key] - r["pass-through"][key] for r in runs)
            print(f"| {label} | ×{ratio:.2f} | {over:.{digits}f} |")
    return 0


SLOW_DELAY_S = 10.0  # N streams are N / 10 events a second: 10 000 fit in one fake process
MEMORY_KINDS = KINDS[1:]


def _memory_kib(args: Namespace, children: Children, kind: str, n: int,
                log: Callable[[str], None], run: Callable[..., Any]) -> tuple[float, int]:
    """(KiB of RSS per open stream, streams opened) for one fresh server of `kind`."""
    fake = children.start_fake(reply_words=64, chunk_delay_s=SLOW_DELAY_S, first_chunk_now=True)
    if kind == "router":
        server, key = children.start_router(fake, max_concurrent=n + 64)
    else:
        server, key = children.start_floor(
            reply_words=64, chunk_delay_s=SLOW_DELAY_S, patched=True,
            upstream=fake if kind == "pass-through" else None), "unused"
    target = _target(server, key)

    def sample() -> int:
        return rss_kib(server.pid)

    run("raw", 16, target, load.hold_streams, 16, sample)  # warm every code path first
    time.sleep(1.0)
    idle = statistics.median(sample() for _ in range(5))
    held: load.HoldResult = run("raw", n, target, partial(
        load.hold_streams, connecting=256, timeout_s=300.0), n, sample)
    server.check_alive()
    per_stream = (statistics.median(held.samples_kib) - idle) / max(held.opened, 1)
    log(f"  {kind}: {held.opened}/{n} open ({held.failed} failed) in {held.open_s:.1f} s, "
        f"RSS {idle / 1024:.1f} MiB idle: {per_stream:.1f} KiB per stream")
    children.stop(server)
    children.stop(fake)
    return per_stream, held.opened


def open_streams(args: Namespace, children: Children, log: Callable[[str], None],
                 run: Callable[..., Any]) -> int:
    n = args.floor_streams
    limit = raise_open_files(2 * n + 256)
    if limit < 2 * n + 64:
        log(f"open files limited to {limit}: a router holds 2 per stream (client and "
            f"upstream) and cannot open {n}")
    runs = []
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs}")
        kinds = MEMORY_KINDS if i % 2 == 0 else tuple(reversed(MEMORY_KINDS))
        runs.append({kind: _memory_kib(args, children, kind, n, log, run) for kind in kinds})
    print(f"\n| RSS per open stream, {n} open (medians of {args.runs} runs) | "
          + " | ".join(MEMORY_KINDS) + " |\n|---|" + "--:|" * len(MEMORY_KINDS))
    print("| KiB per stream | " + " | ".join(
        f"{statistics.median(r[k][0] for r in runs):.1f}" for k in MEMORY_KINDS) + " |")
    print("| streams open | " + " | ".join(
        f"{min(r[k][1] for r in runs)}" for k in MEMORY_KINDS) + " |")
    return 0
