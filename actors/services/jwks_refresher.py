"""The JWKS refresher: keeps the RS256 verification keys (`AUTH0_DOMAIN` / `JWKS_URL`).

`JwksKeyring` is what the auth stage and readiness hold: the last good keys, why there
are none, and `refreshed()`, which a request whose token names an unknown `kid` awaits
(bounded) after asking for a fetch. `JwksRefresher` is the actor, started under a
supervisor in the root nursery (`actors.root.start_actors`) when a JWKS is configured:
its first fetch ends (or fails, with a log line) before the server accepts traffic; then
it fetches again when the answer's `Cache-Control: max-age` runs out (`JWKS_REFRESH_S`
without one), or sooner when a request asks, never twice within `JWKS_MIN_REFRESH_S`.
A failed fetch (unreachable, an HTTP error, not JSON, no usable key) keeps the last good
keys and is retried with backoff. docs/configuration.md#jwts.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlsplit

import trio

from actors.mailbox import Actor
from router.auth.jwks import (MAX_JWKS_BYTES, JwksError, JwksKeys, JwksSettings,
                              parse_jwks, refresh_delay, verify_rs256)
from router.errors import PoolExhausted, UpstreamTimeout, UpstreamUnreachable
from router.providers.base import HttpCall
from router.providers.h11_pool import H11Pool

log = logging.getLogger("aura.jwks")

FETCH_TIMEOUT_S = 10.0  # one whole fetch, connect to last byte
UNKNOWN_KID_WAIT_S = 5.0  # how long a request with an unknown kid waits for a refresh
_HEADERS = ((b"accept", b"application/json"), (b"user-agent", b"aura-router"))


class JwksKeyring:
    """The keys in use and the way to ask for fresh ones; shared by requests and the actor."""

    def __init__(self, settings: JwksSettings, *, refresh_s: float, min_refresh_s: float,
                 wait_s: float = UNKNOWN_KID_WAIT_S) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self.min_refresh_s = min_refresh_s
        self.wait_s = wait_s
        self.keys: JwksKeys | None = None  # the last good answer's
        self.problem: str | None = "not fetched yet"  # why the last fetch failed
        self.fetches = 0
        self.last_fetch_at = -math.inf  # trio time the last fetch began
        self.wanted = trio.Event()  # a request met an unknown kid since the last fetch began
        self._next_fetch = trio.Event()  # set when a fetch that begins after now has ended

    def verify(self, token: str) -> str:
        """The subject of an RS256 token, or `JwtRejected` (`UnknownSigningKey`)."""
        return verify_rs256(token, self.keys, audience=self.settings.audience,
                            issuer=self.settings.issuer)

    async def refreshed(self) -> bool:
        """Ask for a fetch; True once one that began after the ask has ended, False when
        none can within `wait_s` (the rate limit) or it did not end in time."""
        done = self._next_fetch
        self.wanted.set()
        if self.last_fetch_at + self.min_refresh_s - trio.current_time() > self.wait_s:
            return False
        with trio.move_on_after(self.wait_s):
            await done.wait()
            return True
        return False

    def begin_fetch(self) -> trio.Event:
        """The actor starts a fetch: the event to set when it has ended."""
        self.fetches += 1
        self.last_fetch_at = trio.current_time()
        self.wanted = trio.Event()
        done, self._next_fetch = self._next_fetch, trio.Event()
        return done

    def unready_reason(self) -> str | None:
        if self.keys is not None:
            return None
        return f"JWKS has no usable key ({self.settings.shown_url}): {self.problem}"


class _FetchFailed(Exception):
    """Why a fetch gave no keys (words fit for a log line and `/ready`)."""


def _pool_and_path(url: str) -> tuple[H11Pool, str]:
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # never the userinfo
    pool = H11Pool(origin, max_connections=1, connect_timeout_s=FETCH_TIMEOUT_S,
                   idle_timeout_s=FETCH_TIMEOUT_S)
    return pool, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class JwksRefresher(Actor[Any]):
    def __init__(self, ring: JwksKeyring) -> None:
        self.ring = ring
        self.failures = 0

    async def serve(self, mailbox: trio.MemoryReceiveChannel[Any], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ring = self.ring
        pool, path = _pool_and_path(ring.settings.url)
        try:
            delay = await self._fetch(pool, path)
            task_status.started()
            while True:
                with trio.move_on_after(delay):
                    await ring.wanted.wait()
                await trio.sleep(max(0.0, ring.last_fetch_at + ring.min_refresh_s
                                     - trio.current_time()))
                delay = await self._fetch(pool, path)
        finally:
            with trio.CancelScope(shield=True):
                await pool.aclose()

    async def _fetch(self, pool: H11Pool, path: str) -> float:
        """One fetch; the seconds until the next one."""
        ring = self.ring
        done = ring.begin_fetch()
        try:
            try:
                keys, cache_control = await self._download(pool, path)
            except _FetchFailed as exc:
                return self._failed(str(exc))
            before = ring.keys
            ring.keys, ring.problem = keys, None
            delay = refresh_delay(cache_control, default_s=ring.refresh_s,
                                  min_s=ring.min_refresh_s)
            if self.failures or before is None or set(before.keys) != set(keys.keys):
                log.info("JWKS %s: loaded %s; next refresh in %.0fs", ring.settings.shown_url,
                         keys.describe(), delay)
            self.failures = 0
            return delay
        finally:
            done.set()

    async def _download(self, pool: H11Pool, path: str) -> tuple[JwksKeys, str | None]:
        try:
            with trio.fail_after(FETCH_TIMEOUT_S):
                async with pool.send(HttpCall(path, _HEADERS, b"", method=b"GET")) as answer:
                    if answer.status != 200:
                        raise _FetchFailed(f"the server answered HTTP {answer.status}")
                    body = await answer.read(MAX_JWKS_BYTES)
                    cache_control = answer.headers.get("cache-control")
            return _parsed(body), cache_control
        except _FetchFailed:
            raise
        except (trio.TooSlowError, UpstreamTimeout):
            raise _FetchFailed("the fetch timed out") from None
        except (UpstreamUnreachable, PoolExhausted):
            raise _FetchFailed("the server could not be reached") from None
        except Exception as exc:  # noqa: BLE001 - a JWKS problem must never stop the router
            raise _FetchFailed(f"the fetch failed ({type(exc).__name__})") from None

    def _failed(self, why: str) -> float:
        ring = self.ring
        self.failures += 1
        ring.problem = why
        delay = min(max(ring.refresh_s, ring.min_refresh_s),
                    ring.min_refresh_s * 2 ** min(self.failures - 1, 16))
        kept = (f"keeping the last good {ring.keys.describe()}" if ring.keys is not None
                else "no key loaded yet: RS256 tokens are refused")
        log.warning("JWKS %s: %s; %s; retrying in %.0fs", ring.settings.shown_url, why, kept,
                    delay)
        return delay


def _parsed(body: bytes) -> JwksKeys:
    try:
        return parse_jwks(body)
    except JwksError as exc:
        raise _FetchFailed(str(exc)) from None
