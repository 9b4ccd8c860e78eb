"""The upstream connection pool against the fake provider on loopback: keep-alive reuse,
abandoned answers close their connection, stale connections are retried, timeouts."""

from __future__ import annotations

import socket
from functools import partial
from typing import Awaitable, Callable

import orjson
import pytest
import trio

from router.errors import UpstreamTimeout, UpstreamUnreachable
from router.providers.base import HttpCall
from router.providers.h11_pool import H11Pool
from tests.fakes import FakeProviderServer

BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = orjson.dumps({"model": "gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]})
HEADERS = [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-x")]


def pool_for(fake: FakeProviderServer, **kwargs: float) -> H11Pool:
    return H11Pool(fake.openai_base_url, max_connections=int(kwargs.pop("max", 4)),
                   connect_timeout_s=kwargs.pop("connect", 2.0),
                   idle_timeout_s=kwargs.pop("idle", 2.0))


async def test_finished_answers_reuse_one_connection(clean_fake: FakeProviderServer) -> None:
    pool = pool_for(clean_fake)
    for _ in range(3):
        async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)) as answer:
            assert answer.status == 200
            body = orjson.loads(await answer.read(1 << 20))
            assert body["choices"][0]["message"]["content"].startswith("w0")
    assert pool.opened == 1 and pool.stats()["idle"] == 1
    assert clean_fake.state.last.path == "/v1/chat/completions"
    await pool.aclose()


async def test_an_abandoned_stream_closes_its_connection(clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 50
    clean_fake.state.chunk_delay_s = 0.01
    pool = pool_for(clean_fake)
    async with pool.send(HttpCall("/chat/completions", HEADERS, STREAM_BODY)) as answer:
        async for _ in answer.aiter_bytes():
            break  # the client went away
    assert pool.stats() == {"in_flight": 0, "idle": 0, "max": 4, "opened": 1}
    async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)) as answer:
        assert answer.status == 200
        await answer.read(1 << 20)
    assert pool.opened == 2
    await pool.aclose()


async def test_a_connection_the_server_closed_while_idle_is_retried(
        clean_fake: FakeProviderServer) -> None:
    pool = pool_for(clean_fake)
    async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)) as answer:
        await answer.read(1 << 20)
    idle = pool._idle[0]
    idle.stream.socket.shutdown(socket.SHUT_RDWR)  # as if the server had hung up
    async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)) as answer:
        assert answer.status == 200
    assert pool.opened == 2
    await pool.aclose()


async def test_silence_longer_than_the_idle_timeout_is_a_timeout(
        clean_fake: FakeProviderServer) -> None:
    clean_fake.state.first_byte_delay_s = 1.0
    pool = pool_for(clean_fake, idle=0.2)
    with pytest.raises(UpstreamTimeout):
        async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)):
            pass
    assert pool.stats()["in_flight"] == 0
    await pool.aclose()


async def test_a_dead_host_is_unavailable_not_a_crash() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = H11Pool(f"http://127.0.0.1:{port}/v1", max_connections=2,
                   connect_timeout_s=1, idle_timeout_s=1)
    with pytest.raises(UpstreamUnreachable):
        async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)):
            pass
    assert pool.stats()["in_flight"] == 0


async def test_requests_beyond_max_connections_wait_for_a_slot(
        clean_fake: FakeProviderServer) -> None:
    clean_fake.state.first_byte_delay_s = 0.2
    pool = pool_for(clean_fake, max=2)
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)) as answer:
            peak = max(peak, pool.stats()["in_flight"])
            await answer.read(1 << 20)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert peak == 2 and pool.opened == 2
    await pool.aclose()


async def test_a_keep_alive_connection_the_server_closed_is_retried_not_an_error() -> None:
    """The server's keep-alive ran out: it closed the idle connection; our request is
    written into the closed socket and the answer is an EOF. That is a stale connection
    (retry on a fresh one), not a provider failure."""
    answer = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
              b"content-length: 2\r\n\r\n{}")

    async def handler(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(65536)
        await stream.send_all(answer)
        await trio.sleep(0.05)
        await stream.aclose()  # idle timeout: the server hangs up

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        pool = H11Pool(f"http://127.0.0.1:{port}/v1", max_connections=4,
                       connect_timeout_s=2.0, idle_timeout_s=2.0)
        for _ in range(3):
            async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)) as reply:
                assert reply.status == 200 and await reply.read(100) == b"{}"
            await trio.sleep(0.2)
        assert pool.opened == 3, "each reuse found the socket closed and reconnected"
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def _watched(pool: H11Pool, work: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.watch_reads)
        await work()
        nursery.cancel_scope.cancel()


async def test_watched_silence_before_the_answer_is_a_timeout(
        clean_fake: FakeProviderServer) -> None:
    clean_fake.state.first_byte_delay_s = 1.0
    pool = pool_for(clean_fake, idle=0.2)

    async def call() -> None:
        with pytest.raises(UpstreamTimeout):
            async with pool.send(HttpCall("/chat/completions", HEADERS, BODY)):
                pass

    await _watched(pool, call)
    assert pool.stats()["in_flight"] == 0
    await pool.aclose()


async def test_watched_silence_mid_stream_is_a_timeout_and_closes_the_connection(
        clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 5
    clean_fake.state.chunk_delay_s = 1.0
    clean_fake.state.first_chunk_now = True
    pool = pool_for(clean_fake, idle=0.3)
    pieces: list[bytes] = []

    async def call() -> None:
        with pytest.raises(UpstreamTimeout):
            async with pool.send(HttpCall("/chat/completions", HEADERS, STREAM_BODY)) as answer:
                assert answer.status == 200
                async for piece in answer.aiter_bytes():
                    pieces.append(piece)

    await _watched(pool, call)
    assert pieces, "the answer had begun"
    assert pool.stats() == {"in_flight": 0, "idle": 0, "max": 4, "opened": 1}
    await pool.aclose()


async def test_a_watched_stream_slower_in_all_than_the_idle_timeout_is_not_cut(
        clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 12
    clean_fake.state.chunk_delay_s = 0.05  # 0.6 s in all, each silence far below 0.3 s
    pool = pool_for(clean_fake, idle=0.3)
    text = bytearray()

    async def call() -> None:
        async with pool.send(HttpCall("/chat/completions", HEADERS, STREAM_BODY)) as answer:
            async for piece in answer.aiter_bytes():
                text.extend(piece)

    await _watched(pool, call)
    assert b"data: [DONE]" in text and text.count(b'"delta":{"content":') == 12
    assert pool.stats()["idle"] == 1, "a finished answer's connection is kept"
    await pool.aclose()
