"""Knowing that an HTTP client went away without a task per request to watch for it.

ASGI tells an app that its client left only through `receive()`, so an app that wants
to stop work for a client that left (an upstream call it pays for) keeps a task waiting
in `receive()` for each request: a task, a nursery, a cancel scope and a channel wait,
about 4.5 KiB per open stream and a task start per request (docs/benchmarks.md).

hypercorn learns of the leaving first: its `HTTPStream.handle` gets a `StreamClosed` and
puts `http.disconnect` in the app's channel. `signal_client_gone` patches that method to
then fire the `ClientGone` the app left in the request's ASGI scope (the very dict
hypercorn hands the app), which cancels what the app registered with it; not after a
complete response, which ends with a `StreamClosed` too. Fired before the app looked (a
client that left at once), it is already gone when the app looks.

`UntilClientLeaves` is what the app uses: the body is cancelled when the client goes.
Without the patch (another ASGI server, or a hypercorn whose `HTTPStream` changed: logged
at startup), it falls back to the watcher task; tests/e2e/test_lifecycle.py and
tests/unit/test_client_gone.py check both.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Awaitable, Callable

import trio
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream

from router.transports.hypercorn_patches import replace, replaced

log = logging.getLogger("aura.http")
SCOPE_KEY = "aura.client_gone"


class ClientGone:
    """Whether one request's client left; cancels the scope registered with it."""

    __slots__ = ("gone", "_cancel")

    def __init__(self) -> None:
        self.gone = False
        self._cancel: trio.CancelScope | None = None

    def fire(self) -> None:
        self.gone = True
        if self._cancel is not None:
            self._cancel.cancel()

    def cancel_on_leave(self, scope: trio.CancelScope | None) -> None:
        self._cancel = scope
        if scope is not None and self.gone:
            scope.cancel()


def signal_client_gone() -> None:
    """Patch `HTTPStream.handle` once (idempotent)."""
    if installed():
        return
    handle = getattr(HTTPStream, "handle", None)
    if handle is None:
        log.warning("hypercorn's HTTPStream changed: a task per request watches for the "
                    "client leaving (router/transports/client_gone.py)")
        return

    async def handle_signalling(self: HTTPStream, event: Any) -> None:
        try:
            await handle(self, event)
        finally:
            # Also sent after a complete response (from inside the app's last send):
            # cancelling the app there would cut hypercorn's recycling of the connection.
            if isinstance(event, StreamClosed) and self.state != ASGIHTTPState.CLOSED:
                scope = getattr(self, "scope", None)
                if isinstance(scope, dict):
                    scope.setdefault(SCOPE_KEY, ClientGone()).fire()

    replace(HTTPStream, "signals_client_gone", handle=handle_signalling)


def installed() -> bool:
    return replaced(HTTPStream, "signals_client_gone", "handle")


def client_gone(scope: dict[str, Any]) -> ClientGone | None:
    """The request's `ClientGone`, put in the scope hypercorn holds (call it before any
    copy of the scope is made); None where nothing will fire it (no patch)."""
    if not installed():
        return None
    gone = scope.get(SCOPE_KEY)
    if gone is None:
        gone = scope[SCOPE_KEY] = ClientGone()
    return gone  # type: ignore[no-any-return]


class UntilClientLeaves:
    """`async with UntilClientLeaves(gone, receive):` runs the body and cancels it if the
    client leaves first. `receive` is only read without a `ClientGone` (the body must not
    read it then). A class rather than a generator context manager: it lives as long as
    the answer, and a generator's frame, wrapper and trio's registry entry are ~0.5 KiB
    per open stream."""

    __slots__ = ("_gone", "_receive", "_scope", "_nursery")

    def __init__(self, gone: ClientGone | None,
                 receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._gone = gone
        self._receive = receive
        self._scope: trio.CancelScope | None = None
        self._nursery: AbstractAsyncContextManager[trio.Nursery] | None = None

    async def __aenter__(self) -> None:
        if self._gone is not None:
            self._scope = trio.CancelScope()
            self._scope.__enter__()
            self._gone.cancel_on_leave(self._scope)
            return
        self._nursery = trio.open_nursery()
        nursery = await self._nursery.__aenter__()
        nursery.start_soon(_cancel_on_disconnect, self._receive, nursery.cancel_scope)
        self._scope = nursery.cancel_scope

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        assert self._scope is not None
        if self._nursery is None:
            assert self._gone is not None
            self._gone.cancel_on_leave(None)
            return self._scope.__exit__(kind, exc, tb)
        self._scope.cancel()  # the watcher task: the body is done
        return bool(await self._nursery.__aexit__(kind, exc, tb))


async def _cancel_on_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]],
                                scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
