"""The outbox actor: ships the events settlements wrote to the outbox (docs/integration.md).

Each round it claims the due head of every (sink, account) queue (so a queue is shipped
in settlement order, and by one instance at a time), sends each event to its sink with
`Idempotency-Key: <event id>`, and retires it: delivered events leave the outbox, a
408/409/429/5xx or a network failure retries after an exponential, jittered delay
(capped at `OUTBOX_RETRY_MAX_S`), any other 4xx parks the event as dead for an operator
(`/admin/outbox`). It wakes when this process settles a request (the doorbell) and
polls for the other instances' events. Nothing is ever dropped: an event leaves the
outbox only once its sink said 2xx.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import trio

from actors.mailbox import Actor
from router.config import Config
from router.errors import BillingUnavailable, UpstreamError
from router.ledger.base import DERIVED_SINKS, Outbox, OutboxEvent
from router.outbox.wire import SinkRoute, event_call, retry_delay_s, verdict
from router.providers.h11_pool import H11Pool
from router.redact import display_url

log = logging.getLogger("aura.outbox")

CLAIM_BATCH = 64
CLAIM_LEASE_S = 60.0  # another instance takes over a claimed event after this
SEND_TIMEOUT_S = 30.0
POLL_S = 1.0
MAX_CONCURRENT_SENDS = 16
ERROR_EXCERPT = 200


class Doorbell:
    """Rung after each settlement that queued events: the outbox actor ships at once."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            await self._event.wait()
        self._event = trio.Event()


@dataclass
class Sink:
    route: SinkRoute
    pool: H11Pool
    where: str  # the URL as logs may show it


def _sink(name: str, url: str, token: str | None, path: str,
          billing_mode: str = "two_phase") -> Sink:
    pool = H11Pool(url, max_connections=MAX_CONCURRENT_SENDS, connect_timeout_s=5.0,
                   idle_timeout_s=SEND_TIMEOUT_S)
    return Sink(SinkRoute(name, token, path, billing_mode), pool,
                display_url(url.rstrip("/") + path))


def build_sinks(config: Config) -> dict[str, Sink]:
    """The sinks this deployment ships to (docs/integration.md)."""
    sinks = {}
    if config.aura_network_url:
        sinks["usage"] = _sink("usage", config.aura_network_url, config.aura_network_token,
                               "/internal/usage")
    if config.sends_messages and config.aura_storage_url:
        sinks["messages"] = _sink("messages", config.aura_storage_url,
                                  config.aura_storage_token, "/internal/messages")
    if config.billing_backend == "http" and config.z_billing_url:
        sinks["billing"] = _sink("billing", config.z_billing_url, config.z_billing_api_key,
                                 "", config.z_billing_mode)
    return sinks


def derived_sinks(sinks: dict[str, Sink]) -> frozenset[str]:
    """The sinks every settlement queues an event for (the others: `messages`)."""
    return frozenset(name for name in sinks if name in DERIVED_SINKS)


class OutboxShipper(Actor[Any]):
    def __init__(self, outbox: Outbox, sinks: dict[str, Sink], doorbell: Doorbell, *,
                 retry_max_s: float, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.outbox = outbox
        self.sinks = sinks
        self.doorbell = doorbell
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.rng = rng or random.Random()
        self._sends = trio.CapacityLimiter(MAX_CONCURRENT_SENDS)

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                shipped = await self.round()
            except BillingUnavailable:
                log.warning("outbox: the ledger cannot be reached; trying again shortly")
                shipped = 0
            if not shipped:
                await self.doorbell.wait(POLL_S)

    async def round(self) -> int:
        """Claim and ship one batch; how many events were claimed."""
        events = await self.outbox.claim(self.clock(), CLAIM_BATCH, CLAIM_LEASE_S)
        async with trio.open_nursery() as nursery:
            for event in events:
                nursery.start_soon(self._ship, event)
        return len(events)

    async def _ship(self, event: OutboxEvent) -> None:
        async with self._sends:
            sink = self.sinks.get(event.sink)
            if sink is None:  # queued while a sink was configured; it is not any more
                await self.outbox.retry_at(event, self.clock() + self.retry_max_s,
                                           f"sink {event.sink!r} is not configured")
                return
            row = None if event.sink == "messages" else \
                await self.outbox.usage_row(event.request_id)
            call = event_call(sink.route, event, row)
            if call is None:
                if row is None:
                    await self.outbox.park(event, "its usage row is missing", self.clock())
                    log.error("outbox: %s parked: its usage row is missing", event.event_id)
                else:  # nothing to send (a debit of 0)
                    await self.outbox.delivered(event, self.clock())
                return
            try:
                with trio.fail_after(SEND_TIMEOUT_S):
                    async with sink.pool.send(call) as response:
                        status = response.status
                        answer = await response.read(ERROR_EXCERPT)
            except (UpstreamError, trio.TooSlowError) as exc:
                reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
                await self._retry(event, sink, f"{sink.where} {reason}")
                return
            outcome = verdict(event.sink, status, call)
            if outcome == "delivered":
                await self.outbox.delivered(event, self.clock())
                return
            said = answer[:ERROR_EXCERPT].decode("utf-8", "replace")
            error = f"{sink.where} answered {status}: {said}"
            if outcome == "retry":
                await self._retry(event, sink, error)
            else:
                await self.outbox.park(event, error, self.clock())
                log.error("outbox: %s parked as dead (%s); retry it with POST "
                          "/admin/outbox/%s/retry", event.event_id, error, event.event_id)

    async def _retry(self, event: OutboxEvent, sink: Sink, error: str) -> None:
        delay = retry_delay_s(event.attempts, self.retry_max_s, self.rng)
        await self.outbox.retry_at(event, self.clock() + delay, error)
        log.warning("outbox: %s not delivered (%s); attempt %d, next in %.1f s",
                    event.event_id, error, event.attempts + 1, delay)
