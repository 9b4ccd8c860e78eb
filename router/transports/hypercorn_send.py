"""Send a response's bytes to the client without a lock, a shielded scope and two yields
when the socket takes them at once.

hypercorn (0.18, trio worker) sends every piece of every response through
`TCPServer.protocol_send`: a `trio.Lock`, a shielded `CancelScope`, and
`SocketStream.send_all` with its conflict detector, error translation and the socket
wrapper's checkpoints. For a streamed answer that is per event: a third of the
instructions the router spends per streamed chunk (docs/benchmarks.md), for a send the
kernel nearly always takes whole. `send_at_once` patches `protocol_send` so that, on a plain TCP
connection nobody else is sending on, the bytes go to the socket directly; whatever the
kernel did not take (a full socket buffer) or an error goes down hypercorn's own path,
in order, which then waits, and handles a broken connection as before.

A hypercorn upgrade that renames what we patch is logged at startup and changes nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hypercorn.events import RawData
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger("aura.http")


def send_at_once() -> None:
    """Patch `TCPServer.protocol_send` once (idempotent)."""
    original = getattr(TCPServer, "protocol_send", None)
    if original is None:
        log.warning("hypercorn's TCPServer changed: responses are sent through its own "
                    "path (router/transports/hypercorn_send.py)")
        return
    if getattr(original, "sends_at_once", False):
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
        await original(self, event)

    protocol_send.sends_at_once = True  # type: ignore[attr-defined]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
