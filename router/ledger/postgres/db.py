"""The PostgreSQL ledger's connections: where every ledger statement runs.

Statements run on `TrioConnection`s (trio_pq.py: psycopg's libpq handle driven by Trio's
I/O waits, no worker thread), at most `pool_size` at once. Each ledger operation is one
statement where it can be (a server-side function for holds and settlements:
schema.py), so one round trip.

Failures: an unusable `DATABASE_URL` at start-up is a `ConfigError` naming the setting
(one line; never the password). A database lost while running makes each call fail
closed with `BillingUnavailable` (503); a broken connection is replaced on the next
call, so the ledger comes back by itself with the database.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg

from router.errors import ConfigError
from router.ledger.postgres.schema import migrate
from router.ledger.postgres.trio_pq import TrioConnection, TrioPool
from router.redact import display_url

T = TypeVar("T")

POOL_SIZE = 8
CONNECT_TIMEOUT_S = 5
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
    """The pool of Trio-driven connections; the schema migrated before any is used."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        conn = connect_for_start(url)
        try:
            migrate(conn)
        except psycopg.Error as exc:
            conn.close()
            raise ConfigError(f"DATABASE_URL ({display_url(url)}): the ledger schema "
                              f"could not be created: {scrubbed(str(exc), url)}") from None
        self.pool = TrioPool(url, pool_size, CONNECT_TIMEOUT_S)
        self.pool.add(conn)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self.pool.connection() as conn:
            return await fn(conn, *args)

    async def ping(self) -> bool:
        return await self.run(_ping)

    def close(self) -> None:
        self.pool.close()


async def _ping(conn: TrioConnection) -> bool:
    row = await conn.fetchone("SELECT 1")
    return row is not None and row[0] == 1
