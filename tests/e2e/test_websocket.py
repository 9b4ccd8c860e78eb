"""The websocket transport and resumable streams, with the trio-websocket client against
the real router: multiplexing, cancel, network loss then resume on a new socket, SSE
resume, the stream cap, a slow reader's memory bound, bad frames, auth, the window."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, connect_websocket_url, open_websocket_url

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

BUFFER_BYTES = 64 * 1024
OPENAI_BODY = {"model": "gpt-4o-mini", "stream": True,
               "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {"model": "claude-haiku-4-5", "max_tokens": 2000, "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def wsrouter(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RouterProcess]:
    env = {"WS_MAX_STREAMS": "3", "RESUME_WINDOW_S": "3", "WS_AUTH_TIMEOUT_S": "1",
           "STREAM_BUFFER_BYTES": str(BUFFER_BYTES), "WS_MAX_FRAME_BYTES": "65536",
           "SSE_HEARTBEAT_S": "1", "WS_PING_INTERVAL_S": "1"}
    with RouterProcess(tmp_path_factory.mktemp("ws"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env=env) as proc:
        yield proc


def url(router: RouterProcess) -> str:
    return router.base_url.replace("http://", "ws://") + "/v1/ws"


def auth(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


async def send(ws: WebSocketConnection, frame: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(frame))


async def recv(ws: WebSocketConnection, timeout: float = 10) -> dict[str, Any]:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


async def until_done(ws: WebSocketConnection, ids: set[str],
                     frames: dict[str, list[dict[str, Any]]] | None = None
                     ) -> dict[str, list[dict[str, Any]]]:
    frames = frames if frames is not None else {}
    pending = set(ids)
    while pending:
        frame = await recv(ws)
        frames.setdefault(frame.get("id", ""), []).append(frame)
        if frame["type"] in ("done", "error") and frame.get("id") in pending:
            pending.discard(frame["id"])
    return frames


def openai_text(events: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content") or "" for e in events if e["type"] == "event"
                   for c in e["data"].get("choices", []))


def anthropic_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["delta"].get("text", "") for e in events
                   if e["type"] == "event" and e.get("event") == "content_block_delta")


def assert_settled(router: RouterProcess, account: str, granted: int) -> int:
    """No hold open; returns what was debited."""
    state = router.account(account)
    assert state["held_micros"] == 0, "a hold was left open"
    return granted - state["balance_micros"]


async def test_two_streams_of_both_apis_multiplex_on_one_socket_and_report_their_bill(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.chunk_delay_s = 0.005
    account, key = wsrouter.new_account(5_000_000)
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as ws:
        await send(ws, {"type": "request", "id": "c1", "api": "openai.chat",
                        "body": OPENAI_BODY})
        await send(ws, {"type": "request", "id": "c2", "api": "anthropic.messages",
                        "body": ANTHROPIC_BODY})
        frames = await until_done(ws, {"c1", "c2"})
    expected = " ".join(f"w{i}" for i in range(12))
    assert openai_text(frames["c1"]) == expected
    assert anthropic_text(frames["c2"]) == expected
    for stream_id in ("c1", "c2"):
        seqs = [f["seq"] for f in frames[stream_id] if f["type"] == "event"]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert frames["c2"][0]["event"] == "message_start"
    done = [frames[i][-1] for i in ("c1", "c2")]
    assert all(d["type"] == "done" and d["usage"]["output_tokens"] == 12 for d in done)
    debited = assert_settled(wsrouter, account, 5_000_000)
    assert sum(d["cost_micros"] for d in done) == debited
    # the last one settled saw no other hold: its figure is the final available
    assert max(d["available_micros"] for d in done) == 5_000_000 - debited


async def test_cancel_stops_the_stream_and_bills_what_was_produced(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 400
    clean_fake.state.chunk_delay_s = 0.02
    account, key = wsrouter.new_account(5_000_000)
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as ws:
        await send(ws, {"type": "request", "id": "s", "api": "openai.chat",
                        "body": OPENAI_BODY})
        for _ in range(5):
            assert (await recv(ws))["type"] == "event"
        await send(ws, {"type": "cancel", "id": "s"})
        frames = await until_done(ws, {"s"})
        done = frames["s"][-1]
        assert done["type"] == "done"
        assert 0 < done["usage"]["output_tokens"] < 100
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}
    assert assert_settled(wsrouter, account, 5_000_000) == done["cost_micros"] > 0


async def test_network_loss_then_resume_on_a_new_socket_gets_every_event_exactly_once(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 60
    clean_fake.state.chunk_delay_s = 0.01
    account, key = wsrouter.new_account(5_000_000)
    first: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        ws = await connect_websocket_url(nursery, url(wsrouter), extra_headers=auth(key))
        await send(ws, {"type": "request", "id": "m1", "api": "anthropic.messages",
                        "body": ANTHROPIC_BODY})
        while len(first) < 10:
            first.append(await recv(ws))
        await ws._stream.aclose()  # the tunnel: no close handshake, no cancel frame
        nursery.cancel_scope.cancel()
    last_seen = first[-1]["seq"]
    await trio.sleep(0.3)  # the stream goes on without its client
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as ws:
        await send(ws, {"type": "resume", "id": "m1", "after": last_seen})
        rest = (await until_done(ws, {"m1"}))["m1"]
    events = first + rest[:-1]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "every event exactly once, in order"
    assert anthropic_text(events) == " ".join(f"w{i}" for i in range(60))
    assert rest[-1]["type"] == "done" and rest[-1]["usage"]["output_tokens"] == 60
    assert assert_settled(wsrouter, account, 5_000_000) == rest[-1]["cost_micros"]


async def test_a_dropped_stream_nobody_resumes_is_cancelled_after_the_window(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 2000
    clean_fake.state.chunk_delay_s = 0.01  # 20 s of answer; the window is 3 s
    account, key = wsrouter.new_account(5_000_000)
    async with trio.open_nursery() as nursery:
        ws = await connect_websocket_url(nursery, url(wsrouter), extra_headers=auth(key))
        await send(ws, {"type": "request", "id": "gone", "api": "openai.chat",
                        "body": OPENAI_BODY})
        await recv(ws)
        await ws._stream.aclose()
        nursery.cancel_scope.cancel()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = wsrouter.account(account)
        if state["held_micros"] == 0:
            break
        await trio.sleep(0.25)
    debited = assert_settled(wsrouter, account, 5_000_000)
    output = wsrouter.usage(key)["recent"][0]["output_tokens"]
    assert 0 < output < 2000, "cancelled when the window ran out, billed what streamed"
    assert debited > 0


async def test_the_stream_cap_refuses_the_next_stream_and_keeps_the_others(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 30
    clean_fake.state.chunk_delay_s = 0.02
    account, key = wsrouter.new_account(5_000_000)
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as ws:
        for i in range(4):
            await send(ws, {"type": "request", "id": f"s{i}", "api": "openai.chat",
                            "body": OPENAI_BODY})
        frames = await until_done(ws, {"s0", "s1", "s2", "s3"})
    refused = frames["s3"][-1]
    assert refused["type"] == "error" and refused["status"] == 429
    assert "at most 3" in refused["error"]["message"]
    for i in range(3):
        assert frames[f"s{i}"][-1]["type"] == "done"
        assert openai_text(frames[f"s{i}"]) == " ".join(f"w{j}" for j in range(30))
    assert_settled(wsrouter, account, 5_000_000)


async def test_a_slow_reader_is_held_to_the_buffer_bound_and_loses_nothing(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    words = 20_000  # ~3.5 MB of SSE from the provider, at once
    clean_fake.state.reply_words = words
    account, key = wsrouter.new_account(50_000_000)
    body = {**ANTHROPIC_BODY, "max_tokens": 30_000}
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key),
                                  message_queue_size=1) as ws:
        await send(ws, {"type": "request", "id": "big", "api": "anthropic.messages",
                        "body": body})
        await recv(ws)
        await trio.sleep(1.5)  # read nothing: the socket, then the log, fill up
        streams = wsrouter.admin("GET", "/admin/streams").json()["data"]
        mine = [s for s in streams if s["account"] == account][0]
        assert not mine["done"], "the provider is held back, not read to the end"
        assert mine["kept_bytes"] <= BUFFER_BYTES
        text, frames = [], 1
        while True:
            frame = await recv(ws)
            frames += 1
            if frame["type"] == "done":
                break
            if frame.get("event") == "content_block_delta":
                text.append(frame["data"]["delta"]["text"])
    assert "".join(text) == " ".join(f"w{i}" for i in range(words))
    assert frame["usage"]["output_tokens"] == words
    assert assert_settled(wsrouter, account, 50_000_000) == frame["cost_micros"]


BAD_FRAMES: list[tuple[Any, str]] = [
    ("not json", "not JSON"),
    ([1, 2], "object"),
    ({"type": "launch", "id": "x"}, "unknown frame type"),
    ({"type": []}, "'type'"),
    ({"type": "request", "id": "x", "api": [], "body": {}}, "'api'"),
    ({"type": "request", "api": "openai.chat", "body": OPENAI_BODY}, "'id'"),
    ({"type": "request", "id": "b1", "api": "gopher", "body": OPENAI_BODY}, "'api'"),
    ({"type": "request", "id": "b2", "api": "openai.chat", "body": "hi"}, "'body'"),
    ({"type": "resume", "id": "never-was", "after": 0}, "no stream"),
    ({"type": "resume", "id": "x", "after": -1}, "'after'"),
    ({"type": "cancel", "id": "never-was"}, "no stream"),
    ("x" * 70_000, "over the limit"),
]


async def test_bad_frames_get_an_error_frame_and_the_connection_lives_on(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = wsrouter.new_account(5_000_000)
    _, other_key = wsrouter.new_account(5_000_000)
    async with open_websocket_url(url(wsrouter), extra_headers=auth(other_key)) as ws:
        await send(ws, {"type": "request", "id": "theirs", "api": "openai.chat",
                        "body": OPENAI_BODY})
        await until_done(ws, {"theirs"})
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as ws:
        for frame, needle in BAD_FRAMES + [({"type": "resume", "id": "theirs", "after": 0},
                                            "no stream")]:
            await ws.send_message(frame if isinstance(frame, str) else json.dumps(frame))
            answer = await recv(ws)
            assert answer["type"] == "error", frame
            assert needle in answer["error"]["message"], (frame, answer)
        clean_fake.state.chunk_delay_s = 0.02
        await send(ws, {"type": "request", "id": "dup", "api": "openai.chat",
                        "body": OPENAI_BODY})
        await send(ws, {"type": "request", "id": "dup", "api": "openai.chat",
                        "body": OPENAI_BODY})
        frames = await until_done(ws, {"dup"})
        errors = [f for f in frames["dup"] if f["type"] == "error"]
        assert len(errors) == 1 and "in use" in errors[0]["error"]["message"]
        assert frames["dup"][-1]["type"] in ("done", "error")
        if frames["dup"][-1]["type"] == "error":
            frames = await until_done(ws, {"dup"}, frames)
        assert openai_text(frames["dup"]) == " ".join(f"w{i}" for i in range(12))
    assert_settled(wsrouter, account, 5_000_000)


async def test_refusals_arrive_as_error_frames_with_the_status(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = wsrouter.new_account(10)
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as ws:
        await send(ws, {"type": "request", "id": "poor", "api": "anthropic.messages",
                        "body": ANTHROPIC_BODY})
        frame = await recv(ws)
    assert frame["type"] == "error" and frame["id"] == "poor" and frame["status"] == 402
    assert frame["error"]["type"] == "billing_error"
    assert clean_fake.state.received == []
    assert assert_settled(wsrouter, account, 10) == 0


async def test_auth_by_first_frame_and_refusals(wsrouter: RouterProcess,
                                                clean_fake: FakeProviderServer) -> None:
    _, key = wsrouter.new_account(5_000_000)
    async with open_websocket_url(url(wsrouter)) as ws:
        await send(ws, {"type": "auth", "token": key})
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}
    async with open_websocket_url(url(wsrouter)) as ws:
        await send(ws, {"type": "auth", "token": "ar_sk_" + "x" * 43})
        frame = await recv(ws)
        assert frame["type"] == "error" and frame["status"] == 401
    async with open_websocket_url(url(wsrouter)) as ws:  # silent: 1 s in this router
        frame = await recv(ws, timeout=5)
        assert frame["status"] == 401 and "within" in frame["error"]["message"]


def test_sse_resumable_stream_survives_its_client_and_resumes_from_last_event_id(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 40
    clean_fake.state.chunk_delay_s = 0.02
    account, key = wsrouter.new_account(5_000_000)
    _, stranger = wsrouter.new_account(5_000_000)
    headers = {"authorization": f"Bearer {key}", "x-aura-resumable": "true"}
    seen: list[tuple[int, dict[str, Any]]] = []
    with httpx.stream("POST", wsrouter.base_url + "/v1/chat/completions", json=OPENAI_BODY,
                      headers=headers, timeout=10) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: ") and line != "data: [DONE]":
                seen.append((event_id, json.loads(line[6:])))
                if len(seen) == 8:
                    break  # the client goes away mid-stream
    last = seen[-1][0]
    foreign = httpx.get(wsrouter.base_url + f"/v1/streams/{request_id}",
                        headers={"authorization": f"Bearer {stranger}"})
    assert foreign.status_code == 404
    with httpx.stream("GET", wsrouter.base_url + f"/v1/streams/{request_id}", timeout=10,
                      headers={"authorization": f"Bearer {key}",
                               "last-event-id": str(last)}) as resumed:
        assert resumed.status_code == 200
        for line in resumed.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: ") and line != "data: [DONE]":
                seen.append((event_id, json.loads(line[6:])))
    ids = [i for i, _ in seen]
    assert ids == list(range(1, len(ids) + 1))
    text = "".join(c["delta"].get("content") or "" for _, d in seen for c in d["choices"])
    assert text == " ".join(f"w{i}" for i in range(40))
    debited = assert_settled(wsrouter, account, 5_000_000)
    assert wsrouter.usage(key)["recent"][0]["output_tokens"] == 40, "billed in full"
    assert debited > 0
    # a finished stream stays replayable for the window: ?after=N from anywhere
    replay = httpx.get(wsrouter.base_url + f"/v1/streams/{request_id}?after=30",
                       headers={"authorization": f"Bearer {key}"}, timeout=10)
    replay_ids = [int(line[4:]) for line in replay.text.splitlines() if line.startswith("id: ")]
    assert replay_ids == list(range(31, ids[-1] + 2)), "31 .. the last event ([DONE])"
    assert wsrouter.account(account)["balance_micros"] == 5_000_000 - debited, "billed once"
    bad = httpx.get(wsrouter.base_url + f"/v1/streams/{request_id}?after=soon",
                    headers={"authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"


def test_plain_sse_events_carry_ids(wsrouter: RouterProcess,
                                    clean_fake: FakeProviderServer) -> None:
    _, key = wsrouter.new_account(5_000_000)
    with httpx.stream("POST", wsrouter.base_url + "/v1/messages", json=ANTHROPIC_BODY,
                      headers={"x-api-key": key}, timeout=10) as response:
        lines = list(response.iter_lines())
    ids = [int(line[4:]) for line in lines if line.startswith("id: ")]
    events = [line for line in lines if line.startswith("event: ")]
    assert ids == list(range(1, len(events) + 1))


def test_an_idle_sse_stream_gets_heartbeat_comments(wsrouter: RouterProcess,
                                                    clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 2
    # Silence between the two words: past twice SSE_HEARTBEAT_S (1 s), so that the
    # keep-alive task, which looks four times a second, sees a second of it.
    clean_fake.state.chunk_delay_s = 2.2
    _, key = wsrouter.new_account(5_000_000)

    def read(resumable: str) -> list[str]:
        with httpx.stream("POST", wsrouter.base_url + "/v1/chat/completions",
                          json=OPENAI_BODY, timeout=15,
                          headers={"authorization": f"Bearer {key}",
                                   "x-aura-resumable": resumable}) as response:
            return list(response.iter_lines())

    with ThreadPoolExecutor(2) as both:  # the plain and the resumable stream at once
        answers = dict(zip(("false", "true"), both.map(read, ("false", "true"))))
    for resumable, lines in answers.items():
        assert ": keep-alive" in lines, resumable
        assert "data: [DONE]" in lines


async def test_the_router_pings_an_idle_websocket(wsrouter: RouterProcess) -> None:
    """Websocket-level keepalive (WS_PING_INTERVAL_S, 1 s in this router), seen on the wire
    with a sans-IO client so that nothing answers for us."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Ping, Request

    _, key = wsrouter.new_account(0)
    host, port = wsrouter.base_url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host=host, target="/v1/ws", extra_headers=[
        (b"authorization", f"Bearer {key}".encode())])))
    seen: list[Any] = []
    with trio.fail_after(5):
        while not any(isinstance(e, Ping) for e in seen):
            client.receive_data(await stream.receive_some(4096))
            seen += list(client.events())
    assert isinstance(seen[0], AcceptConnection)
    await stream.aclose()


async def test_a_reader_left_behind_by_another_gets_a_410_and_its_connection_lives_on(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    """The network-switch case: the old socket is half-alive while the new one resumes and
    reads ahead; the old one's stream is gone for it, not its whole connection."""
    clean_fake.state.reply_words = 20_000
    _, key = wsrouter.new_account(50_000_000)
    body = {**ANTHROPIC_BODY, "max_tokens": 30_000}
    async with open_websocket_url(url(wsrouter), extra_headers=auth(key),
                                  message_queue_size=1) as old:
        await send(old, {"type": "request", "id": "switch", "api": "anthropic.messages",
                         "body": body})
        await recv(old)
        await trio.sleep(0.5)  # the old socket's buffers fill; the log keeps what it may
        kept = [s for s in wsrouter.admin("GET", "/admin/streams").json()["data"]
                if s["id"] == "switch"][0]["first_kept"]
        async with open_websocket_url(url(wsrouter), extra_headers=auth(key)) as new:
            await send(new, {"type": "resume", "id": "switch", "after": kept - 1})
            frames = await until_done(new, {"switch"})
            assert frames["switch"][-1]["type"] == "done", frames["switch"][-1]
        while True:  # the old socket drains what it had, then hears that it fell behind
            frame = await recv(old)
            if frame["type"] != "event":
                break
        assert frame["type"] == "error" and frame["status"] == 410
        await send(old, {"type": "ping"})
        assert await recv(old) == {"type": "pong"}


def test_a_stream_id_that_is_not_ours_is_a_clean_404_not_a_crash(
        wsrouter: RouterProcess) -> None:
    _, key = wsrouter.new_account(0)
    for path in ("/v1/streams/a%0d%0aSet-Cookie:%20x=1", "/v1/streams/%00",
                 "/v1/streams/req_000000000000000000000000"):
        answer = httpx.get(wsrouter.base_url + path, headers={"authorization": f"Bearer {key}"})
        assert answer.status_code == 404, path
    odd = httpx.get(wsrouter.base_url + "/v1/streams/req_000000000000000000000000",
                    params={"after": "\u00b2"}, headers={"authorization": f"Bearer {key}"})
    assert odd.status_code in (400, 404)
