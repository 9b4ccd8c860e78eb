"""Keep one broken connection from ending the whole server.

hypercorn (0.18, trio worker) runs every connection's handler in the server's own
nursery, so an exception that escapes one connection ends them all and the process
with them (pgjones/hypercorn#225). We have seen it happen: a websocket pong racing the
close of the same socket raises `trio.BusyResourceError` inside hypercorn's
`protocol_send`, and the router exited mid-test. Until hypercorn contains it, we do:
the failing connection is logged and closed, the server goes on.
"""

from __future__ import annotations

import logging

from hypercorn.trio.tcp_server import TCPServer

from router.transports.hypercorn_patches import replace, replaced

log = logging.getLogger("aura.http")


def contain_connection_failures() -> None:
    """Patch `TCPServer.run` once (idempotent)."""
    if replaced(TCPServer, "contained", "run"):
        return
    original = TCPServer.run

    async def run(self: TCPServer) -> None:
        try:
            await original(self)
        except Exception:  # noqa: BLE001 - the point: one connection, not the server
            log.exception("a connection failed inside the HTTP server; closing only it")
            try:
                await self.stream.aclose()
            except Exception:  # noqa: BLE001 - already gone
                pass

    replace(TCPServer, "contained", run=run)
