"""Self-check of the fake providers (tests/fakes) driven by the official openai / anthropic SDKs.

If the SDKs parse what the fakes send, the fakes speak the real wire formats.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer, FakeState, count_input_tokens, count_response_input_tokens

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


# --- tool calls, thinking, Responses API ----------------------------------------------

ARGS: dict[str, Any] = {"city": "Paris", "days": 3, "units": "c"}
OAI_TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
A_TOOLS: list[Any] = [{"name": "get_weather", "description": "Weather for a city",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
R_TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TWELVE = " ".join(f"w{i}" for i in range(12))


def test_openai_tool_call_non_streaming(fake: FakeProviderServer) -> None:
    fake.state.tool_call = ("get_weather", ARGS)
    fake.state.reasoning_tokens = 1
    r = oai(fake).chat.completions.create(model="gpt-4o", messages=MSGS, tools=OAI_TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) == 5 + 24
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (13, 3 + 1)
    # with a short lead text; then the tool result comes back -> a plain text answer
    fake.state.tool_call_text = "Let me check."
    r = oai(fake).chat.completions.create(model="gpt-4o", messages=MSGS, tools=OAI_TOOLS)
    assert r.choices[0].message.content == "Let me check." and r.choices[0].message.tool_calls
    assert r.usage is not None and r.usage.completion_tokens == 3 + 3 + 1
    follow = [*MSGS, r.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r = oai(fake).chat.completions.create(model="gpt-4o", messages=follow, tools=OAI_TOOLS)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == TWELVE
    # no tools in the request, or tool_choice "none": text
    r = oai(fake).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content == TWELVE
    r = oai(fake).chat.completions.create(model="gpt-4o", messages=MSGS, tools=OAI_TOOLS,
                                          tool_choice="none")
    assert r.choices[0].message.content == TWELVE


def test_openai_tool_call_streaming(fake: FakeProviderServer) -> None:
    fake.state.tool_call = ("get_weather", ARGS)
    chunks = list(oai(fake).chat.completions.create(
        model="gpt-4o", messages=MSGS, tools=OAI_TOOLS, stream=True,
        stream_options={"include_usage": True}))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None and first.tool_calls
    start = first.tool_calls[0]
    assert (start.index, start.type, start.function and start.function.name,
            start.function and start.function.arguments) == (0, "function", "get_weather", "")
    assert start.id is not None and start.id.startswith("call_")
    fragments = [tc.function.arguments for c in chunks[1:] if c.choices
                 for tc in c.choices[0].delta.tool_calls or [] if tc.function]
    assert len(fragments) == 3 and all(f for f in fragments)
    assert json.loads("".join(f or "" for f in fragments)) == ARGS
    assert all(tc.id is None for c in chunks[1:] if c.choices for tc in c.choices[0].delta.tool_calls or [])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    # the SDK's stream helper accumulates text + tool call into one message
    fake.state.tool_call_text = "Let me check."
    with oai(fake).chat.completions.stream(model="gpt-4o", messages=MSGS, tools=OAI_TOOLS) as s:
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me check." and final.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls and json.loads(msg.tool_calls[0].function.arguments) == ARGS
    # cut mid-call: only the first N content chunks arrive
    fake.state.tool_call_text = None
    fake.state.cut_after_chunks = 2
    got: list[str] = []
    with pytest.raises(CUT_ERRORS):
        for c in oai(fake).chat.completions.create(model="m", messages=MSGS, tools=OAI_TOOLS, stream=True):
            got.extend(tc.function.arguments or "" for ch in c.choices
                       for tc in ch.delta.tool_calls or [] if tc.function)
    assert len("".join(got)) < len(json.dumps(ARGS, separators=(",", ":")))


def test_responses_non_streaming(fake: FakeProviderServer) -> None:
    fake.state.cache_read_tokens = 2
    fake.state.reasoning_tokens = 3
    r = oai(fake).responses.create(model="gpt-4o-mini", input="Say hi ünïcode", instructions="Be brief.")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == TWELVE and r.incomplete_details is None
    item = r.output[0]
    assert item.type == "message" and item.id.startswith("msg_") and item.role == "assistant"
    assert item.status == "completed" and item.content[0].type == "output_text"
    prompt = count_response_input_tokens("Say hi ünïcode", "Be brief.")
    assert prompt == count_input_tokens(MSGS) - 3  # instructions are not a message
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (prompt, 15, prompt + 15)
    assert r.usage.input_tokens_details.cached_tokens == 2
    assert r.usage.output_tokens_details.reasoning_tokens == 3
    assert r.instructions == "Be brief." and r.tools == [] and r.tool_choice == "auto"
    req = fake.state.last
    assert req is not None and req.path == "/v1/responses" and req.body["input"] == "Say hi ünïcode"
    r = oai(fake).responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=5)
    assert r.status == "incomplete" and r.output_text == "w0 w1 w2 w3 w4"
    assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    assert r.max_output_tokens == 5 and r.output[0].status == "incomplete"


def test_responses_function_call(fake: FakeProviderServer) -> None:
    fake.state.tool_call = ("get_weather", ARGS)
    items: list[Any] = [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}]
    r = oai(fake).responses.create(model="gpt-4o", input=items, tools=R_TOOLS)
    assert r.status == "completed" and r.output_text == "" and len(r.output) == 1
    call = r.output[0]
    assert call.type == "function_call" and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert call.name == "get_weather" and json.loads(call.arguments) == ARGS and call.status == "completed"
    assert r.usage is not None and r.usage.output_tokens == 3
    assert r.usage.input_tokens == count_response_input_tokens(items)
    # the function output goes back -> text
    items += [{"type": "function_call", "call_id": call.call_id, "name": call.name,
               "arguments": call.arguments},
              {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    r = oai(fake).responses.create(model="gpt-4o", input=items, tools=R_TOOLS)
    assert r.output_text == TWELVE and r.output[0].type == "message"
    # with a lead text: a message item, then the call
    fake.state.tool_call_text = "Let me check."
    r = oai(fake).responses.create(model="gpt-4o", input="Weather?", tools=R_TOOLS)
    assert [o.type for o in r.output] == ["message", "function_call"]
    assert r.output_text == "Let me check." and r.usage is not None and r.usage.output_tokens == 6


def test_responses_streaming(fake: FakeProviderServer) -> None:
    events = list(oai(fake).responses.create(model="gpt-4o-mini", input="hi", stream=True))
    types = [e.type for e in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 12,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == TWELVE
    assert {(e.item_id, e.output_index, e.content_index) for e in deltas} == {
        (events[2].item.id, 0, 0)}  # type: ignore[union-attr]
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == TWELVE
    assert done.response.usage is not None and done.response.usage.output_tokens == 12
    assert events[0].response.status == "in_progress"  # type: ignore[union-attr]
    # the SDK's stream helper
    with oai(fake).responses.stream(model="gpt-4o-mini", input="hi") as s:
        final = s.get_final_response()
    assert final.output_text == TWELVE
    # truncated: ends with response.incomplete, like the real API
    events = list(oai(fake).responses.create(model="m", input="hi", stream=True, max_output_tokens=2))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "w0 w1"


def test_responses_streaming_function_call(fake: FakeProviderServer) -> None:
    fake.state.tool_call = ("get_weather", ARGS)
    events = list(oai(fake).responses.create(model="gpt-4o", input="Weather?", tools=R_TOOLS, stream=True))
    types = [e.type for e in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     *["response.function_call_arguments.delta"] * 3,
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = events[2]
    assert added.type == "response.output_item.added" and added.item.type == "function_call"
    assert added.item.arguments == "" and added.item.status == "in_progress"
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == ARGS
    assert events[-1].type == "response.completed" and events[-1].response.usage is not None
    assert events[-1].response.usage.output_tokens == 3
    fake.state.tool_call_text = "Let me check."
    with oai(fake).responses.stream(model="gpt-4o", input="Weather?", tools=R_TOOLS) as s:
        final = s.get_final_response()
    assert [o.type for o in final.output] == ["message", "function_call"]
    fc = final.output[1]
    assert fc.type == "function_call" and json.loads(fc.arguments) == ARGS
    assert final.output_text == "Let me check."


def test_responses_faults(fake: FakeProviderServer) -> None:
    fake.state.cut_after_chunks = 3
    seen: list[str] = []
    with pytest.raises(CUT_ERRORS):
        for e in oai(fake).responses.create(model="m", input="hi", stream=True):
            seen.append(e.type)
    assert seen.count("response.output_text.delta") == 3 and "response.completed" not in seen
    fake.state.cut_after_chunks = None
    fake.state.fail_status = 429
    with pytest.raises(openai.RateLimitError):
        oai(fake).responses.create(model="m", input="hi")
    fake.state.fail_status = None
    fake.state.expected_api_key = KEY
    with pytest.raises(openai.AuthenticationError):
        oai(fake, key="sk-wrong-key-123456").responses.create(model="m", input="hi")
    r = httpx.post(fake.openai_base_url + "/responses", content=b"{nope",
                   headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(fake.openai_base_url + "/responses", json={"input": "hi"},
                   headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_anthropic_tool_use(fake: FakeProviderServer) -> None:
    fake.state.tool_call = ("get_weather", ARGS)
    m = ant(fake).messages.create(model="claude-x", max_tokens=100, messages=A_MSGS, tools=A_TOOLS)
    assert m.stop_reason == "tool_use" and len(m.content) == 1
    block = m.content[0]
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == ARGS
    assert block.id.startswith("toolu_") and len(block.id) == 6 + 24
    assert m.usage.output_tokens == 3
    # the tool result goes back -> text
    follow = [*A_MSGS, {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                            "content": "sunny"}]}]
    m = ant(fake).messages.create(model="claude-x", max_tokens=100, messages=follow, tools=A_TOOLS)
    assert m.stop_reason == "end_turn" and m.content[0].type == "text"
    # streaming, with a lead text block at index 0 and the tool block at index 1
    fake.state.tool_call_text = "I'll check the weather."
    events = list(ant(fake).messages.create(model="claude-x", max_tokens=100, messages=A_MSGS,
                                            tools=A_TOOLS, stream=True))
    starts = [e for e in events if e.type == "content_block_start"]
    assert [(e.index, e.content_block.type) for e in starts] == [(0, "text"), (1, "tool_use")]
    assert starts[1].content_block.input == {}  # type: ignore[union-attr]
    json_deltas = [e.delta.partial_json for e in events
                   if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert json_deltas[0] == "" and len(json_deltas) == 4 and json.loads("".join(json_deltas)) == ARGS
    delta = [e for e in events if e.type == "message_delta"][0]
    assert delta.delta.stop_reason == "tool_use" and delta.usage.output_tokens == 4 + 3
    with ant(fake).messages.stream(model="claude-x", max_tokens=100, messages=A_MSGS, tools=A_TOOLS) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].type == "text" and final.content[0].text == "I'll check the weather."
    tool_block = final.content[1]
    assert tool_block.type == "tool_use" and tool_block.input == ARGS
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 7


def test_anthropic_thinking(fake: FakeProviderServer) -> None:
    fake.state.thinking_text = "The user wants a greeting. Keep it short."
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    m = ant(fake).messages.create(model="claude-x", max_tokens=2000, messages=A_MSGS, thinking=thinking)
    assert [b.type for b in m.content] == ["thinking", "text"]
    think = m.content[0]
    assert think.type == "thinking" and think.thinking == fake.state.thinking_text and think.signature
    assert m.content[1].type == "text" and m.content[1].text == TWELVE
    assert m.usage.output_tokens == 8 + 12 and m.stop_reason == "end_turn"
    # without `thinking` in the request: the plain answer
    m = ant(fake).messages.create(model="claude-x", max_tokens=2000, messages=A_MSGS)
    assert [b.type for b in m.content] == ["text"]
    events = list(ant(fake).messages.create(model="claude-x", max_tokens=2000, messages=A_MSGS,
                                            thinking=thinking, stream=True))
    start = [e for e in events if e.type == "content_block_start"]
    assert [(e.index, e.content_block.type) for e in start] == [(0, "thinking"), (1, "text")]
    assert start[0].content_block.model_dump() == {"type": "thinking", "thinking": "", "signature": ""}
    kinds = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert kinds == ["thinking_delta"] * 8 + ["signature_delta"] + ["text_delta"] * 12
    with ant(fake).messages.stream(model="claude-x", max_tokens=2000, messages=A_MSGS,
                                   thinking=thinking) as s:
        final = s.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == fake.state.thinking_text and final.content[0].signature
    assert final.content[1].type == "text" and final.content[1].text == TWELVE
    assert final.usage.output_tokens == 20
    # thinking then a tool call
    fake.state.tool_call = ("get_weather", ARGS)
    with ant(fake).messages.stream(model="claude-x", max_tokens=2000, messages=A_MSGS,
                                   thinking=thinking, tools=A_TOOLS) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[1].type == "tool_use" and final.content[1].input == ARGS
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 8 + 3
    # max_tokens covers thinking + text
    fake.state.tool_call = None
    m = ant(fake).messages.create(model="claude-x", max_tokens=10, messages=A_MSGS, thinking=thinking)
    assert m.stop_reason == "max_tokens" and m.content[1].type == "text"
    assert m.content[1].text == "w0 w1" and m.usage.output_tokens == 10


def test_new_switches_default_off() -> None:
    st = FakeState()
    assert (st.tool_call, st.tool_call_text, st.thinking_text) == (None, None, None)
    assert (st.ignore_limits, st.honour_only_max_tokens, st.honour_n) == (False, False, False)
    assert (st.usage_mode, st.error_before_content) == ("normal", None)


def test_reset_restores_misbehaviour_switches() -> None:
    st = FakeState()
    st.ignore_limits = st.honour_only_max_tokens = st.honour_n = True
    st.usage_mode, st.error_before_content = "none", "overloaded_error"
    st.reply_words, st.cut_after_chunks = 10**9, 0
    st.reset()
    assert st == FakeState()


# --- misbehaving upstreams: limits, n, usage modes, early errors, endless streams -----

A_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def sse_events(raw: str) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) per SSE event of a raw body ("[DONE]" stays a string)."""
    out: list[tuple[str | None, Any]] = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((name, data if data == "[DONE]" else json.loads(data)))
    return out


def test_ignore_limits(fake: FakeProviderServer) -> None:
    fake.state.ignore_limits = True
    r = oai(fake).chat.completions.create(model="m", messages=MSGS, max_completion_tokens=3, max_tokens=2)
    assert r.choices[0].message.content == TWELVE and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 12
    chunks = list(oai(fake).chat.completions.create(
        model="m", messages=MSGS, max_tokens=2, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TWELVE
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    resp = oai(fake).responses.create(model="m", input="hi", max_output_tokens=2)
    assert resp.status == "completed" and resp.incomplete_details is None
    assert resp.output_text == TWELVE and resp.usage is not None and resp.usage.output_tokens == 12
    events = list(oai(fake).responses.create(model="m", input="hi", max_output_tokens=2, stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == TWELVE
    m = ant(fake).messages.create(model="c", max_tokens=3, messages=A_MSGS)
    assert m.stop_reason == "end_turn" and m.content[0].type == "text" and m.content[0].text == TWELVE
    assert m.usage.output_tokens == 12
    with ant(fake).messages.stream(model="c", max_tokens=3, messages=A_MSGS) as s:
        final = s.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 12
    # thinking + text: the cap covers neither
    fake.state.thinking_text = "Short thought."
    m = ant(fake).messages.create(model="c", max_tokens=3, messages=A_MSGS,
                                  thinking={"type": "enabled", "budget_tokens": 1024})
    assert m.stop_reason == "end_turn" and m.content[1].type == "text" and m.content[1].text == TWELVE
    assert m.usage.output_tokens == 2 + 12


def test_honour_only_max_tokens(fake: FakeProviderServer) -> None:
    def words(**caps: Any) -> tuple[int, str | None]:
        r = oai(fake).chat.completions.create(model="m", messages=MSGS, **caps)
        return len((r.choices[0].message.content or "").split()), r.choices[0].finish_reason

    assert words(max_tokens=3, max_completion_tokens=5) == (5, "length")  # default: the newer field wins
    fake.state.honour_only_max_tokens = True
    assert words(max_tokens=3, max_completion_tokens=5) == (3, "length")
    assert words(max_completion_tokens=5) == (12, "stop")
    assert words(max_tokens=4) == (4, "length")
    chunks = list(oai(fake).chat.completions.create(model="m", messages=MSGS, stream=True,
                                                    max_completion_tokens=2))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TWELVE
    # the Responses API and Anthropic are not affected
    assert oai(fake).responses.create(model="m", input="hi", max_output_tokens=2).output_text == "w0 w1"
    assert ant(fake).messages.create(model="c", max_tokens=2, messages=A_MSGS).usage.output_tokens == 2


def test_honour_n(fake: FakeProviderServer) -> None:
    r = oai(fake).chat.completions.create(model="m", messages=MSGS, n=3)
    assert len(r.choices) == 1  # off by default: n is ignored
    fake.state.honour_n = True
    fake.state.reasoning_tokens = 1
    r = oai(fake).chat.completions.create(model="m", messages=MSGS, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content == TWELVE and c.finish_reason == "stop" for c in r.choices)
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (13, 36 + 1)
    r = oai(fake).chat.completions.create(model="m", messages=MSGS, n=2, max_tokens=2)
    assert [(c.message.content, c.finish_reason) for c in r.choices] == [("w0 w1", "length")] * 2
    assert r.usage is not None and r.usage.completion_tokens == 4 + 1
    assert len(oai(fake).chat.completions.create(model="m", messages=MSGS, n=1).choices) == 1
    # streaming: one choice per chunk; role chunks first, deltas interleaved, a finish per choice
    chunks = list(oai(fake).chat.completions.create(
        model="m", messages=MSGS, n=3, stream=True, stream_options={"include_usage": True}))
    assert all(len(c.choices) == 1 for c in chunks[:-1]) and chunks[-1].choices == []
    assert [(c.choices[0].index, c.choices[0].delta.role) for c in chunks[:3]] == [
        (0, "assistant"), (1, "assistant"), (2, "assistant")]
    assert [c.choices[0].index for c in chunks[3:9]] == [0, 1, 2, 0, 1, 2]
    texts = {i: "".join(c.choices[0].delta.content or "" for c in chunks[:-1] if c.choices[0].index == i)
             for i in range(3)}
    assert texts == {0: TWELVE, 1: TWELVE, 2: TWELVE}
    finishes = [(c.choices[0].index, c.choices[0].finish_reason) for c in chunks[:-1]
                if c.choices[0].finish_reason]
    assert finishes == [(0, "stop"), (1, "stop"), (2, "stop")]
    assert len(chunks) == 3 + 3 * 12 + 3 + 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 36 + 1
    with oai(fake).chat.completions.stream(model="m", messages=MSGS, n=2) as s:  # SDK helper
        final = s.get_final_completion()
    assert [(c.index, c.message.content, c.finish_reason) for c in final.choices] == [
        (0, TWELVE, "stop"), (1, TWELVE, "stop")]
    # cut_after_chunks counts every per-choice delta
    fake.state.cut_after_chunks = 3
    got: list[tuple[int, str]] = []
    with pytest.raises(CUT_ERRORS):
        for c in oai(fake).chat.completions.create(model="m", messages=MSGS, n=2, stream=True):
            got.extend((ch.index, ch.delta.content) for ch in c.choices if ch.delta.content)
    assert got == [(0, "w0"), (1, "w0"), (0, " w1")]


def test_usage_mode_none(fake: FakeProviderServer) -> None:
    fake.state.usage_mode = "none"
    fake.state.cache_read_tokens = 2
    r = oai(fake).chat.completions.create(model="m", messages=MSGS)
    assert r.choices[0].message.content == TWELVE and r.usage is None
    raw = httpx.post(fake.openai_base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
    assert "usage" not in raw.json()
    chunks = list(oai(fake).chat.completions.create(
        model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}))
    assert all(c.choices and c.usage is None for c in chunks) and len(chunks) == 1 + 12 + 1
    raw = httpx.post(fake.openai_base_url + "/chat/completions", json={
        "model": "m", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}})
    assert all("usage" not in data for _, data in sse_events(raw.text) if data != "[DONE]")
    fake.state.tool_call = ("get_weather", ARGS)
    r = oai(fake).chat.completions.create(model="m", messages=MSGS, tools=OAI_TOOLS)
    assert r.choices[0].finish_reason == "tool_calls" and r.usage is None
    fake.state.tool_call = None
    resp = oai(fake).responses.create(model="m", input="hi")
    assert resp.output_text == TWELVE and resp.usage is None
    raw = httpx.post(fake.openai_base_url + "/responses", json={"model": "m", "input": "hi"})
    assert raw.json()["usage"] is None
    events = list(oai(fake).responses.create(model="m", input="hi", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.usage is None
    m = ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS)
    assert m.content[0].type == "text" and m.content[0].text == TWELVE
    assert (m.usage.input_tokens, m.usage.output_tokens, m.usage.cache_read_input_tokens) == (0, 0, 0)
    events_a = list(ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS, stream=True))
    start, delta = events_a[0], events_a[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (0, 0)
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (0, 0)


def test_usage_mode_zero_input(fake: FakeProviderServer) -> None:
    fake.state.usage_mode = "zero_input"
    fake.state.cache_read_tokens, fake.state.cache_write_tokens = 2, 1
    fake.state.reasoning_tokens = 1
    r = oai(fake).chat.completions.create(model="m", messages=MSGS)
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (0, 13, 13)
    assert r.usage.prompt_tokens_details and r.usage.prompt_tokens_details.cached_tokens == 0
    chunks = list(oai(fake).chat.completions.create(
        model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (0, 13)
    resp = oai(fake).responses.create(model="m", input="hi")
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (0, 13, 13)
    assert resp.usage.input_tokens_details.cached_tokens == 0
    m = ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS)
    assert (m.usage.input_tokens, m.usage.output_tokens) == (0, 12)
    assert (m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (0, 0)
    with ant(fake).messages.stream(model="c", max_tokens=50, messages=A_MSGS) as s:
        final = s.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (0, 12)
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (0, 0)


def test_error_before_content_openai(fake: FakeProviderServer) -> None:
    fake.state.error_before_content = "server_error"
    got: list[Any] = []
    with pytest.raises(openai.APIError) as err:
        for c in oai(fake).chat.completions.create(model="m", messages=MSGS, stream=True):
            got.append(c)
    assert got == [] and err.value.type == "server_error"
    assert err.value.message == "The server had an error while processing your request. Sorry about that!"
    raw = httpx.post(fake.openai_base_url + "/chat/completions",
                     json={"model": "m", "messages": MSGS, "stream": True})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    assert sse_events(raw.text) == [(None, {"error": {
        "message": err.value.message, "type": "server_error", "param": None, "code": None}})]
    fake.state.tool_call = ("get_weather", ARGS)  # applies to tool-call answers too
    raw = httpx.post(fake.openai_base_url + "/chat/completions",
                     json={"model": "m", "messages": MSGS, "tools": OAI_TOOLS, "stream": True})
    assert [data["error"]["type"] for _, data in sse_events(raw.text)] == ["server_error"]
    fake.state.tool_call = None
    # Responses: response.created, then an `error` event
    events = list(oai(fake).responses.create(model="m", input="hi", stream=True))
    assert [e.type for e in events] == ["response.created", "error"]
    error = events[1]
    assert error.type == "error" and error.code == "server_error" and error.param is None
    assert error.message == err.value.message and error.sequence_number == 1
    raw = httpx.post(fake.openai_base_url + "/responses", json={"model": "m", "input": "hi", "stream": True})
    parsed = sse_events(raw.text)
    assert raw.status_code == 200 and [name for name, _ in parsed] == ["response.created", "error"]
    assert list(parsed[1][1]) == ["type", "code", "message", "param", "sequence_number"]
    # non-streaming requests are answered normally
    assert oai(fake).chat.completions.create(model="m", messages=MSGS).choices[0].message.content == TWELVE
    assert oai(fake).responses.create(model="m", input="hi").output_text == TWELVE


def test_error_before_content_anthropic(fake: FakeProviderServer) -> None:
    fake.state.error_before_content = "overloaded_error"
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err:
        for e in ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS, stream=True):
            seen.append(e.type)
    assert seen == ["message_start"]
    assert err.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    raw = httpx.post(fake.anthropic_base_url + "/v1/messages", headers=A_HEADERS,
                     json={"model": "c", "max_tokens": 50, "messages": A_MSGS, "stream": True})
    parsed = sse_events(raw.text)
    assert raw.status_code == 200 and [name for name, _ in parsed] == ["message_start", "error"]
    assert parsed[1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fake.state.error_before_content = "api_error"
    fake.state.tool_call = ("get_weather", ARGS)  # applies to tool-use answers too
    with pytest.raises(anthropic.APIStatusError) as err:
        list(ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS, tools=A_TOOLS,
                                       stream=True))
    assert isinstance(err.value.body, dict)
    assert err.value.body["error"] == {"type": "api_error", "message": "Internal server error"}
    fake.state.tool_call = None
    m = ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS)  # non-streaming: normal
    assert m.content[0].type == "text" and m.content[0].text == TWELVE


def test_cut_after_zero_chunks(fake: FakeProviderServer) -> None:
    for delay in (0.0, 0.001):
        fake.state.reset()
        fake.state.cut_after_chunks = 0
        fake.state.chunk_delay_s = delay
        got: list[Any] = []
        with pytest.raises(CUT_ERRORS):
            for c in oai(fake).chat.completions.create(model="m", messages=MSGS, stream=True):
                got.append(c)
        assert len(got) == 1 and got[0].choices[0].delta.role == "assistant"
        assert not got[0].choices[0].delta.content
        seen: list[str] = []
        with pytest.raises(CUT_ERRORS):
            for e in oai(fake).responses.create(model="m", input="hi", stream=True):
                seen.append(e.type)
        assert seen == ["response.created", "response.in_progress", "response.output_item.added",
                        "response.content_part.added"]
        seen = []
        with pytest.raises(CUT_ERRORS):
            for e in ant(fake).messages.create(model="c", max_tokens=50, messages=A_MSGS, stream=True):
                seen.append(e.type)
        assert seen == ["message_start", "content_block_start"]  # (+ ping, dropped by the SDK)


def _drive_asgi(app: Any, path: str, body: dict[str, Any], headers: dict[str, str],
                disconnect_after: int) -> list[dict[str, Any]]:
    """Run one request through a fake ASGI app in-process; the client disconnects after
    `disconnect_after` body writes.  Returns what the app sent (fails if it does not stop)."""
    import trio

    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}

    async def main() -> None:
        gone = trio.Event()
        requests = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if sum(m["type"] == "http.response.body" for m in sent) >= disconnect_after:
                gone.set()
            await trio.lowlevel.checkpoint()

        with trio.fail_after(10):
            await app(scope, receive, send)

    trio.run(main)
    return sent


@pytest.mark.parametrize("delay", [0.0, 0.0001])
def test_endless_stream_stops_on_disconnect(delay: float) -> None:
    from tests.fakes.anthropic_app import make_anthropic_app
    from tests.fakes.openai_app import make_openai_app

    state = FakeState(reply_words=10**9, chunk_delay_s=delay, keep_requests=False)
    cases: list[tuple[Any, str, dict[str, Any], dict[str, str], bytes]] = [
        (make_openai_app(state), "/v1/chat/completions",
         {"model": "m", "messages": MSGS, "stream": True, "n": 2}, {}, b'"content":" w1"'),
        (make_openai_app(state), "/v1/responses", {"model": "m", "input": "hi", "stream": True},
         {}, b'"delta":" w1"'),
        (make_anthropic_app(state), "/v1/messages",
         {"model": "c", "max_tokens": 10**9, "messages": A_MSGS, "stream": True}, A_HEADERS,
         b'"text":" w1"'),
    ]
    for honour_n in (False, True):
        state.honour_n = honour_n
        for app, path, body, headers, second_word in cases:
            sent = _drive_asgi(app, path, body, headers, disconnect_after=5)
            bodies = [m for m in sent if m["type"] == "http.response.body"]
            assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
            assert 5 <= len(bodies) <= 6 and all(m["more_body"] for m in bodies)
            assert second_word in b"".join(m["body"] for m in bodies)


def test_endless_stream_over_http(fake: FakeProviderServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.state.reply_words = 10**9
    fake.state.chunk_delay_s = 0.001
    fake.state.honour_n = True
    for n in (1, 2):
        stream = oai(fake).chat.completions.create(model="m", messages=MSGS, stream=True, n=n)
        got = [c for _, c in zip(range(40), stream)]
        stream.close()
        assert len(got) == 40 and {c.choices[0].index for c in got} == set(range(n))
    stream_r = oai(fake).responses.create(model="m", input="hi", stream=True)
    assert len([e for _, e in zip(range(40), stream_r)]) == 40
    stream_r.close()
    stream_a = ant(fake).messages.create(model="c", max_tokens=10**9, messages=A_MSGS, stream=True)
    assert len([e for _, e in zip(range(40), stream_a)]) == 40
    stream_a.close()
    fake.state.reset()
    assert oai(fake).chat.completions.create(model="m", messages=MSGS).choices[0].message.content == TWELVE
    assert not [r for r in caplog.records if r.name.startswith("hypercorn") and r.levelno >= 30]
