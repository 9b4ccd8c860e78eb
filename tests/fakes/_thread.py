"""`ThreadedServer`: a trio server in a background thread, driven from sync test code.

The fakes (`FakeProviderServer`, `FakeJwksServer`, `FakeService` and its subclasses) are
real HTTP servers on loopback that sync pytest code starts, pokes and stops.  This base
holds the thread plumbing they share: ``trio.run`` in a daemon thread, ``start()`` that
returns once the socket is listening (and re-raises a startup failure), ``stop()`` that
asks the loop to stop and joins the thread, and the context manager.

A subclass implements one method, `_serve(stop, task_status=...)`: bind, report the bound
port with ``task_status.started(port)`` (so port 0 picks a free one), then serve until the
``stop`` event is set -- gracefully (hypercorn's shutdown trigger) or at once (cancelling
its connections), as it chooses.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

import trio


class ThreadedServer:
    """A server whose trio loop runs in its own thread; ``host:port`` (port 0 = a free one)."""

    thread_name = "fake-server"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _serve(self, stop: trio.Event, *,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, ``task_status.started(bound_port)``, serve until `stop` is set."""
        raise NotImplementedError

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.port = await nursery.start(self._serve, stop)
            self._ready.set()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # surfaced to the caller of start()
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._ready.clear()
        self._error = self._token = self._stop = None
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self.startup_timeout_s):
            raise TimeoutError(f"{type(self).__name__} did not start listening in time")
        if self._error is not None:
            raise RuntimeError(f"{type(self).__name__} failed to start") from self._error
        return self

    def stop(self) -> None:
        """Set the `_serve` stop event and wait (10 s at most) for the thread to end."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._token is not None and self._stop is not None and thread.is_alive():
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        thread.join(timeout=10.0)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} did not shut down")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
