"""Hypothesis fuzzing of `/v1/ws` frames against the real router (docs/websocket.md).

Whatever a client sends — text that is not JSON, binary frames, JSON of the wrong type,
unknown `type`s, ids and fields of the wrong type, oversized frames, request frames with
bad bodies, auth frames with garbage — the router answers each with well-formed frames
(`error` with a status and a message, never a crash's 500), or, before authentication,
an error and a close with 1008; the connection (or, after a close, the server) still
serves a valid request afterwards; and once everything settles no hold is left open.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from typing import Any, Iterator

import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, eventually, router_config

MAX_FRAME = 4096
# Derandomized for CI; WS_FUZZ_EXAMPLES=500 explores further (and at random).
_EXAMPLES = int(os.environ.get("WS_FUZZ_EXAMPLES", "0"))
FUZZ_SETTINGS = settings(max_examples=_EXAMPLES or 40, deadline=None,
                         derandomize=not _EXAMPLES, suppress_health_check=list(HealthCheck))
FRAME_TYPES = ("event", "done", "error", "pong")
APIS = ("openai.chat", "openai.responses", "anthropic.messages")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
ids = st.one_of(st.sampled_from(["a", "b", "c1", "", "x" * 200]), st.text(max_size=4),
                json_values)
models = st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "house-model", "no-such-model",
                          ""]) | json_values
messages = st.one_of(
    st.just([{"role": "user", "content": "hi"}]),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system",
                                                             "tool", "x"]) | json_values,
                                    "content": st.text(max_size=30) | json_values}),
             max_size=3),
    json_values)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"model": models, "messages": messages},
                          optional={"max_tokens": st.integers(-5, 2**40) | json_values,
                                    "stream": st.booleans() | json_values,
                                    "input": st.text(max_size=20) | json_values,
                                    "tools": json_values}))
structured = st.one_of(
    st.fixed_dictionaries({"type": st.just("request"), "id": ids,
                           "api": st.sampled_from(APIS) | json_values, "body": bodies}),
    st.fixed_dictionaries({"type": st.sampled_from(["cancel", "resume"]), "id": ids},
                          optional={"after": st.integers(-3, 2**70) | json_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["ping", "auth", "hello", "REQUEST", ""])
                           | json_values},
                          optional={"token": json_values, "id": ids}),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4))
frames = st.one_of(
    structured.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
    st.integers(MAX_FRAME + 1, 4 * MAX_FRAME).map(lambda n: '{"type":"ping","pad":"'
                                                  + "x" * n + '"}'),
)
garbage_auth = st.one_of(
    st.text(max_size=40), st.binary(max_size=40), json_values.map(json.dumps),
    st.fixed_dictionaries({"type": st.just("auth"),
                           "token": st.text(max_size=60) | json_values}).map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["request", "ping"]),
                           "token": st.text(max_size=10)}).map(json.dumps))
CHAT = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def wsfuzz(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    env = {"WS_MAX_FRAME_BYTES": str(MAX_FRAME), "WS_AUTH_TIMEOUT_S": "2",
           "WS_MAX_STREAMS": "4", "RESUME_WINDOW_S": "2"}
    with RouterProcess(tmp_path_factory.mktemp("wsfuzz"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def funded(wsfuzz: RouterProcess) -> tuple[str, str]:
    return wsfuzz.new_account(1_000_000_000)


def _url(router: RouterProcess) -> str:
    return router.base_url.replace("http://", "ws://") + "/v1/ws"


def _check(raw: str | bytes) -> dict[str, Any]:
    """A frame the router sent: a JSON object of a known type; an error names its status."""
    assert isinstance(raw, str), "the router sends text frames only"
    frame = json.loads(raw)
    assert isinstance(frame, dict) and frame.get("type") in FRAME_TYPES, frame
    if frame["type"] == "error":
        assert isinstance(frame["error"]["message"], str) and frame["error"]["message"]
        assert isinstance(frame["error"]["type"], str)
        assert isinstance(frame["status"], int) and 400 <= frame["status"] <= 599
        assert frame["status"] != 500, f"a frame crashed its handler: {frame}"
    return frame


async def _send(ws: WebSocketConnection, frame: str | bytes) -> None:
    await ws.send_message(frame)


def _answer(frame: str | bytes) -> str | None:
    """What the router must answer a frame with at once, when that is decided by the
    frame alone: "error" (an error frame without an id) or "pong"; None for the rest
    (a request, cancel or resume with an id; what they get depends on the streams)."""
    if isinstance(frame, bytes) or len(frame.encode()) > MAX_FRAME:
        return "error"
    try:
        parsed = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return "error"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        return "error"
    if parsed["type"] == "ping":
        return "pong"
    if parsed["type"] not in ("request", "cancel", "resume"):
        return "error"
    stream_id = parsed.get("id")
    return None if isinstance(stream_id, str) and 0 < len(stream_id) <= 128 else "error"


async def _probe(ws: WebSocketConnection) -> Counter[str]:
    """A valid request on this connection is answered to its `done` frame; the id-less
    answers that came before it, counted."""
    probe = "probe-" + uuid.uuid4().hex
    await ws.send_message(json.dumps({"type": "request", "id": probe, "api": "openai.chat",
                                      "body": CHAT}))
    plain: Counter[str] = Counter()
    with trio.fail_after(15):
        while True:
            frame = _check(await ws.get_message())
            if "id" not in frame:
                plain[frame["type"]] += 1
            if frame.get("id") == probe and frame["type"] in ("done", "error"):
                assert frame["type"] == "done", frame
                return plain


@FUZZ_SETTINGS
@given(sent=st.lists(frames, min_size=1, max_size=6))
def test_any_frames_get_well_formed_answers_and_the_connection_lives_on(
        wsfuzz: RouterProcess, funded: tuple[str, str], sent: list[str | bytes]) -> None:
    _, key = funded

    async def main() -> None:
        async with open_websocket_url(
                _url(wsfuzz), extra_headers=[(b"authorization", f"Bearer {key}".encode())],
                max_message_size=1 << 20) as ws:
            for frame in sent:
                await _send(ws, frame)
            # Frames are handled in order: every id-less answer comes before the probe's.
            plain = await _probe(ws)
        expected = Counter(a for a in map(_answer, sent) if a is not None)
        assert plain == expected, (plain, expected)

    trio.run(main)


# Each refusal holds its socket for the server's grace (1 s, for the client to read why):
# fewer examples here than for the frames above keep the suite's time in bounds.
@settings(FUZZ_SETTINGS, max_examples=_EXAMPLES or 15)
@given(first=garbage_auth)
def test_garbage_instead_of_an_auth_frame_is_refused_with_1008_and_the_server_serves_on(
        wsfuzz: RouterProcess, funded: tuple[str, str], first: str | bytes) -> None:
    _, key = funded

    async def main() -> None:
        async with open_websocket_url(_url(wsfuzz)) as ws:
            await _send(ws, first)
            with trio.fail_after(10):
                frame = _check(await ws.get_message())
                assert frame["type"] == "error" and frame["status"] == 401, frame
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
            assert ws.closed is not None and ws.closed.code == 1008
        async with open_websocket_url(_url(wsfuzz)) as ws:
            await ws.send_message(json.dumps({"type": "auth", "token": key}))
            await _probe(ws)

    trio.run(main)


def test_no_hold_is_left_open_after_the_fuzzing(wsfuzz: RouterProcess,
                                                 funded: tuple[str, str]) -> None:
    """Runs after the two above (file order): every stream they started has settled."""
    account, _ = funded
    eventually(lambda: wsfuzz.account(account)["held_micros"] == 0, within_s=15,
               what="every websocket stream's hold settled")
