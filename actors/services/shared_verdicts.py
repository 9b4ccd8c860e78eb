"""The shared-verdicts actor: this instance's circuit breakers agree with the others'.

Each breaker tells the `VerdictOutbox` when it opens or closes (a synchronous call on
the request path: no Redis round trip there); the actor publishes those verdicts
(`router.shared.verdicts.VerdictBoard`) and applies the other instances' verdicts, read
from the channel, to the local breakers (`CircuitBreaker.apply_verdict`). On start, and
after every reconnection, it subscribes first and then reads the keys of the verdicts in
force, so that nothing published in between is missed.

Redis down: the actor logs once, retries with backoff (jittered, capped) and never gives
up; the breakers keep working on their own, and the verdicts reached meanwhile wait in
the outbox (the latest per provider; an open whose cooldown ran out is dropped).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Mapping

import trio

from actors.mailbox import Actor
from router.providers.breaker import CircuitBreaker, Verdict
from router.shared.redis import REDIS_ERRORS
from router.shared.verdicts import BreakerVerdict, VerdictBoard

log = logging.getLogger("aura.verdicts")


def _leaf(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return type(exc).__name__


class VerdictOutbox:
    """Verdicts this instance's breakers reached, not yet published: the latest per
    provider (a newer one replaces an older one), so it is bounded by the number of
    providers and posting never waits. The breakers post, the actor takes; it outlives
    the actor's restarts."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[BreakerVerdict, float]] = {}
        self._posted = trio.Event()

    def post(self, verdict: BreakerVerdict, at: float) -> None:
        self._pending[verdict.provider] = (verdict, at)
        self._posted.set()

    def restore(self, verdicts: list[tuple[BreakerVerdict, float]]) -> None:
        """Put back what could not be published, unless something newer came since."""
        for verdict, at in verdicts:
            self._pending.setdefault(verdict.provider, (verdict, at))
        if self._pending:
            self._posted.set()

    async def take(self) -> list[tuple[BreakerVerdict, float]]:
        """Everything pending, once there is something: (verdict, when it was reached)."""
        await self._posted.wait()
        self._posted = trio.Event()
        taken = list(self._pending.values())
        self._pending.clear()
        return taken


def share_breakers(breakers: Mapping[str, CircuitBreaker], outbox: VerdictOutbox,
                   instance: str) -> None:
    """Make each breaker post its own verdicts to `outbox`."""
    for name, breaker in breakers.items():
        def on_verdict(verdict: Verdict, retry_in_s: float, name: str = name) -> None:
            outbox.post(BreakerVerdict(name, verdict, retry_in_s, instance),
                        trio.current_time())
        breaker.on_verdict = on_verdict


class SharedVerdicts(Actor[Any]):
    def __init__(self, board: VerdictBoard, breakers: Mapping[str, CircuitBreaker],
                 outbox: VerdictOutbox, *, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0) -> None:
        self.board = board
        self.breakers = breakers
        self.outbox = outbox
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.outage = False  # Redis is away (logged once per outage)

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ready = False
        backoff = self.backoff_initial_s
        while True:
            try:
                async with self.board.subscription() as messages:
                    self.catch_up(await self.board.current(list(self.breakers)))
                    if not ready:
                        ready = True
                        task_status.started()
                    if self.outage:
                        self.outage = False
                        log.warning("breaker verdicts are shared again")
                    backoff = self.backoff_initial_s
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._publish_forever)
                        async for message in messages:
                            self.receive(message)
                        raise ConnectionError("the verdict subscription ended")
            except* REDIS_ERRORS as failed:
                if not self.outage:
                    self.outage = True
                    log.warning("breaker verdicts cannot be shared (%s); local breakers "
                                "carry on, retrying", _leaf(failed))
            if not ready:  # Redis answered at start-up: serve anyway, retry meanwhile
                ready = True
                task_status.started()
            await trio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _publish_forever(self) -> None:
        while True:
            pending = await self.outbox.take()
            for i, (verdict, at) in enumerate(pending):
                try:
                    await self.board.publish(verdict, trio.current_time() - at)
                except BaseException:
                    self.outbox.restore(pending[i:])
                    raise

    def receive(self, message: Mapping[str, Any]) -> None:
        """Apply another instance's verdict from the channel."""
        if message.get("type") != "message":
            return
        verdict = BreakerVerdict.decode(message.get("data") or b"")
        if verdict is None or verdict.by == self.board.instance:
            return
        self._apply(verdict)

    def catch_up(self, current: Mapping[str, BreakerVerdict | None]) -> None:
        """Apply the verdicts in force. A breaker held open by another instance whose key
        is gone before its cooldown ended was closed by someone: close it too."""
        now = trio.current_time()
        for name, verdict in current.items():
            breaker = self.breakers.get(name)
            if breaker is None:
                continue
            if verdict is None:
                if breaker.shared and breaker.state == "open" and breaker.retry_in(now) > 0:
                    self._apply(BreakerVerdict(name, "closed", 0.0, "?"))
            elif verdict.by != self.board.instance:
                self._apply(verdict)

    def _apply(self, verdict: BreakerVerdict) -> None:
        breaker = self.breakers.get(verdict.provider)
        if breaker is None:  # not configured here
            return
        before = breaker.state
        breaker.apply_verdict(verdict.verdict, verdict.retry_in_s, trio.current_time())
        if breaker.state != before:
            log.info("provider %s: circuit %s by another instance%s", verdict.provider,
                     "opened" if verdict.verdict == "open" else "closed",
                     f" for {verdict.retry_in_s:.1f} s" if verdict.verdict == "open" else "")
