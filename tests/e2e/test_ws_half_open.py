"""Half-open websockets: a peer that vanished without FIN or RST (the loopback proxy
stalls: both sockets stay open, nothing moves) is detected by its unanswered pings, its
streams detach and resume on another socket, every event exactly once, billed once. Also:
the hypercorn patch that sees the pongs reaches the app (a hypercorn upgrade that breaks
it fails here), a revoked key cannot resume, a `stream: false` answer resumes whole, and
the socket writer's rules in virtual time (a stuck send, a slow one, a silent peer)."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any, Iterator

import pytest
import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import connect_websocket_url, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from router.transports import ws_liveness
from router.transports.ws_writer import SocketGone, SocketWriter
from tests.e2e.test_websocket import (OPENAI_BODY, assert_settled, auth, openai_text, recv,
                                      send, until_done, url)
from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config
from tests.tcp_proxy import TcpProxy

PING_S = 1  # WS_PING_INTERVAL_S: a vanished peer is declared gone ~2-3 s after it went


@pytest.fixture(scope="module")
def halfopen_router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[RouterProcess]:
    env = {"WS_PING_INTERVAL_S": str(PING_S), "RESUME_WINDOW_S": "60"}
    with RouterProcess(tmp_path_factory.mktemp("ws-half-open"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env=env) as proc:
        yield proc


@pytest.fixture
def proxy(halfopen_router: RouterProcess) -> Iterator[TcpProxy]:
    tcp = TcpProxy(int(halfopen_router.base_url.rsplit(":", 1)[1]))
    try:
        yield tcp
    finally:
        tcp.close()


def hub_stream(router: RouterProcess, account: str, stream_id: str) -> dict[str, Any]:
    streams = router.admin("GET", "/admin/streams").json()["data"]
    return [s for s in streams if s["account"] == account and s["id"] == stream_id][0]


async def until_detached(router: RouterProcess, account: str, stream_id: str,
                         within_s: float) -> dict[str, Any]:
    """Wait (polling the admin API) until no socket reads the stream any more."""
    deadline = time.monotonic() + within_s
    while (stream := hub_stream(router, account, stream_id))["readers"]:
        assert time.monotonic() < deadline, f"still attached after {within_s} s: {stream}"
        await trio.sleep(0.1)
    return stream


class RawClient:
    """A sans-IO websocket client (wsproto over a TCP stream): it answers pings only while
    `answering`, so that after a stall nothing it sends races what it reads."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.answering = True
        self.pending: list[Any] = []

    @classmethod
    async def connect(cls, port: int, key: str) -> "RawClient":
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client.stream.send_all(client.ws.send(Request(
            host="127.0.0.1", target="/v1/ws",
            extra_headers=[(b"authorization", f"Bearer {key}".encode())])))
        assert isinstance(await client.next_event(), AcceptConnection)
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(frame))))

    async def next_event(self) -> Any:
        """The next event that is not a ping (pings are answered or ignored)."""
        with trio.fail_after(10):
            while True:
                while self.pending:
                    event = self.pending.pop(0)
                    if not isinstance(event, Ping):
                        return event
                    if self.answering:
                        await self.stream.send_all(self.ws.send(event.response()))
                data = await self.stream.receive_some(65536)
                if not data:
                    return None  # EOF
                self.ws.receive_data(data)
                self.pending += list(self.ws.events())

    async def frame(self) -> dict[str, Any]:
        event = await self.next_event()
        assert isinstance(event, TextMessage), event
        return json.loads(event.data)


async def test_a_stalled_socket_is_detected_and_its_stream_resumes_elsewhere_exactly_once(
        halfopen_router: RouterProcess, proxy: TcpProxy,
        clean_fake: FakeProviderServer) -> None:
    router = halfopen_router
    clean_fake.state.reply_words = 60
    clean_fake.state.chunk_delay_s = 0.1  # ~6 s of answer: the stall comes mid-stream
    account, key = router.new_account(5_000_000)
    old = await RawClient.connect(proxy.port, key)
    await old.send({"type": "request", "id": "h1", "api": "openai.chat", "body": OPENAI_BODY})
    first = [await old.frame() for _ in range(5)]
    proxy.stall()  # the phone leaves coverage: no FIN, no RST, no pong
    stalled_at = time.monotonic()
    detached = await until_detached(router, account, "h1", within_s=4 * PING_S + 3)
    assert not detached["done"], "detected mid-stream, while the answer still runs"
    assert time.monotonic() - stalled_at >= PING_S, "not before a ping went unanswered"

    # The old socket is still open (and stalled) while the stream resumes elsewhere.
    last_seen = first[-1]["seq"]
    async with open_websocket_url(url(router), extra_headers=auth(key)) as new:
        await send(new, {"type": "resume", "id": "h1", "after": last_seen})
        rest = (await until_done(new, {"h1"}))["h1"]

    # The network comes back: the old socket gets what was on the wire before the router
    # gave up on it (a client drops those by seq), then a close telling it why.
    proxy.unstall()
    old.answering = False
    late: list[dict[str, Any]] = []
    while isinstance(event := await old.next_event(), TextMessage):
        late.append(json.loads(event.data))
    assert isinstance(event, CloseConnection) and event.code == 1001, event
    assert all(f["type"] == "event" and f["seq"] > last_seen for f in late)
    await old.stream.aclose()

    events, done = first + rest[:-1], rest[-1]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), \
        "every event exactly once, in order"
    assert openai_text(events) == " ".join(f"w{i}" for i in range(60))
    assert done["type"] == "done" and done["usage"]["output_tokens"] == 60
    assert assert_settled(router, account, 5_000_000) == done["cost_micros"] > 0
    assert len(router.usage(key)["recent"]) == 1, "billed once"


async def test_a_revoked_key_cannot_resume_on_a_socket_it_opened(
        halfopen_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    router = halfopen_router
    clean_fake.state.reply_words = 40
    clean_fake.state.chunk_delay_s = 0.05
    account, key = router.new_account(5_000_000)
    async with trio.open_nursery() as nursery:
        ws = await connect_websocket_url(nursery, url(router), extra_headers=auth(key))
        await send(ws, {"type": "request", "id": "r1", "api": "openai.chat",
                        "body": OPENAI_BODY})
        await recv(ws)
        await ws._stream.aclose()  # the tunnel: no close, no cancel
        nursery.cancel_scope.cancel()
    async with open_websocket_url(url(router), extra_headers=auth(key)) as ws:
        await send(ws, {"type": "ping"})  # the socket is authenticated and working
        assert await recv(ws) == {"type": "pong"}
        key_id = router.admin("GET", f"/admin/keys?account={account}").json()["data"][0]["id"]
        assert router.admin("DELETE", f"/admin/keys/{key_id}").status_code == 200
        await send(ws, {"type": "resume", "id": "r1", "after": 1})
        refused = await recv(ws)
        assert refused["type"] == "error" and refused["id"] == "r1", refused
        assert refused["status"] in (401, 403)
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}, "nothing of the stream came after"


async def test_a_json_answer_resumes_whole_and_only_once(
        halfopen_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    router = halfopen_router
    clean_fake.state.first_byte_delay_s = 1.0  # the socket drops before the answer exists
    account, key = router.new_account(5_000_000)
    body = {**OPENAI_BODY, "stream": False}
    async with trio.open_nursery() as nursery:
        ws = await connect_websocket_url(nursery, url(router), extra_headers=auth(key))
        await send(ws, {"type": "request", "id": "j1", "api": "openai.chat", "body": body})
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}  # the request was read
        await ws._stream.aclose()
        nursery.cancel_scope.cancel()
    async with open_websocket_url(url(router), extra_headers=auth(key)) as ws:
        await send(ws, {"type": "resume", "id": "j1", "after": 0})
        frames = (await until_done(ws, {"j1"}))["j1"]
    events, done = frames[:-1], frames[-1]
    assert len(events) == 1, "a JSON answer is one event"
    answer = events[0]["data"]
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == " ".join(f"w{i}" for i in range(12))
    assert done["type"] == "done" and done["usage"]["output_tokens"] == 12
    async with open_websocket_url(url(router), extra_headers=auth(key)) as ws:
        # after what the client has: nothing again, only the bill
        await send(ws, {"type": "resume", "id": "j1", "after": events[0]["seq"]})
        again = (await until_done(ws, {"j1"}))["j1"]
    assert [f["type"] for f in again] == ["done"]
    assert assert_settled(router, account, 5_000_000) == done["cost_micros"] > 0


# --- the hypercorn patch, against hypercorn itself ------------------------------------


async def _liveness_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Tells the client, unasked, when the scope says it owes a ping and when it paid."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return

    def owes() -> bool:
        return (ws_liveness.unanswered_s(scope) or 0.0) > 0  # None: nothing recorded

    await receive()
    await send({"type": "websocket.accept"})
    while not owes():
        await trio.sleep(0.02)
    await send({"type": "websocket.send", "text": "owed"})
    while owes():
        await trio.sleep(0.02)
    await send({"type": "websocket.send", "text": "answered"})
    await receive()


async def test_hypercorn_hands_the_app_the_pings_and_pongs_it_sees() -> None:
    ws_liveness.record_peer_liveness()
    patched = ws_liveness.WSStream.handle
    ws_liveness.record_peer_liveness()
    assert ws_liveness.installed() and ws_liveness.WSStream.handle is patched, "idempotent"
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.websocket_ping_interval = 0.2
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn_serve, _liveness_app, config))
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        client = WSConnection(ConnectionType.CLIENT)  # sans-IO: nothing answers for us
        await stream.send_all(client.send(Request(host=host, target="/")))
        seen: list[Any] = []

        async def until(predicate: Any) -> Any:
            with trio.fail_after(5):
                while not (hits := [e for e in seen if predicate(e)]):
                    client.receive_data(await stream.receive_some(4096))
                    seen.extend(client.events())
                return hits[0]

        await until(lambda e: isinstance(e, AcceptConnection))
        ping = await until(lambda e: isinstance(e, Ping))
        await until(lambda e: isinstance(e, TextMessage) and e.data == "owed")
        await stream.send_all(client.send(ping.response()))  # the pong
        await until(lambda e: isinstance(e, TextMessage) and e.data == "answered")
        await stream.aclose()
        nursery.cancel_scope.cancel()



# --- the writer on its own (virtual time) ------------------------------------------------


class Gate:
    """A server send that blocks, shielded, while the gate is shut: hypercorn's on a
    socket whose peer stopped reading."""

    def __init__(self, *, open_: bool = True, delay_s: float = 0.0) -> None:
        self.opened = trio.Event()
        if open_:
            self.opened.set()
        self.delay_s = delay_s
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        with trio.CancelScope(shield=True):
            await self.opened.wait()
            await trio.sleep(self.delay_s)
        self.sent.append(message)


async def test_a_send_stuck_past_stall_s_makes_the_socket_gone_and_frees_every_sender(
        autojump_clock: trio.testing.MockClock) -> None:
    gate = Gate(open_=False)
    writer = SocketWriter(gate, stall_s=5, silent_s=None, liveness=lambda: None,
                          buffer_bytes=10)
    outcomes: list[str] = []

    async def sender(frame: bytes) -> None:
        try:
            await writer.send_text(frame)
            outcomes.append("queued")
        except SocketGone:
            outcomes.append("gone")

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        start = trio.current_time()
        await writer.send_text(b"a" * 8)  # the writer takes it: stuck in the server
        nursery.start_soon(sender, b"b" * 8)  # no room: waits
        nursery.start_soon(sender, b"c" * 8)
        await writer.gone.wait()
        assert trio.current_time() - start >= 5
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == ["gone", "gone"]
        with pytest.raises(SocketGone):
            await writer.send_text(b"late")
        with trio.fail_after(1):
            await writer.close(1001)  # returns at once: the send is still stuck
        gate.opened.set()  # the stuck send ends on its own: then the close is tried
    assert [m.get("text") or m["code"] for m in gate.sent] == ["a" * 8, 1001]


async def test_a_slow_but_moving_socket_is_not_gone_and_keeps_order_and_bound(
        autojump_clock: trio.testing.MockClock) -> None:
    gate = Gate(delay_s=1.0)  # every send takes 1 s; 40 frames take 40 s > stall_s
    writer = SocketWriter(gate, stall_s=5, silent_s=None, liveness=lambda: None,
                          buffer_bytes=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(40):
            await writer.send_text(b"%02d........" % i)  # 10 bytes: 3 fit
        await writer.close(1000)
    assert not writer.gone.is_set()
    assert [m.get("text") for m in gate.sent[:-1]] == [f"{i:02d}........" for i in range(40)]
    assert gate.sent[-1] == {"type": "websocket.close", "code": 1000}


async def test_an_unanswered_ping_makes_an_idle_socket_gone_after_silent_s(
        autojump_clock: trio.testing.MockClock) -> None:
    owed_since: float | None = None

    def liveness() -> float:
        return 0.0 if owed_since is None else trio.current_time() - owed_since

    writer = SocketWriter(Gate(), stall_s=30, silent_s=2, liveness=liveness)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await trio.sleep(100)  # quiet, but owing nothing
        assert not writer.gone.is_set()
        owed_since = trio.current_time()
        await writer.gone.wait()
        assert 2 <= trio.current_time() - owed_since < 3
        with pytest.raises(SocketGone):
            await writer.send_text(b"{}")
        await writer.close(1001)


async def test_a_ping_stuck_behind_unread_data_is_not_held_against_the_peer(
        autojump_clock: trio.testing.MockClock) -> None:
    """A client that stops reading cannot answer a ping queued behind our data: while our
    send is blocked, and for `silent_s` after it moves again, only the stall rule judges."""
    gate = Gate(open_=False)
    owed_since = trio.current_time()
    writer = SocketWriter(gate, stall_s=30, silent_s=2,
                          liveness=lambda: trio.current_time() - owed_since)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await writer.send_text(b"{}")  # blocked at once: the path is full
        await trio.sleep(10)
        assert not writer.gone.is_set()
        gate.opened.set()  # it reads again; the ping's answer is still on its way
        moved_at = trio.current_time()
        await writer.gone.wait()  # ... and never comes
        assert 2 <= trio.current_time() - moved_at < 3
        await writer.close(1001)
