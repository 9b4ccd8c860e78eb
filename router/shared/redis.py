"""The Redis connection of the shared state: the `RedisSession` of
`router.ledger.redis.client` (one coredis client per event loop, one round trip per
command or script, keys under "aura:"), so that a router whose ledger is in Redis too
uses one client for everything.

`shared_session` gives the session and says whether its owner still has to enter it:
the stores' own is entered with the stores; one of our own is entered alongside them
(`actors.runtime.build_runtime` chains it to `Stores.session`), so that it is open
before the root nursery starts and until the server stops. Entering checks that Redis
answers: a `REDIS_URL` that cannot be used at start-up is a `ConfigError` naming the
setting and showing the URL without its password (the command line prints it as one
line). Later outages are each user's business (the rate limiter fails closed, the
verdict actor retries); the client reconnects by itself once Redis is back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import trio
from coredis.exceptions import RedisError

from router.errors import BillingUnavailable
from router.ledger.redis.client import RedisSession, check_url

if TYPE_CHECKING:
    from router.config import Config
    from router.ledger.stores import Stores

__all__ = ["REDIS_ERRORS", "RedisSession", "shared_session"]

# What a Redis that is down, slow or refusing looks like to the users of the session.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    BillingUnavailable, RedisError, OSError, trio.TooSlowError, anyio.BrokenResourceError,
    anyio.ClosedResourceError, anyio.EndOfStream)


def shared_session(config: "Config", stores: "Stores") -> tuple[RedisSession, bool]:
    """(the session on `config.redis_url`, True if the caller must enter it)."""
    session = stores.details.get("redis_session")
    if isinstance(session, RedisSession):
        return session, False
    return RedisSession(check_url(config.redis_url)), True
