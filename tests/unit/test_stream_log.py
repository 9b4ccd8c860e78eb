"""The resumable stream log: numbering, replay from any point, bounded memory."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

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


# Events as streams carry them: the same JSON around a small varying part (the log keeps
# only what differs from the first event), some named, some not.
_pieces = st.binary(max_size=40)
_events = st.lists(st.tuples(st.sampled_from([None, b"delta", b"response.completed"]),
                             st.sampled_from([b"", b'{"type":"x","delta":"', b"data"]),
                             _pieces,
                             st.sampled_from([b"", b'","sequence_number":7}', b"tail"])),
                   min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(events=_events, reads=st.lists(st.integers(0, 70), max_size=8),
       max_bytes=st.sampled_from([200, 2_000, 1 << 20]))
def test_every_event_reads_back_exactly_as_appended(
        events: list[tuple[bytes | None, bytes, bytes, bytes]], reads: list[int],
        max_bytes: int) -> None:
    """Whatever the log keeps, it gives back the bytes and names appended, in order,
    numbered from 1; what it trimmed is refused as gone, never returned altered."""
    expected = [(name, head + middle + tail) for name, head, middle, tail in events]

    async def run() -> None:
        log = StreamLog(max_bytes)
        read_upto = 0
        for i, (name, data) in enumerate(expected):
            async with trio.open_nursery() as nursery:  # a reader keeps the producer going
                nursery.start_soon(log.append, name, data)
                while log.last_seq < i + 1:
                    taken = await log.read_after(read_upto)
                    read_upto = taken[-1].seq if taken else read_upto
        for after in [*reads, 0]:
            try:
                got = log.available_after(after)
            except EventsGone:
                assert after + 1 < log.first_kept
                continue
            assert [(e.seq, e.name, e.data) for e in got] == [
                (seq, name, data) for seq, (name, data) in enumerate(expected, 1)
                if seq > after]

    trio.run(run)
