"""The router's Prometheus metrics (their names and labels: docs/configuration.md#metrics).

Counters and histograms are fed by the request observer once per call, after its
settlement (never inside a stream's loop); the gauges that describe state (holds open,
active streams, breakers, the outbox's backlog) are set from the runtime's own state when
`/metrics` is scraped; the websocket connection gauge moves as connections open and close.

One process (`WORKERS=1`): one plain registry, rendered by prometheus-client. Several
(`WORKERS=N`, actors/workers.py): prometheus-client's multiprocess mode. The supervisor
gives every worker one fresh `PROMETHEUS_MULTIPROC_DIR`, each worker's values live in
memory-mapped files there, and whichever worker a scrape lands on renders all of them
(`MultiProcessCollector`): counters and histograms add up across workers (and across a
restarted worker's predecessors); gauges combine by their `multiprocess_mode`: per-process
counts (holds, streams, connections) are summed over the live workers, the breaker shows
the worst live worker's state, the outbox backlog (one shared ledger) the latest reading.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LEDGER_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                   5)


class RouterMetrics:
    """Every metric of the router. `multiprocess_dir`: the workers' shared directory (the
    process must have been started with `PROMETHEUS_MULTIPROC_DIR` set to it, since
    prometheus-client picks where values live when it is imported)."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # In multiprocess mode the metrics belong to no registry: their values are in the
        # files, and a registry holding them too would export them twice.
        registry = None if multiprocess_dir else CollectorRegistry(auto_describe=True)
        self._registry = registry
        self.requests = Counter("aura_requests", "Model calls, by how they ended",
                                ("api", "model", "provider", "status"), registry=registry)
        self.duration = Histogram("aura_request_duration_seconds",
                                  "A model call, arrival to settlement", registry=registry,
                                  buckets=_SECONDS)
        self.ttft = Histogram("aura_time_to_first_token_seconds",
                              "Arrival to the first content byte sent to the client",
                              registry=registry, buckets=_SECONDS)
        self.tokens = Counter("aura_tokens", "Tokens billed", ("model", "kind"),
                              registry=registry)
        self.cost = Counter("aura_cost_micros", "micro-USD captured", ("model",),
                            registry=registry)
        self.overrun = Counter("aura_hold_overrun_micros",
                               "Cost past its hold: the platform's loss", registry=registry)
        self.provider_failures = Counter("aura_provider_failures",
                                         "Failed upstream attempts, by why",
                                         ("provider", "reason"), registry=registry)
        self.ledger = Histogram("aura_ledger_seconds", "Ledger round trips of the pipeline",
                                ("op",), registry=registry, buckets=_LEDGER_SECONDS)
        self.holds_open = Gauge("aura_holds_open", "Holds taken and not settled yet",
                                registry=registry, multiprocess_mode="livesum")
        self.active_streams = Gauge("aura_active_streams", "Streamed answers open now",
                                    ("transport",), registry=registry,
                                    multiprocess_mode="livesum")
        self.ws_connections = Gauge("aura_ws_connections", "Open websocket connections",
                                    registry=registry, multiprocess_mode="livesum")
        self.breaker = Gauge("aura_breaker_state", "0 closed, 1 half-open, 2 open",
                             ("provider",), registry=registry, multiprocess_mode="livemax")
        self.outbox_pending = Gauge("aura_outbox_pending", "Events waiting for their sink",
                                    ("sink",), registry=registry,
                                    multiprocess_mode="livemostrecent")

    @property
    def multiprocess(self) -> bool:
        return self.multiprocess_dir is not None

    def render(self) -> tuple[bytes, str]:
        registry = self._registry
        if registry is None:  # every worker's files, read now
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def exported_names() -> frozenset[str]:
    """Every series name `/metrics` can show (a counter's `_total`, a histogram's
    `_bucket`, `_sum`, `_count`): what dashboards and alerts may query."""
    names: set[str] = set()
    metrics = RouterMetrics()
    for metric in vars(metrics).values():
        for family in getattr(metric, "describe", lambda: [])():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return frozenset(names)
