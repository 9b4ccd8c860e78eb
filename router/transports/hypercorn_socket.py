"""The client's socket without trio's stream wrappers on the hot path: a response's bytes
go to the kernel at once, a request's bytes come from it directly.

hypercorn (0.18, trio worker) sends every piece of every response through
`TCPServer.protocol_send`: a `trio.Lock`, a shielded `CancelScope`, and
`SocketStream.send_all` with its conflict detector, error translation and the socket
wrapper's checkpoints. For a streamed answer that is per event: a third of the
instructions the router spent per streamed chunk (docs/benchmarks.md), for a send the
kernel nearly always takes whole. And it reads each request through `receive_some`
inside a `fail_after` (even with no read timeout), a stack that a keep-alive connection
keeps alive while it waits, for as long as a stream is open.

`direct_socket_io` patches both, for plain TCP connections:

- `protocol_send`: when nobody else is sending on the connection, the bytes go to the
  socket with `os.write`; whatever the kernel did not take (a full socket buffer) or an
  error goes down hypercorn's own path, in order, which waits, and handles a broken
  connection as before.
- `_read_data` (when `read_timeout` is unset, as the router runs it): `os.read` when
  the socket has bytes, else `wait_readable`; EOF, a reset or the socket closed under it
  end the loop as hypercorn's does.

TLS connections and other settings keep hypercorn's code. A hypercorn upgrade that
renames what we patch is logged at startup and changes nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

from router.transports.hypercorn_patches import replace, replaced

log = logging.getLogger("aura.http")


def direct_socket_io() -> None:
    """Patch `TCPServer.protocol_send` and `TCPServer._read_data` once (idempotent)."""
    send, read = (getattr(TCPServer, name, None) for name in ("protocol_send", "_read_data"))
    if send is None or read is None:
        log.warning("hypercorn's TCPServer changed: the client's socket is read and written "
                    "through its own path (router/transports/hypercorn_socket.py)")
        return
    if installed():
        return

    async def protocol_send(self: TCPServer, event: Any) -> None:
        if type(event) is RawData and not self.send_lock.locked():
            socket = getattr(self.stream, "socket", None)  # None: TLS
            data = event.data
            if socket is not None and data and not socket.did_shutdown_SHUT_WR:
                try:
                    sent = os.write(socket.fileno(), data)
                except OSError:  # full (BlockingIOError), broken, closed: hypercorn's path
                    sent = 0
                if sent == len(data):
                    return
                if sent:
                    event = RawData(data=data[sent:])
        await send(self, event)

    async def read_data(self: TCPServer) -> None:
        socket = getattr(self.stream, "socket", None)  # None: TLS
        if socket is None or self.config.read_timeout:
            await read(self)
            return
        while (fd := socket.fileno()) >= 0:  # -1 once closed (the number may be reused)
            try:
                data: bytes | None = os.read(fd, MAX_RECV)
            except BlockingIOError:
                data = None
            except OSError:  # reset by the peer, or closed
                break
            if data is None:
                # Waited for outside the handler, where the exception (~0.5 KiB) would stay
                # alive for as long as an open stream's connection is silent.
                try:
                    await trio.lowlevel.wait_readable(fd)
                except (trio.ClosedResourceError, trio.BusyResourceError):
                    break
                continue
            ended = not data
            await self.protocol.handle(RawData(data))
            del data  # not kept while the next read waits: for an open stream's whole life
            if ended:
                break
            await trio.lowlevel.checkpoint()  # a client that always has bytes waits its turn
        await self.protocol.handle(Closed())

    replace(TCPServer, "direct_io", protocol_send=protocol_send, _read_data=read_data)


def installed() -> bool:
    return replaced(TCPServer, "direct_io", "protocol_send", "_read_data")
