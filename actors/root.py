"""The root: builds everything from `Config`, starts the long-lived actors, serves HTTP.

`serve` owns the root nursery. The ledger's upkeep, lease keeper and sweeper start first
(the sweeper settles a dead predecessor's holds before anything else), then the provider
supervisors (each ready once its pool exists) and the stream hub; only then does
hypercorn bind and accept traffic, serving the app that `router.transports.http`
builds around the runtime (the edge sees it only as a `router.gateway.Gateway`).
Cancelling `serve` stops the server, then the actors, in that order.
"""

from __future__ import annotations

import logging
import signal
from functools import partial
from typing import Any, Callable

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from actors.services.credential_files import CredentialFileWatcher
from actors.services.jwks_refresher import JwksRefresher
from actors.services.ledger_maintenance import HoldSweeper, LeaseKeeper, StoreUpkeep
from actors.services.metrics import MetricsRefresher
from actors.services.outbox import OutboxShipper, build_sinks, derived_sinks
from actors.services.provider_store import start_providers
from actors.services.shared_state import start_shared_state
from actors.runtime import Runtime, build_runtime
from actors.services.shared_streams import SharedStreams
from actors.services.stream_hub import StreamHub
from actors.services.vertex_tokens import VertexTokenKeeper
from actors.supervisor import Supervisor
from router.config import Config
from router.logs import configure_logging
from router.providers.google_sa import load as load_service_account
from router.shared.stream_logs import RedisStreamLogs
from router.transports.http import build_app
from router.transports.client_gone import signal_client_gone
from router.transports.hypercorn_guard import contain_connection_failures
from router.transports.hypercorn_socket import direct_socket_io
from router.transports.ws_liveness import record_peer_liveness


LISTEN_BACKLOG = 4096


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    if config.workers > 1:
        # One of WORKERS processes (actors.workers): each binds the shared port itself with
        # SO_REUSEPORT, and the kernel spreads new connections across the workers.
        from actors.workers import reuse_port_socket
        hc.bind = [f"fd://{reuse_port_socket(config.host, config.port)}"]
    # A burst of new connections waits in the kernel's queue while the loop is busy;
    # hypercorn's 100 dropped handshakes under load (resets, docs/benchmarks.md). The
    # kernel caps it at net.core.somaxconn.
    hc.backlog = LISTEN_BACKLOG
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")  # one handler: the root one
    # Until a request's headers are complete, the connection is idle to hypercorn: this
    # is the header timeout as well as the keep-alive one.
    hc.keep_alive_timeout = config.header_timeout_s
    hc.graceful_timeout = config.shutdown_grace_s
    hc.h11_max_incomplete_size = 64 * 1024
    # Oversize websocket frames get an error frame from the router, not a closed socket:
    # hypercorn's own limit is only the backstop.
    hc.websocket_max_message_size = 2 * config.ws_max_frame_bytes + 64 * 1024
    hc.websocket_ping_interval = config.ws_ping_interval_s
    return hc


async def start_actors(rt: Runtime, nursery: trio.Nursery) -> None:
    # REDIS_URL: rate limits and breaker verdicts shared with the other instances.
    await start_shared_state(rt, nursery)
    stores = rt.stores
    await rt.ledger.register_instance(rt.instance)
    if stores.upkeep is not None:
        await nursery.start(Supervisor(f"{stores.backend}-upkeep", lambda: StoreUpkeep(
            stores.upkeep, stores.upkeep_interval_s)).run)
    await nursery.start(Supervisor("lease-keeper", lambda: LeaseKeeper(
        rt.ledger, rt.instance, rt.live_requests, checkpoint_s=rt.config.checkpoint_s,
        lease_s=rt.config.lease_s, clock=rt.clock)).run)
    # The sweeper's first pass settles a previous incarnation's holds before traffic.
    await nursery.start(Supervisor("hold-sweeper", lambda: HoldSweeper(
        rt.ledger, rt.live_requests, rt.instance, rt.clock,
        interval_s=min(30.0, max(1.0, rt.config.lease_s / 3)), claims=rt.idempotency)).run)
    # The sinks every settlement queues events for are the deployment's: written for all
    # instances on this ledger (none configured: none queued).
    sinks = build_sinks(rt.config)
    await rt.outbox.configure(derived_sinks(sinks))
    if sinks:
        await nursery.start(Supervisor("outbox", lambda: OutboxShipper(
            rt.outbox, sinks, rt.outbox_doorbell, retry_max_s=rt.config.outbox_retry_max_s,
            clock=rt.clock)).run)
    # One supervisor per provider version, the stored providers over the configured ones,
    # and the watcher that swaps them when the provider store changes.
    await start_providers(rt, nursery)
    await start_claude_code_watcher(rt, nursery)
    await start_vertex_tokens(rt, nursery)
    # The hub's streams call providers, so it starts after them (and stops before them).
    # With REDIS_URL its streams are in Redis too: resumed and cancelled on any instance.
    shared = None if rt.shared_redis is None else SharedStreams(RedisStreamLogs(
        rt.shared_redis, max_bytes=rt.config.stream_buffer_bytes,
        window_s=rt.config.resume_window_s), rt.instance.id)
    rt.hub = await nursery.start(StreamHub(rt, window_s=rt.config.resume_window_s,
                                           buffer_bytes=rt.config.stream_buffer_bytes,
                                           max_detached=rt.config.max_detached_streams,
                                           shared=shared).run)
    if (ring := rt.jwks) is not None:  # its first fetch is over (or failed) before traffic
        await nursery.start(Supervisor("jwks-refresher", lambda: JwksRefresher(ring)).run)
    if rt.metrics.multiprocess:  # WORKERS=N: a scrape reads this worker's gauges from a file
        await nursery.start(Supervisor("metrics", lambda: MetricsRefresher(rt)).run)


async def start_vertex_tokens(rt: Runtime, nursery: trio.Nursery) -> None:
    """The Vertex AI providers' access token, fetched before traffic and kept fresh."""
    pools = [p.credentials for p in rt.providers.values()  # type: ignore[attr-defined]
             if p.spec.kind in ("vertex", "vertex_gemini")]
    if not pools or not rt.config.vertex_ai_service_account_json:
        return
    account = load_service_account(rt.config.vertex_ai_service_account_json,
                                   "VERTEX_AI_SERVICE_ACCOUNT_JSON")
    await nursery.start(Supervisor("vertex-token", lambda: VertexTokenKeeper(
        pools, account)).run)


async def start_claude_code_watcher(rt: Runtime, nursery: trio.Nursery) -> None:
    """The `claude-code` provider's pool follows its login files (its first read is over
    before traffic: an expired token is never sent)."""
    from router.providers.claude_oauth import PROVIDER_NAME, account_dirs

    provider = rt.providers.get(PROVIDER_NAME)
    if provider is None or provider.spec.kind != "anthropic":
        return
    dirs = account_dirs(rt.config.claude_code_home, rt.config.additional_account_dirs)
    await nursery.start(Supervisor(f"{PROVIDER_NAME}-accounts", lambda: CredentialFileWatcher(
        provider.credentials, dirs)).run)


async def until_signalled() -> None:
    """Returns on SIGTERM or SIGINT: hypercorn then stops accepting and lets in-flight
    requests finish (up to its graceful timeout) before the actors are stopped."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def serve(config: Config, *, on_listening: Callable[[list[str]], None] | None = None,
                handle_signals: bool = True,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    contain_connection_failures()
    record_peer_liveness()  # half-open websockets (router/transports/ws_writer.py)
    signal_client_gone()  # no watcher task per request (router/transports/client_gone.py)
    direct_socket_io()  # router/transports/hypercorn_socket.py
    configure_logging(config)  # LOG_LEVEL, LOG_FORMAT (router/logs.py)
    rt = build_runtime(config)
    try:
        async with rt.stores.session(), trio.open_nursery() as nursery:
            await start_actors(rt, nursery)
            app = build_app(rt)
            nursery.start_soon(app.keep_alive.run)
            server = partial(hypercorn_serve, app, hypercorn_config(config),
                             shutdown_trigger=until_signalled if handle_signals else None)
            binds = await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
            if on_listening:
                on_listening(binds)
            task_status.started(binds)
    finally:
        rt.stores.close()


async def _serve_then_stop(server: Callable[..., Any], root: trio.CancelScope, *,
                           task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    await server(task_status=task_status)
    root.cancel()  # the server is done: stop the actors too
