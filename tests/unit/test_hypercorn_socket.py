"""The client's socket read and written directly (router/transports/hypercorn_socket.py),
on a real hypercorn over loopback: every byte arrives, in order, when the client reads
slower than the app writes (the kernel takes part of a send, hypercorn's path the rest);
requests sent in pieces, pipelined or with a body arrive whole; a client that leaves
mid-answer costs the server nothing."""

from __future__ import annotations

import hashlib
from typing import Any

import trio

from router.transports.client_gone import (UntilClientLeaves, client_gone,
                                           signal_client_gone)
from router.transports.hypercorn_socket import direct_socket_io, installed
from tests.loopback_asgi import ServedApp, serve_app

PIECES = 48
PIECE = 256 * 1024  # 12 MiB in all: far more than loopback's socket buffers hold


def piece(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (PIECE // 32)


class App(ServedApp):
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        outcome = "cancelled"
        if scope["method"] == "POST":  # echo the body
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            self.outcomes.append("echoed")
            return
        async with UntilClientLeaves(client_gone(scope), receive):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(PIECES * PIECE).encode())]})
            for i in range(PIECES):
                await send({"type": "http.response.body", "body": piece(i),
                            "more_body": i < PIECES - 1})
            outcome = "answered"
        self.outcomes.append(outcome)


async def _serve(app: App, nursery: trio.Nursery) -> int:
    direct_socket_io()
    assert installed()
    signal_client_gone()
    return await serve_app(app, nursery)


async def _read_answer(client: trio.SocketStream, read_size: int) -> bytes:
    received = bytearray()
    while b"\r\n\r\n" not in received:
        received += await client.receive_some(read_size)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    body_bytes = bytearray(body)
    while len(body_bytes) < PIECES * PIECE:
        data = await client.receive_some(read_size)
        assert data, "the server closed the connection before the answer's end"
        body_bytes += data
        await trio.lowlevel.checkpoint()  # let the server write again: a slow reader
    return bytes(body_bytes)


async def test_a_slow_reader_gets_every_byte_in_order_and_the_next_answer_too() -> None:
    app = App()
    async with trio.open_nursery() as nursery:
        port = await _serve(app, nursery)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(60):
            for _ in range(2):  # two answers on one keep-alive connection
                await client.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                body = await _read_answer(client, 4096)
                assert body == b"".join(piece(i) for i in range(PIECES))
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert app.outcomes == ["answered", "answered"]


async def test_a_client_leaving_mid_answer_leaves_the_server_serving() -> None:
    app = App()
    async with trio.open_nursery() as nursery:
        port = await _serve(app, nursery)
        with trio.fail_after(60):
            leaving = await trio.open_tcp_stream("127.0.0.1", port)
            await leaving.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            await leaving.receive_some(65536)  # the answer has begun
            await leaving.aclose()
            while not app.outcomes:
                await trio.sleep(0.01)
            assert app.outcomes == ["cancelled"]
            staying = await trio.open_tcp_stream("127.0.0.1", port)
            await staying.send_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert await _read_answer(staying, 65536) == b"".join(
                piece(i) for i in range(PIECES))
            await staying.aclose()
        nursery.cancel_scope.cancel()


async def test_requests_in_pieces_pipelined_and_with_bodies_arrive_whole() -> None:
    app = App()
    bodies = [bytes(range(256)) * 1024, b"x" * 10, b"{}"]
    wire = b"".join(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body) for body in bodies)
    async with trio.open_nursery() as nursery:
        port = await _serve(app, nursery)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(30):
            for start in range(0, len(wire), 7919):  # pieces that cut lines and bodies
                await client.send_all(wire[start:start + 7919])
                await trio.sleep(0)
            received = b""
            while received.count(b"HTTP/1.1 200") < 3 or not received.endswith(b"{}"):
                data = await client.receive_some(65536)
                assert data, "closed before the third answer"
                received += data
            while len(app.outcomes) < 3:
                await trio.sleep(0.01)
        answers = received.split(b"HTTP/1.1 200")[1:]
        assert [a.partition(b"\r\n\r\n")[2] for a in answers] == bodies
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert app.outcomes == ["echoed"] * 3
