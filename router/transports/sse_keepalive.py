"""Keep-alive comments for idle SSE answers, from one task for all of them.

An SSE answer that has sent nothing for `SSE_HEARTBEAT_S` (a model thinking before its
first token, a tool call) gets the comment `: keep-alive`, so that proxies and load
balancers do not close it as idle (docs/api.md). One `KeepAlive` task looks over the
open SSE answers four times per interval and sends the comment to those idle for a whole
interval, each send in a task of its own (a client that does not read blocks only its
own comment); the answers themselves need no timer or task of their own.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

log = logging.getLogger("aura.http")


class IdleAware(Protocol):
    """An open SSE answer: when it last wrote, and how to send it the comment."""

    last_write: float

    async def heartbeat(self) -> None: ...


class KeepAlive:
    """The open SSE answers, and the task that keeps the idle ones alive (`run`)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._open: set[IdleAware] = set()
        self._beating: set[IdleAware] = set()

    def add(self, answer: IdleAware) -> None:
        self._open.add(answer)

    def discard(self, answer: IdleAware) -> None:
        self._open.discard(answer)

    def __len__(self) -> int:
        return len(self._open)

    async def run(self) -> None:
        """Until cancelled (the server's nursery owns it)."""
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(self.every_s / 4)
                due = trio.current_time() - self.every_s
                for answer in [a for a in self._open
                               if a.last_write <= due and a not in self._beating]:
                    self._beating.add(answer)
                    nursery.start_soon(self._beat, answer)

    async def _beat(self, answer: IdleAware) -> None:
        try:
            if answer in self._open:  # it may have ended since it was picked
                await answer.heartbeat()
        except Exception:  # noqa: BLE001 - a client gone or an answer that just ended
            log.debug("keep-alive comment not sent", exc_info=True)
        finally:
            self._beating.discard(answer)
