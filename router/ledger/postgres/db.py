"""The PostgreSQL connection pool under Trio: where every ledger statement runs.

psycopg's async API needs asyncio, so the ledger uses its sync API: a bounded pool
(psycopg_pool) of autocommit connections, each call in a worker thread
(`trio.to_thread.run_sync`, at most `pool_size` at once, so a thread never waits for a
connection). Measured here (docs/deployment.md): a thread round trip plus one
statement costs ~0.4 ms of CPU, ~3x an inline call, which would block the event loop for
the whole round trip and every lock wait. Each ledger operation is therefore one
statement (a server-side function for holds and settlements: router/ledger/postgres/
schema.py), so one round trip.

Failures: an unusable `DATABASE_URL` at start-up is a `ConfigError` naming the setting
(one line; never the password). A database lost while running makes each call fail
closed with `BillingUnavailable` (503); the pool reconnects by itself when it returns.
"""

from __future__ import annotations

import re
from typing import Any, Callable, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
import trio
from psycopg_pool import ConnectionPool, PoolTimeout

from router.errors import BillingUnavailable, ConfigError
from router.ledger.postgres.schema import migrate
from router.redact import display_url

T = TypeVar("T")

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 5
# How long a call waits for a connection while the pool reconnects before failing closed.
CHECKOUT_TIMEOUT_S = 3.0
_PASSWORD_PAIR = re.compile(r"password\s*=\s*\S+", re.IGNORECASE)


def scrubbed(message: str, url: str) -> str:
    """A driver message without the URL's password (libpq may echo a conninfo string),
    on one line."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in (password, unquote(password) if password else None):
        if secret:
            message = message.replace(secret, "[redacted]")
    message = _PASSWORD_PAIR.sub("password=[redacted]", message)
    return " ".join(message.split())[:300]


def connect_for_start(url: str) -> psycopg.Connection:
    """The first connection: proves `DATABASE_URL` works, or says in one line why not."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise ConfigError(f"DATABASE_URL ({display_url(url)}) cannot be used: "
                          f"{scrubbed(str(exc), url)}") from None


class PostgresDatabase:
    """The pool, and the worker-thread gate in front of it."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        with connect_for_start(url) as conn:
            try:
                migrate(conn)
            except psycopg.Error as exc:
                raise ConfigError(f"DATABASE_URL ({display_url(url)}): the ledger schema "
                                  f"could not be created: {scrubbed(str(exc), url)}") from None
        self.pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=True, timeout=CHECKOUT_TIMEOUT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            name="aura-ledger")
        self._gate = trio.CapacityLimiter(pool_size)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self.run_blocking, fn, *args,
                                             limiter=self._gate)

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            with self.pool.connection() as conn:
                return fn(conn, *args)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise BillingUnavailable(
                "the billing ledger cannot be reached right now; retry shortly") from exc

    async def ping(self) -> bool:
        return await self.run(_ping)

    def close(self) -> None:
        self.pool.close()


def _ping(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1").fetchone()
    return row is not None and row[0] == 1
