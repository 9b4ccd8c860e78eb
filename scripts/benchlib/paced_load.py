"""`scripts/bench --paced-load`: LLM-like paced streams at 64, 256 and 1 000 concurrent.

What LLM traffic does to the router: every stream is one token per SSE event, the first
after `TTFT_S`, then one every `DELAY_S` (`--paced-events` of them), held at a constant
concurrency (closed loop: each of N connections starts its next stream when one ends; the
N start staggered over one stream's length so they do not move in lockstep). Three paths,
each measured direct (the load generator calling the fake) and through the router, back
to back:

* `openai`: `POST /v1/chat/completions` (stream, include_usage) to an OpenAI-kind model;
* `anthropic`: `POST /v1/messages` (stream) to an Anthropic-kind model;
* `translated`: `POST /v1/messages` to the OpenAI-kind model (the router translates);
  its direct figure is `openai`'s (what the upstream call alone costs).

The N connections are opened before the load (32 at a time): opened under load, they
overflow the router's accept backlog (hypercorn's default 100) while its one core is
busy with the streams, and some wait tens of seconds or are reset (a finding of its own,
not the steady state this measures).

Per path and level, a fresh router (the memory figure must not inherit another phase's
pages) is warmed with 16 streams and its idle RSS read; then a warm-up of one stream
length + 1 s (longer, up to `MAX_WARMUP_S`, until every connection completed a stream:
a saturated router stretches them) and a measured window (`WINDOW_S`, or twice a stream's length, longer
until N streams ended in it) in steady state. Within the window: completed streams (a
stream counts only if complete: `[DONE]` or `message_stop`) per second, their times
(p50, p99), router CPU (utime + stime from /proc) per completed stream and per content
event delivered (events counted in the bytes received), router RSS (median of one
reading a second) minus idle, per open stream, and the cores other processes took
meanwhile (the machine is shared: /proc/stat busy minus fake, router and load
generator). The direct phases give the fake's own figures: its CPU per event, and its p50
stream time against the ideal (TTFT + events x delay): a fake that kept pace is ~1.0x.

The fake is benchlib/paced_fake.py (`--paced-fake hypercorn`: `python -m tests.fakes`,
which cannot keep pace at 1 000 streams). Medians of `--runs` runs; ratios are the
medians of the per-run router/direct ratios.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import trio

from benchlib import load
from benchlib.procs import (ROOT, UPSTREAM_KEY, Child, Children, cpu_seconds,
                            machine_busy_seconds, raise_open_files, rss_kib)

TTFT_S = 0.1
DELAY_S = 0.02
WINDOW_S = 10.0
MAX_WARMUP_S = 60.0
MAX_WINDOW_FACTOR = 3
PATHS = ("openai", "anthropic", "translated")
# The router's second provider and model (start_router writes `fake` / `bench-model`).
EXTRA_CONFIG = f"""
[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{{fake_url}}"
api_keys = ["{UPSTREAM_KEY}"]
max_concurrent = 4096

[[models]]
id = "bench-claude"
route = ["ant:claude-haiku-4-5"]
input_per_mtok = "1"
output_per_mtok = "5"
"""
Figures = dict[str, float]
Log = Callable[[str], None]


@dataclass
class Window:
    """What one closed-loop phase saw in its measured window."""

    ok: int = 0
    bad: int = 0
    first_error: str = ""
    times_s: list[float] = field(default_factory=list)
    events: int = 0
    span_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    rss_kib: list[int] = field(default_factory=list)
    measuring: bool = False
    warmup_s: float = 0.0
    unserved: int = 0  # connections without a completed stream when the window opened
    served: int = 0  # connections that completed at least one stream
    finished: int = 0  # streams ended (complete or not) since the start, window or not


async def closed_loop(target: load.Target, n: int, stagger_s: float, warmup_s: float,
                      window_s: float, cpu: Callable[[], dict[str, float]],
                      rss: Callable[[], int] | None, preconnect: bool = True) -> Window:
    """N connections streaming back to back; the window's figures (in-flight streams at
    its end are dropped: they are outside it)."""
    w = Window()
    marker = b'"text_delta"' if target.api == "anthropic" else b'{"content":'

    def count(piece: bytes) -> None:
        if w.measuring:
            w.events += piece.count(marker)

    conns = [load.RawConnection(target) for _ in range(n)]

    async def worker(i: int) -> None:
        conn = conns[i]
        await trio.sleep(stagger_s * i / n)
        served = False
        try:
            while True:
                t = time.perf_counter()
                error = ""
                try:
                    reply = await conn.exchange(True, count)
                    if not load.complete_stream(reply, target.api):
                        error = f"{reply.status} ...{reply.tail[-80:]!r}"
                except (OSError, load.ConnectionClosed, ValueError) as exc:
                    error = repr(exc)
                w.finished += 1
                if not error and not served:
                    served = True
                    w.served += 1
                if w.measuring:
                    if error:
                        w.bad += 1
                        w.first_error = w.first_error or error
                    else:
                        w.ok += 1
                        w.times_s.append(time.perf_counter() - t)
                if error:
                    await trio.sleep(0.05)
        finally:
            conn.close()

    # All N connect first, 32 at a time, while the server is idle: N connections opened
    # under load overflow its accept backlog (hypercorn's 100; `preconnect=False` shows it)
    gate = trio.Semaphore(32)

    async def connect(conn: load.RawConnection) -> None:
        async with gate:
            try:
                await conn.connect()
            except OSError:
                pass  # the first exchange connects again

    if preconnect:
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(connect, conn)
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(worker, i)
        # Steady state: a saturated router stretches every stream, so the warm-up lasts
        # until every connection completed a stream (and N streams ended), the window
        # until it saw N end too (within limits).
        started = time.perf_counter()
        await trio.sleep(warmup_s)
        while (w.served < n or w.finished < n) and time.perf_counter() - started < MAX_WARMUP_S:
            await trio.sleep(0.1)
        w.warmup_s, w.unserved = time.perf_counter() - started, n - w.served
        before, c0 = cpu(), time.process_time()
        w.measuring, t0 = True, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < window_s or (
                w.ok + w.bad < n and elapsed < MAX_WINDOW_FACTOR * window_s):
            await trio.sleep(1.0)
            if rss is not None:
                w.rss_kib.append(rss())
        w.measuring = False
        w.span_s = time.perf_counter() - t0
        after, w.client_cpu_s = cpu(), time.process_time() - c0
        w.cpu_s = {name: after[name] - before[name] for name in after}
        nursery.cancel_scope.cancel()
    return w


async def _warm(target: load.Target, n: int) -> None:
    async def one() -> None:
        conn = load.RawConnection(target)
        try:
            await conn.exchange(True)
        except (OSError, load.ConnectionClosed, ValueError):
            pass
        finally:
            conn.close()

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)


def _p(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-q * len(ordered) // 100) - 1)] if ordered else float("nan")


def _figures(w: Window, prefix: str, cpu_name: str) -> Figures:
    cpu = w.cpu_s.get(cpu_name, 0.0)
    return {f"{prefix}_rps": w.ok / w.span_s,
            f"{prefix}_p50_ms": _p(w.times_s, 50) * 1000,
            f"{prefix}_p99_ms": _p(w.times_s, 99) * 1000,
            f"{prefix}_errors": float(w.bad),
            f"{prefix}_events_per_stream": w.events / max(w.ok, 1),
            f"{prefix}_cpu_ms": cpu * 1000 / max(w.ok, 1),
            f"{prefix}_cpu_us_per_event": cpu * 1e6 / max(w.events, 1),
            f"{prefix}_cores": cpu / w.span_s,
            f"{prefix}_client_cores": w.client_cpu_s / w.span_s,
            f"{prefix}_warmup_s": w.warmup_s, f"{prefix}_unserved": float(w.unserved),
            # what else ran on the machine meanwhile (busy cores minus the three of us)
            f"{prefix}_other_cores": max(0.0, (w.cpu_s["busy"] - w.cpu_s.get("router", 0.0)
                                               - w.cpu_s["fake"] - w.client_cpu_s) / w.span_s)}


def _start_fake(args: Any, children: Children) -> Child:
    if args.paced_fake == "lean":
        return children.start_paced_fake(reply_words=args.paced_events, first_byte_delay_s=TTFT_S,
                                         chunk_delay_s=DELAY_S,
                                         processes=args.paced_fake_processes)
    argv = [sys.executable, "-m", "tests.fakes", "--host", "127.0.0.1", "--port", "0",
            "--reply-words", str(args.paced_events), "--first-byte-delay", str(TTFT_S),
            "--chunk-delay", str(DELAY_S), "--expected-api-key", UPSTREAM_KEY]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "AURA_"))}
    child = Child("fake", argv, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"})
    children.children.append(child)
    child.wait_listening()
    return child


def one_run(args: Any, children: Children, levels: list[int], log: Log
            ) -> dict[tuple[str, int], Figures]:
    fake = _start_fake(args, children)
    ideal_s = TTFT_S + args.paced_events * DELAY_S
    warmup_s, window_s = ideal_s + 1.0, max(WINDOW_S, 2 * ideal_s)
    max_tokens = max(256, args.paced_events)
    out: dict[tuple[str, int], Figures] = {}

    def direct(api: str, level: int) -> Figures:
        target = load.Target(fake.host, fake.port, UPSTREAM_KEY,
                             "claude-haiku-4-5" if api == "anthropic" else "gpt-4o-mini",
                             path="/v1/messages" if api == "anthropic" else
                             "/v1/chat/completions", api=api, max_tokens=max_tokens)
        w = trio.run(closed_loop, target, level, ideal_s, warmup_s, window_s,
                     lambda: {"fake": cpu_seconds(fake.pid), "busy": machine_busy_seconds()},
                     None)
        fig = _figures(w, "direct", "fake")
        fig["fake_cpu_us_per_event"] = fig.pop("direct_cpu_us_per_event")
        fig["fake_cores"] = fig.pop("direct_cores")
        fig["direct_pace"] = fig["direct_p50_ms"] / 1000 / ideal_s
        del fig["direct_cpu_ms"]
        log(f"  {api} direct x{level}: {fig['direct_rps']:.1f} streams/s, p50 "
            f"{fig['direct_p50_ms']:.0f} ms ({fig['direct_pace']:.3f}x ideal), p99 "
            f"{fig['direct_p99_ms']:.0f} ms, fake {fig['fake_cpu_us_per_event']:.1f} µs/event "
            f"({fig['fake_cores']:.2f} cores), load-gen {fig['direct_client_cores']:.2f} cores, "
            f"others {fig['direct_other_cores']:.2f} cores"
            + (f", {w.bad} errors: {w.first_error}" if w.bad else ""))
        fake.check_alive()
        return fig

    def routed(path: str, level: int) -> Figures:
        router, key = children.start_router(fake, extra_config=EXTRA_CONFIG,
                                            max_concurrent=max(2048, 2 * level))
        api = "openai" if path == "openai" else "anthropic"
        target = load.Target(router.host, router.port, key,
                             "bench-claude" if path == "anthropic" else "bench-model",
                             path="/v1/chat/completions" if api == "openai" else "/v1/messages",
                             api=api, max_tokens=max_tokens)
        trio.run(_warm, target, 16)
        time.sleep(1.0)
        idle = statistics.median(rss_kib(router.pid) for _ in range(5))
        w = trio.run(closed_loop, target, level, ideal_s, warmup_s, window_s,
                     lambda: {"router": cpu_seconds(router.pid), "fake": cpu_seconds(fake.pid),
                              "busy": machine_busy_seconds()},
                     partial(rss_kib, router.pid))
        router.check_alive()
        children.stop(router)
        fig = _figures(w, "router", "router")
        fig["rss_idle_mib"] = idle / 1024
        fig["rss_kib_per_stream"] = (statistics.median(w.rss_kib) - idle) / level
        fig["router_fake_cores"] = w.cpu_s["fake"] / w.span_s
        log(f"  {path} router x{level}: {fig['router_rps']:.1f} streams/s, p50 "
            f"{fig['router_p50_ms']:.0f} ms, p99 {fig['router_p99_ms']:.0f} ms, "
            f"{fig['router_cpu_ms']:.2f} ms CPU/stream, {fig['router_cpu_us_per_event']:.1f} "
            f"µs/event, {fig['router_cores']:.2f} cores, {fig['rss_kib_per_stream']:.1f} "
            f"KiB/stream (idle {idle / 1024:.0f} MiB), load-gen "
            f"{fig['router_client_cores']:.2f} cores, others {fig['router_other_cores']:.2f} "
            f"cores, {fig['router_events_per_stream']:.1f} "
            f"events/stream, warm-up {w.warmup_s:.1f} s"
            + (f" ({w.unserved} connections still without a stream)" if w.unserved else "")
            + (f", {w.bad} errors: {w.first_error}" if w.bad else ""))
        return fig

    for level in levels:
        base = direct("openai", level)
        for path in (() if args.paced_direct_only else PATHS):
            if path == "anthropic":
                d = direct("anthropic", level)
            else:
                d = base
            fig = {**d, **routed(path, level)}
            fig["ratio"] = fig["router_rps"] / fig["direct_rps"] if fig["direct_rps"] else 0.0
            out[(path, level)] = fig
        if args.paced_direct_only:
            out[("openai", level)] = base
            out[("anthropic", level)] = direct("anthropic", level)
    children.stop(fake)
    return out


COLUMNS = (  # (header, key, digits)
    ("direct/s", "direct_rps", 1), ("router/s", "router_rps", 1), ("ratio", "ratio", 2),
    ("p50 direct ms", "direct_p50_ms", 0), ("p50 router ms", "router_p50_ms", 0),
    ("p99 direct ms", "direct_p99_ms", 0), ("p99 router ms", "router_p99_ms", 0),
    ("router CPU/stream ms", "router_cpu_ms", 2),
    ("router CPU/chunk µs", "router_cpu_us_per_event", 1),
    ("router cores", "router_cores", 2), ("other procs' cores", "router_other_cores", 2),
    ("RSS/open stream KiB", "rss_kib_per_stream", 1),
    ("errors d/r", "errors", 0),
)
FAKE_COLUMNS = (
    ("direct/s", "direct_rps", 1), ("p50 ms", "direct_p50_ms", 0),
    ("p50 / ideal", "direct_pace", 3), ("p99 ms", "direct_p99_ms", 0),
    ("fake CPU/event µs", "fake_cpu_us_per_event", 1), ("fake cores", "fake_cores", 2),
    ("load-gen cores", "direct_client_cores", 2), ("other procs' cores", "direct_other_cores", 2),
    ("errors", "direct_errors", 0),
)


def _cell(runs: list[Figures], key: str, digits: int) -> str:
    if key == "errors":
        return (f"{sum(r['direct_errors'] for r in runs):.0f}/"
                f"{sum(r['router_errors'] for r in runs):.0f}")
    values = [r[key] for r in runs if key in r]
    return f"{statistics.median(values):,.{digits}f}" if values else ""


def table(runs: list[dict[tuple[str, int], Figures]], levels: list[int],
          direct_only: bool) -> str:
    lines = []
    paths = ("openai", "anthropic") if direct_only else PATHS
    cols = FAKE_COLUMNS if direct_only else COLUMNS
    lines.append("| path | streams | " + " | ".join(h for h, _, _ in cols) + " |")
    lines.append("|---|--:|" + "--:|" * len(cols))
    for path in paths:
        for level in levels:
            per_run = [r[(path, level)] for r in runs if (path, level) in r]
            lines.append(f"| {path} | {level:,} | "
                         + " | ".join(_cell(per_run, k, d) for _, k, d in cols) + " |")
    if not direct_only:
        lines.append("")
        lines.append("The fake alone (direct phases; `translated` shares `openai`'s):")
        lines.append("")
        lines.append("| path | streams | " + " | ".join(h for h, _, _ in FAKE_COLUMNS) + " |")
        lines.append("|---|--:|" + "--:|" * len(FAKE_COLUMNS))
        for path in ("openai", "anthropic"):
            for level in levels:
                per_run = [r[(path, level)] for r in runs if (path, level) in r]
                lines.append(f"| {path} | {level:,} | " + " | ".join(
                    _cell(per_run, k, d) for _, k, d in FAKE_COLUMNS) + " |")
    return "\n".join(lines)


def run(args: Any, children: Children, log: Log) -> int:
    levels = [int(x) for x in args.paced_levels.split(",") if x.strip()]
    limit = raise_open_files(4 * max(levels) + 1024)
    if limit < 3 * max(levels) + 256:
        log(f"open files limited to {limit}: some streams may be refused")
    ideal_s = TTFT_S + args.paced_events * DELAY_S
    runs = []
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs}")
        runs.append(one_run(args, children, levels, log))
        print(f"\nrun {i + 1}:\n" + table(runs[-1:], levels, args.paced_direct_only),
              flush=True)
    print(f"\nPaced streams ({args.paced_events} events {DELAY_S * 1000:.0f} ms apart, TTFT "
          f"{TTFT_S * 1000:.0f} ms: ideal {ideal_s * 1000:.0f} ms per stream), fake "
          f"{args.paced_fake}; medians of {len(runs)} run(s), errors summed:\n")
    print(table(runs, levels, args.paced_direct_only))
    return 0
