"""The metrics' feeders: `MetricsObserver`, a request observer (one update per call,
after settlement), and `refresh`, which sets the state gauges when `/metrics` is scraped
(router/metrics.py, docs/configuration.md#metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.pipeline.context import Outcome
from router.metrics import BREAKER_STATES, RouterMetrics

if TYPE_CHECKING:
    from actors.runtime import Runtime


class MetricsObserver:
    def __init__(self, metrics: RouterMetrics) -> None:
        self.metrics = metrics

    def request_finished(self, outcome: Outcome) -> None:
        m = self.metrics
        model, provider = outcome.model or "", outcome.provider or ""
        status = outcome.status or 200
        m.requests.labels(outcome.api, model, provider, str(status)).inc()
        m.duration.observe(outcome.duration_ms / 1000)
        if outcome.overrun_micros:
            m.overrun.inc(outcome.overrun_micros)
        settled = outcome.settled
        if settled is None:
            return
        usage = settled.usage
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_tokens),
                            ("cache_write", usage.cache_write_tokens),
                            ("reasoning", usage.reasoning_tokens)):
            if count:
                m.tokens.labels(model, kind).inc(count)
        if settled.cost_micros:
            m.cost.labels(model).inc(settled.cost_micros)


async def refresh(rt: "Runtime", metrics: RouterMetrics) -> None:
    """The state gauges, as they stand now."""
    metrics.holds_open.set(len(rt.live_requests))
    for stats in await rt.provider_stats():
        state = str(stats["breaker"]["state"])  # type: ignore[index]
        metrics.breaker.labels(str(stats["name"])).set(BREAKER_STATES.get(state, 0))
    pending = await rt.outbox.pending()
    for sink in ("usage", "messages", "billing"):
        metrics.outbox_pending.labels(sink).set(pending.get(sink, 0))
