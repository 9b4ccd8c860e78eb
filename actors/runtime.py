"""The runtime: what every request's pipeline reaches, built once by `actors.root`.

`Runtime` is the `router.gateway.Gateway` the transports are given: it authenticates,
runs model calls (`actors.pipeline.request`), counts tokens, and answers what the admin
API and readiness ask. It holds no global state: everything comes from `Config` through
`build_runtime`; the long-lived actors (`actors.root.start_actors`) fill in the handles.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from actors.mailbox import Handle
from actors.messages import PoolStats
from actors.pipeline.auth import Authenticator
from actors.pipeline.context import Outcome, RequestLog, RequestObserver
from actors.pipeline.count_tokens import count_tokens
from actors.pipeline.request import limit_rate, run_model_call
from actors.pipeline.reserve import HoldPolicy
from actors.pipeline.settle import Billing
from actors.services.jwks_refresher import JwksKeyring
from actors.services.metrics import ActivityObserver, LiveGauges, MetricsObserver
from actors.services.metrics import refresh as refresh_metrics
from actors.services.outbox import Doorbell
from actors.services.readiness import ServiceChecks, readiness
from router.activity import ActivityLog
from router.auth.jwks import jwks_settings
from router.auth.principal import Principal
from router.config import Config
from router.gateway import ClientSink, ModelCall, Streams, TokenCount
from router.ledger.base import AccountBook, BillingLedger, IdempotencyStore, Instance, KeyStore
from router.ledger.base import Outbox, UsageReports
from router.ledger.stores import Stores, open_stores
from router.providers.base import Provider
from router.providers.registry import adapter
from router.ratelimit import Limiter, RateLimiter
from router.redact import Redactor
from router.metrics import RouterMetrics
from router.response_cache import MemoryStore, RedisStore, ResponseStore

if TYPE_CHECKING:
    from actors.services.stream_hub import StreamHub
    from router.providers.spec import ProviderSpec
    from router.shared.redis import RedisSession


@dataclass
class Runtime:
    config: Config
    stores: Stores
    auth: Authenticator
    providers: dict[str, Provider]
    redactor: Redactor
    instance: Instance  # this process incarnation, owner of its holds
    hold_policy: HoldPolicy
    clock: Callable[[], float] = time.time
    provider_handles: dict[str, Handle[Any]] = field(default_factory=dict)
    # Requests between hold and settlement in this process: the lease keeper checkpoints
    # them, the sweeper leaves them be.
    live_requests: dict[str, Billing] = field(default_factory=dict)
    hub: "StreamHub | None" = None  # resumable streams; started with the actors
    # Per process, or shared through Redis (`actors.services.shared_state`).
    rate_limiter: Limiter = field(default_factory=RateLimiter)
    # REDIS_URL: what carries the state instances share; entered with the stores.
    shared_redis: "RedisSession | None" = None
    observers: list[RequestObserver] = field(default_factory=list)
    # AUTH0_DOMAIN / JWKS_URL: the RS256 keys, kept by the JWKS refresher actor.
    jwks: JwksKeyring | None = None
    # Rung after each settlement: the outbox actor ships what it queued at once.
    outbox_doorbell: Doorbell = field(default_factory=Doorbell)
    # RESPONSE_CACHE: where whole answers to deterministic requests are kept.
    response_cache: ResponseStore | None = None
    metrics: RouterMetrics = field(default_factory=RouterMetrics)
    # The console's overview: calls and errors per minute (a request observer feeds it).
    activity: ActivityLog = field(default_factory=ActivityLog)
    # /ready: the shared services' last good answers (a busy readiness probe stays cheap).
    readiness_checks: ServiceChecks = field(default_factory=ServiceChecks)
    # The provider store (actors.services.provider_store): which running providers came
    # from it, and what the admin API calls. Its fleet swaps `providers`,
    # `provider_handles`, `config` (the catalog) and `redactor` when the store changes.
    provider_sources: dict[str, str] = field(default_factory=dict)
    provider_admin: Any = None

    # --- the stores, by their interfaces ---------------------------------------------

    @property
    def ledger(self) -> BillingLedger:
        return self.stores.billing

    @property
    def accounts(self) -> AccountBook:
        return self.stores.accounts

    @property
    def reports(self) -> UsageReports:
        return self.stores.reports

    @property
    def keys(self) -> KeyStore:
        return self.stores.keys

    @property
    def idempotency(self) -> IdempotencyStore:
        return self.stores.idempotency

    @property
    def outbox(self) -> Outbox:
        return self.stores.outbox

    # --- the Gateway ---------------------------------------------------------------------

    @property
    def streams(self) -> Streams:
        assert self.hub is not None, "the stream hub is not running"
        return self.hub

    async def authenticate(self, credential: str | None,
                           account_header: str | None = None) -> Principal:
        return await self.auth.authenticate(credential, account_header)

    async def model_call(self, call: ModelCall, sink: ClientSink) -> None:
        await run_model_call(self, call, sink)

    async def count_tokens(self, who: Principal, body: dict[str, Any], query: str,
                           passthrough: tuple[tuple[str, str], ...]) -> TokenCount:
        await limit_rate(self, who)  # free, but it spends the platform's provider quota
        return await count_tokens(self.config.catalog, self.providers, who, body, query,
                                  passthrough, self.redactor)

    async def provider_stats(self) -> list[dict[str, object]]:
        # A copy: the provider store may swap a provider while the actors answer.
        return [{**await handle.ask(lambda reply: PoolStats(reply)),
                 "source": self.provider_sources.get(name, "config")}
                for name, handle in list(self.provider_handles.items())]

    def refresh_redactor(self) -> None:
        """After the providers changed: their keys and URLs are redacted too."""
        self.redactor = redactor_for(self.config, [p.spec for p in self.providers.values()])

    async def readiness(self) -> dict[str, object]:
        """`/ready`'s body (`actors.services.readiness`): "reasons" when not ready."""
        return await readiness(self, self.readiness_checks)

    async def unready_reasons(self) -> list[str]:
        reasons = (await self.readiness()).get("reasons")
        return list(reasons) if isinstance(reasons, list) else []

    async def metrics_text(self) -> tuple[bytes, str]:
        """`/metrics`: the state gauges refreshed, then everything rendered."""
        await refresh_metrics(self, self.metrics)
        return self.metrics.render()

    def observe(self, outcome: Outcome) -> None:
        outcome.finished_at = time.perf_counter()  # one duration for every observer
        for observer in self.observers:
            observer.request_finished(outcome)


def _entering_both(first: Callable[[], AbstractAsyncContextManager[Any]],
                   second: Callable[[], AbstractAsyncContextManager[Any]]
                   ) -> Callable[[], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def both() -> AsyncIterator[None]:
        async with first(), second():
            yield
    return both


COMPOUND_PART_MIN = 16  # AWS key ids are 20 characters, secrets 40; `profile:` is not one


def redactor_for(config: Config, specs: "list[ProviderSpec]") -> Redactor:
    """What provider words are cleaned of: every provider key and URL, every secret."""
    keys = [key for spec in specs for key in spec.api_keys]
    # A compound credential (Bedrock's `AKID:SECRET[:TOKEN]`) is redacted part by part too.
    parts = [part for key in keys if ":" in key for part in key.split(":")
             if len(part) >= COMPOUND_PART_MIN]
    return Redactor(keys + parts + config.secrets(),
                    [spec.base_url for spec in specs if spec.base_url])


def build_runtime(config: Config) -> Runtime:
    settings = jwks_settings(config)  # a malformed AUTH0_DOMAIN / JWKS_URL: ConfigError
    stores = open_stores(config)
    shared_redis = None
    if config.redis_url:
        from router.shared.redis import shared_session

        # Entered with the stores (before the root nursery, for the server's lifetime):
        # a Redis that cannot be used stops the start with one ConfigError.
        shared_redis, to_enter = shared_session(config, stores)
        if to_enter:
            stores.session = _entering_both(stores.session, shared_redis.session)
    providers = {name: adapter(spec.kind).connect(spec)
                 for name, spec in config.catalog.providers.items()}
    now = time.time()
    # A short id: every hold carries it (host and pid are in the instances table).
    instance = Instance(secrets.token_hex(6), socket.gethostname(), os.getpid(), now,
                        now + config.lease_s)
    redactor = redactor_for(config, list(config.catalog.providers.values()))
    jwks = JwksKeyring(settings, refresh_s=config.jwks_refresh_s,
                       min_refresh_s=config.jwks_min_refresh_s) if settings else None
    # WORKERS=N: the supervisor started this worker with the workers' shared directory.
    metrics = RouterMetrics(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
                            if config.workers > 1 else None)
    rt = Runtime(config=config, stores=stores,
                 auth=Authenticator(config, stores.keys, stores.accounts, time.time, jwks),
                 jwks=jwks,
                 providers=providers, redactor=redactor, instance=instance,
                 hold_policy=HoldPolicy(config.hold_policy == "affordable",
                                        config.min_output_tokens, config.hold_ttl_s,
                                        instance.id),
                 observers=[*([RequestLog()] if config.log_requests else []),
                            MetricsObserver(metrics)],
                 shared_redis=shared_redis,
                 response_cache=_response_cache(config, shared_redis), metrics=metrics)
    rt.observers.append(ActivityObserver(rt.activity))
    if metrics.multiprocess:  # a scrape reads this worker's gauges from its file
        rt.observers.append(LiveGauges(rt))
    return rt


def _response_cache(config: Config, shared_redis: "RedisSession | None"
                    ) -> ResponseStore | None:
    if config.response_cache == "memory":
        return MemoryStore()
    if config.response_cache == "redis" and shared_redis is not None:
        return RedisStore(shared_redis)
    return None
