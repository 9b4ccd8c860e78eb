"""`scripts/bench --floor`: the router against the floor of its own stack.

The floor is `benchlib/floor_app.py`: hypercorn + trio answering the same requests with
pre-encoded bytes and nothing else (no auth, credits, upstream or settlement), once as
hypercorn ships (`hypercorn`) and once with the router's patches of it
(`hypercorn, patched`). Each run measures, for the two floors and the router (in front of
the bench's fake provider), in an order that alternates between runs:

* server CPU per non-streaming request and per streaming request (12 words in one
  write) at `--concurrency` connections;
* server CPU per paced chunk: `--paced` streams (default 100) of one word per SSE event,
  20 ms apart, at 10 and 110 words; the extra CPU per extra chunk.

What the router spends above the patched floor is its own work (and its upstream
client's); the floor is what no router code on this stack can go below.
"""

from __future__ import annotations

import statistics
from argparse import Namespace
from functools import partial
from typing import Any, Callable

import trio

from benchlib import load
from benchlib.procs import Child, Children, cpu_seconds

PACED_WORDS = (10, 110)
PACED_DELAY_S = 0.02
KINDS = ("hypercorn", "hypercorn, patched", "router")
FIGURES = (("ns_cpu_ms", "CPU per non-streaming request (ms)", 3),
           ("st_cpu_ms", "CPU per streaming request, one write (ms)", 3),
           ("chunk_us", "CPU per paced chunk (µs)", 1))


def _servers(children: Children) -> dict[tuple[str, str], tuple[Child, str]]:
    """(kind, "plain" | "paced10" | "paced110") -> (server, key)."""
    shapes = {"plain": (12, 0.0), **{f"paced{w}": (w, PACED_DELAY_S) for w in PACED_WORDS}}
    servers: dict[tuple[str, str], tuple[Child, str]] = {}
    for shape, (words, delay) in shapes.items():
        for kind in KINDS[:2]:
            servers[(kind, shape)] = (children.start_floor(
                reply_words=words, chunk_delay_s=delay, patched=kind != "hypercorn"), "unused")
        fake = children.start_fake(reply_words=words, chunk_delay_s=delay)
        servers[("router", shape)] = children.start_router(fake)
    return servers


def _cpu_ms(args: Namespace, server: Child, key: str, stream: bool, concurrency: int,
            duration_s: float, run: Callable[..., Any]) -> float:
    target = load.Target(server.host, server.port, key,
                         "bench-model" if key != "unused" else "gpt-4o-mini")

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
            log(f"  {kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures[kind].items()))
        runs.append(figures)
    print(f"\n| figure (medians of {args.runs} runs) | " + " | ".join(KINDS)
          + " | router / patched floor | router minus patched floor |")
    print("|---|" + "--:|" * (len(KINDS) + 2))
    for key, label, digits in FIGURES:
        med = {kind: statistics.median(r[kind][key] for r in runs) for kind in KINDS}
        ratio = statistics.median(r["router"][key] / r["hypercorn, patched"][key]
                                  for r in runs)
        print(f"| {label} | " + " | ".join(f"{med[k]:.{digits}f}" for k in KINDS)
              + f" | ×{ratio:.2f} | {med['router'] - med['hypercorn, patched']:.{digits}f} |")
    return 0
