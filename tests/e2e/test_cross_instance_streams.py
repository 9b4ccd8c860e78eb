"""Resume on any instance: two real routers sharing Redis (`REDIS_URL`) and one SQLite
ledger. A stream started on instance A is resumed on instance B (resumable SSE with
Last-Event-ID, the Responses websocket through the SDK's on_reconnecting hook after the
network moved it to B, a background response's starting_after), exactly once and billed
once; a cancel sent to B stops the stream A runs."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import openai
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.backends import fresh_redis_url
from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, assert_account_invariants, eventually, router_config
from tests.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def paced() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def pair(paced: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[RouterProcess, RouterProcess]]:
    config = router_config(paced.openai_base_url, paced.anthropic_base_url)
    shared = tmp_path_factory.mktemp("cross")  # one DATA_DIR: one SQLite ledger
    env = {"REDIS_URL": fresh_redis_url(db=14), "BILLING_BACKEND": "sqlite",
           "RESUME_WINDOW_S": "20"}
    with RouterProcess(shared, config, env=env) as a, RouterProcess(shared, config, env=env) as b:
        yield a, b


@pytest.fixture()
def upstream(paced: FakeProviderServer) -> Iterator[FakeProviderServer]:
    paced.state.reset()
    paced.state.chunk_delay_s = 0.03
    paced.state.reply_words = 40
    yield paced
    paced.state.reset()


def port(router: RouterProcess) -> int:
    return int(router.base_url.rsplit(":", 1)[1])


def sse_events(lines: Iterator[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    seq = None
    for line in lines:
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("data: ") and line[6:] != "[DONE]":
            assert seq is not None
            yield seq, json.loads(line[6:])


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_resumable_sse_started_on_a_resumes_on_b(
        pair: tuple[RouterProcess, RouterProcess], upstream: FakeProviderServer) -> None:
    a, b = pair
    account, key = a.new_account(2_000_000)
    headers = {"authorization": f"Bearer {key}", "x-aura-resumable": "true"}
    body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 100,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "count"}]}
    seen: list[tuple[int, dict[str, Any]]] = []
    with httpx.stream("POST", a.base_url + "/v1/chat/completions", json=body,
                      headers=headers, timeout=10) as response:
        request_id = response.headers["x-request-id"]
        for event in sse_events(response.iter_lines()):
            seen.append(event)
            if len(seen) == 6:
                break  # the phone moved to another network (and another instance)
    with httpx.stream("GET", f"{b.base_url}/v1/streams/{request_id}",
                      headers={**headers, "last-event-id": str(seen[-1][0])},
                      timeout=10) as response:
        assert response.status_code == 200, response.read()
        seen += list(sse_events(response.iter_lines()))
    assert [seq for seq, _ in seen] == list(range(1, len(seen) + 1))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for _, c in seen
                   if c.get("choices"))
    assert text.split() == words(40).split()
    assert seen[-1][1]["usage"]["completion_tokens"] == 40
    eventually(lambda: a.account(account)["held_micros"] == 0)
    assert [r["output_tokens"] for r in b.usage(key)["recent"]] == [40]  # billed once
    assert_account_invariants(a, account)


def test_responses_websocket_moves_to_the_other_instance_on_reconnect(
        pair: tuple[RouterProcess, RouterProcess], upstream: FakeProviderServer) -> None:
    """The SDK talks to A through a proxy; the network cut moves the proxy to B (a load
    balancer sending the new socket elsewhere); on_reconnecting asks B for the rest."""
    a, b = pair
    account, key = a.new_account(2_000_000)
    proxy = TcpProxy(port(a))
    last: dict[str, Any] = {"id": None, "seq": -1}
    seen: list[Any] = []
    moved = False

    def on_reconnecting(event: Any) -> dict[str, Any]:
        proxy.target = ("127.0.0.1", port(b))
        proxy.restore()
        return {"extra_query": {"resume": last["id"], "starting_after": last["seq"]}}

    try:
        sdk = openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{proxy.port}/v1",
                            max_retries=0)
        with sdk.responses.connect(on_reconnecting=on_reconnecting, initial_delay=0.05,
                                   max_delay=0.2) as connection:
            connection.response.create(model="claude-haiku-4-5", input="count",
                                       max_output_tokens=100)
            for event in connection:
                seen.append(event)
                if event.type == "response.created":
                    last["id"] = event.response.id
                last["seq"] = event.sequence_number
                if not moved and event.type == "response.output_text.delta" and \
                        event.sequence_number >= 10:
                    moved = True
                    proxy.cut()
                if event.type in ("response.completed", "error"):
                    break
    finally:
        proxy.close()
    assert moved and proxy.target[1] == port(b)
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[-1].type == "response.completed"
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text == words(40)
    eventually(lambda: a.account(account)["held_micros"] == 0)
    assert [r["output_tokens"] for r in a.usage(key)["recent"]] == [40]
    assert_account_invariants(a, account)


def test_background_response_read_and_cancelled_from_the_other_instance(
        pair: tuple[RouterProcess, RouterProcess], upstream: FakeProviderServer) -> None:
    a, b = pair
    upstream.state.reply_words = 400
    upstream.state.chunk_delay_s = 0.05
    account, key = a.new_account(2_000_000)
    on_a = openai.OpenAI(api_key=key, base_url=a.base_url + "/v1", max_retries=0)
    on_b = openai.OpenAI(api_key=key, base_url=b.base_url + "/v1", max_retries=0)
    created = on_a.responses.create(model="gpt-4o-mini", input="Long.", background=True,
                                    max_output_tokens=1000)
    assert on_b.responses.retrieve(created.id).status == "in_progress"
    seen = []
    with on_b.responses.retrieve(created.id, stream=True, starting_after=2) as stream:
        for event in stream:
            seen.append(event)
            if len(seen) == 5:
                break
    assert [e.sequence_number for e in seen] == [3, 4, 5, 6, 7]
    _, stranger = b.new_account(2_000_000)
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(api_key=stranger, base_url=b.base_url + "/v1",
                      max_retries=0).responses.retrieve(created.id)
    cancelled = on_b.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    eventually(lambda: a.account(account)["held_micros"] == 0)
    assert on_a.responses.retrieve(created.id).status == "cancelled"
    produced = a.usage(key)["recent"][0]["output_tokens"]
    assert 0 < produced < 400  # stopped on A, billed for what it produced
    assert_account_invariants(a, account)


async def test_v1_ws_stream_resumed_and_cancelled_through_the_other_instance(
        pair: tuple[RouterProcess, RouterProcess], upstream: FakeProviderServer) -> None:
    """/v1/ws: a socket to A drops; a `resume` frame on a socket to B continues the
    stream exactly once and gets its `done` bill; a second stream, left on A, is
    cancelled by a `cancel` frame sent to B."""
    a, b = pair
    upstream.state.reply_words = 120
    upstream.state.chunk_delay_s = 0.01
    account, key = a.new_account(2_000_000)
    proxy = TcpProxy(port(a))
    headers = [(b"authorization", f"Bearer {key}".encode())]
    body = {"model": "claude-haiku-4-5", "max_tokens": 1000, "stream": True,
            "messages": [{"role": "user", "content": "count"}]}

    def ws_url(router: RouterProcess) -> str:
        return router.base_url.replace("http://", "ws://") + "/v1/ws"
    async def recv(ws: Any) -> dict[str, Any]:
        with trio.fail_after(10):
            return json.loads(await ws.get_message())

    seen: list[dict[str, Any]] = []
    try:
        async with open_websocket_url(f"ws://127.0.0.1:{proxy.port}/v1/ws",
                                      extra_headers=headers) as ws:
            for stream_id in ("keep", "stop"):
                await ws.send_message(json.dumps({"type": "request", "id": stream_id,
                                                  "api": "anthropic.messages", "body": body}))
            while len(seen) < 5:
                frame = await recv(ws)
                if frame.get("id") == "keep":
                    seen.append(frame)
            proxy.cut()  # no close frame: the network is just gone
    except Exception:  # noqa: BLE001 - the client side of a cut socket
        pass
    finally:
        proxy.close()
    async with open_websocket_url(ws_url(b), extra_headers=headers) as ws:
        await ws.send_message(json.dumps({"type": "cancel", "id": "stop"}))
        await ws.send_message(json.dumps({"type": "resume", "id": "keep",
                                          "after": seen[-1]["seq"]}))
        while True:
            frame = await recv(ws)
            if frame.get("id") == "keep":
                seen.append(frame)
                if frame["type"] in ("done", "error"):
                    break
    events = [f for f in seen if f["type"] == "event"]
    assert [f["seq"] for f in events] == list(range(1, len(events) + 1))
    text = "".join(f["data"]["delta"].get("text", "") for f in events
                   if f.get("event") == "content_block_delta")
    assert text == words(120)
    done = seen[-1]
    assert done["type"] == "done" and done["usage"]["output_tokens"] == 120
    eventually(lambda: a.account(account)["held_micros"] == 0)
    recent = sorted(r["output_tokens"] for r in a.usage(key)["recent"])
    assert len(recent) == 2 and recent[1] == 120 and recent[0] < 120  # "stop" was cut
    assert_account_invariants(a, account)
