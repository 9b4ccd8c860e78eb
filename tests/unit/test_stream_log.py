"""The resumable stream log: numbering, replay from any point, bounded memory."""

from __future__ import annotations

import pytest
import trio

from router.stream_log import EVENT_OVERHEAD_BYTES, EventsGone, StreamLog


async def test_events_are_numbered_and_replayed_from_any_point() -> None:
    log = StreamLog()
    for i in range(5):
        assert await log.append(b"delta", b"%d" % i) == i + 1
    assert [e.seq for e in await log.read_after(0)] == [1, 2, 3, 4, 5]
    assert [e.data for e in await log.read_after(3)] == [b"3", b"4"]  # a resume after 3
    log.finish("final")
    assert await log.read_after(5) == []
    assert log.final == "final"


async def test_a_reader_waits_for_live_events_and_ends_when_the_stream_does() -> None:
    log = StreamLog()
    seen: list[int] = []

    async def reader() -> None:
        after = 0
        while events := await log.read_after(after):
            seen.extend(e.seq for e in events)
            after = events[-1].seq

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for i in range(3):
            await trio.sleep(0.01)
            await log.append(None, b"x")
        log.finish(None)
    assert seen == [1, 2, 3]


async def test_the_producer_waits_while_a_buffer_of_unread_events_is_kept(
        autojump_clock: trio.abc.Clock) -> None:
    size = 100
    log = StreamLog(max_bytes=3 * (size + EVENT_OVERHEAD_BYTES))
    for _ in range(3):
        await log.append(None, b"x" * size)
    with trio.move_on_after(10) as blocked:
        await log.append(None, b"x" * size)
    assert blocked.cancelled_caught, "nobody read: the fourth event must wait"
    assert log.last_seq == 3
    await log.read_after(0)  # a reader takes all three
    with trio.fail_after(1):
        await log.append(None, b"x" * size)
    assert log.last_seq == 4


async def test_read_events_are_dropped_beyond_the_bound_and_a_resume_before_them_is_refused(
        ) -> None:
    size = 100
    log = StreamLog(max_bytes=2 * (size + EVENT_OVERHEAD_BYTES))
    after = 0
    for _ in range(5):
        await log.append(None, b"y" * size)
        after = (await log.read_after(after))[-1].seq
    assert log.kept_bytes <= log.max_bytes
    assert log.first_kept == 4
    assert [e.seq for e in log.available_after(3)] == [4, 5]
    with pytest.raises(EventsGone):
        log.available_after(1)
