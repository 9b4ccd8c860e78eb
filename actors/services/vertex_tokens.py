"""The `vertex-token` actor: keeps the Vertex AI providers' access token fresh.

Started under a supervisor in the root nursery when a Vertex provider is configured; its
first token is fetched before the server accepts traffic. It fetches a new one (with
google-auth, in a worker thread: never on a request's path) `REFRESH_BEFORE_S` before
the current one expires, and puts it in the providers' credential pools in place of
the old. A failed fetch is logged (the service account's email, never its key) and retried
with backoff; the token in use stays until it expires.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import trio

from actors.mailbox import Actor
from router.providers.credentials import CredentialPool, OAuthToken
from router.providers.google_sa import ServiceAccount, fetch_token

log = logging.getLogger("aura.vertex")

REFRESH_BEFORE_S = 300.0
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0


class VertexTokenKeeper(Actor[Any]):
    def __init__(self, pools: list[CredentialPool], account: ServiceAccount, *,
                 fetch: Callable[[ServiceAccount], tuple[str, float]] = fetch_token,
                 clock: Callable[[], float] = time.time,
                 refresh_before_s: float = REFRESH_BEFORE_S,
                 retry_first_s: float = RETRY_FIRST_S) -> None:
        self.pools = pools  # every Vertex provider's (Claude's and Gemini's): one token
        self.account = account
        self.fetch = fetch
        self.clock = clock
        self.refresh_before_s = refresh_before_s
        self.retry_first_s = retry_first_s
        self.expires_at = -math.inf

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.refresh()
        task_status.started()
        pause = self.retry_first_s
        while True:
            await trio.sleep(max(0.0, self.expires_at - self.refresh_before_s - self.clock()))
            if await self.refresh():
                pause = self.retry_first_s
            else:
                await trio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)

    async def refresh(self) -> bool:
        try:
            token, expires_at = await trio.to_thread.run_sync(self.fetch, self.account)
        except Exception as exc:  # noqa: BLE001 - google-auth's errors vary; all are retried
            log.error("vertex: no access token for %s (%s: %s); retrying", self.account.email,
                      type(exc).__name__, str(exc)[:200])
            return False
        now, here = self.clock(), trio.current_time()
        self.expires_at = expires_at
        for pool in self.pools:
            pool.sync_accounts([(self.account.email, OAuthToken(token),
                                 here + (expires_at - now), expires_at)])
        log.info("vertex: access token for %s, valid %.0f s", self.account.email,
                 expires_at - now)
        return True
