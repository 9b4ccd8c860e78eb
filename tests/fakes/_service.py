"""`FakeService`: the thread + hypercorn + trio wrapper shared by the fake platform services.

The fake credit service (`credit_service.py`) and the fake sinks (`sinks.py`) subclass it
and implement one synchronous method, `handle(call)`, that turns a recorded `Call` into a
`Reply` (or `CLOSE` / `HANG`).  This base does everything else: the real HTTP server on
loopback in a background thread (a `ThreadedServer`: ``start()`` / ``stop()``, context
manager, port 0 = a free port, ``base_url``; ``stop()`` drops open connections), the
record of every call, and the fault switches common to both:

* ``down``: ``None`` (up), ``"close"`` (every request's connection is closed without an
  answer: the client sees "server disconnected without sending a response") or ``"503"``;
* ``slow_s``: sleep this long before handling (and answering) each request;
* ``fail_next(n, status)``: the next n requests answer ``status`` without being handled.

Order per request: record the call, sleep ``slow_s``, ``down``, ``fail_next``, ``handle``.

Unlike `FakeProviderServer` this drives hypercorn's per-connection ``TCPServer`` from its
own accept loop (an internal of hypercorn 0.18), so that each connection's socket reaches
the app (through the ASGI ``scope["state"]``) and ``CLOSE`` can drop it without a reply,
which a plain ASGI app cannot do (hypercorn turns a silent app into a 500).

State is shared between the test thread and the server thread: every read and write of
it goes through ``self._lock`` (a `threading.Lock`); accessors return copies.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import orjson
import trio
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from ._asgi import (JSON_CONTENT_TYPE, Receive, Scope, Send, parse_json, read_body, request_path,
                    sleep_if, wait_disconnect)
from ._thread import ThreadedServer
from .server import make_config

_STREAM: Final = "fake_service.stream"  # key of the connection's socket stream in scope["state"]

Down = Literal["close", "503"] | None


@dataclass
class Call:
    """One request as it reached a fake service."""

    method: str
    path: str  # includes "?query" when present
    headers: dict[str, str]  # lower-cased names
    json: Any  # parsed body, or None (no body / not JSON)
    raw: bytes = b""
    json_error: bool = False  # a body was sent but was not valid JSON
    status: int | None = None  # the status answered; None: not (yet) answered, or never

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b"{}"
    content_type: bytes = JSON_CONTENT_TYPE


class _Action:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


CLOSE: Final = _Action("CLOSE")  # drop the connection without an answer
HANG: Final = _Action("HANG")  # never answer; return when the client gives up (disconnects)

Action = Reply | _Action


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, orjson.dumps(payload))


def error_reply(status: int, code: str, message: str) -> Reply:
    """The fakes' error body: ``{"error": {"code": ..., "message": ...}}``."""
    return json_reply(status, {"error": {"code": code, "message": message}})


def check_bearer(call: Call, token: str) -> Reply | None:
    """401 unless the call carries ``Authorization: Bearer <token>``."""
    if call.headers.get("authorization") == f"Bearer {token}":
        return None
    return error_reply(401, "unauthorized", "missing or wrong bearer token")


async def read_call(scope: Scope, receive: Receive) -> Call:
    raw = await read_body(receive)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    body, json_error = parse_json(raw)
    return Call(scope["method"], request_path(scope), headers, body, raw, json_error)


class FakeService(ThreadedServer):
    """Base of the fake platform services: a raw-ASGI app on its own hypercorn thread."""

    thread_name = "fake-service"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 10.0) -> None:
        super().__init__(host=host, port=port, startup_timeout_s=startup_timeout_s)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._down: Down = None
        self.slow_s: float = 0.0
        self._fail_next: list[int] = []  # one status per request still to fail

    # --- switches and record ----------------------------------------------------------

    @property
    def down(self) -> Down:
        return self._down

    @down.setter
    def down(self, mode: Down) -> None:
        if mode not in (None, "close", "503"):
            raise ValueError(f"down must be None, 'close' or '503', not {mode!r}")
        self._down = mode

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` requests answer ``status`` (an error body) without being handled."""
        with self._lock:
            self._fail_next = [status] * n

    def calls(self, path_prefix: str = "") -> list[Call]:
        """Every request received so far (in arrival order), optionally by path prefix."""
        with self._lock:
            return [replace(c) for c in self._calls if c.path.startswith(path_prefix)]

    def reset(self) -> None:
        """Forget every call and turn every switch off (subclasses also clear their state)."""
        with self._lock:
            self._calls.clear()
            self._fail_next.clear()
        self._down = None
        self.slow_s = 0.0

    def handle(self, call: Call) -> Action:
        raise NotImplementedError

    # --- the ASGI app ---------------------------------------------------------------

    def _prelude(self) -> Action | None:
        if self._down == "close":
            return CLOSE
        if self._down == "503":
            return error_reply(503, "unavailable", "service down")
        with self._lock:
            status = self._fail_next.pop() if self._fail_next else None
        if status is not None:
            return error_reply(status, "injected", f"injected failure {status}")
        return None

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        call = await read_call(scope, receive)
        with self._lock:
            self._calls.append(call)
        await sleep_if(self.slow_s)
        action = self._prelude() or self.handle(call)
        if isinstance(action, Reply):
            headers = [(b"content-type", action.content_type),
                       (b"content-length", str(len(action.body)).encode())]
            with self._lock:
                call.status = action.status
            await send({"type": "http.response.start", "status": action.status,
                        "headers": headers})
            await send({"type": "http.response.body", "body": action.body, "more_body": False})
            return
        if action is CLOSE:
            stream: trio.SocketStream = scope["state"][_STREAM]
            try:
                stream.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            with trio.move_on_after(5):
                await wait_disconnect(receive)
        elif action is HANG:
            await wait_disconnect(receive)

    # --- the server thread ----------------------------------------------------------

    async def _serve(self, stop: trio.Event, *,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `stop` is set, then stop at once: open connections (and hanging
        requests) are dropped."""
        config = make_config(self.host, self.port)
        app = wrap_app(self._app, config.wsgi_max_body_size, "asgi")
        context = WorkerContext(None)
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)

        async def connection(stream: trio.SocketStream) -> None:
            try:
                await TCPServer(app, config, context, ConnectionState({_STREAM: stream}), stream)
            finally:
                stream.socket.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, connection, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])
            await stop.wait()
            nursery.cancel_scope.cancel()


# --- body validation (a 400 that names the field) --------------------------------------

def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


FIELD_KINDS: Final[dict[str, tuple[str, Any]]] = {
    "text": ("a non-empty string", _is_text),
    "str": ("a string", lambda v: isinstance(v, str)),
    "count": ("a non-negative integer", _is_count),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "bool": ("a boolean", lambda v: isinstance(v, bool)),
    "object": ("a JSON object", lambda v: isinstance(v, dict)),
    "objects": ("a list of JSON objects", lambda v: isinstance(v, list)
                and all(isinstance(item, dict) for item in v)),
}


def check_body(call: Call, fields: dict[str, str]) -> Reply | None:
    """400 unless the body is a JSON object whose ``fields`` have the given `FIELD_KINDS`."""
    if call.json_error:
        return error_reply(400, "invalid_json", "body is not valid JSON")
    if not isinstance(call.json, dict):
        return error_reply(400, "invalid_body", "body must be a JSON object")
    for name, kind in fields.items():
        what, ok = FIELD_KINDS[kind]
        if name not in call.json:
            return error_reply(400, "invalid_field", f"missing field {name!r}")
        if not ok(call.json[name]):
            return error_reply(400, "invalid_field", f"field {name!r} must be {what}")
    return None
