"""OpenAI's Responses websocket mode (`GET /v1/responses`, upgrade) with the official
OpenAI Python SDK's `responses.connect()`, sync and async, to an OpenAI-kind and an
Anthropic-kind model: streamed, several lanes on one socket, errors as the SDK reads
them, billed as HTTP, and resumed after a network cut through the SDK's own
`on_reconnecting` hook (a proxy that drops the TCP connection without a close frame)."""

from __future__ import annotations

import asyncio
import random
from typing import Any, Iterator

import openai
import orjson
import pydantic
import pytest
from openai.types.responses.responses_server_event import ResponsesServerEvent

from tests.fakes import FakeProviderServer
from tests.harness import (RouterProcess, assert_account_invariants, eventually,
                           every_kind_config)
from tests.tcp_proxy import TcpProxy

MODELS = ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "llama")  # one per kind
WORDS = " ".join(f"w{i}" for i in range(12))


@pytest.fixture(scope="module")
def wsrouter(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RouterProcess]:
    env = {"RESUME_WINDOW_S": "20", "WS_MAX_STREAMS": "3", "WS_PING_INTERVAL_S": "1",
           "MAX_DETACHED_STREAMS": "2"}
    with RouterProcess(tmp_path_factory.mktemp("rws"),
                       every_kind_config(fake),
                       env=env) as proc:
        yield proc


def client(router: RouterProcess, key: str, base_url: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=(base_url or router.base_url) + "/v1",
                         max_retries=0)


def collect(connection: Any, until: int = 1) -> list[Any]:
    """Events until `until` responses ended (completed, incomplete, failed) or an error."""
    events, ended = [], 0
    for event in connection:
        events.append(event)
        if event.type in ("response.completed", "response.incomplete",
                          "response.failed", "error"):
            ended += 1
            if ended >= until:
                break
    return events


def text_of(events: list[Any], lane: str | None = None) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta"
                   and (lane is None or e.stream_id == lane))


@pytest.mark.parametrize("model", MODELS)
def test_sync_connect_streams_any_model_and_bills_it(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    account, key = wsrouter.new_account(2_000_000)
    with client(wsrouter, key).responses.connect() as connection:
        connection.response.create(model=model, input="Tell me a story.",
                                   max_output_tokens=50)
        events = collect(connection)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert text_of(events) == WORDS
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))  # the router numbers them, from 0
    final = events[-1].response
    assert final.usage.output_tokens == 12
    usage = wsrouter.last_usage(key)
    assert usage["output_tokens"] == 12 and usage["cost_micros"] > 0
    eventually(lambda: wsrouter.account(account)["held_micros"] == 0)
    assert_account_invariants(wsrouter, account)


SERVER_EVENT = pydantic.TypeAdapter(ResponsesServerEvent)


@pytest.mark.parametrize("model", MODELS)
def test_every_message_validates_against_the_sdks_own_types(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    """Validated, not just constructed: the SDK's `recv()` builds its objects unchecked,
    so a missing required field would only show in the app."""
    _, key = wsrouter.new_account(2_000_000)
    kinds = []
    with client(wsrouter, key).responses.connect() as connection:
        connection.response.create(model=model, input="hi", stream_id="lane-1",
                                   max_output_tokens=20)
        while True:
            message = orjson.loads(connection.recv_bytes())
            SERVER_EVENT.validate_python(message)  # raises on any departure
            assert message["stream_id"] == "lane-1"
            kinds.append(message["type"])
            if message["type"] in ("response.completed", "response.incomplete", "error"):
                break
        connection.response.create(model="no-such-model", input="hi", stream_id="lane-2")
        error = orjson.loads(connection.recv_bytes())
        SERVER_EVENT.validate_python(error)
        assert error["type"] == "error" and error["status"] == 404
        assert error["stream_id"] == "lane-2" and error["error"]["param"] == "model"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds


def test_async_connect_runs_lanes_side_by_side(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.chunk_delay_s = 0.01
    _, key = wsrouter.new_account(2_000_000)

    async def run() -> list[Any]:
        aclient = openai.AsyncOpenAI(api_key=key, base_url=wsrouter.base_url + "/v1",
                                     max_retries=0)
        async with aclient.responses.connect() as connection:
            await connection.response.create(model="gpt-4o-mini", input="one",
                                             stream_id="a")
            await connection.response.create(model="claude-haiku-4-5", input="two",
                                             stream_id="b")
            events, ended = [], 0
            async for event in connection:
                events.append(event)
                if event.type == "response.completed":
                    ended += 1
                    if ended == 2:
                        break
            return events

    events = asyncio.run(run())
    assert text_of(events, "a") == WORDS and text_of(events, "b") == WORDS
    lanes = [e.stream_id for e in events]
    first_b = lanes.index("b")
    assert "a" in lanes[first_b:], "the two lanes were not interleaved"
    for lane in ("a", "b"):
        numbers = [e.sequence_number for e in events if e.stream_id == lane]
        assert numbers == list(range(len(numbers)))


def test_creates_on_one_lane_run_one_after_another(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = wsrouter.new_account(2_000_000)
    with client(wsrouter, key).responses.connect() as connection:
        connection.response.create(model="gpt-4o-mini", input="one", max_output_tokens=3)
        connection.response.create(model="gpt-4o-mini", input="two", max_output_tokens=4)
        events = collect(connection, until=2)
    ends = [i for i, e in enumerate(events) if e.type in ("response.completed",
                                                          "response.incomplete")]
    created = [i for i, e in enumerate(events) if e.type == "response.created"]
    assert len(created) == 2 and created[1] > ends[0]  # FIFO: the second after the first
    ids = {e.response.id for e in events if e.type == "response.created"}
    assert len(ids) == 2


def test_errors_come_as_the_sdk_reads_them(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = wsrouter.new_account(2_000_000)
    poor_account, poor_key = wsrouter.new_account(1)
    with client(wsrouter, key).responses.connect() as connection:
        connection.response.create(model="no-such-model", input="hi")
        error = collect(connection)[-1]
        assert error.type == "error" and error.status == 404
        assert "no-such-model" in error.error.message
        connection.send({"type": "response.create", "model": "gpt-4o-mini", "input": "hi",
                         "background": True})  # type: ignore[typeddict-unknown-key]
        error = collect(connection)[-1]
        assert error.type == "error" and error.error.param == "background"
        # the socket still works after both
        connection.response.create(model="gpt-4o-mini", input="hi")
        assert collect(connection)[-1].type == "response.completed"
    with client(wsrouter, poor_key).responses.connect() as connection:
        connection.response.create(model="gpt-4o-mini", input="hi", stream_id="x")
        error = collect(connection)[-1]
        assert error.type == "error" and error.status == 402 and error.stream_id == "x"
    assert wsrouter.account(poor_account)["held_micros"] == 0


def test_a_bad_key_refuses_the_upgrade(wsrouter: RouterProcess) -> None:
    with pytest.raises(Exception) as caught:
        with client(wsrouter, "sk-aura-wrong").responses.connect() as connection:
            connection.response.create(model="gpt-4o-mini", input="hi")
            collect(connection)
    assert "401" in str(caught.value)


@pytest.mark.parametrize("model,seed", [("gpt-4o-mini", 1), ("claude-haiku-4-5", 2),
                                        ("gemini-2.5-flash", 3)])
def test_reconnects_through_network_cuts_and_resumes_exactly_once(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer, model: str,
        seed: int) -> None:
    """A proxy drops the TCP connection (no close frame) at three random points of the
    answer; each time the SDK's on_reconnecting hook asks for what followed the last
    sequence number it saw. Not one event lost or repeated, billed once."""
    clean_fake.state.chunk_delay_s = 0.02
    clean_fake.state.reply_words = 60
    account, key = wsrouter.new_account(2_000_000)
    proxy = TcpProxy(int(wsrouter.base_url.rsplit(":", 1)[1]))
    cuts = sorted(random.Random(seed).sample(range(1, 55), 3))
    seen: list[Any] = []
    last: dict[str, Any] = {"id": None, "seq": -1}
    reconnects: list[int] = []

    def on_reconnecting(event: Any) -> dict[str, Any]:
        reconnects.append(event.close_code)
        proxy.restore()
        return {"extra_query": {"resume": last["id"], "starting_after": last["seq"]}}

    try:
        sdk = client(wsrouter, key, base_url=f"http://127.0.0.1:{proxy.port}")
        with sdk.responses.connect(on_reconnecting=on_reconnecting,
                                   initial_delay=0.05, max_delay=0.2) as connection:
            connection.response.create(model=model, input="long", max_output_tokens=200)
            pending = list(cuts)
            for event in connection:
                seen.append(event)
                if event.type == "response.created":
                    last["id"] = event.response.id
                last["seq"] = event.sequence_number
                # (events the client had received before a cut still come first: the
                # next cut waits until the socket was replaced)
                if pending and event.sequence_number >= pending[0] and \
                        len(reconnects) == len(cuts) - len(pending):
                    pending.pop(0)
                    proxy.cut()
                if event.type in ("response.completed", "error"):
                    break
    finally:
        proxy.close()
    assert len(reconnects) == 3 and set(reconnects) == {1006}  # dropped, not closed
    numbers = [e.sequence_number for e in seen]
    assert numbers == list(range(len(seen))), "an event was lost or repeated"
    assert seen[-1].type == "response.completed"
    assert text_of(seen) == " ".join(f"w{i}" for i in range(60))
    eventually(lambda: wsrouter.account(account)["held_micros"] == 0)
    usage = wsrouter.usage(key)["recent"]
    assert [r["output_tokens"] for r in usage] == [60]  # billed once, in full
    assert_account_invariants(wsrouter, account)


def test_an_account_keeps_at_most_max_detached_streams_running_unread(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    """Three lanes running when the network drops; MAX_DETACHED_STREAMS is 2: the one
    left first is cancelled (billed for what it produced), two run on for a resume."""
    clean_fake.state.chunk_delay_s = 0.05
    clean_fake.state.reply_words = 200
    account, key = wsrouter.new_account(2_000_000)
    proxy = TcpProxy(int(wsrouter.base_url.rsplit(":", 1)[1]))
    sdk = client(wsrouter, key, base_url=f"http://127.0.0.1:{proxy.port}")
    started: set[str] = set()
    try:
        with pytest.raises(Exception):
            with sdk.responses.connect() as connection:
                for lane in "abc":
                    connection.response.create(model="gpt-4o-mini", input=lane,
                                               stream_id=lane, max_output_tokens=500)
                for event in connection:
                    if event.type == "response.output_text.delta":
                        started.add(event.stream_id)
                        if len(started) == 3:
                            proxy.cut()  # no close frame: the streams detach
    finally:
        proxy.close()

    def mine() -> list[dict[str, Any]]:
        streams = wsrouter.admin("GET", "/admin/streams").json()["data"]
        return [s for s in streams if s["account"] == account]

    eventually(lambda: len(mine()) == 3 and sum(s["cancelled"] for s in mine()) == 1)
    running = [s for s in mine() if not s["cancelled"]]
    assert len(running) == 2 and not any(s["done"] for s in running)
    for stream in running:  # let them go: cancelled through the background route
        assert openai.OpenAI(api_key=key, base_url=wsrouter.base_url + "/v1").responses \
            .cancel(stream["response_id"]).status == "cancelled"
    eventually(lambda: wsrouter.account(account)["held_micros"] == 0)
    assert all(0 < r["output_tokens"] < 200 for r in wsrouter.usage(key)["recent"])
    assert_account_invariants(wsrouter, account)


def test_a_half_open_socket_is_detected_and_its_response_resumed(
        wsrouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    """The network stops carrying anything without closing (a phone out of coverage):
    the router's pings go unanswered, it takes the socket for gone within a few ping
    intervals (WS_PING_INTERVAL_S=1) and the response runs on unread; a new socket
    resumes it after the last event seen, exactly once."""
    clean_fake.state.chunk_delay_s = 0.02
    clean_fake.state.reply_words = 300
    account, key = wsrouter.new_account(2_000_000)
    proxy = TcpProxy(int(wsrouter.base_url.rsplit(":", 1)[1]))
    seen: list[Any] = []
    stalled = client(wsrouter, key, base_url=f"http://127.0.0.1:{proxy.port}").responses \
        .connect(websocket_connection_options={"ping_interval": None}).enter()
    try:
        stalled.response.create(model="gpt-4o-mini", input="long", max_output_tokens=500)
        for event in stalled:
            seen.append(event)
            if len(seen) == 10:
                break
        proxy.stall()

        def detached() -> bool:
            streams = wsrouter.admin("GET", "/admin/streams").json()["data"]
            mine = [s for s in streams if s["account"] == account]
            return len(mine) == 1 and mine[0]["readers"] == 0 and not mine[0]["done"]

        eventually(detached, within_s=10)
        # (events already in flight to the stalled client are lost with it: it resumes
        # after the last one it saw)
        resume = {"resume": seen[0].response.id, "starting_after": seen[-1].sequence_number}
        with client(wsrouter, key).responses.connect(extra_query=resume) as fresh:
            for event in fresh:
                seen.append(event)
                if event.type in ("response.completed", "error"):
                    break
    finally:
        proxy.close()
        try:
            stalled.close()
        except Exception:  # noqa: BLE001 - the stalled socket is dead anyway
            pass
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert text_of(seen) == " ".join(f"w{i}" for i in range(300))
    eventually(lambda: wsrouter.account(account)["held_micros"] == 0)
    assert [r["output_tokens"] for r in wsrouter.usage(key)["recent"]] == [300]
    assert_account_invariants(wsrouter, account)
