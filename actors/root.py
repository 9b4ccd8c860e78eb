"""The root: builds everything from `Config`, starts the long-lived actors, serves HTTP.

`serve` owns the root nursery. Provider supervisors start first (each reports ready once
its pool exists); only then does hypercorn bind and accept traffic. Cancelling `serve`
stops the server, then the actors, in that order, as the nursery unwinds.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from actors.ledger_maintenance import HoldSweeper, LeaseKeeper, WalCheckpointer
from actors.mailbox import Handle
from actors.messages import ModelCall, PoolStats
from actors.pipeline.auth import Authenticator
from actors.pipeline.reserve import HoldPolicy
from actors.pipeline.settle import Billing
from actors.providers import ProviderActor, make_provider
from actors.stream_hub import StreamHub
from actors.supervisor import Supervisor
from router.auth.keystore import KeyStore
from router.config import Config
from router.ratelimit import RateLimiter
from router.ledger.base import Instance, Settlement
from router.ledger.idempotency import IdempotencyStore
from router.ledger.sqlite import SqliteLedger
from router.ledger.sqlite_db import SqliteDatabase
from router.providers.base import Provider

request_log = logging.getLogger("aura.requests")


@dataclass
class Runtime:
    """What request handlers reach: built once by `build_runtime`, never global."""

    config: Config
    db: SqliteDatabase
    ledger: SqliteLedger
    keys: KeyStore
    auth: Authenticator
    providers: dict[str, Provider]
    idempotency: IdempotencyStore
    clock: Callable[[], float] = time.time
    provider_handles: dict[str, Handle[Any]] = field(default_factory=dict)
    # Requests between hold and settlement in this process: the lease keeper checkpoints
    # them, the sweeper leaves them be.
    live_requests: dict[str, Billing] = field(default_factory=dict)
    instance: Instance | None = None  # this process incarnation, owner of its holds
    hold_policy: HoldPolicy = field(default_factory=HoldPolicy)
    hub: "StreamHub | None" = None  # resumable streams; started with the actors
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)

    def log_request(self, call: ModelCall, model: str | None, provider: str | None,
                    status: int, settlement: Settlement | None, started_at: float) -> None:
        if not self.config.log_requests:
            return
        line = {"request_id": call.request_id, "api": call.api, "model": model,
                "provider": provider, "status": status or 200,
                "ms": round((time.perf_counter() - started_at) * 1000, 2)}
        if settlement is not None:
            line["cost_micros"] = settlement.captured
            line["released_micros"] = settlement.released
        request_log.info(orjson.dumps(line).decode())

    async def provider_stats(self) -> list[dict[str, object]]:
        return [await handle.ask(lambda reply: PoolStats(reply))
                for handle in self.provider_handles.values()]


def build_runtime(config: Config) -> Runtime:
    db = SqliteDatabase(config.ledger_path)
    keys = KeyStore(db)
    providers = {name: make_provider(spec) for name, spec in config.catalog.providers.items()}
    ledger = SqliteLedger(db)
    now = time.time()
    # A short id: every hold carries it (host and pid are in the instances table).
    instance = Instance(secrets.token_hex(6), socket.gethostname(), os.getpid(), now,
                        now + config.lease_s)
    return Runtime(config=config, db=db, ledger=ledger, keys=keys,
                   auth=Authenticator(config, keys, ledger, time.time), providers=providers,
                   idempotency=IdempotencyStore(db, stale_after_s=config.hold_ttl_s),
                   instance=instance,
                   hold_policy=HoldPolicy(config.hold_policy == "affordable",
                                          config.min_output_tokens, config.hold_ttl_s,
                                          instance.id))


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")  # one handler: the root one
    hc.keep_alive_timeout = 75
    hc.graceful_timeout = config.shutdown_grace_s
    hc.h11_max_incomplete_size = 64 * 1024
    # Oversize websocket frames get an error frame from the router, not a closed socket:
    # hypercorn's own limit is only the backstop.
    hc.websocket_max_message_size = 2 * config.ws_max_frame_bytes + 64 * 1024
    hc.websocket_ping_interval = config.ws_ping_interval_s
    return hc


async def start_actors(rt: Runtime, nursery: trio.Nursery) -> None:
    assert rt.instance is not None
    await rt.ledger.register_instance(rt.instance)
    await nursery.start(Supervisor("wal-checkpointer", lambda: WalCheckpointer(rt.db)).run)
    await nursery.start(Supervisor("lease-keeper", lambda: LeaseKeeper(
        rt.ledger, rt.instance, rt.live_requests, checkpoint_s=rt.config.checkpoint_s,
        lease_s=rt.config.lease_s, clock=rt.clock)).run)
    # The sweeper's first pass settles a previous incarnation's holds before traffic.
    await nursery.start(Supervisor("hold-sweeper", lambda: HoldSweeper(
        rt.ledger, rt.live_requests, rt.instance, rt.clock,
        interval_s=min(30.0, max(1.0, rt.config.lease_s / 3)))).run)
    for name, provider in rt.providers.items():
        supervisor = Supervisor(f"provider:{name}", lambda p=provider: ProviderActor(p))
        rt.provider_handles[name] = await nursery.start(supervisor.run)
    # The hub's streams call providers, so it starts after them (and stops before them).
    rt.hub = await nursery.start(StreamHub(rt, window_s=rt.config.resume_window_s,
                                           buffer_bytes=rt.config.stream_buffer_bytes).run)


async def until_signalled() -> None:
    """Returns on SIGTERM or SIGINT: hypercorn then stops accepting and lets in-flight
    requests finish (up to its graceful timeout) before the actors are stopped."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def serve(config: Config, *, on_listening: Callable[[list[str]], None] | None = None,
                handle_signals: bool = True,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    from router.transports.http import build_app  # the edge: transports know the runtime
    from router.transports.hypercorn_guard import contain_connection_failures

    contain_connection_failures()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call
    rt = build_runtime(config)
    try:
        async with trio.open_nursery() as nursery:
            await start_actors(rt, nursery)
            server = partial(hypercorn_serve, build_app(rt), hypercorn_config(config),
                             shutdown_trigger=until_signalled if handle_signals else None)
            binds = await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
            if on_listening:
                on_listening(binds)
            task_status.started(binds)
    finally:
        rt.db.close()


async def _serve_then_stop(server: Callable[..., Any], root: trio.CancelScope, *,
                           task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    await server(task_status=task_status)
    root.cancel()  # the server is done: stop the actors too
