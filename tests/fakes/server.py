"""`FakeProviderServer`: one real hypercorn (trio) HTTP server on loopback hosting both fakes.

Routes ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/models`` to the fake OpenAI app and
``/v1/messages*`` to the fake Anthropic app.  From sync pytest code::

    with FakeProviderServer() as fake:
        fake.state.fail_status = 529
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-x")

The server runs ``trio.run`` in a background thread; ``start()`` returns once the
socket is listening and ``stop()`` triggers hypercorn's graceful shutdown.
``run_foreground`` is used by ``python -m tests.fakes``.
"""

from __future__ import annotations

import signal
import sys
import threading
from functools import partial
from types import TracebackType

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._asgi import ASGIApp, Receive, Scope, Send
from .anthropic_app import make_anthropic_app
from .openai_app import error_body, make_openai_app
from .state import FakeState


def make_app(state: FakeState) -> ASGIApp:
    """The combined ASGI app (with a trivial lifespan handler)."""
    openai_app = make_openai_app(state)
    anthropic_app = make_anthropic_app(state)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/v1/messages"):
            await anthropic_app(scope, receive, send)
        elif path in ("/v1/chat/completions", "/v1/responses", "/v1/models"):
            await openai_app(scope, receive, send)
        else:
            payload = error_body(f"Invalid URL ({scope.get('method')} {path})", "invalid_request_error")
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

    return app


def make_config(host: str, port: int, loglevel: str = "WARNING") -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = loglevel
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    config.backlog = 1024
    return config


def _port_of(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


class FakeProviderServer:
    """Fake OpenAI + Anthropic upstream on ``host:port`` (port 0 = pick a free one)."""

    def __init__(self, state: FakeState | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, startup_timeout_s: float = 10.0) -> None:
        self.state: FakeState = state if state is not None else FakeState()
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._shutdown: trio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._shutdown = trio.Event()
        config = make_config(self.host, self.port)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(
                serve, make_app(self.state), config, shutdown_trigger=self._shutdown.wait))
            self.port = _port_of(binds)
            self._ready.set()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # surfaced to the caller of start()
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> FakeProviderServer:
        if self._thread is not None:
            raise RuntimeError("FakeProviderServer already started")
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.startup_timeout_s):
            raise TimeoutError("fake provider server did not start listening in time")
        if self._error is not None:
            raise RuntimeError("fake provider server failed to start") from self._error
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._token is not None and self._shutdown is not None and thread.is_alive():
            try:
                trio.from_thread.run_sync(self._shutdown.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        thread.join(timeout=10.0)
        if thread.is_alive():
            raise RuntimeError("fake provider server did not shut down")

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


async def _serve_foreground(host: str, port: int, state: FakeState) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(
            serve, make_app(state), make_config(host, port), shutdown_trigger=shutdown.wait))
        print(f"listening on http://{host}:{_port_of(binds)}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                shutdown.set()
                break


def run_foreground(host: str = "127.0.0.1", port: int = 9100, state: FakeState | None = None) -> None:
    """Serve until SIGINT/SIGTERM (used by ``python -m tests.fakes``)."""
    trio.run(_serve_foreground, host, port, state if state is not None else FakeState())
    sys.stdout.flush()
