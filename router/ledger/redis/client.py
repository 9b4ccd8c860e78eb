"""The Redis connection every Redis store shares: `RedisSession`, one coredis client per
event loop, and the one way a store talks to Redis (`command`, `script`).

coredis 6 runs its connections in a task group, so a client lives inside
`async with client:` and belongs to the `trio.run` that entered it. Whoever owns an
event loop (the server's root, each CLI command, each test step) enters
`RedisSession.session()` once; the stores then find that loop's client here. Nothing is
kept past the session: the next `trio.run` enters again and gets a fresh client. A call
made outside any session opens a short one for itself (a connect per call: fine for a
test or a one-off script, never what the server does).

Every store operation is one round trip: `command` sends one Redis command, `script`
one EVALSHA (a script Redis has forgotten, after a restart or SCRIPT FLUSH, is sent once
more as EVAL). Both skip coredis's command wrappers and write straight to a pooled
connection (~25 % less CPU per call here), and neither retries: a write whose answer was
lost may have happened, so a lost connection is `BillingUnavailable` (503, fail closed)
and the caller decides (settlement is keyed by request id, so a later retry is safe).
coredis replaces a dead connection on the next call, so the first call after Redis
comes back works again. Keys live under `prefix` (default "aura:"), so one Redis can hold
other data; the scripts build their keys from it and need one Redis, not a cluster.
"""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import anyio
import coredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import (AuthenticationError, NoScriptError, ReadOnlyError,
                                ResponseError)
from coredis.retry import NoRetryPolicy

from router.errors import BillingUnavailable, ConfigError
from router.redact import display_url

__all__ = ["DEFAULT_PREFIX", "RedisSession", "Script", "check_url", "shown_url"]

DEFAULT_PREFIX = "aura:"
CONNECT_TIMEOUT_S = 5.0
# Longest wait for one answer: a hung Redis must not hang settlement forever (scripts
# here run for microseconds; an export page for a few milliseconds).
COMMAND_TIMEOUT_S = 10.0

_SCHEMES = ("redis", "rediss", "unix")
# What a lost or refusing service looks like, from the socket up through coredis
# (LOADING is a coredis ConnectionError; a replica answers READONLY; a Redis whose
# password changed under a running router answers NOAUTH/WRONGPASS).
_LOST = (RedisConnectionError, TimeoutError, OSError, anyio.BrokenResourceError,
         anyio.ClosedResourceError, anyio.EndOfStream, ReadOnlyError, AuthenticationError)
# Error replies that mean "Redis cannot take this now", not "the script is wrong".
_REFUSING = ("MISCONF ", "OOM ", "READONLY ", "LOADING ", "BUSY ", "MASTERDOWN ",
             "NOREPLICAS ")


def check_url(url: str | None) -> str:
    """`url` if coredis can use it, else a `ConfigError` naming REDIS_URL (shown without
    its password)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("REDIS_URL is not set (redis://host:6379/0)")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"REDIS_URL {display_url(url)} has a malformed host or port") \
            from None
    db = parts.path.strip("/")
    problem = None
    if parts.scheme not in _SCHEMES:
        problem = f"must start with {', '.join(s + '://' for s in _SCHEMES)}"
    elif parts.scheme != "unix" and not parts.hostname:
        problem = "names no host"
    elif parts.scheme == "unix" and not parts.path:
        problem = "names no socket path"
    elif parts.scheme != "unix" and db and not db.isdigit():
        problem = "has a database that is not a number (redis://host:6379/0)"
    elif port == 0:
        problem = "has port 0"
    if problem:
        raise ConfigError(f"REDIS_URL {display_url(url)} {problem}")
    return url


def shown_url(url: str) -> str:
    """Where Redis is, for doctor and errors: never the password."""
    parts = urlsplit(url)
    return f"unix://{parts.path}" if parts.scheme == "unix" else display_url(url)


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1 (what EVALSHA names it by)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def _reason(exc: BaseException) -> str:
    """The innermost cause, in one short line (never the URL's password: coredis names
    connections by host and port only)."""
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _is_refusal(exc: ResponseError) -> bool:
    return str(exc).startswith(_REFUSING)


def _lost(exc: BaseException) -> bool:
    """True if `exc` (or every leaf of a group) says Redis cannot be reached."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_lost(e) for e in exc.exceptions)
    return isinstance(exc, _LOST) or isinstance(exc, ResponseError) and _is_refusal(exc)


class RedisSession:
    """Where Redis is (`url`, `prefix`), and the client of each event loop that entered
    `session()`. Share one per process: the ledger, the key store and the idempotency
    store (or, with another ledger backend, the idempotency store alone) all use it."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 command_timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.url = check_url(url)
        self.where = shown_url(self.url)
        self.prefix = prefix
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self._clients: dict[trio.lowlevel.TrioToken, coredis.Redis[bytes]] = {}

    def _new_client(self) -> coredis.Redis[bytes]:
        return coredis.Redis.from_url(
            self.url, decode_responses=False, retry_policy=NoRetryPolicy(),
            connect_timeout=self.connect_timeout_s, stream_timeout=self.command_timeout_s)

    @property
    def client(self) -> coredis.Redis[bytes]:
        """This event loop's client (for commands the stores do not wrap: doctor's
        checks, tests). Only inside `session()`."""
        client = self._clients.get(trio.lowlevel.current_trio_token())
        if client is None:
            raise RuntimeError("no Redis session is open in this event loop: enter "
                               "`stores.session()` (RedisSession.session) first")
        return client

    @asynccontextmanager
    async def session(self) -> AsyncIterator[RedisSession]:
        """Open this loop's client, check that Redis answers (else `ConfigError`), and
        close it at exit. Entering again in the same loop reuses the open client."""
        async with self._opened(on_failure=self._config_error):
            yield self

    def _config_error(self, exc: BaseException) -> Exception:
        if isinstance(exc, AuthenticationError):
            return ConfigError(f"REDIS_URL {self.where}: Redis refused the credentials "
                               f"({_reason(exc)})")
        return ConfigError(f"REDIS_URL {self.where} cannot be reached: {_reason(exc)}")

    def _unavailable(self, exc: BaseException) -> Exception:
        # Said to API clients too: the reason, never where the ledger lives (`doctor`
        # and /ready name it for the operator).
        return BillingUnavailable(f"the billing ledger (Redis) cannot be reached right now "
                                  f"({_reason(exc)}); retry shortly")

    @asynccontextmanager
    async def _opened(self, *, on_failure: Any) -> AsyncIterator[None]:
        token = trio.lowlevel.current_trio_token()
        if token in self._clients:  # nested: the outer session owns the client
            yield
            return
        client = self._new_client()
        failure: BaseException | None = None
        body_error: BaseException | None = None
        try:
            async with client:
                try:
                    await client.ping()
                except Exception as exc:  # noqa: BLE001 - reported below, as one line
                    failure = exc
                if failure is None:
                    self._clients[token] = client
                    try:
                        yield
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        self._clients.pop(token, None)
        except BaseExceptionGroup as group:
            # coredis's task group wraps whatever crossed it: give the body's own error
            # back unwrapped, as if no client had been there.
            if not (len(group.exceptions) == 1 and group.exceptions[0] is body_error):
                raise
        if failure is not None:
            raise on_failure(failure) from None
        if body_error is not None:
            raise body_error

    def _current(self) -> coredis.Redis[bytes] | None:
        return self._clients.get(trio.lowlevel.current_trio_token())

    async def command(self, *args: Any) -> Any:
        """One Redis command, its raw answer (bytes, ints, lists)."""
        client = self._current()
        if client is None:
            async with self._opened(on_failure=self._unavailable):
                return await self.command(*args)
        try:
            return await self._send(client, args)
        except BaseException as exc:
            if _lost(exc):
                raise self._unavailable(exc) from exc
            raise

    async def script(self, script: Script, *args: Any) -> Any:
        """Run `script` with ARGV = (prefix, *args): one EVALSHA."""
        client = self._current()
        if client is None:
            async with self._opened(on_failure=self._unavailable):
                return await self.script(script, *args)
        try:
            try:
                return await self._send(client, (b"EVALSHA", script.sha, 0, self.prefix,
                                                  *args))
            except NoScriptError:
                return await self._send(client, (b"EVAL", script.source, 0, self.prefix,
                                                  *args))
        except BaseException as exc:
            if _lost(exc):
                raise self._unavailable(exc) from exc
            raise

    @staticmethod
    async def _send(client: coredis.Redis[bytes], args: tuple[Any, ...]) -> Any:
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            name = args[0] if isinstance(args[0], bytes) else str(args[0]).encode()
            request = connection.create_request(name, *args[1:])
        finally:
            pool.release(connection)  # queued: the connection can carry the next call
        return await request
