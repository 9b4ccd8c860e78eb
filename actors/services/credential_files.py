"""The credential-file watcher: keeps the `claude-code` provider's pool in step with the
Claude Code logins on disk (`router.providers.claude_oauth`).

Its first read happens before it reports ready, so before traffic: what the pool holds
then is what the files hold (expired logins marked, never picked). Then it polls the
files' mtimes every `POLL_S` seconds (a stat per file, in a thread; never on a request's
path) and, when one was written, created, replaced or removed, reads them again and
syncs the pool: a refreshed token replaces the old one in place (the account keeps its
cooldown), a new directory's login joins, a removed one leaves. Each change is logged
one line per account, naming its directory and expiry, never its token; a file it had
to skip is logged once per change with why.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import trio

from actors.mailbox import Actor
from router.providers import claude_oauth
from router.providers.credentials import CredentialPool

log = logging.getLogger("aura.claude_code")

POLL_S = 2.0


class CredentialFileWatcher(Actor[Any]):
    def __init__(self, pool: CredentialPool, dirs: list[Path], *, poll_s: float = POLL_S,
                 clock: Callable[[], float] = time.time, home: str | None = None) -> None:
        self.pool = pool
        self.dirs = dirs
        self.files = claude_oauth.candidate_files(dirs)
        self.poll_s = poll_s
        self.clock = clock
        self.home = home
        self.signature: tuple[Any, ...] | None = None
        self.shown: list[str] | None = None

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.reload()
        task_status.started()
        while True:
            await trio.sleep(self.poll_s)
            signature = await trio.to_thread.run_sync(claude_oauth.file_signature, self.files)
            if signature != self.signature:
                await self.reload()

    async def reload(self) -> None:
        """Read the files and sync the pool (what changed is logged)."""
        self.signature = await trio.to_thread.run_sync(claude_oauth.file_signature,
                                                       self.files)
        now = self.clock()
        accounts, problems = await trio.to_thread.run_sync(
            claude_oauth.scan, self.dirs, now, self.home)
        for problem in problems:
            log.warning("claude-code accounts: %s", problem)
        self.sync(accounts, now)

    def sync(self, accounts: list[claude_oauth.Account], now: float) -> None:
        # Expiries move to the pool's (trio's) clock, so `pick` compares one number.
        here = trio.current_time()
        self.pool.sync_accounts(
            (a.label, a.token,
             here + (a.expires_at - claude_oauth.EXPIRY_MARGIN_S - now)
             if a.expires_at is not None else math.inf, a.expires_at)
            for a in accounts)
        shown = [claude_oauth.describe(a, now) for a in accounts]
        if shown != self.shown:
            log.info("claude-code accounts: %s", "; ".join(shown) if shown else
                     "none found in " + ", ".join(claude_oauth.label_of(d, self.home)
                                                  for d in self.dirs))
            self.shown = shown
