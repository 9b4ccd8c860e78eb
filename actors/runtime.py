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
from actors.services.metrics import MetricsObserver
from actors.services.metrics import refresh as refresh_metrics
from actors.services.outbox import Doorbell
from router.auth.jwks import jwks_settings
from router.auth.principal import Principal
from router.config import Config
from router.errors import BillingUnavailable
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
        return [await handle.ask(lambda reply: PoolStats(reply))
                for handle in self.provider_handles.values()]

    async def unready_reasons(self) -> list[str]:
        reasons = []
        try:
            await self.stores.ping()
        except BillingUnavailable as exc:
            reasons.append(f"ledger unreachable ({self.stores.backend} at "
                           f"{self.stores.where}): {exc}")
        except Exception as exc:  # noqa: BLE001 - the point is to report it, whatever it is
            reasons.append(f"ledger unusable: {type(exc).__name__}")
        stats = await self.provider_stats()
        if not any(s["usable"] for s in stats):
            reasons.append("no provider is usable: " + "; ".join(
                f"{s['name']}: " + ("not running" if not s["running"] else
                                    "circuit open" if s["breaker"]["state"] == "open"
                                    else "every credential refused") for s in stats))
        if self.jwks is not None and (why := self.jwks.unready_reason()):
            reasons.append(why)
        return reasons

    async def metrics_text(self) -> tuple[bytes, str]:
        """`/metrics`: the state gauges refreshed, then everything rendered."""
        await refresh_metrics(self, self.metrics)
        return self.metrics.render()

    def observe(self, outcome: Outcome) -> None:
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
    keys = [key for spec in config.catalog.providers.values() for key in spec.api_keys]
    # A compound credential (Bedrock's `AKID:SECRET[:TOKEN]`) is redacted part by part too.
    parts = [part for key in keys if ":" in key for part in key.split(":")
             if len(part) >= COMPOUND_PART_MIN]
    redactor = Redactor(keys + parts + config.secrets(),
                        [spec.base_url for spec in config.catalog.providers.values()
                         if spec.base_url])
    jwks = JwksKeyring(settings, refresh_s=config.jwks_refresh_s,
                       min_refresh_s=config.jwks_min_refresh_s) if settings else None
    metrics = RouterMetrics()
    return Runtime(config=config, stores=stores,
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


def _response_cache(config: Config, shared_redis: "RedisSession | None"
                    ) -> ResponseStore | None:
    if config.response_cache == "memory":
        return MemoryStore()
    if config.response_cache == "redis" and shared_redis is not None:
        return RedisStore(shared_redis)
    return None
