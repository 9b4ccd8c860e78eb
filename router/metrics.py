"""The router's Prometheus metrics (their names and labels: docs/configuration.md#metrics), one
registry per process.

Counters and histograms are fed by the request observer once per call, after its
settlement (never inside a stream's loop); the gauges that describe state (holds open,
breakers, the outbox's backlog) are set when `/metrics` is scraped. Rendered by
prometheus-client in its text format.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("aura_requests", "Model calls, by how they ended",
                                ("api", "model", "provider", "status"), registry=registry)
        self.duration = Histogram("aura_request_duration_seconds",
                                  "A model call, arrival to settlement", registry=registry,
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                                           300))
        self.tokens = Counter("aura_tokens", "Tokens billed", ("model", "kind"),
                              registry=registry)
        self.cost = Counter("aura_cost_micros", "micro-USD captured", ("model",),
                            registry=registry)
        self.overrun = Counter("aura_hold_overrun_micros",
                               "Cost past its hold: the platform's loss", registry=registry)
        self.holds_open = Gauge("aura_holds_open", "Holds of this process not settled yet",
                                registry=registry)
        self.breaker = Gauge("aura_breaker_state", "0 closed, 1 half-open, 2 open",
                             ("provider",), registry=registry)
        self.outbox_pending = Gauge("aura_outbox_pending", "Events waiting for their sink",
                                    ("sink",), registry=registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
