"""`scripts/bench --workers-scaling`: one router process against WORKERS=N on this machine.

Each run starts two fakes (one plain, one paced) and, for each worker count in turn
(the order alternates between runs: this machine drifts), a fresh router with that
`WORKERS` in front of them, and measures two phases:

* non-streaming: `--concurrency` keep-alive connections sending back-to-back requests
  (the kernel spreads the connections over the workers when they open);
* paced streams: `--paced` connections (default 200) each streaming back-to-back replies
  of `PACED_WORDS` one-token SSE events 20 ms apart, i.e. 1 s per reply and 50 tokens/s
  per stream when nothing is saturated; the figure is content tokens delivered per
  second (and the mean seconds a reply took: over 1 s means the machine is saturated).

For each phase it also reads the CPU each party used, in cores (CPU-seconds over the
phase's wall time): the router (supervisor and workers), the fake provider, this load
generator, and everything else on the machine (from /proc/stat, busy minus those three).
All of them share the same cores, so with 2 cores their sum is the ceiling: WORKERS can
only scale the router's share of it. "per router CPU-second" is the router's efficiency:
N workers on N cores of their own would give N times it, so a drop from one to N workers
is what running N processes costs (e.g. the SQLite write lock they share).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import trio

from benchlib import load
from benchlib.procs import Child, Children, cpu_seconds, machine_busy_seconds, preemptions

PACED_WORDS = 50
PACED_DELAY_S = 0.02
Figures = dict[str, float]


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    digits: int = 0
    ratio: bool = False


ROWS = (
    Row("non-streaming req/s", "ns_rps", 0, True),
    Row("  router CPU per request (ms)", "ns_cpu_ms", 3),
    Row("  requests per router CPU-second", "ns_per_cpu_s", 0, True),
    Row("  router preempted per request", "ns_preempted", 2),
    Row("  cores: router", "ns_router_cores", 2, True),
    Row("  cores: fake provider", "ns_fake_cores", 2),
    Row("  cores: load generator", "ns_client_cores", 2),
    Row("  cores: other processes", "ns_other_cores", 2),
    Row("  cores: whole machine busy", "ns_busy_cores", 2),
    Row("paced streams: content tokens/s", "ps_tokens_per_s", 0, True),
    Row("  streams completed/s", "ps_rps", 1, True),
    Row("  mean seconds per 1 s reply", "ps_reply_s", 2),
    Row("  router CPU per token (µs)", "ps_cpu_us_per_token", 1),
    Row("  tokens per router CPU-second", "ps_per_cpu_s", 0, True),
    Row("  router preempted per stream", "ps_preempted", 2),
    Row("  cores: router", "ps_router_cores", 2, True),
    Row("  cores: fake provider", "ps_fake_cores", 2),
    Row("  cores: load generator", "ps_client_cores", 2),
    Row("  cores: other processes", "ps_other_cores", 2),
    Row("  cores: whole machine busy", "ps_busy_cores", 2),
)


def _log(message: str) -> None:
    import sys
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _phase(prefix: str, target: load.Target, router: Child, fake: Child, stream: bool,
           connections: int, warmup_s: float, duration_s: float) -> Figures:
    def probe() -> dict[str, float]:
        return {"server": cpu_seconds(router.pid), "fake": cpu_seconds(fake.pid),
                "busy": machine_busy_seconds(), "wall": time.perf_counter(),
                "preempted": float(preemptions(router.pid))}

    res: load.LoadResult = trio.run(partial(load.run_load, partial(load.RawConnection, target),
                                            stream, connections, warmup_s, duration_s, probe))
    used = {name: res.after[name] - res.before[name] for name in res.after}
    wall = used["wall"]  # from probe to probe: the phase and the quiet 0.25 s after it
    span = max(res.phase.last_done - res.phase.started, 1e-9)  # the load generator's
    out = {f"{prefix}_rps": res.phase.rate, f"{prefix}_errors": float(res.phase.errors),
           f"{prefix}_cpu_ms": res.per_request_ms("server"),
           f"{prefix}_preempted": used["preempted"] / max(res.phase.ok, 1),
           f"{prefix}_router_cores": used["server"] / wall,
           f"{prefix}_fake_cores": used["fake"] / wall,
           f"{prefix}_client_cores": res.client_cpu_s / span,
           f"{prefix}_busy_cores": used["busy"] / wall}
    out[f"{prefix}_other_cores"] = max(0.0, out[f"{prefix}_busy_cores"] - out[
        f"{prefix}_router_cores"] - out[f"{prefix}_fake_cores"] - out[f"{prefix}_client_cores"])
    if res.phase.errors:
        _log(f"    {res.phase.errors} errors, first: {res.phase.first_error}")
    return out


def measure(children: Children, workers: int, plain: Child, paced: Child,
            args: Any, env: dict[str, str] | None = None, label: str = "") -> Figures:
    """Both phases against fresh routers with `workers` and `env` (e.g. a ledger backend:
    benchlib/backends.py)."""
    out: Figures = {}
    router, key = children.start_router(plain, workers=workers, env=env)
    out.update(_phase("ns", load.Target(router.host, router.port, key, "bench-model"),
                      router, plain, False, args.concurrency, args.warmup, args.duration))
    out["ns_per_cpu_s"] = 1000 / out["ns_cpu_ms"] if out["ns_cpu_ms"] else 0.0
    router.check_alive()
    children.stop(router)
    router, key = children.start_router(paced, workers=workers, env=env)
    streams = _phase("ps", load.Target(router.host, router.port, key, "bench-model"), router,
                     paced, True, args.paced, 2.0, max(args.duration, 8.0))
    router.check_alive()
    children.stop(router)
    streams["ps_tokens_per_s"] = streams["ps_rps"] * PACED_WORDS
    streams["ps_reply_s"] = args.paced / streams["ps_rps"] if streams["ps_rps"] else 0.0
    streams["ps_cpu_us_per_token"] = streams["ps_cpu_ms"] * 1000 / PACED_WORDS
    streams["ps_per_cpu_s"] = (1e6 / streams["ps_cpu_us_per_token"]
                               if streams["ps_cpu_us_per_token"] else 0.0)
    out.update(streams)
    _log(f"  {label or f'WORKERS={workers}'}: {out['ns_rps']:,.0f} req/s (router {out['ns_router_cores']:.2f}"
         f" cores, machine {out['ns_busy_cores']:.2f}); paced {out['ps_tokens_per_s']:,.0f} "
         f"tokens/s, {out['ps_reply_s']:.2f} s per 1 s reply (router "
         f"{out['ps_router_cores']:.2f} cores, machine {out['ps_busy_cores']:.2f})")
    return out


def run(args: Any, children: Children, log: Callable[[str], None] = _log) -> int:
    counts = (1, args.scaling_workers)
    runs: list[dict[int, Figures]] = []
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs}")
        plain = children.start_fake(reply_words=args.reply_words)
        paced = children.start_fake(reply_words=PACED_WORDS, chunk_delay_s=PACED_DELAY_S)
        run_: dict[int, Figures] = {}
        for workers in (counts if i % 2 == 0 else tuple(reversed(counts))):
            run_[workers] = measure(children, workers, plain, paced, args)
        children.stop(paced)
        children.stop(plain)
        runs.append(run_)
    one, many = counts
    print(f"\nWORKERS={many} against one router process: medians of {len(runs)} run(s), "
          f"{args.concurrency} connections non-streaming, {args.paced} paced streams "
          f"({PACED_WORDS} tokens, {PACED_DELAY_S * 1000:.0f} ms apart)")
    head = f"| figure | WORKERS={one} | WORKERS={many} | ratio |"
    print(head + "\n|---|--:|--:|--:|")
    for row in ROWS:
        a = statistics.median(r[one][row.key] for r in runs)
        b = statistics.median(r[many][row.key] for r in runs)
        ratio = (f"{statistics.median(r[many][row.key] / r[one][row.key] for r in runs):.2f}×"
                 if row.ratio and all(r[one][row.key] for r in runs) else "")
        print(f"| {row.label} | {a:,.{row.digits}f} | {b:,.{row.digits}f} | {ratio} |")
    ratios = [r[many]["ns_rps"] / r[one]["ns_rps"] for r in runs if r[one]["ns_rps"]]
    print("\nper-run non-streaming ratios: " + ", ".join(f"{x:.2f}" for x in ratios))
    ratios = [r[many]["ps_tokens_per_s"] / r[one]["ps_tokens_per_s"] for r in runs
              if r[one]["ps_tokens_per_s"]]
    print("per-run paced-stream ratios: " + ", ".join(f"{x:.2f}" for x in ratios))
    errors = sum(r[w][k] for r in runs for w in counts for k in ("ns_errors", "ps_errors"))
    if errors:
        print(f"errors: {errors:.0f} (see the log above)")
    return 0
