"""Turn per-run figures into the summary table (terminal and markdown) and the raw runs.

Each run measures "direct" (the load generator calling the fake provider) and "router"
(the same calls through the router to the same fake) back to back, so the per-run
ratio is a paired comparison; the summary shows the median of each figure over the runs
and the median of the per-run ratios / overheads.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

Run = dict[str, dict[str, float]]  # {"direct": {...}, "router": {...}}


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    unit: str
    compare: str  # "ratio" (router/direct) | "overhead" (router - direct)
    target: str = "—"
    met: Callable[[float, float], bool] | None = None  # (router value, compared) -> ok
    digits: int = 2


ROWS: tuple[Row, ...] = (
    Row("TTFT p50, concurrency 1", "ttft_p50_ms", "ms", "overhead", "≤ +0.6 ms",
        lambda _r, over: over <= 0.6),
    Row("TTFT p99, concurrency 1", "ttft_p99_ms", "ms", "overhead"),
    Row("non-streaming throughput", "nonstream_rps", "req/s", "ratio", "≥ 0.25×",
        lambda _r, ratio: ratio >= 0.25, 0),
    Row("non-streaming capacity per core", "nonstream_per_core", "req per server CPU-s",
        "ratio", "≥ 0.25×", lambda _r, ratio: ratio >= 0.25, 0),
    Row("streaming throughput", "stream_rps", "req/s", "ratio", digits=0),
    Row("server CPU per non-streaming request", "nonstream_cpu_ms", "ms", "ratio",
        "≤ 0.6 ms", lambda router, _x: router <= 0.6, 3),
    Row("server CPU per streaming request", "stream_cpu_ms", "ms", "ratio", digits=3),
    Row("server RSS idle", "rss_idle_mib", "MiB", "ratio", digits=1),
    Row("server memory per open stream", "per_stream_kib", "KiB", "ratio", "≤ 32 KiB",
        lambda router, _x: router <= 32.0, 1),
)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt(value: float, digits: int) -> str:
    if value != value:  # nan
        return "n/a"
    return f"{value:,.{digits}f}"


def summarize(runs: list[Run]) -> list[dict[str, str]]:
    out = []
    for row in ROWS:
        direct = _median([r["direct"][row.key] for r in runs if row.key in r["direct"]])
        router = _median([r["router"][row.key] for r in runs if row.key in r["router"]])
        pairs = [(r["direct"].get(row.key), r["router"].get(row.key)) for r in runs]
        if row.compare == "overhead":
            compared = _median([b - a for a, b in pairs if a is not None and b is not None])
            shown = f"{compared:+.{row.digits}f} {row.unit}"
        else:
            compared = _median([b / a for a, b in pairs if a and b is not None])
            shown = f"{compared:.2f}×"
        met = "—"
        if row.met is not None:
            met = "yes" if row.met(router, compared) else "**NO**"
        out.append({"metric": f"{row.label} ({row.unit})", "direct": _fmt(direct, row.digits),
                    "router": _fmt(router, row.digits), "compared": shown,
                    "target": row.target, "met": met})
    return out


HEADER = ("metric", "direct", "router", "ratio/overhead", "target", "met?")


def text_table(summary: list[dict[str, str]]) -> str:
    rows = [HEADER] + [(s["metric"], s["direct"], s["router"], s["compared"], s["target"],
                        s["met"].replace("**", "")) for s in summary]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(rows):
        lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(summary: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|--:|--:|--:|--:|:-:|"]
    for s in summary:
        lines.append(f"| {s['metric']} | {s['direct']} | {s['router']} | {s['compared']} | "
                     f"{s['target']} | {s['met']} |")
    return "\n".join(lines)


RAW_KEYS: tuple[tuple[str, str, int], ...] = (
    ("ttft_p50_ms", "TTFT p50 ms", 3), ("ttft_p99_ms", "TTFT p99 ms", 3),
    ("ttft_errors", "TTFT errors", 0),
    ("nonstream_rps", "non-stream req/s", 0), ("nonstream_errors", "non-stream errors", 0),
    ("nonstream_cpu_ms", "server CPU ms/req (non-stream)", 3),
    ("nonstream_fake_cpu_ms", "fake CPU ms/req (non-stream)", 3),
    ("nonstream_client_cpu_ms", "load-gen CPU ms/req (non-stream)", 3),
    ("stream_rps", "stream req/s", 0), ("stream_errors", "stream errors", 0),
    ("stream_cpu_ms", "server CPU ms/req (stream)", 3),
    ("stream_fake_cpu_ms", "fake CPU ms/req (stream)", 3),
    ("stream_client_cpu_ms", "load-gen CPU ms/req (stream)", 3),
    ("rss_after_load_mib", "server RSS after load MiB", 1),
    ("rss_idle_mib", "server RSS idle MiB (memory run)", 1),
    ("rss_open_mib", "server RSS with streams open MiB", 1),
    ("streams_opened", "streams open", 0), ("streams_failed", "streams failed", 0),
    ("streams_open_s", "seconds to open them", 1),
    ("per_stream_kib", "KiB per open stream", 1),
)


def raw_markdown(runs: list[Run]) -> str:
    head = "| figure | " + " | ".join(f"run {i + 1} direct | run {i + 1} router"
                                       for i in range(len(runs))) + " |"
    lines = [head, "|---|" + "--:|" * (2 * len(runs))]
    for key, label, digits in RAW_KEYS:
        cells = []
        for run in runs:
            for side in ("direct", "router"):
                value = run[side].get(key)
                cells.append("" if value is None else _fmt(value, digits))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
