"""The metrics' feeders (router/metrics.py, docs/configuration.md#metrics).

`MetricsObserver` is a request observer: one update per call, after settlement, from what
the stages recorded in its `Outcome` (status, bill, time to first token, failed upstream
attempts, ledger round trips). `refresh` sets the state gauges from state the runtime
keeps anyway (live requests, the hub's streams, the provider supervisors, the outbox)
when `/metrics` is scraped, so the hot path pays nothing for them.

With `WORKERS=N` a scrape lands on one worker and reads every worker's files, so each
worker must keep its own per-process gauges current in its file between scrapes:
`LiveGauges` (an observer) rewrites the counts of open holds and streams as each call
ends, so a worker at rest always shows 0, and `MetricsRefresher` rewrites them and the
breakers every second, which covers calls starting and late settlements.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

from actors.mailbox import Actor
from actors.pipeline.context import Outcome
from router.activity import ActivityLog
from router.metrics import BREAKER_STATES, RouterMetrics

if TYPE_CHECKING:
    from actors.runtime import Runtime

_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")


class MetricsObserver:
    def __init__(self, metrics: RouterMetrics) -> None:
        self.metrics = metrics
        # A label lookup takes a lock; the ops are a handful: their children are kept.
        self._ledger_ops: dict[str, Any] = {}

    def request_finished(self, outcome: Outcome) -> None:
        m = self.metrics
        model, provider = outcome.model or "", outcome.provider or ""
        status = outcome.status or 200
        m.requests.labels(outcome.api, model, provider, str(status)).inc()
        m.duration.observe(outcome.duration_ms / 1000)
        if outcome.first_content_at is not None:
            m.ttft.observe(outcome.first_content_at - outcome.started_at)
        for failed, reason in outcome.failures:
            m.provider_failures.labels(failed, reason).inc()
        for op, seconds in outcome.ledger_s:
            child = self._ledger_ops.get(op)
            if child is None:
                child = self._ledger_ops[op] = m.ledger.labels(op)
            child.observe(seconds)
        if outcome.overrun_micros:
            m.overrun.inc(outcome.overrun_micros)
        settled = outcome.settled
        if settled is None:
            return
        usage = settled.usage
        for kind, count in zip(_TOKEN_KINDS, (usage.input_tokens, usage.output_tokens,
                                              usage.cache_read_tokens, usage.cache_write_tokens,
                                              usage.reasoning_tokens)):
            if count:
                m.tokens.labels(model, kind).inc(count)
        if settled.cost_micros:
            m.cost.labels(model).inc(settled.cost_micros)


def active_streams(rt: "Runtime") -> dict[str, int]:
    """Answers streaming now, by transport: every call of a websocket stream in the hub;
    on HTTP, calls that asked for a stream (SSE, resumable or not). A call counts from
    its hold to its settlement (`Runtime.live_requests`)."""
    ws_ids = {stream.request_id for stream in rt.hub.streams()
              if getattr(stream, "client_id", None) is not None} if rt.hub else set()
    counts = {"http": 0, "ws": 0}
    for request_id, billing in rt.live_requests.items():
        if billing.settled is not None:
            continue  # settled late by the lease keeper: a hold, no longer a stream
        if request_id in ws_ids:
            counts["ws"] += 1
        elif billing.streamed:
            counts["http"] += 1
    return counts


def set_live_gauges(rt: "Runtime", metrics: RouterMetrics) -> None:
    """This process's open holds and streams, as they are now."""
    metrics.holds_open.set(len(rt.live_requests))
    for transport, count in active_streams(rt).items():
        metrics.active_streams.labels(transport).set(count)


class ActivityObserver:
    """Counts each answered call and its status class per minute, for the console's
    overview (router/activity.py): one dict update per call."""

    def __init__(self, log: ActivityLog) -> None:
        self.log = log

    def request_finished(self, outcome: Outcome) -> None:
        self.log.record(outcome.status or 200, time.time())


class LiveGauges:
    """`WORKERS=N` only: a request observer that writes this worker's open holds and
    streams once a call has ended (a walk over the calls still open: per call, never per
    chunk), so that no worker's file shows a call that is over."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt

    def request_finished(self, outcome: Outcome) -> None:
        set_live_gauges(self.rt, self.rt.metrics)


async def refresh_process_gauges(rt: "Runtime", metrics: RouterMetrics) -> None:
    """The gauges of what this process holds: its holds, streams, breakers."""
    set_live_gauges(rt, metrics)
    for stats in await rt.provider_stats():
        state = str(stats["breaker"]["state"])  # type: ignore[index]
        metrics.breaker.labels(str(stats["name"])).set(BREAKER_STATES.get(state, 0))


async def refresh(rt: "Runtime", metrics: RouterMetrics) -> None:
    """Every state gauge, as it stands now (on a scrape)."""
    await refresh_process_gauges(rt, metrics)
    pending = await rt.outbox.pending()  # one shared ledger: the same for every worker
    for sink in ("usage", "messages", "billing"):
        metrics.outbox_pending.labels(sink).set(pending.get(sink, 0))


class MetricsRefresher(Actor[Any]):
    """`WORKERS=N` only: a scrape reads every worker's gauges from their files, but only
    the worker it lands on refreshes its own; this keeps the others' at most `interval_s`
    old (a few dict lengths and one message per provider supervisor)."""

    def __init__(self, rt: "Runtime", interval_s: float = 1.0) -> None:
        self.rt = rt
        self.interval_s = interval_s

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await refresh_process_gauges(self.rt, self.rt.metrics)
        task_status.started()
        while True:
            await trio.sleep(self.interval_s)
            await refresh_process_gauges(self.rt, self.rt.metrics)
