"""Stream logs and their directory in Redis (router.shared.stream_logs): what one
instance publishes, another reads, resumes, looks up and cancels. Two `RedisSession`s
on the local Redis (database 13, flushed per test) stand for two instances. The async
tests run under trio (the project's `trio_mode`)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import orjson
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from router.errors import EventsGone
from router.shared.redis import RedisSession
from router.shared.stream_logs import (LogPublisher, RedisStreamLogs, RedisUnavailable,
                                       StreamMeta, decode_batch, encode_batch)
from router.stream_log import LoggedEvent
from tests.backends import fresh_redis_url, redis_db
from tests.tcp_proxy import TcpProxy

WINDOW_S = 120.0
RID = "req_" + "ab" * 12


@asynccontextmanager
async def instances(*urls: str, **options: object
                    ) -> AsyncIterator[list[RedisStreamLogs]]:
    """One `RedisStreamLogs` per URL, each on a session (a client) of its own."""
    sessions = [RedisSession(url) for url in urls]
    async with sessions[0].session():
        if len(sessions) == 1:
            yield [logs(sessions[0], **options)]
            return
        async with instances(*urls[1:], **options) as rest:
            yield [logs(sessions[0], **options), *rest]


def logs(session: RedisSession, **options: object) -> RedisStreamLogs:
    settings: dict = {"max_bytes": 1 << 20, "window_s": WINDOW_S, **options}
    return RedisStreamLogs(session, **settings)


@pytest.fixture
def url() -> str:
    return fresh_redis_url(13)


def meta(request_id: str = RID, account: str = "acct_1", owner: str = "a",
         api: str = "openai.chat", **more: object) -> StreamMeta:
    return StreamMeta(request_id, account, owner, api, **more)  # type: ignore[arg-type]


def event(seq: int) -> tuple[bytes | None, bytes]:
    """Event `seq`: sizes vary, so batches end in different places."""
    name = None if seq % 3 else b"message"
    return name, orjson.dumps({"seq": seq, "text": "x" * (seq * 37 % 250)})


async def publish(pub: LogPublisher, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        await pub.add(seq, *event(seq))


async def read_to_end(logs: RedisStreamLogs, after: int) -> list[LoggedEvent]:
    reader, out = logs.reader(RID), []
    await reader.check_after(after)
    with trio.fail_after(10):
        while events := await reader.read_after(out[-1].seq if out else after):
            out += events
    assert reader.done
    return out


@given(st.lists(st.tuples(st.none() | st.binary(max_size=20), st.binary(max_size=300)),
                max_size=20), st.integers(1, 10**9), st.integers(0, 10**6))
def test_a_batch_survives_its_encoding(events: list[tuple[bytes | None, bytes]],
                                       first: int, start: int) -> None:
    decoded = decode_batch(first, start, encode_batch(events))
    assert [(e.name, e.data) for e in decoded] == events
    assert [e.seq for e in decoded] == list(range(first, first + len(events)))


async def test_another_instance_reads_every_event_in_order_resuming_after_any_n(
        url: str) -> None:
    async with instances(url, url, flush_bytes=400) as (a, b), \
            trio.open_nursery() as nursery:
        await a.register(meta())
        pub = a.publisher(RID)
        await nursery.start(pub.run)
        await publish(pub, 1, 60)
        await pub.finish(b'{"cost_micros": 1234}')
        assert await a.session.command("XLEN", f"aura:slog:{RID}") > 5, "many batches"

        everything = await read_to_end(b, 0)
        assert [(e.seq, e.name, e.data) for e in everything] == \
            [(seq, *event(seq)) for seq in range(1, 61)]
        for after in range(0, 61):  # every point, inside batches and at their ends
            resumed = await read_to_end(b, after)
            assert [e.seq for e in resumed] == list(range(after + 1, 61)), after
        reader = b.reader(RID)
        assert await reader.read_after(60) == [] and reader.done
        assert reader.final == b'{"cost_micros": 1234}'


async def test_a_reader_waits_for_live_events_and_ends_at_the_done_marker(
        url: str) -> None:
    async with instances(url, url) as (a, b), trio.open_nursery() as nursery:
        await a.register(meta())
        pub = a.publisher(RID)
        await nursery.start(pub.run)
        reader = b.reader(RID)
        got: list[LoggedEvent] = []
        arrived = trio.Event()

        async def read() -> None:
            while events := await reader.read_after(got[-1].seq if got else 0):
                got.extend(events)
                arrived.set()

        with trio.fail_after(10):
            async with trio.open_nursery() as readers:
                readers.start_soon(read)
                await trio.sleep(0.3)  # the reader is waiting, nothing was published
                assert not got and not reader.done
                with trio.fail_after(1):  # its blocked read holds no other command up
                    assert await b.lookup("acct_1", request_id=RID) is not None
                await pub.add(1, None, b'{"a": 1}')
                await arrived.wait()
                assert [e.data for e in got] == [b'{"a": 1}']
                await pub.add(2, None, b"[DONE]")
                await pub.finish(None)
        assert [e.seq for e in got] == [1, 2] and reader.done and reader.final is None


async def test_readers_beyond_the_blocking_limit_still_get_every_event(url: str) -> None:
    async with instances(url, url, max_blocking_reads=1, poll_s=0.02) as (a, b), \
            trio.open_nursery() as nursery:
        await a.register(meta())
        pub = a.publisher(RID)
        await nursery.start(pub.run)
        results: list[list[int]] = []

        async def read() -> None:
            results.append([e.seq for e in await read_to_end(b, 0)])

        with trio.fail_after(10):
            async with trio.open_nursery() as readers:
                for _ in range(3):
                    readers.start_soon(read)
                await publish(pub, 1, 20)
                await pub.finish(None)
        assert results == [list(range(1, 21))] * 3


async def test_the_byte_bound_trims_the_oldest_events_and_resumes_before_them_are_gone(
        url: str) -> None:
    async with instances(url, url, max_bytes=2000, flush_bytes=200) as (a, b), \
            trio.open_nursery() as nursery:
        await a.register(meta())
        pub = a.publisher(RID)
        await nursery.start(pub.run)
        await publish(pub, 1, 100)
        await pub.finish(None)
        entries = await a.session.command("XRANGE", f"aura:slog:{RID}", "-", "+")
        batches = [dict(zip(f[::2], f[1::2])) for _, f in entries[:-1]]
        assert sum(len(f[b"b"]) for f in batches) <= 2000, "the kept bytes are bounded"
        first_kept = int(batches[0][b"f"])
        assert first_kept > 1, "the oldest went"

        with pytest.raises(EventsGone):
            await b.reader(RID).check_after(0)
        with pytest.raises(EventsGone):
            await b.reader(RID).read_after(first_kept - 2)
        resumed = await read_to_end(b, first_kept - 1)
        assert [e.seq for e in resumed] == list(range(first_kept, 101))
        assert [e.data for e in resumed] == [event(s)[1] for s in range(first_kept, 101)]


async def test_a_stream_is_found_by_its_ids_and_only_by_its_account(url: str) -> None:
    async with instances(url, url) as (a, b):
        await a.register(meta(client_id="lane-7", api="openai.responses"))
        assert await b.lookup("acct_1", client_id="lane-7") is not None
        assert await b.lookup("acct_1", response_id="resp_1") is None, "not known yet"
        await a.update(RID, response_id="resp_1", status=200, is_sse=True,
                       headers=((b"content-type", b"text/event-stream"),),
                       response=b'{"id": "resp_1"}')
        for how in ({"request_id": RID}, {"client_id": "lane-7"},
                    {"response_id": "resp_1"}):
            found = await b.lookup("acct_1", **how)
            assert found is not None, how
            assert (found.request_id, found.owner, found.api, found.client_id,
                    found.response_id) == (RID, "a", "openai.responses", "lane-7", "resp_1")
            assert found.started and found.status == 200 and found.is_sse
            assert found.headers == ((b"content-type", b"text/event-stream"),)
            assert found.response == b'{"id": "resp_1"}' and found.state == "running"
            assert await b.lookup("acct_2", **how) is None, "another account's: none"
        await a.update(RID, state="done", final=b'{"cost_micros": 5}')
        done = await b.lookup("acct_1", request_id=RID)
        assert done is not None and done.state == "done" and done.final == b'{"cost_micros": 5}'
        assert await b.lookup("acct_1", request_id="req_unknown") is None
        assert not await b.update("req_unknown", state="done")


async def test_every_key_of_a_stream_expires_within_the_window(url: str) -> None:
    async with instances(url, url) as (a, b), trio.open_nursery() as nursery:
        await a.register(meta(client_id="lane-1"))
        await a.update(RID, response_id="resp_9")
        pub = a.publisher(RID)
        await nursery.start(pub.run)
        await publish(pub, 1, 5)
        await pub.finish(b"{}")
        await b.touch_reader(RID)
        keys = await a.session.command("KEYS", "aura:*")
        assert len(keys) == 6, keys  # meta, log, 2 indexes, the owner's set, the reader
        for key in keys:
            ttl = await a.session.command("PTTL", key)
            assert 0 < ttl <= WINDOW_S * 1000, (key, ttl)


async def test_a_cancel_from_any_instance_reaches_the_owner_even_if_it_was_not_listening(
        url: str) -> None:
    async with instances(url, url) as (a, b), trio.open_nursery() as nursery:
        early, late, other = RID, "req_" + "cd" * 12, "req_" + "ef" * 12
        for rid, owner in ((early, "a"), (late, "a"), (other, "b")):
            await a.register(meta(rid, owner=owner))
        assert await b.request_cancel(early), "asked while nobody listens"
        assert not await b.request_cancel("req_unknown")
        heard: list[str] = []
        changed = trio.Event()

        def on_cancel(request_id: str) -> None:
            heard.append(request_id)
            changed.set()

        await nursery.start(a.watch_cancels, "a", on_cancel)
        assert heard == [early], "caught up from the flag"
        assert await a.cancel_requested(early) and not await a.cancel_requested(late)
        await b.request_cancel(late)
        await b.request_cancel(other)  # b's own stream: not a's business
        with trio.fail_after(5):
            while late not in heard:
                changed = trio.Event()
                await changed.wait()
        assert heard == [early, late]
        nursery.cancel_scope.cancel()


async def test_a_remote_reader_keeps_the_stream_alive_for_its_owner(url: str) -> None:
    async with instances(url, url) as (a, b), trio.open_nursery() as nursery:
        await a.register(meta())
        assert not await a.remote_reader_active(RID)
        pub = a.publisher(RID)
        await nursery.start(pub.run)
        await publish(pub, 1, 3)
        with trio.fail_after(5):
            assert [e.seq for e in await b.reader(RID).read_after(0)] == [1, 2, 3]
        assert await a.remote_reader_active(RID), "reading touched it"
        await a.session.command("DEL", f"aura:stream-reader:{RID}")
        assert not await a.remote_reader_active(RID)
        assert await b.touch_reader(RID)
        assert await a.remote_reader_active(RID)
        await pub.finish(None)


async def test_a_short_outage_loses_nothing_and_a_long_one_stops_publishing(
        url: str) -> None:
    proxy = TcpProxy(6379)
    proxied = f"redis://127.0.0.1:{proxy.port}/{redis_db(13)}"
    try:
        async with instances(proxied, url, give_up_s=1.0, max_bytes=4000) as (a, b), \
                trio.open_nursery() as nursery:
            await b.register(meta())
            pub = a.publisher(RID)
            await nursery.start(pub.run)
            await publish(pub, 1, 5)
            proxy.cut()
            await publish(pub, 6, 10)  # buffered: the producer is not held up
            await trio.sleep(0.3)
            proxy.restore()
            await pub.finish(b"{}")
            assert not pub.broken
            assert [e.seq for e in await read_to_end(b, 0)] == list(range(1, 11))

            with pytest.raises(RedisUnavailable):
                proxy.cut()
                await a.reader(RID).read_after(0)

            second = "req_" + "12" * 12
            await b.register(meta(second))
            pub2 = a.publisher(second)
            await nursery.start(pub2.run)
            with trio.fail_after(10):  # more than max_bytes: waits, then gives up
                for seq in range(1, 200):
                    await pub2.add(seq, None, b"x" * 100)
                await pub2.finish(None)
            assert pub2.broken
    finally:
        proxy.close()


async def test_a_stream_that_expired_under_its_reader_is_gone(url: str) -> None:
    async with instances(url, url, block_s=0.2) as (a, b):
        await a.register(meta())
        reader = b.reader(RID)
        await reader.check_after(0)  # nothing published yet: nothing lost either
        with pytest.raises(EventsGone):
            await b.reader("req_unknown").check_after(0)

        async def expire() -> None:  # what the window's end does to a stream left alone
            await trio.sleep(0.1)
            await a.session.command("DEL", f"aura:stream:{RID}", f"aura:slog:{RID}")

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(expire)
                with pytest.raises(EventsGone):
                    await reader.read_after(0)
