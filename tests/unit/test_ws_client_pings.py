"""The websocket client the tests and examples/ws_client.py use (trio-websocket) must not
crash when the router's keepalive ping crosses the client's own close frame."""

from __future__ import annotations

import trio
from trio_websocket import connect_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from examples.ws_client import answer_pings_only_while_open


async def _pinging_server(listener: trio.SocketListener) -> None:
    """Accepts one socket; when the client's close frame arrives, pings before closing."""
    stream = await listener.accept()
    server = WSConnection(ConnectionType.SERVER)
    while True:
        data = await stream.receive_some(4096)
        if not data:
            break
        server.receive_data(data)
        for event in server.events():
            if isinstance(event, Request):
                await stream.send_all(server.send(AcceptConnection()))
            elif isinstance(event, CloseConnection):
                # wsproto won't send it once the peer closed: the frame by hand
                # (FIN + opcode 0x9, unmasked, 9 bytes), as a server whose ping was
                # already on the wire would have it arrive.
                await stream.send_all(b"\x89\x09keepalive")
                await stream.send_all(server.send(event.response()))
                await stream.aclose()
                return


async def test_a_ping_that_crosses_the_clients_close_is_not_a_crash() -> None:
    answer_pings_only_while_open()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pinging_server, listeners[0])
        with trio.fail_after(5):
            # The connection's reader task lives in this nursery, so its failure is seen
            # here (open_websocket_url can lose it behind its own close).
            ws = await connect_websocket(nursery, "127.0.0.1", port, "/", use_ssl=False)
            await ws.aclose()
        await listeners[0].aclose()
