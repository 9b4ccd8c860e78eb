"""`FakeProviderServer`: one real hypercorn (trio) HTTP server on loopback hosting both fakes.

Routes ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/models`` to the fake OpenAI app,
``/v1/messages*`` to the fake Anthropic app, ``/openai/*`` to the fake Azure OpenAI app and
``/v1beta/models/*`` to the fake Gemini app.  From sync pytest code::

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
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._asgi import ASGIApp, Receive, Scope, Send, lifespan
from ._thread import ThreadedServer
from .anthropic_app import make_anthropic_app
from .azure_app import make_azure_app
from .bedrock_app import make_bedrock_app
from .gemini_app import make_gemini_app
from .openai_app import error_body, make_openai_app
from .state import FakeState


def make_app(state: FakeState) -> ASGIApp:
    """The combined ASGI app (with a trivial lifespan handler)."""
    openai_app = make_openai_app(state)
    anthropic_app = make_anthropic_app(state)
    azure_app = make_azure_app(state)  # Azure OpenAI: /openai/deployments/..., /openai/v1/...
    gemini_app = make_gemini_app(state)
    bedrock_app = make_bedrock_app(state)  # Bedrock runtime: /model/{id}/invoke...

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        # GET /v1/models is both OpenAI's and Anthropic's model list: Anthropic's callers
        # send its `anthropic-version` header (the real API requires it).
        anthropic_list = path == "/v1/models" and any(
            name == b"anthropic-version" for name, _ in scope.get("headers", []))
        if path.startswith("/v1/messages") or anthropic_list:
            await anthropic_app(scope, receive, send)
        elif path.startswith("/openai/"):
            await azure_app(scope, receive, send)
        elif path.startswith("/model/"):
            await bedrock_app(scope, receive, send)
        elif path.startswith("/v1beta/models/") or path == "/v1beta/models":
            await gemini_app(scope, receive, send)
        elif path in ("/v1/chat/completions", "/v1/responses", "/v1/models", "/v1/key",
                      "/api/v1/key"):
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


async def serve_app(app: ASGIApp, config: Config, shutdown: trio.Event, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` with hypercorn until `shutdown` is set (then shut down gracefully);
    ``task_status.started`` gets the bound port."""
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=shutdown.wait))
        task_status.started(_port_of(binds))


class FakeProviderServer(ThreadedServer):
    """Fake OpenAI + Anthropic upstream on ``host:port`` (port 0 = pick a free one)."""

    thread_name = "fake-provider"

    def __init__(self, state: FakeState | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, startup_timeout_s: float = 10.0) -> None:
        super().__init__(host=host, port=port, startup_timeout_s=startup_timeout_s)
        self.state: FakeState = state if state is not None else FakeState()

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def gemini_base_url(self) -> str:
        return self.base_url

    async def _serve(self, stop: trio.Event, *,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_app(make_app(self.state), make_config(self.host, self.port), stop,
                        task_status=task_status)


async def _serve_foreground(host: str, port: int, state: FakeState) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_app, make_app(state), make_config(host, port), shutdown)
        print(f"listening on http://{host}:{bound}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                shutdown.set()
                break


def run_foreground(host: str = "127.0.0.1", port: int = 9100, state: FakeState | None = None) -> None:
    """Serve until SIGINT/SIGTERM (used by ``python -m tests.fakes``)."""
    trio.run(_serve_foreground, host, port, state if state is not None else FakeState())
    sys.stdout.flush()
