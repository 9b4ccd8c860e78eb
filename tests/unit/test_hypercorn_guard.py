"""One connection whose handler raises does not end the server (hypercorn#225)."""

from __future__ import annotations

import pytest
import trio
from hypercorn.trio.tcp_server import TCPServer

from router.transports.hypercorn_guard import contain_connection_failures


class _Stream:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_an_exception_in_one_connection_is_contained_to_it() -> None:
    real_run = TCPServer.run

    async def failing_run(self: TCPServer) -> None:  # what hypercorn's run did to us
        raise trio.BusyResourceError("another task is currently sending data")

    TCPServer.run = failing_run  # type: ignore[method-assign]
    try:
        with pytest.raises(trio.BusyResourceError):
            await TCPServer.run(object.__new__(TCPServer))  # unguarded: it escapes
        contain_connection_failures()
        contain_connection_failures()  # idempotent: wrapped once
        connection = object.__new__(TCPServer)
        connection.stream = _Stream()  # type: ignore[assignment]
        await TCPServer.run(connection)  # guarded: logged, the connection closed
        assert connection.stream.closed  # type: ignore[attr-defined]
    finally:
        TCPServer.run = real_run  # type: ignore[method-assign]
