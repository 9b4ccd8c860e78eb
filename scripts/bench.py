"""Benchmark the router against a direct call to the fake provider (`scripts/bench`).

Three processes: the fake provider, the router, and this script, which is the load
generator (a lean raw-socket HTTP/1.1 client under trio, see benchlib/load.py). Each run
starts a fresh fake and router and measures, for "direct" (fake) and "router":

* time to first token at concurrency 1 (first SSE event with non-empty delta content);
* non-streaming and streaming throughput at fixed concurrency, after a warm-up;
* server CPU per request: utime+stime from /proc/<pid>/stat around the measured phase;
* server memory per open stream: a fresh fake with a 1 s chunk delay (and for "router" a
  fresh router in front of it), N streams held open, (RSS_open - RSS_idle) / N.

Figures are the medians of `--runs` runs (ratios: median of the per-run ratios); the
table is printed and, for full runs, written to docs/benchmarks.md. Never used by tests.
The other modes (`--ab`, `--paced`, `--instructions`, `--resumable-streams`,
`--workers-scaling`: benchlib/scaling.py, `--paced-load`: benchlib/paced_load.py,
`--floor`, `--floor-streams`: benchlib/floor.py) measure one thing each and only print.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import trio

from benchlib import backends, floor, instructions, load, paced_load, report, scaling
from benchlib.procs import (ADMIN_KEY, ROOT, UPSTREAM_KEY, Child, Children, cpu_seconds,
                            machine, raise_open_files, rss_kib)

DOC = ROOT / "docs" / "benchmarks.md"
# Everything from this line on in the existing report is hand-written and kept as is.
NOTES_MARKER = "<!-- notes below are kept by scripts/bench when it rewrites this file -->"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="short smoke run: 1 run, 1 s phases, 50 TTFT requests, 100 streams; "
                        "does not write docs/benchmarks.md unless --output is given")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per phase")
    p.add_argument("--ttft-requests", type=int, default=300)
    p.add_argument("--streams", type=int, default=500, help="open streams for the memory run")
    p.add_argument("--reply-words", type=int, default=12,
                   help="content chunks per streamed reply (the fake's --reply-words)")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="load generator HTTP client (raw sockets, or httpx for comparison)")
    p.add_argument("--output", type=Path, help=f"markdown report (default {DOC} for full runs)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--ab", metavar="PYTHON",
                   help="only compare router CPU (per non-streaming and streaming request, "
                        "and per paced chunk with --paced N) of this tree against the router "
                        "that PYTHON runs (another checkout's .venv/bin/python), alternating "
                        "the two in every run: this machine's noise hits both alike")
    p.add_argument("--paced", type=int, metavar="N",
                   help="only measure the router's CPU per streamed chunk: N concurrent "
                        "streams of one token per SSE event, paced (20 ms apart), at 10 and "
                        "110 words; the difference per extra chunk; medians of --runs")
    p.add_argument("--instructions", action="store_true",
                   help="only count the instructions the router executes (under valgrind's "
                        "callgrind, immune to this machine's drift) per non-streaming "
                        "request, per streaming request and per paced chunk; with --ab, "
                        "of both routers, alternating; medians of --runs")
    p.add_argument("--resumable-streams", type=int, metavar="N",
                   help="only measure the router's memory for N resumable streams (x-aura-"
                        "resumable: true) held open by their clients, then after the clients "
                        "left (the hub keeps them running); medians of --runs")
    p.add_argument("--left-only", action="store_true",
                   help="with --resumable-streams: only the streams left by their clients "
                        "(no attached phase, which 10 000 streams cannot have on a machine "
                        "whose open-file limit is 20 000)")
    p.add_argument("--backends", action="store_true",
                   help="router CPU per request on each ledger backend (sqlite, postgres, "
                        "redis: the machine's local services), non-streaming and paced "
                        "streams (--paced N, default 200)")
    p.add_argument("--workers-scaling", action="store_true",
                   help="only compare one router process with WORKERS=2 (see "
                        "--scaling-workers): non-streaming req/s at --concurrency and paced "
                        "streams (--paced N concurrent, default 200; 50 tokens 20 ms apart), "
                        "with the cores each process used; alternating; medians of --runs")
    p.add_argument("--paced-load", action="store_true",
                   help="only measure LLM-like paced streams (one token per SSE event, 20 ms "
                        "apart, TTFT 100 ms) at --paced-levels concurrent streams, direct and "
                        "through the router, OpenAI, Anthropic and translated (Anthropic "
                        "client, OpenAI-kind model): streams/s, p50/p99 stream time, router "
                        "CPU per stream and chunk, RSS per open stream; medians of --runs")
    p.add_argument("--paced-levels", default="64,256,1000", metavar="N,N,...",
                   help="with --paced-load: the concurrencies (default 64,256,1000)")
    p.add_argument("--paced-events", type=int, default=100, metavar="N",
                   help="with --paced-load: content events per stream (default 100)")
    p.add_argument("--paced-fake", choices=("lean", "hypercorn"), default="lean",
                   help="with --paced-load: the upstream (benchlib/paced_fake.py, or "
                        "python -m tests.fakes, which cannot keep pace at 1 000 streams)")
    p.add_argument("--paced-fake-processes", type=int, default=1, metavar="N",
                   help="with --paced-load: processes of the lean fake (SO_REUSEPORT)")
    p.add_argument("--paced-direct-only", action="store_true",
                   help="with --paced-load: only the fake alone (direct phases)")
    p.add_argument("--floor", action="store_true",
                   help="only compare the router's CPU per request and per paced chunk with "
                        "the floor of its stack: hypercorn + trio answering pre-encoded "
                        "bytes (benchlib/floor_app.py), as shipped and with the router's "
                        "patches, and as a pass-through to the fake with the router's "
                        "upstream client; --paced N streams (default 100); medians of --runs")
    p.add_argument("--floor-streams", type=int, metavar="N",
                   help="only compare the router's memory per open stream, N open at once, "
                        "with the patched floor's and the pass-through's (benchlib/floor.py)")
    p.add_argument("--scaling-workers", type=int, default=2, metavar="N",
                   help="the WORKERS to compare with one process (default 2)")
    args = p.parse_args(argv)
    if (args.workers_scaling or args.backends) and args.paced is None:
        args.paced = 200
    if args.quick:
        defaults = {"runs": 1, "duration": 1.0, "warmup": 0.3, "ttft_requests": 50,
                    "streams": 100}
        for name, value in defaults.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    if args.output is None and not args.quick:
        args.output = DOC
    if args.no_write:
        args.output = None
    return args


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _run(client: str, concurrency: int, target: load.Target,
         fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """trio.run `fn(make_conn, *args)` with a connection factory for `client`."""
    async def main() -> Any:
        if client == "raw":
            return await fn(partial(load.RawConnection, target), *args)
        http = load.new_httpx_client(concurrency)
        async with http:  # type: ignore[attr-defined]
            return await fn(partial(load.HttpxConnection, target, http), *args)
    return trio.run(main)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)] if ordered else float("nan")


def measure_speed(args: argparse.Namespace, target: load.Target, fake: Child,
                  router: Child | None) -> dict[str, float]:
    server = router or fake
    out: dict[str, float] = {}

    def probe() -> dict[str, float]:
        return {"server": cpu_seconds(server.pid), "fake": cpu_seconds(fake.pid)}

    for kind, stream in (("nonstream", False), ("stream", True)):
        res: load.LoadResult = _run(args.client, args.concurrency, target, load.run_load,
                                    stream, args.concurrency, args.warmup, args.duration, probe)
        ok = max(res.phase.ok, 1)
        out[f"{kind}_rps"] = res.phase.rate
        out[f"{kind}_errors"] = res.phase.errors
        out[f"{kind}_cpu_ms"] = res.per_request_ms("server")
        out[f"{kind}_fake_cpu_ms"] = res.per_request_ms("fake")
        out[f"{kind}_client_cpu_ms"] = res.client_cpu_s * 1000 / ok
        if res.phase.errors:
            _log(f"  {kind}: {res.phase.errors} errors, first: {res.phase.first_error}")
        _log(f"  {kind}: {res.phase.rate:,.0f} req/s, server {out[f'{kind}_cpu_ms']:.3f} ms CPU"
             f"/req, load-gen {out[f'{kind}_client_cpu_ms']:.3f} ms CPU/req")
        server.check_alive()
    out["nonstream_per_core"] = 1000 / out["nonstream_cpu_ms"] if out["nonstream_cpu_ms"] else 0
    samples, errors = _run(args.client, 1, target, load.run_ttft, args.ttft_requests)
    out["ttft_p50_ms"] = statistics.median(samples) if samples else float("nan")
    out["ttft_p99_ms"] = _p99(samples)
    out["ttft_errors"] = errors
    _log(f"  TTFT p50 {out['ttft_p50_ms']:.3f} ms, p99 {out['ttft_p99_ms']:.3f} ms"
         + (f", {errors} errors" if errors else ""))
    out["rss_after_load_mib"] = rss_kib(server.pid) / 1024
    server.check_alive()
    return out


def measure_memory(args: argparse.Namespace, target: load.Target, server: Child
                   ) -> dict[str, float]:
    def sample() -> int:
        return rss_kib(server.pid)

    # warm the code paths (connect, auth, reserve, stream, disconnect, settle) first
    _run("raw", 16, target, load.hold_streams, 16, sample)
    time.sleep(1.0)
    idle = []
    for _ in range(5):
        idle.append(sample())
        time.sleep(0.2)
    held: load.HoldResult = _run("raw", args.streams, target, load.hold_streams,
                                 args.streams, sample)
    server.check_alive()
    rss_idle, rss_open = statistics.median(idle), statistics.median(held.samples_kib)
    per_stream = (rss_open - rss_idle) / held.opened if held.opened else float("nan")
    _log(f"  {held.opened}/{args.streams} streams open in {held.open_s:.1f} s: RSS "
         f"{rss_idle / 1024:.1f} -> {rss_open / 1024:.1f} MiB, {per_stream:.1f} KiB/stream")
    return {"rss_idle_mib": rss_idle / 1024, "rss_open_mib": rss_open / 1024,
            "streams_opened": held.opened, "streams_failed": held.failed,
            "streams_open_s": held.open_s, "per_stream_kib": per_stream}


def measure_resumable(args: argparse.Namespace, children: Children) -> dict[str, float]:
    """Router memory per resumable stream, attached and detached (idle: 1 chunk/s).

    idle = median of 5 readings of the router's VmRSS (back to back) after a 16-stream
    warm-up; attached = median of the 5 readings `hold_streams` takes 0.2 s apart, 1 s
    after all N streams are open (their clients reading); detached = median of 5
    readings 1 s after the clients closed their sockets (the hub keeps every stream
    running: `running` counts them in /admin/streams). Per stream: (attached - idle) /
    opened and (detached - idle) / opened. RSS does not shrink when the client side is
    freed (the allocator keeps its pages), so "detached" is not below "attached": it is
    the peak plus what the idle streams added since."""
    n = args.resumable_streams
    if args.left_only:
        return {"left_kib": _left_streams(children, n, max(60.0, n / 20))}
    # Opening slows down as the open streams' chunks take the CPU: scale the wait and open
    # more at a time. A stream lasts ~256 s (max_tokens 256, 1 word a second): the N must
    # open well within that, or the first ones end before the last ones open (`running`
    # then says fewer than N).
    open_s = max(60.0, n / 20)
    slow = children.start_fake(reply_words=256, chunk_delay_s=1.0)
    # The bench is one account: let it leave all N streams (and the warm-up's) running.
    router, target, sample, idle = _warm_resumable_router(
        children, slow, {"MAX_DETACHED_STREAMS": str(n + 64)})
    hold = partial(load.hold_streams, timeout_s=open_s, connecting=32 if n <= 1000 else 128)
    held: load.HoldResult = _run("raw", n, target, hold, n, sample)
    time.sleep(1.0)  # the clients are gone; the hub keeps every stream running
    detached = statistics.median(sample() for _ in range(5))
    router.check_alive()
    with httpx.Client(base_url=router.base_url, trust_env=False, timeout=30.0,
                      headers={"authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        listed = admin.get("/admin/streams").json()["data"]
    running = sum(1 for s in listed if not s["done"])
    attached = statistics.median(held.samples_kib)
    out = {"opened": held.opened, "running": running, "rss_idle_mib": idle / 1024,
           "attached_kib": (attached - idle) / max(held.opened, 1),
           "detached_kib": (detached - idle) / max(held.opened, 1)}
    children.stop(router)
    out["left_kib"] = _left_streams(children, n, open_s)
    _log(f"  {held.opened}/{n} resumable streams ({running} running detached): RSS "
         f"{idle / 1024:.1f} MiB idle, {attached / 1024:.1f} attached, "
         f"{detached / 1024:.1f} detached: {out['attached_kib']:.1f} KiB/stream attached, "
         f"{out['detached_kib']:.1f} detached; {out['left_kib']:.1f} KiB per stream left "
         "by its client (no attached peak)")
    children.stop(slow)
    return out


def _warm_resumable_router(children: Children, fake: Child, env: dict[str, str],
                           max_concurrent: int = 2048
                           ) -> tuple[Child, load.Target, Callable[[], int], float]:
    """A router for the resumable-stream memory phases, warmed by 16 streams: (router,
    its resumable target, its RSS reading, the idle RSS: median of 5 readings)."""
    router, key = children.start_router(fake, env=env, max_concurrent=max_concurrent)
    target = load.Target(router.host, router.port, key, "bench-model", resumable=True)

    def sample() -> int:
        return rss_kib(router.pid)

    _run("raw", 16, target, load.hold_streams, 16, sample)  # warm the paths
    time.sleep(1.0)
    return router, target, sample, statistics.median(sample() for _ in range(5))


def _left_streams(children: Children, n: int, open_s: float) -> float:
    """Router memory per stream waiting for a resume, without the attached peak: on a
    fresh router, each of the N clients leaves right after its first bytes, at most 32
    connected at a time (so the client side's pages are reused, not kept at N of them).
    (RSS 1 s after the last left, median of 5, minus idle) / N. The fake sends the first
    chunk at once, then one every 10 s (10 000 such streams are 1 000 chunks a second,
    within one fake process), and the window is long enough for none to expire."""
    slow = children.start_fake(reply_words=64, chunk_delay_s=10.0, first_chunk_now=True)
    router, target, sample, idle = _warm_resumable_router(
        children, slow, {"MAX_DETACHED_STREAMS": str(n + 64), "RESUME_WINDOW_S": "900"},
        max_concurrent=n + 64)
    started: int = _run("raw", 32, target, partial(load.leave_streams, timeout_s=open_s), n)
    time.sleep(1.0)
    left = statistics.median(sample() for _ in range(5))
    router.check_alive()
    with httpx.Client(base_url=router.base_url, trust_env=False, timeout=30.0,
                      headers={"authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        running = sum(1 for s in admin.get("/admin/streams").json()["data"] if not s["done"])
    _log(f"  left by their clients: {started}/{n} started, {running} running, RSS "
         f"{idle / 1024:.1f} MiB idle, {left / 1024:.1f} with them: "
         f"{(left - idle) / max(started, 1):.1f} KiB per stream")
    children.stop(router)
    children.stop(slow)
    return (left - idle) / max(started, 1)


PACED_DELAY_S = 0.02
PACED_WORDS = (10, 110)


def measure_paced(args: argparse.Namespace, children: Children,
                  python: str = sys.executable) -> dict[str, float]:
    """Router CPU per streamed chunk: the same paced streams at two lengths; the extra CPU
    per extra chunk is what a chunk costs (the per-request work cancels out)."""
    per_request: dict[int, float] = {}
    for words in PACED_WORDS:
        fake = children.start_fake(reply_words=words, chunk_delay_s=PACED_DELAY_S)
        router, key = children.start_router(fake, python)
        target = load.Target(router.host, router.port, key, "bench-model")

        def probe() -> dict[str, float]:
            return {"server": cpu_seconds(router.pid), "fake": cpu_seconds(fake.pid)}

        res: load.LoadResult = _run("raw", args.paced, target, load.run_load, True,
                                    args.paced, 1.0, max(args.duration, 6.0), probe)
        per_request[words] = res.per_request_ms("server")
        _log(f"  {words} words, {res.phase.ok} streams ({res.phase.errors} errors): "
             f"{per_request[words]:.3f} ms router CPU per stream")
        children.stop(router)
        children.stop(fake)
    low, high = PACED_WORDS
    out = {"per_chunk_us": (per_request[high] - per_request[low]) * 1000 / (high - low),
           "per_stream_ms_low": per_request[low], "per_stream_ms_high": per_request[high]}
    _log(f"  {out['per_chunk_us']:.1f} µs of router CPU per streamed chunk")
    return out


def measure_ab(args: argparse.Namespace, children: Children) -> list[dict[str, dict]]:
    """Router CPU per request of this tree and of the baseline, both running all along
    against the same fakes and measured phase by phase in alternation, so that the
    machine's drift falls on both alike. Per run and router: CPU per non-streaming and
    streaming request, time to first token (p50, concurrency 1) and (with --paced) CPU
    per paced chunk."""
    pythons = {"this": sys.executable, "baseline": args.ab}
    fakes = {"plain": children.start_fake(reply_words=args.reply_words)}
    phases = [("nonstream_cpu_ms", False, "plain"), ("stream_cpu_ms", True, "plain")]
    if args.paced:
        for words in PACED_WORDS:
            fakes[f"paced{words}"] = children.start_fake(reply_words=words,
                                                         chunk_delay_s=PACED_DELAY_S)
            phases.append((f"paced{words}_ms", True, f"paced{words}"))
    routers = {(name, fake): children.start_router(fakes[fake], python)
               for name, python in pythons.items() for fake in fakes}
    runs: list[dict[str, dict]] = []
    for i in range(args.runs):
        _log(f"run {i + 1}/{args.runs}")
        run: dict[str, dict] = {name: {} for name in pythons}
        for figure, stream, fake in phases:
            for name in (list(pythons) if i % 2 == 0 else list(reversed(pythons))):
                router, key = routers[(name, fake)]
                target = load.Target(router.host, router.port, key, "bench-model")
                concurrency = args.paced if fake != "plain" else args.concurrency

                def probe(router: Child = router) -> dict[str, float]:
                    return {"server": cpu_seconds(router.pid), "fake": 0.0}

                res = _run("raw", concurrency, target, load.run_load, stream, concurrency,
                           args.warmup, max(args.duration, 6.0) if fake != "plain"
                           else args.duration, probe)
                run[name][figure] = res.per_request_ms("server")
        for name in (list(pythons) if i % 2 else list(reversed(pythons))):
            router, key = routers[(name, "plain")]
            samples, _ = _run("raw", 1, load.Target(router.host, router.port, key,
                                                    "bench-model"), load.run_ttft,
                              args.ttft_requests)
            run[name]["ttft_p50_ms"] = statistics.median(samples) if samples else float("nan")
        for figures in run.values():
            if args.paced:
                low, high = PACED_WORDS
                figures["per_chunk_us"] = (figures[f"paced{high}_ms"]
                                           - figures[f"paced{low}_ms"]) * 1000 / (high - low)
        for name, figures in run.items():
            _log(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
        runs.append(run)
    return runs


def _instructions(args: argparse.Namespace, children: Children) -> int:
    if not instructions.available():
        print("--instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    pythons = {"this": sys.executable, **({"baseline": args.ab} if args.ab else {})}
    runs: list[dict[str, dict[str, float]]] = []
    for i in range(args.runs):
        _log(f"run {i + 1}/{args.runs}")
        run = {}
        for name in (list(pythons) if i % 2 == 0 else list(reversed(pythons))):
            run[name] = instructions.measure(children, pythons[name])
            _log(f"  {name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in run[name].items()))
        runs.append(run)
    for figure in runs[0]["this"]:
        this = statistics.median(r["this"][figure] for r in runs)
        line = f"{figure}: this {this:,.0f}"
        if args.ab:
            base = statistics.median(r["baseline"][figure] for r in runs)
            ratio = statistics.median(r["this"][figure] / r["baseline"][figure] for r in runs)
            line += f", baseline {base:,.0f}, median of per-run ratios {ratio:.3f}"
        print(line + f" ({args.runs} runs)")
    return 0


def one_run(args: argparse.Namespace, children: Children) -> report.Run:
    fake = children.start_fake(reply_words=args.reply_words)
    router, key = children.start_router(fake)
    direct_t = load.Target(fake.host, fake.port, UPSTREAM_KEY, "gpt-4o-mini")
    router_t = load.Target(router.host, router.port, key, "bench-model")
    _log(" direct")
    direct = measure_speed(args, direct_t, fake, None)
    _log(" router")
    routed = measure_speed(args, router_t, fake, router)
    children.stop(router)
    children.stop(fake)

    # memory: a slow fake keeps streams open (role chunk at once, then 1 content chunk/s)
    slow = children.start_fake(reply_words=256, chunk_delay_s=1.0)
    _log(" direct, open streams")
    direct.update(measure_memory(args, load.Target(slow.host, slow.port, UPSTREAM_KEY,
                                                   "gpt-4o-mini"), slow))
    router, key = children.start_router(slow)
    _log(" router, open streams")
    routed.update(measure_memory(args, load.Target(router.host, router.port, key,
                                                   "bench-model"), router))
    children.stop(router)
    children.stop(slow)
    return {"direct": direct, "router": routed}


def _markdown(args: argparse.Namespace, info: dict[str, str], summary: list[dict[str, str]],
              runs: list[report.Run], started: datetime, elapsed_s: float) -> str:
    client = ("a raw-socket HTTP/1.1 keep-alive client on trio, in\n  `scripts/benchlib/load.py`"
              " (pre-encoded requests; it parses only the status, the framing\n  and, for "
              "TTFT, the SSE events, with orjson)"
              if args.client == "raw" else "httpx.AsyncClient under trio")
    return f"""# Benchmarks

Generated by `scripts/bench` on {started.strftime('%Y-%m-%d %H:%M UTC')} ({len(runs)} run(s),
{elapsed_s:.0f} s). Re-run it after changing the hot path and commit this file with the
change; `scripts/bench --quick` is a smoke run that only prints. The notes at the end (after
the marker) are hand-written and kept when the script rewrites this file.

Machine: {info['nproc']} CPU(s), {info['cpu']}, {info['memory']} RAM, Linux {info['kernel']};
Python {info['python']}; commit {info['commit']}.

## Summary (medians of {len(runs)} run(s))

{report.markdown_table(summary)}

"direct" is the load generator calling the fake provider; "router" is the same call
through the router to the same fake. Ratios and overheads are the medians of the per-run
router/direct ratios (router − direct differences); each run measures both back to back.
For CPU, RSS and memory-per-stream rows the "direct" column is the fake provider process
itself, for scale: the targets are about the router's own figures.

## Targets

- TTFT overhead at most 0.6 ms (p50) over calling the fake provider directly.
- Non-streaming throughput at least a quarter of direct, per core. Shown two ways:
  end-to-end req/s on this machine (the router competes with the fake and the load
  generator for {info['nproc']} cores, so this is the harsher reading), and requests per
  CPU-second of the server process (router vs fake), i.e. the capacity of one core.
- At most 0.6 ms of router CPU per non-streaming request, including reservation and
  settlement.
- At most 32 KiB of router memory per open stream (here at {args.streams} streams; at
  10 000 with `--floor-streams`, in the notes below).
- Not in this table (see the notes): at most 50 µs of router CPU per streamed chunk
  (`--floor`, `--paced-load`), and WORKERS=2 at least 1.8× one process
  (`--workers-scaling`).

## Method

- Processes: the fake provider (`python -m tests.fakes`, hypercorn + trio, one process),
  the router (`python -m actors.cli serve`, fresh `DATA_DIR` in a temp dir with the SQLite
  ledger, `LOG_REQUESTS=false`, one provider `fake` with `max_concurrent = 512`, model
  `bench-model` → `fake:gpt-4o-mini`), and the load generator (`scripts/bench.py`
  itself). All on loopback, not pinned: the scheduler shares the cores among them.
- Load generator: {client}. Its own CPU per request is in the raw figures
  ("load-gen CPU"); it is higher per request in the router runs only because at a lower
  rate each wake-up serves fewer requests. An `httpx.AsyncClient` costs 2–3 ms of client
  CPU per request here and becomes the bottleneck (direct non-streaming drops from
  ~2,000 to ~300 req/s, which flatters the router's ratio): see `--client httpx`.
- Requests: OpenAI `POST /v1/chat/completions`, one user message, `max_tokens: 256`;
  streaming ones add `stream: true, stream_options.include_usage: true`. The fake answers
  {args.reply_words} words (one content chunk each, plus role, finish and usage chunks);
  without a delay the whole stream is one write. Direct calls use model `gpt-4o-mini` and
  the upstream key; router calls use a router key with credits, model `bench-model`. A
  reply counts only if it is a 200 and complete (streams must end with `data: [DONE]`).
- Throughput: {args.concurrency} keep-alive connections each sending back-to-back requests,
  {args.warmup:g} s warm-up, then {args.duration:g} s measured; requests in flight at the
  deadline are finished and counted, rate = completed / (last completion − start).
- Server CPU per request: utime + stime of the server process (all threads) from
  `/proc/<pid>/stat`, read at the quiescent points before the measured phase and 0.25 s
  after it (settlement happens before the response ends), divided by completed requests.
  Resolution is 10 ms of CPU over thousands of requests.
- TTFT: {args.ttft_requests} sequential streaming requests on one keep-alive connection
  (after 20 unmeasured ones), from just before the request is written to the arrival of
  the first SSE event whose `choices[0].delta.content` is non-empty; p50 and p99.
- Memory per open stream: a fresh fake with `--chunk-delay 1 --reply-words 256` (the role
  chunk at once, then one content chunk a second) and, for "router", a fresh router in
  front of it. 16 streams are opened and dropped to warm the code paths, the idle RSS is
  the median of 5 `VmRSS` samples, then {args.streams} streams are opened (at most 32
  connecting at a time) and held (still read) until each has body bytes; after 1 s the
  RSS is the median of 5 samples; per stream = (RSS_open − RSS_idle) / streams open.
  Each open stream through the router includes its client connection, its upstream
  connection and its in-flight hold. The fake's own figure includes its reply, which it
  builds whole before streaming it (256 chunks, about 64 KiB).
- "server RSS after load" is the process's RSS right after the throughput runs.

## Raw figures per run

{report.raw_markdown(runs)}

{NOTES_MARKER}
"""


def _kept_notes(path: Path) -> str:
    """The hand-written part of the existing report (after the marker), if any."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    at = text.find(NOTES_MARKER)
    return text[at + len(NOTES_MARKER):].lstrip("\n") if at >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in background
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    info = machine()
    children = Children()
    runs: list[report.Run] = []
    try:
        if args.instructions:
            return _instructions(args, children)
        if args.ab:
            pairs = measure_ab(args, children)
            for name in pairs[0]["this"]:
                this = statistics.median(p["this"][name] for p in pairs)
                base = statistics.median(p["baseline"][name] for p in pairs)
                ratio = statistics.median(p["this"][name] / p["baseline"][name] for p in pairs)
                print(f"{name}: this {this:.3f}, baseline {base:.3f}, median of per-run "
                      f"ratios {ratio:.3f} ({args.runs} runs)")
            return 0
        if args.paced_load:
            return paced_load.run(args, children, _log)
        if args.floor:
            return floor.run(args, children, _log, _run)
        if args.floor_streams:
            return floor.open_streams(args, children, _log, _run)
        if args.workers_scaling:
            return scaling.run(args, children, _log)
        if args.backends:
            return backends.run(args, children, _log)
        if args.paced:
            results = []
            for i in range(args.runs):
                _log(f"run {i + 1}/{args.runs}")
                results.append(measure_paced(args, children))
            for name in ("per_chunk_us", "per_stream_ms_low", "per_stream_ms_high"):
                print(f"{name}: median {statistics.median(r[name] for r in results):.3f} "
                      f"({args.paced} concurrent paced streams)")
            return 0
        if args.resumable_streams:
            limit = raise_open_files(2 * args.resumable_streams + 1024)
            if limit < 2 * args.resumable_streams + 256:
                _log(f"open files limited to {limit}: the router may refuse some streams")
            results = []
            for i in range(args.runs):
                _log(f"run {i + 1}/{args.runs}")
                results.append(measure_resumable(args, children))
            for name in ("left_kib",) if args.left_only else (
                    "attached_kib", "detached_kib", "left_kib"):
                print(f"{name}: median {statistics.median(r[name] for r in results):.1f} "
                      f"KiB per resumable stream ({args.resumable_streams} streams)")
            return 0
        for i in range(args.runs):
            _log(f"run {i + 1}/{args.runs}")
            runs.append(one_run(args, children))
    except KeyboardInterrupt:
        _log("interrupted: stopping the fake and the router")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.close()
    summary = report.summarize(runs)
    print()
    print(f"Aura Router vs direct fake provider — medians of {len(runs)} run(s); "
          f"{info['nproc']} CPU(s), {info['cpu']}, Python {info['python']}")
    print(report.text_table(summary))
    if args.output is not None:
        text = _markdown(args, info, summary, runs, started, time.monotonic() - t0)
        notes = _kept_notes(args.output)
        text += "\n" + notes if notes else ""
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
