"""A lean keep-alive HTTP/1.1 connection pool for one upstream origin, on h11 and trio.

Why not httpx: in `scripts/bench` httpx + httpcore cost ~30% of the router's CPU per
request (its pool scans every connection on each checkout and wraps every read in
several layers of context managers). LLM upstream calls need little of what it offers:
one origin per provider, POST with a JSON body, a streamed answer, keep-alive. h11 does
the protocol (framing, chunked encoding, keep-alive rules); this module only keeps idle
connections in a LIFO stack and enforces the provider's limits:

- at most `max_connections` requests in flight (a `CapacityLimiter`; waiting for a slot
  counts against the connect timeout);
- `connect_timeout_s` for TCP (and TLS) setup, `idle_timeout_s` between two reads
  (enforced by one watchdog task, `watch_reads`, where the owner runs it; else by a
  deadline per read);
- a response closed before its end closes its connection (that is how an upstream
  stream stops at once when the client goes away); a finished one goes back to the pool.

A reused connection that the server had closed while idle fails before any response
byte; that request is retried once on a fresh connection (nothing reached the model).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from typing import AsyncIterator
from urllib.parse import urlsplit

import h11
import trio

from router.errors import PoolExhausted, UpstreamTimeout, UpstreamUnreachable
from router.providers.base import HttpCall

READ_SIZE = 64 * 1024
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)
KEEPALIVE_EXPIRY_S = 20.0


log = logging.getLogger("aura.upstream")


class _StaleConnection(Exception):
    """A pooled connection was dead before the response began."""


def _read_now(fd: int) -> bytes | None:
    """What the socket has (b"" at EOF), or None if nothing yet. The wait that follows
    is outside the `except`: a handled exception lives as long as its handler runs, and
    an idle stream would keep its BlockingIOError (~0.5 KiB) for the whole wait."""
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None


@dataclass(slots=True, eq=False)  # compared (and hashed) by identity
class _Connection:
    stream: trio.abc.Stream
    protocol: h11.Connection
    idle_since: float = 0.0
    fd: int = -1  # plain TCP: the socket, read directly (see `read`); TLS: -1
    waiting_since: float = 0.0  # trio time a watched read began to wait (`read`)
    timed_out: bool = False  # the watchdog ended its wait (`H11Pool.watch_reads`)

    async def read(self, waiting: set["_Connection"] | None = None) -> bytes:
        """The next bytes (b"" at EOF). Plain TCP skips `SocketStream.receive_some`: an
        idle stream waits here for seconds at a time, and that path keeps ~1.2 KiB of
        coroutine frames and context managers alive per waiting stream (its checkpoints
        are kept: a full one when data was there at once, else the wait). With `waiting`
        (plain TCP, the pool's watchdog running) a wait is registered there, and the
        watchdog ends one past the idle timeout (`notify_closing`:
        trio.ClosedResourceError here, `timed_out` set)."""
        if self.fd < 0:
            return await self.stream.receive_some(READ_SIZE)
        await trio.lowlevel.checkpoint_if_cancelled()
        data = _read_now(self.fd)
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        if waiting is not None:
            self.waiting_since = trio.current_time()
            waiting.add(self)
        try:
            while True:
                await trio.lowlevel.wait_readable(self.fd)
                if (data := _read_now(self.fd)) is not None:
                    return data
        finally:
            if waiting is not None:
                waiting.discard(self)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


class H11Response:
    """One upstream answer: status and headers now, the body as it arrives."""

    __slots__ = ("_pool", "_conn", "status", "_raw_headers", "content_type", "retry_after",
                 "finished")

    def __init__(self, pool: "H11Pool", conn: _Connection, response: h11.Response) -> None:
        self._pool = pool
        self._conn = conn
        self.status = response.status_code
        # A stream lives for minutes and its headers are rarely read again: one bytes
        # (about a third of the dict's memory), decoded on demand.
        self._raw_headers = b"\n".join(k + b":" + v for k, v in response.headers)
        self.content_type = ""
        self.retry_after: str | None = None
        for name, value in response.headers:
            if name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name == b"retry-after":
                self.retry_after = value.decode("latin-1")
        self.finished = False

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case names (h11 normalises them); the last of repeated ones."""
        pairs = (line.split(b":", 1) for line in self._raw_headers.split(b"\n") if line)
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in pairs}

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end. Safe to cancel and call again
        (nothing is lost: the read either happened whole or not at all)."""
        protocol = self._conn.protocol
        while not self.finished:
            try:
                event = protocol.next_event()
            except h11.RemoteProtocolError:  # e.g. EOF in the middle of a chunked body
                raise UpstreamUnreachable("provider connection broke mid-answer") from None
            if event is h11.NEED_DATA:
                await self._pool._receive(self._conn, midstream=True)
            elif isinstance(event, h11.Data):
                return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.finished = True
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamUnreachable("provider closed the connection mid-answer")
        return None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while (chunk := await self.next_chunk()) is not None:
            yield chunk

    async def read(self, limit: int) -> bytes:
        out = bytearray()
        async for chunk in self.aiter_bytes():
            out += chunk
            if len(out) > limit:
                break
        return bytes(out)


class H11Pool:
    def __init__(self, base_url: str, *, max_connections: int, connect_timeout_s: float,
                 idle_timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.path_prefix = parts.path.rstrip("/")
        default_port = parts.port is None or parts.port == (443 if self.tls else 80)
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._slots = trio.CapacityLimiter(max_connections)
        self._idle: list[_Connection] = []
        self._ssl = ssl.create_default_context() if self.tls else None
        self.opened = 0
        self._waiting: set[_Connection] = set()  # plain-TCP reads waiting, when watched
        self._watched = False

    async def watch_reads(self) -> None:
        """End the reads that have waited past `idle_timeout_s` (their callers get
        UpstreamTimeout, within an eighth of it, at most a second, after): one task for
        every connection instead of a deadline per read, which cost a cancel scope per
        streamed chunk. Runs until cancelled (the provider's supervisor owns it); while
        it runs, plain-TCP reads take no cancel scope of their own."""
        tick = min(1.0, self.idle_timeout_s / 8)
        self._watched = True
        try:
            while True:
                await trio.sleep(tick)
                due = trio.current_time() - self.idle_timeout_s
                for conn in [c for c in self._waiting if c.waiting_since <= due]:
                    conn.timed_out = True
                    self._waiting.discard(conn)
                    trio.lowlevel.notify_closing(conn.fd)  # the caller closes it
        finally:
            self._watched = False

    def stats(self) -> dict[str, int]:
        return {"in_flight": self._slots.borrowed_tokens, "idle": len(self._idle),
                "max": int(self._slots.total_tokens), "opened": self.opened}

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    async def check_connect(self) -> None:
        """Open one connection (TCP, and TLS where the URL says https) and close it: the
        probe of a kind with no cheap call to make."""
        conn = await self._connect()
        await conn.aclose()

    async def _connect(self) -> _Connection:
        try:
            with trio.fail_after(self.connect_timeout_s):
                stream: trio.abc.Stream = await trio.open_tcp_stream(self.host, self.port)
                if self._ssl is not None:
                    stream = trio.SSLStream(stream, self._ssl, server_hostname=self.host,
                                            https_compatible=True)
                    await stream.do_handshake()
        except trio.TooSlowError:
            raise UpstreamTimeout("provider connect timed out") from None
        except _BROKEN:
            raise UpstreamUnreachable("provider could not be reached") from None
        self.opened += 1
        fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) and \
            os.name == "posix" else -1
        return _Connection(stream, h11.Connection(h11.CLIENT), fd=fd)

    async def _checkout(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < KEEPALIVE_EXPIRY_S:
                return conn
            await conn.aclose()
        return None

    def _checkin(self, conn: _Connection) -> bool:
        protocol = conn.protocol
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            return True
        return False  # e.g. the server said `connection: close`

    async def _receive(self, conn: _Connection, *, midstream: bool) -> None:
        if self._watched and conn.fd >= 0:
            try:
                data = await conn.read(self._waiting)
            except trio.ClosedResourceError:
                if conn.timed_out:
                    raise UpstreamTimeout("provider went silent") from None
                raise UpstreamUnreachable("provider connection broke") from None
            except _BROKEN:
                raise UpstreamUnreachable("provider connection broke") from None
            conn.protocol.receive_data(data)
            return
        # Unwatched (TLS, or no watchdog running): a bare CancelScope rather than `fail_after` (a generator context manager): an
        # idle stream sits here for seconds at a time, and that wrapper is kept alive
        # meanwhile (~0.6 KiB a stream).
        scope = trio.CancelScope(deadline=trio.current_time() + self.idle_timeout_s)
        try:
            with scope:
                data = await conn.read()
        except _BROKEN:
            raise UpstreamUnreachable("provider connection broke") from None
        if scope.cancelled_caught:
            raise UpstreamTimeout("provider went silent")
        conn.protocol.receive_data(data)

    async def _start(self, conn: _Connection, head: bytes) -> h11.Response:
        reused = conn.idle_since > 0
        try:
            await conn.stream.send_all(head)
        except _BROKEN:
            if reused:
                raise _StaleConnection() from None
            raise UpstreamUnreachable("provider connection broke") from None
        protocol = conn.protocol
        while True:
            try:
                event = protocol.next_event()
            except h11.RemoteProtocolError as exc:
                if reused:
                    # EOF before any byte of the answer: the server had closed this idle
                    # connection (its keep-alive ran out as we reused it). Not the
                    # provider's fault: try again on a fresh connection.
                    raise _StaleConnection() from None
                log.warning("%s:%d sent a malformed answer (%s)", self.host, self.port, exc)
                raise UpstreamUnreachable("provider sent a malformed answer") from None
            if event is h11.NEED_DATA:
                try:
                    await self._receive(conn, midstream=False)
                except UpstreamUnreachable:
                    if reused:
                        raise _StaleConnection() from None
                    raise
            elif isinstance(event, h11.Response):
                return event
            elif isinstance(event, h11.ConnectionClosed):
                if reused:
                    raise _StaleConnection()
                raise UpstreamUnreachable("provider closed the connection")
            # InformationalResponse (100 Continue): keep reading

    def send(self, call: HttpCall) -> "Exchange":
        """`async with pool.send(call) as answer:` the answer, on a pooled connection."""
        return Exchange(self, call)

    async def _open(self, call: HttpCall) -> H11Response:
        """Send `call` on a connection of its own (a slot taken) and read the answer's
        head; on failure nothing is left taken."""
        target = (self.path_prefix + call.path).encode()
        body = call.body
        request_headers = [(b"host", self.host_header),
                           (b"content-length", str(len(body)).encode()), *call.headers]
        try:
            with trio.fail_after(self.connect_timeout_s):
                await self._slots.acquire()
        except trio.TooSlowError:
            raise PoolExhausted("provider connection pool is exhausted") from None
        try:
            for attempt in (0, 1):
                conn = await self._checkout() if attempt == 0 else None
                conn = conn or await self._connect()
                head = conn.protocol.send(h11.Request(method=call.method, target=target,
                                                      headers=request_headers))
                head += conn.protocol.send(h11.Data(data=body))
                head += conn.protocol.send(h11.EndOfMessage())
                try:
                    return H11Response(self, conn, await self._start(conn, head))
                except _StaleConnection:
                    await conn.aclose()
                except BaseException:
                    await conn.aclose()
                    raise
            raise AssertionError("unreachable: the second attempt returns or raises")
        except BaseException:
            self._slots.release()
            raise

    async def _close(self, answer: H11Response) -> None:
        """The answer is done with: its connection back to the pool if it was read to
        its end, else closed (the upstream must stop producing now); its slot freed."""
        try:
            if not (answer.finished and self._checkin(answer._conn)):
                await answer._conn.aclose()
        finally:
            self._slots.release()


class Exchange:
    """One request's use of the pool, from its send to the answer's end (`H11Pool.send`).
    A class rather than a generator context manager: it lives as long as the answer, and
    a generator's frame, wrapper and trio's registry entry are ~0.5 KiB per open stream."""

    __slots__ = ("_pool", "_call", "_answer")

    def __init__(self, pool: H11Pool, call: HttpCall) -> None:
        self._pool = pool
        self._call: HttpCall | None = call
        self._answer: H11Response | None = None

    async def __aenter__(self) -> H11Response:
        assert self._call is not None, "an Exchange is entered once"
        call, self._call = self._call, None  # the request's bytes are not kept meanwhile
        self._answer = await self._pool._open(call)
        return self._answer

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._answer is not None
        await self._pool._close(self._answer)
