"""Any model from any client: the official SDKs crossing formats through the real router.

The OpenAI SDK drives an Anthropic-kind model and the Anthropic SDK an OpenAI-kind
model, streaming and not, with system prompts, images, tools and tool results; the bill
is the provider's reported usage at the model's price, whatever format the client saw.
"""

from __future__ import annotations

import base64
import json
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import pytest

from tests.fakes import FakeProviderServer, count_input_tokens
from tests.harness import RouterProcess, ant, assert_billed, oai
from tests.tool_round_trip import PNG_1X1, WEATHER

HAIKU = (Decimal("1.00"), Decimal("5.00"), Decimal("0.10"), Decimal("1.25"))
GPT_MINI = (Decimal("0.15"), Decimal("0.60"), Decimal("0.075"), Decimal("0.15"))
WEATHER_TOOL_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER}}
WEATHER_TOOL_ANTHROPIC = {"name": "get_weather", "description": "Current weather in a city",
                          "input_schema": WEATHER}


def cost(prices: tuple[Decimal, ...], inp: int, out: int, read: int = 0, write: int = 0) -> int:
    exact = inp * prices[0] + out * prices[1] + read * prices[2] + write * prices[3]
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


# --- OpenAI SDK -> Anthropic-kind model ---------------------------------------------------

def test_openai_sdk_reaches_a_claude_model_with_system_prompt_and_history(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 2
    account, key = router.new_account(2_000_000)
    messages: list[Any] = [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello! How can I help?"},
                           {"role": "developer", "content": "Answer in English."},
                           {"role": "user", "content": "Tell me a story."}]
    answer = oai(router, key).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=messages, max_tokens=50, temperature=0.5,
        stop=["THE END"], user="end-user-7")
    assert answer.headers["x-aura-model"] == "claude-haiku-4-5"
    assert answer.headers["x-aura-provider"] == "ant"
    completion = answer.parse()
    assert completion.choices[0].message.content == " ".join(f"w{i}" for i in range(12))
    assert completion.choices[0].finish_reason == "stop"
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/messages"
    assert upstream.body["system"] == [{"type": "text", "text": "Be brief."},
                                       {"type": "text", "text": "Answer in English."}]
    assert [m["role"] for m in upstream.body["messages"]] == ["user", "assistant", "user"]
    assert upstream.body["max_tokens"] == 50
    assert upstream.body["stop_sequences"] == ["THE END"]
    assert upstream.body["metadata"] == {"user_id": "end-user-7"}
    assert upstream.body["temperature"] == 0.5
    prompt = count_input_tokens(upstream.body["messages"], upstream.body["system"])
    # OpenAI counts cached tokens inside prompt_tokens
    assert completion.usage.prompt_tokens == prompt
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    assert_billed(router, account, 2_000_000, cost(HAIKU, prompt - 2, 12, read=2))


def test_openai_sdk_streams_a_claude_model_with_usage_when_asked(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(2_000_000)
    messages = [{"role": "user", "content": "Stream please."}]
    chunks = list(oai(router, key).chat.completions.create(
        model="claude-haiku-4-5", messages=messages, stream=True, max_tokens=5,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "w0 w1 w2 w3 w4"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == 5
    assert_billed(router, account, 2_000_000, cost(HAIKU, usage[0].prompt_tokens, 5))

    plain = list(oai(router, key).chat.completions.create(
        model="claude-haiku-4-5", messages=messages, stream=True, max_tokens=3))
    assert all(c.choices for c in plain), "no usage chunk unless the client asked"


def test_openai_sdk_sends_images_to_a_claude_model(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(5_000_000)
    oai(router, key).chat.completions.create(model="claude-haiku-4-5", max_tokens=5, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}])
    blocks = clean_fake.state.last.body["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64",
                                                     "media_type": "image/png",
                                                     "data": PNG_1X1}}
    assert blocks[2] == {"type": "image", "source": {"type": "url",
                                                     "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_tool_call_round_trip_with_a_claude_model(
        router: RouterProcess, clean_fake: FakeProviderServer, stream: bool) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Paris", "unit": "celsius"})
    account, key = router.new_account(5_000_000)
    client = oai(router, key)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs: dict[str, Any] = dict(model="claude-haiku-4-5", messages=messages,
                                  tools=[WEATHER_TOOL_OPENAI], tool_choice="required",
                                  parallel_tool_calls=False, max_tokens=200)
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        call = calls[0]
    else:
        answer = client.chat.completions.create(**kwargs)
        finish = answer.choices[0].finish_reason
        tool_call = answer.choices[0].message.tool_calls[0]
        call = {"id": tool_call.id, "name": tool_call.function.name,
                "arguments": tool_call.function.arguments}
    assert finish == "tool_calls"
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris", "unit": "celsius"}
    upstream = clean_fake.state.last.body
    assert upstream["tools"] == [WEATHER_TOOL_ANTHROPIC]
    assert upstream["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 C and sunny"}]
    final = client.chat.completions.create(**{**kwargs, "messages": messages,
                                              "tool_choice": "auto"})
    assert final.choices[0].message.content.startswith("w0")
    history = clean_fake.state.last.body["messages"]
    assert history[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call["id"], "name": "get_weather",
         "input": {"city": "Paris", "unit": "celsius"}}]}
    assert history[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call["id"], "content": "18 C and sunny"}]}
    assert router.account(account)["held_micros"] == 0


# --- Anthropic SDK -> OpenAI-kind model ---------------------------------------------------

def test_anthropic_sdk_reaches_a_gpt_model(router: RouterProcess,
                                           clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 3
    account, key = router.new_account(2_000_000)
    message = ant(router, key).messages.create(
        model="gpt-4o-mini", max_tokens=40, system="Be brief.", extra_body={"top_k": 5},
        metadata={"user_id": "u-42"}, stop_sequences=["END"],
        messages=[{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": [{"type": "text", "text": "A story?",
                                                "cache_control": {"type": "ephemeral"}}]}],
        extra_query={"beta": "true"})
    assert message.content[0].type == "text"
    assert message.content[0].text == " ".join(f"w{i}" for i in range(12))
    assert message.stop_reason == "end_turn"
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/chat/completions", "no Anthropic query string upstream"
    body = upstream.body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][3] == {"role": "user",
                                   "content": [{"type": "text", "text": "A story?"}]}
    assert body["max_completion_tokens"] == 40 and "top_k" not in body
    assert body["user"] == "u-42" and body["stop"] == ["END"]
    prompt = count_input_tokens(body["messages"])
    assert message.usage.input_tokens == prompt - 3
    assert message.usage.cache_read_input_tokens == 3
    assert_billed(router, account, 2_000_000, cost(GPT_MINI, prompt - 3, 12, read=3))


def test_anthropic_sdk_streams_a_gpt_model_and_is_billed_what_openai_reported(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(2_000_000)
    with ant(router, key).messages.stream(
            model="gpt-4o-mini", max_tokens=7,
            messages=[{"role": "user", "content": "Stream a story."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "w0 w1 w2 w3 w4 w5 w6"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 7
    upstream = clean_fake.state.last.body
    assert upstream["stream_options"] == {"include_usage": True}
    prompt = count_input_tokens(upstream["messages"])
    assert final.usage.input_tokens == prompt
    assert_billed(router, account, 2_000_000, cost(GPT_MINI, prompt, 7))


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_use_round_trip_with_a_gpt_model(
        router: RouterProcess, clean_fake: FakeProviderServer, stream: bool) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Oslo"})
    _, key = router.new_account(5_000_000)
    client = ant(router, key)
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    kwargs: dict[str, Any] = dict(model="gpt-4o-mini", max_tokens=300, messages=messages,
                                  tools=[WEATHER_TOOL_ANTHROPIC],
                                  tool_choice={"type": "tool", "name": "get_weather"})
    if stream:
        with client.messages.stream(**kwargs) as events:
            final = events.get_final_message()
    else:
        final = client.messages.create(**kwargs)
    assert final.stop_reason == "tool_use"
    tool_use = [b for b in final.content if b.type == "tool_use"][0]
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Oslo"}
    upstream = clean_fake.state.last.body
    assert upstream["tools"] == [WEATHER_TOOL_OPENAI]
    assert upstream["tool_choice"] == {"type": "function",
                                       "function": {"name": "get_weather"}}

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                   for b in final.content]},
                 {"role": "user", "content": [
                     {"type": "tool_result", "tool_use_id": tool_use.id,
                      "content": [{"type": "text", "text": "-3 C"}]},
                     {"type": "text", "text": "Thanks!"}]}]
    clean_fake.state.tool_call = None
    answer = client.messages.create(**{**kwargs, "messages": messages,
                                       "tool_choice": {"type": "auto"}})
    assert answer.content[0].text.startswith("w0")
    history = clean_fake.state.last.body["messages"]
    assert history[1]["tool_calls"] == [{"id": tool_use.id, "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert history[2] == {"role": "tool", "tool_call_id": tool_use.id, "content": "-3 C"}
    assert history[3] == {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]}


def test_anthropic_sdk_sends_images_to_a_gpt_model(router: RouterProcess,
                                                  clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(5_000_000)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_1X1}}
    ant(router, key).messages.create(model="gpt-4o-mini", max_tokens=5, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "Describe these."}, image,
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}])
    parts = clean_fake.state.last.body["messages"][0]["content"]
    assert parts[1] == {"type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}


def test_claude_code_style_request_reaches_a_gpt_model(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(5_000_000)
    answer = ant(router, key).messages.create(
        model="gpt-4o-mini", max_tokens=100, extra_query={"beta": "true"},
        extra_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        system=[{"type": "text", "text": "You are Claude Code.",
                 "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "List files"}],
        extra_body={"messages": [{"role": "system", "content": "Extra context."},
                                 {"role": "user", "content": "List files"}]},
        tools=[{**WEATHER_TOOL_ANTHROPIC, "cache_control": {"type": "ephemeral"},
                "defer_loading": True}],
        metadata={"user_id": "user_abc_account_def_session_ghi"})
    assert answer.content[0].text.startswith("w0")
    body = clean_fake.state.last.body
    assert body["messages"][0] == {"role": "system",
                                   "content": "You are Claude Code.\n\nExtra context."}
    assert "reasoning_effort" not in body, "gpt-4o-mini does not reason"
    assert body["tools"] == [WEATHER_TOOL_OPENAI]
    assert "anthropic-beta" not in clean_fake.state.last.headers


# --- what cannot be translated is a 400 naming the field, and nothing is held or sent -------

BAD_CROSSINGS: list[tuple[str, str, dict[str, Any], str]] = [
    ("/v1/chat/completions", "claude-haiku-4-5",
     {"messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {
          "type": "array"}}}]}, "tools[0].function.parameters"),
    ("/v1/chat/completions", "claude-haiku-4-5",
     {"messages": [{"role": "user", "content": "x"},
                   {"role": "tool", "tool_call_id": "call_nope", "content": "42"}]},
     "messages[1].tool_call_id"),
    ("/v1/chat/completions", "claude-haiku-4-5",
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
         "url": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}}]}]},
     "messages[0].content[0].image_url"),
    ("/v1/chat/completions", "claude-haiku-4-5",
     {"messages": [{"role": "user", "content": "x"}], "temperature": 1.5}, "temperature"),
    ("/v1/chat/completions", "claude-haiku-4-5",
     {"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ("/v1/messages", "gpt-4o-mini",
     {"messages": [{"role": "user", "content": "x"}],
      "tools": [{"name": "f", "input_schema": {"type": "string"}}]}, "tools[0].input_schema"),
    ("/v1/messages", "gpt-4o-mini",
     {"messages": [{"role": "user", "content": [
         {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}]},
     "messages[0].content[0].tool_use_id"),
    ("/v1/messages", "gpt-4o-mini",
     {"messages": [{"role": "user", "content": [{"type": "image", "source": {
         "type": "base64", "media_type": "image/png", "data": "aGVsbG8gd29ybGQ="}}]}]},
     "messages[0].content[0].source"),
    ("/v1/messages", "gpt-4o-mini",
     {"messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
]


@pytest.mark.parametrize("path,model,body,field", BAD_CROSSINGS)
def test_untranslatable_input_is_a_400_naming_the_field(
        router: RouterProcess, clean_fake: FakeProviderServer, path: str, model: str,
        body: dict[str, Any], field: str) -> None:
    account, key = router.new_account(1_000_000)
    response = httpx.post(router.base_url + path, json={"model": model, "max_tokens": 10,
                                                        **body},
                          headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert field in error["message"]
    if path == "/v1/chat/completions":
        assert error["param"] == field
    else:
        assert response.json()["type"] == "error"
    assert clean_fake.state.received == []
    assert_billed(router, account, 1_000_000, 0)
