"""Supervisors: run a child actor, restart it with backoff when it crashes, give up
past a restart budget.

The mailbox belongs to the supervisor, not the child, so a `Handle` stays valid across
restarts. Readiness: `await nursery.start(supervisor.run)` returns the handle once the
first child has finished its `setup`. Past the budget the child's error propagates to
the owner of the nursery (the root), which is how a process that cannot work stops
instead of limping. `trio.Cancelled` is never caught.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import trio

from actors.mailbox import Actor, Handle, open_mailbox

log = logging.getLogger("aura.supervisor")


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5  # within `window_s`; one more and the supervisor gives up
    window_s: float = 60.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0


class RestartBudgetExceeded(Exception):
    def __init__(self, name: str, restarts: int) -> None:
        super().__init__(f"{name}: crashed {restarts} times within the restart window")
        self.name = name


class Supervisor:
    def __init__(self, name: str, factory: Callable[[], Actor[Any]],
                 policy: RestartPolicy | None = None, mailbox_size: int = 16) -> None:
        self.name = name
        self.factory = factory
        self.policy = policy or RestartPolicy()
        self.mailbox_size = mailbox_size
        self.restarts = 0
        self.current: Actor[Any] | None = None

    async def run(self, *, task_status: trio.TaskStatus[Handle[Any]] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        handle, mailbox = open_mailbox(self.mailbox_size)
        crashes: deque[float] = deque()
        backoff = self.policy.backoff_initial_s
        ready = False
        async with mailbox:
            while True:
                self.current = self.factory()
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(self.current.serve, mailbox)
                        if not ready:
                            ready = True
                            task_status.started(handle)
                    return  # the mailbox was closed: a clean stop
                except Exception as exc:
                    now = trio.current_time()
                    crashes.append(now)
                    while crashes and crashes[0] < now - self.policy.window_s:
                        crashes.popleft()
                    self.restarts += 1
                    if len(crashes) > self.policy.max_restarts:
                        raise RestartBudgetExceeded(self.name, len(crashes)) from exc
                    log.warning("%s crashed (%s); restarting in %.2fs", self.name,
                                type(exc).__name__, backoff, exc_info=exc)
                    await trio.sleep(backoff * (0.5 + random.random() / 2))
                    backoff = min(backoff * 2, self.policy.backoff_max_s)
