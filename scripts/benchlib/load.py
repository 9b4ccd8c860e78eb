"""The load generator: a lean HTTP/1.1 keep-alive client on raw trio sockets.

Why not httpx: on this 2-core machine the client competes with the fake and the router
for CPU, and httpx costs 2-3 ms of client CPU per request against 0.06-0.35 ms for this
client; with httpx the load generator, not the server, sets the direct throughput (run
`scripts/bench --client httpx` and compare the "load-gen CPU" figures). The raw
client sends pre-encoded request bytes and parses only what it needs: the status line,
`content-length` / `transfer-encoding: chunked`, and (for time-to-first-token only) the
SSE events, decoded with orjson. It is good for exactly the two servers it talks to.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import orjson
import trio

OnPiece = Callable[[bytes], None]
Probe = Callable[[], dict[str, float]]


class ConnectionClosed(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """One server and the two requests the bench sends it (non-streaming, streaming)."""

    host: str
    port: int
    key: str
    model: str
    path: str = "/v1/chat/completions"
    resumable: bool = False  # x-aura-resumable: true (the stream hub's path)
    api: str = "openai"  # or "anthropic": a Messages request (path /v1/messages)
    max_tokens: int = 256

    def body(self, stream: bool) -> bytes:
        if self.api == "anthropic":
            return orjson.dumps({
                "model": self.model, "max_tokens": self.max_tokens,
                "messages": [{"role": "user",
                              "content": "Say hello to the benchmark, briefly."}],
                **({"stream": True} if stream else {})})
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark, briefly."}],
            "max_tokens": self.max_tokens,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}", "content-type": "application/json"}

    def raw(self, stream: bool) -> bytes:
        body = self.body(stream)
        head = (f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
                f"authorization: Bearer {self.key}\r\ncontent-type: application/json\r\n"
                f"accept: {'text/event-stream' if stream else 'application/json'}\r\n"
                + ("x-aura-resumable: true\r\n" if self.resumable else "")
                + ("anthropic-version: 2023-06-01\r\n" if self.api == "anthropic" else "") +
                f"content-length: {len(body)}\r\n\r\n")
        return head.encode() + body


@dataclass(frozen=True)
class Reply:
    status: int
    size: int
    tail: bytes  # the last bytes of the body: enough to see `data: [DONE]`


class Connection(Protocol):
    async def exchange(self, stream: bool, on_piece: OnPiece | None = None) -> Reply: ...

    def close(self) -> None: ...


class RawConnection:
    """One keep-alive connection; reconnects on the next call after a failure."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.requests = {False: target.raw(False), True: target.raw(True)}
        self.sock: trio.socket.SocketType | None = None
        self.buf = bytearray()

    async def _connect(self) -> trio.socket.SocketType:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await sock.connect((self.target.host, self.target.port))
        except BaseException:
            sock.close()
            raise
        self.sock, self.buf = sock, bytearray()
        return sock

    async def connect(self) -> None:
        """Connect now rather than on the first exchange (no-op when connected)."""
        if self.sock is None:
            await self._connect()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def _fill(self, sock: trio.socket.SocketType) -> None:
        data = await sock.recv(262144)
        if not data:
            raise ConnectionClosed
        self.buf += data

    async def exchange(self, stream: bool, on_piece: OnPiece | None = None) -> Reply:
        try:
            return await self._exchange(self.requests[stream], on_piece)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, request: bytes, on_piece: OnPiece | None) -> Reply:
        sock = self.sock if self.sock is not None else await self._connect()
        view = memoryview(request)
        while view:
            view = view[await sock.send(view):]
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await self._fill(sock)
        head = bytes(buf[:end]).lower()
        del buf[:end + 4]
        status = int(head[9:12])
        size, tail = 0, b""
        if b"\r\ntransfer-encoding: chunked" in head:
            while True:
                while (eol := buf.find(b"\r\n")) < 0:
                    await self._fill(sock)
                n = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
                if n == 0:
                    while (stop := buf.find(b"\r\n\r\n", eol)) < 0:
                        await self._fill(sock)
                    del buf[:stop + 4]
                    break
                need = eol + 2 + n + 2
                while len(buf) < need:
                    await self._fill(sock)
                piece = bytes(buf[eol + 2:eol + 2 + n])
                del buf[:need]
                size += n
                tail = (tail + piece)[-64:]
                if on_piece is not None:
                    on_piece(piece)
        else:
            at = head.find(b"\r\ncontent-length:")
            n = 0
            if at >= 0:
                eol = head.find(b"\r\n", at + 2)
                n = int(head[at + 17:eol if eol >= 0 else len(head)])
            while len(buf) < n:
                await self._fill(sock)
            piece = bytes(buf[:n])
            del buf[:n]
            size, tail = n, piece[-64:]
            if on_piece is not None and piece:
                on_piece(piece)
        if b"\r\nconnection: close" in head:
            self.close()
        return Reply(status, size, tail)


class HttpxConnection:
    """The same interface over one shared `httpx.AsyncClient` (for comparison only)."""

    def __init__(self, target: Target, client: object) -> None:
        import httpx
        self.client: httpx.AsyncClient = client  # type: ignore[assignment]
        self.url = f"http://{target.host}:{target.port}{target.path}"
        self.headers = target.headers()
        self.bodies = {False: target.body(False), True: target.body(True)}

    def close(self) -> None:
        pass

    async def exchange(self, stream: bool, on_piece: OnPiece | None = None) -> Reply:
        size, tail = 0, b""
        async with self.client.stream("POST", self.url, content=self.bodies[stream],
                                      headers=self.headers) as response:
            async for piece in response.aiter_raw():
                size += len(piece)
                tail = (tail + piece)[-64:]
                if on_piece is not None:
                    on_piece(piece)
        return Reply(response.status_code, size, tail)


def new_httpx_client(concurrency: int) -> object:
    import httpx
    limits = httpx.Limits(max_connections=concurrency + 8,
                          max_keepalive_connections=concurrency + 8)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0), trust_env=False)


def good(reply: Reply, stream: bool) -> bool:
    if reply.status != 200:
        return False
    return reply.tail.endswith(b"data: [DONE]\n\n") if stream else reply.tail.rstrip().endswith(b"}")


def complete_stream(reply: Reply, api: str) -> bool:
    """A 200 whose SSE body ended as a finished stream of that API does: OpenAI's
    `data: [DONE]`, Anthropic's `message_stop` event."""
    if api != "anthropic":
        return good(reply, True)
    return reply.status == 200 and reply.tail.endswith(b'{"type":"message_stop"}\n\n')


# --- throughput ----------------------------------------------------------------------

@dataclass
class Phase:
    ok: int = 0
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    last_done: float = 0.0

    @property
    def rate(self) -> float:
        span = self.last_done - self.started
        return self.ok / span if span > 0 else 0.0


async def _phase(conns: list[Connection], stream: bool, duration_s: float) -> Phase:
    """Every connection sends back-to-back requests until the deadline; each finishes the
    one in flight, so when this returns nothing is outstanding (a quiescent point)."""
    result = Phase(started=time.perf_counter())
    deadline = result.started + duration_s

    async def worker(conn: Connection) -> None:
        while time.perf_counter() < deadline:
            try:
                reply = await conn.exchange(stream)
            except (OSError, ConnectionClosed, ValueError) as exc:
                result.errors += 1
                result.first_error = result.first_error or repr(exc)
                await trio.sleep(0.01)
                continue
            if good(reply, stream):
                result.ok += 1
            else:
                result.errors += 1
                result.first_error = result.first_error or f"{reply.status} ...{reply.tail!r}"
            result.last_done = time.perf_counter()

    async with trio.open_nursery() as nursery:
        for conn in conns:
            nursery.start_soon(worker, conn)
    return result


@dataclass
class LoadResult:
    phase: Phase
    before: dict[str, float]
    after: dict[str, float]
    client_cpu_s: float

    def per_request_ms(self, name: str) -> float:
        return (self.after[name] - self.before[name]) * 1000 / max(self.phase.ok, 1)


async def run_load(make_conn: Callable[[], Connection], stream: bool, concurrency: int,
                   warmup_s: float, duration_s: float, probe: Probe,
                   quiet_s: float = 0.25) -> LoadResult:
    """Warm up, then measure; `probe()` (server CPU readings) is taken at the two quiescent
    points around the measured phase, `quiet_s` after its end so trailing work counts."""
    conns = [make_conn() for _ in range(concurrency)]
    try:
        await _phase(conns, stream, warmup_s)
        before, cpu0 = probe(), time.process_time()
        phase = await _phase(conns, stream, duration_s)
        cpu1 = time.process_time()
        await trio.sleep(quiet_s)
        after = probe()
    finally:
        for conn in conns:
            conn.close()
    return LoadResult(phase, before, after, cpu1 - cpu0)


# --- time to first token -------------------------------------------------------------

class FirstContent:
    """Watches SSE bytes; notes when the first event with non-empty delta content arrives."""

    def __init__(self) -> None:
        self.pending = b""
        self.at: float | None = None

    def __call__(self, piece: bytes) -> None:
        if self.at is not None:
            return
        now = time.perf_counter()
        self.pending += piece
        while (end := self.pending.find(b"\n\n")) >= 0:
            event, self.pending = self.pending[:end], self.pending[end + 2:]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                    continue
                data = orjson.loads(line[5:])
                for choice in data.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        self.at = now
                        return


async def run_ttft(make_conn: Callable[[], Connection], n: int, warmup: int = 20
                   ) -> tuple[list[float], int]:
    """`n` sequential streaming requests on one keep-alive connection; TTFT in ms each
    (from just before the request is written to the first content delta)."""
    conn = make_conn()
    samples: list[float] = []
    errors = 0
    try:
        for i in range(warmup + n):
            watch = FirstContent()
            t0 = time.perf_counter()
            try:
                reply = await conn.exchange(True, watch)
            except (OSError, ConnectionClosed, ValueError):
                errors += 1
                continue
            if not good(reply, True) or watch.at is None:
                errors += 1
            elif i >= warmup:
                samples.append((watch.at - t0) * 1000)
    finally:
        conn.close()
    return samples, errors


# --- memory per open stream ----------------------------------------------------------

@dataclass
class HoldResult:
    opened: int
    failed: int = 0
    samples_kib: list[int] = field(default_factory=list)
    open_s: float = 0.0


class _Left(Exception):
    """The client leaves its stream (raised from the first piece's callback)."""


async def leave_streams(make_conn: Callable[[], Connection], n: int, *, connecting: int = 32,
                        timeout_s: float = 60.0) -> int:
    """Open `n` resumable streams, at most `connecting` at a time, each client leaving as
    soon as its first body bytes arrive: the streams run on detached (waiting for a
    resume) while the router never holds more than `connecting` client connections.
    Returns how many started."""
    started = 0
    gate = trio.Semaphore(connecting)

    def leave(_: bytes) -> None:
        raise _Left

    async def one() -> None:
        nonlocal started
        conn = make_conn()
        async with gate:
            try:
                await conn.exchange(True, leave)
            except _Left:
                started += 1
            except (OSError, ConnectionClosed, ValueError):
                pass
            finally:
                conn.close()

    with trio.move_on_after(timeout_s):
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
    return started


async def hold_streams(make_conn: Callable[[], Connection], n: int, sample: Callable[[], int],
                       *, connecting: int = 32, timeout_s: float = 60.0, settle_s: float = 1.0,
                       samples: int = 5) -> HoldResult:
    """Open `n` streams to a slow upstream (at most `connecting` at a time until each has its
    first body bytes), keep reading them, sample memory while all are open, then drop them."""
    result = HoldResult(opened=0)
    failed = 0
    all_open = trio.Event()
    gate = trio.Semaphore(connecting)
    t0 = time.perf_counter()

    async def one() -> None:
        conn = make_conn()
        opened = False

        def on_piece(_: bytes) -> None:
            nonlocal opened
            if not opened:
                opened = True
                gate.release()
                result.opened += 1
                if result.opened == n:
                    all_open.set()

        nonlocal failed
        await gate.acquire()
        try:
            await conn.exchange(True, on_piece)
        except (OSError, ConnectionClosed, ValueError):
            pass
        finally:
            if not opened:
                gate.release()
                failed += 1
                if result.opened + failed == n:
                    all_open.set()
            conn.close()

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        with trio.move_on_after(timeout_s):
            await all_open.wait()
        result.open_s = time.perf_counter() - t0
        await trio.sleep(settle_s)
        for _ in range(samples):
            result.samples_kib.append(sample())
            await trio.sleep(0.2)
        result.failed = failed
        nursery.cancel_scope.cancel()
    return result
