"""A real hypercorn on loopback for tests of what the router patches in it
(tests/unit/test_client_gone.py, tests/unit/test_hypercorn_socket.py): `serve_app` starts
it in a nursery; `ServedApp` answers the lifespan protocol so that an app only answers
HTTP."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve


class ServedApp:
    """An ASGI app whose subclass answers `http` (`handle`); the lifespan is done here."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise NotImplementedError


async def serve_app(app: ServedApp, nursery: trio.Nursery) -> int:
    """Serve `app` on 127.0.0.1 until the nursery is cancelled; its port."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(serve, app, config)
    return int(binds[0].rsplit(":", 1)[1])
