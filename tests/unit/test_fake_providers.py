"""Self-check of the fake providers (tests/fakes) driven by the official openai / anthropic SDKs.

If the SDKs parse what the fakes send, the fakes speak the real wire formats.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer, FakeState, count_input_tokens

KEY = "sk-test-0123456789"
MSGS: list[Any] = [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Say hi ünïcode"}]
A_MSGS: list[Any] = [{"role": "user", "content": [{"type": "text", "text": "Say hi ünïcode"}]}]
# The anthropic SDK 2.x ships its own `httpx2`; a dropped stream surfaces as its error type.
CUT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.RemoteProtocolError, openai.APIConnectionError, anthropic.APIConnectionError)
if importlib.util.find_spec("httpx2") is not None:
    import httpx2

    CUT_ERRORS += (httpx2.RemoteProtocolError,)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as fake:
        yield fake


@pytest.fixture()
def fake(server: FakeProviderServer) -> FakeProviderServer:
    server.state.reset()
    return server


def oai(fake: FakeProviderServer, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key=key, max_retries=0, timeout=5)


def ant(fake: FakeProviderServer, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key=key, max_retries=0, timeout=5)


def test_token_formula() -> None:
    # "Be brief." = 9 bytes, "Say hi ünïcode" = 16 bytes -> ceil(25/4) + 3*2
    assert count_input_tokens(MSGS) == 7 + 6
    assert count_input_tokens(A_MSGS, system="abcd") == 5 + 3
    assert count_input_tokens([]) == 0


def test_openai_non_streaming(fake: FakeProviderServer) -> None:
    fake.state.cache_read_tokens = 4
    fake.state.reasoning_tokens = 2
    r = oai(fake).chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "gpt-4o-mini"
    assert r.choices[0].message.content == " ".join(f"w{i}" for i in range(12))
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (13, 14, 27)
    assert r.usage.prompt_tokens_details and r.usage.prompt_tokens_details.cached_tokens == 4
    assert r.usage.completion_tokens_details and r.usage.completion_tokens_details.reasoning_tokens == 2
    req = fake.state.last
    assert req is not None and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}" and req.body["messages"] == MSGS


def test_openai_streaming_with_usage(fake: FakeProviderServer) -> None:
    stream = oai(fake).chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True,
        stream_options={"include_usage": True}, max_completion_tokens=5)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "w0 w1 w2 w3 w4"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (13, 5)
    assert all(c.usage is None for c in chunks[:-1])
    req = fake.state.last
    assert req is not None and req.body["stream_options"] == {"include_usage": True}


def test_openai_streaming_without_usage(fake: FakeProviderServer) -> None:
    fake.state.ignore_include_usage = True
    chunks = list(oai(fake).chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True,
        stream_options={"include_usage": True}))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert len(chunks) == 1 + 12 + 1  # role chunk, one per word, finish chunk


def test_openai_models(fake: FakeProviderServer) -> None:
    assert "gpt-4o-mini" in [m.id for m in oai(fake).models.list()]


def test_openai_errors(fake: FakeProviderServer) -> None:
    fake.state.expected_api_key = KEY
    with pytest.raises(openai.AuthenticationError) as auth:
        oai(fake, key="sk-wrong-key-123456").chat.completions.create(model="m", messages=MSGS)
    assert auth.value.code == "invalid_api_key" and auth.value.type == "invalid_request_error"
    fake.state.fail_status = 500
    with pytest.raises(openai.InternalServerError) as err:
        oai(fake).chat.completions.create(model="m", messages=MSGS)
    assert err.value.type == "server_error"
    fake.state.fail_status = 429
    with pytest.raises(openai.RateLimitError) as rate:
        oai(fake).chat.completions.create(model="m", messages=MSGS)
    assert rate.value.response.headers["retry-after"] == "1"


def test_openai_bad_json(fake: FakeProviderServer) -> None:
    r = httpx.post(fake.openai_base_url + "/chat/completions", content=b"{nope")
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_openai_cut_stream(fake: FakeProviderServer) -> None:
    fake.state.cut_after_chunks = 3
    got: list[str] = []
    with pytest.raises(CUT_ERRORS):
        for c in oai(fake).chat.completions.create(model="m", messages=MSGS, stream=True):
            got.extend(ch.delta.content or "" for ch in c.choices)
    assert "".join(got) == "w0 w1 w2"


def test_anthropic_non_streaming(fake: FakeProviderServer) -> None:
    fake.state.cache_read_tokens, fake.state.cache_write_tokens = 2, 1
    m = ant(fake).messages.create(model="claude-x", max_tokens=100, system="abcd", messages=A_MSGS)
    assert m.id.startswith("msg_") and m.type == "message" and m.stop_reason == "end_turn"
    assert m.content[0].type == "text" and m.content[0].text.split() == [f"w{i}" for i in range(12)]
    assert (m.usage.input_tokens, m.usage.output_tokens) == (8 - 3, 12)
    assert (m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (2, 1)
    req = fake.state.last
    assert req is not None and "anthropic-version" in req.headers
    # SDK 1.x sends `x-api-key`, SDK 2.x `Authorization: Bearer`; the fake accepts both
    assert KEY in (req.headers.get("x-api-key"), req.headers.get("authorization", "")[7:])


def test_anthropic_streaming(fake: FakeProviderServer) -> None:
    events = list(ant(fake).messages.create(
        model="claude-x", max_tokens=4, messages=A_MSGS, stream=True))
    types = [e.type for e in events]
    assert types == ["message_start", "content_block_start", *["content_block_delta"] * 4,
                     "content_block_stop", "message_delta", "message_stop"]  # SDK drops `ping`
    delta = events[-2]
    assert delta.type == "message_delta" and delta.delta.stop_reason == "max_tokens"
    assert delta.usage.output_tokens == 4
    with ant(fake).messages.stream(model="claude-x", max_tokens=50, messages=A_MSGS) as s:
        final = s.get_final_message()
    assert final.usage.output_tokens == 12 and final.usage.input_tokens == count_input_tokens(A_MSGS)


def test_anthropic_beta_and_count_tokens(fake: FakeProviderServer) -> None:
    ant(fake).beta.messages.create(model="claude-x", max_tokens=10, messages=A_MSGS,
                                   betas=["prompt-caching-2024-07-31"], extra_query={"beta": "true"})
    req = fake.state.last
    assert req is not None and req.path == "/v1/messages?beta=true"
    assert req.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    n = ant(fake).messages.count_tokens(model="claude-x", messages=A_MSGS)
    assert n.input_tokens == count_input_tokens(A_MSGS)


def test_anthropic_errors(fake: FakeProviderServer) -> None:
    fake.state.expected_api_key = KEY
    with pytest.raises(anthropic.AuthenticationError) as auth:
        ant(fake, key="wrong").messages.create(model="c", max_tokens=5, messages=A_MSGS)
    assert auth.value.body == {"type": "error", "error": {"type": "authentication_error",
                               "message": "invalid x-api-key"}, "request_id": auth.value.request_id}
    fake.state.fail_status = 500
    with pytest.raises(anthropic.InternalServerError):
        ant(fake).messages.create(model="c", max_tokens=5, messages=A_MSGS)
    fake.state.fail_status = 529
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        ant(fake).messages.create(model="c", max_tokens=5, messages=A_MSGS)
    assert overloaded.value.status_code == 529
    fake.state.fail_status = None
    r = httpx.post(fake.anthropic_base_url + "/v1/messages", headers={"x-api-key": KEY},
                   json={"model": "c", "max_tokens": 5, "messages": A_MSGS})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(fake.anthropic_base_url + "/v1/messages", json={"model": "c", "max_tokens": 5,
                   "messages": A_MSGS}, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.json()["usage"]["output_tokens"] == 5


def test_anthropic_cut_stream(fake: FakeProviderServer) -> None:
    fake.state.cut_after_chunks = 2
    seen: list[str] = []
    with pytest.raises(CUT_ERRORS):
        for e in ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS, stream=True):
            seen.append(e.type)
    assert seen.count("content_block_delta") == 2 and "message_delta" not in seen


def test_delays_and_state_isolation(fake: FakeProviderServer) -> None:
    import time
    fake.state.first_byte_delay_s = 0.2
    fake.state.chunk_delay_s = 0.01
    fake.state.reply_words = 5
    t0 = time.monotonic()
    chunks = list(oai(fake).chat.completions.create(model="m", messages=MSGS, stream=True))
    assert time.monotonic() - t0 >= 0.25 and len(chunks) == 1 + 5 + 1
    assert len(fake.state.snapshot()) == 1
    assert FakeState().reply_words == 12
