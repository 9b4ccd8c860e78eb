"""Knowing a client left without a watcher task, and keep-alive comments from one task
(router/transports/client_gone.py, router/transports/sse_keepalive.py): on a real
hypercorn over loopback, and the fallback an ASGI server without the patch gets."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from router.transports.client_gone import (ClientGone, UntilClientLeaves, client_gone,
                                           signal_client_gone)
from router.transports.sse_keepalive import KeepAlive
from tests.loopback_asgi import ServedApp, serve_app

REQUEST = b"GET /%s HTTP/1.1\r\nhost: x\r\n\r\n"


class App(ServedApp):
    """Answers /slow after `release` is set (or never), /fast at once; records how each
    request ended."""

    def __init__(self) -> None:
        self.ended: dict[str, str] = {}
        self.release = trio.Event()
        self.started = trio.Event()

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gone = client_gone(scope)
        path = scope["path"][1:]
        outcome = "cancelled"
        async with UntilClientLeaves(gone, receive):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"2")]})
            if path.startswith("slow"):
                self.started.set()
                await self.release.wait()
            await send({"type": "http.response.body", "body": b"ok"})
            outcome = "answered"
        self.ended[path] = outcome


async def _until(condition: Any) -> None:
    while not condition():
        await trio.sleep(0.01)


async def test_a_client_that_leaves_cancels_its_request_at_once() -> None:
    signal_client_gone()
    app = App()
    async with trio.open_nursery() as nursery:
        port = await serve_app(app, nursery)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(REQUEST % b"slow")
        await app.started.wait()
        await client.aclose()
        with trio.fail_after(5):  # without the patch nothing would end it: release never set
            await _until(lambda: "slow" in app.ended)
        assert app.ended == {"slow": "cancelled"}
        nursery.cancel_scope.cancel()


async def test_a_complete_answer_is_not_cancelled_and_its_connection_serves_the_next(
        ) -> None:
    signal_client_gone()
    app = App()
    app.release.set()
    async with trio.open_nursery() as nursery:
        port = await serve_app(app, nursery)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        received = b""
        for path in (b"fast", b"slow", b"fast2"):
            await client.send_all(REQUEST % path)
            with trio.fail_after(5):
                while received.count(b"ok") < (b"fast", b"slow", b"fast2").index(path) + 1:
                    received += await client.receive_some(4096)
        with trio.fail_after(5):  # (a client leaving before the app returned cancels)
            await _until(lambda: len(app.ended) == 3)
        await client.aclose()
        assert app.ended == {"fast": "answered", "slow": "answered", "fast2": "answered"}
        assert received.count(b"HTTP/1.1 200") == 3
        nursery.cancel_scope.cancel()


async def test_gone_before_anyone_looked_cancels_as_soon_as_the_app_registers() -> None:
    gone = ClientGone()
    gone.fire()
    reached = False
    with trio.fail_after(5):
        async with UntilClientLeaves(gone, _never):
            await trio.sleep_forever()
            reached = True
    assert not reached


async def _never() -> dict[str, Any]:
    await trio.sleep_forever()
    raise AssertionError


async def test_without_the_patch_a_task_reads_receive_and_cancels_on_disconnect() -> None:
    messages = [{"type": "http.request", "body": b"", "more_body": False},
                {"type": "http.disconnect"}]
    sent, received = trio.open_memory_channel[dict[str, Any]](4)
    ended = "answered"
    with trio.fail_after(5):
        async with UntilClientLeaves(None, received.receive):
            for message in messages:
                await sent.send(message)
            await trio.sleep_forever()
            ended = "never"
    assert ended == "answered"  # the body was cancelled, not finished


class Answer:
    def __init__(self, last_write: float, block: bool = False) -> None:
        self.last_write = last_write
        self.beats = 0
        self.block = block

    async def heartbeat(self) -> None:
        self.beats += 1
        if self.block:
            await trio.sleep_forever()
        self.last_write = trio.current_time()


async def test_only_idle_answers_get_comments_and_a_stuck_one_blocks_no_other(
        autojump_clock: trio.testing.MockClock) -> None:
    keep = KeepAlive(every_s=10)
    idle, busy, stuck, ended = (Answer(trio.current_time()),
                                Answer(trio.current_time()),
                                Answer(trio.current_time(), block=True),
                                Answer(trio.current_time()))
    for answer in (idle, busy, stuck, ended):
        keep.add(answer)
    keep.discard(ended)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep.run)
        for _ in range(60):  # 60 s: the busy answer writes every second
            await trio.sleep(1)
            busy.last_write = trio.current_time()
        nursery.cancel_scope.cancel()
    assert 5 <= idle.beats <= 6, "one comment per 10 to 12.5 s of silence"
    assert busy.beats == 0 and ended.beats == 0
    assert stuck.beats == 1, "a comment still being sent is not sent again"

