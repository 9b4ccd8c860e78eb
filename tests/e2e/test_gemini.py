"""Gemini (Google AI) models through the real router, with the official OpenAI and
Anthropic SDKs as clients and the fake Gemini API (tests/fakes/gemini_app.py) upstream.

Every bill is the fake's `usageMetadata` at the catalog's list price (cached prompt
tokens at the cache price, thoughts as output), or, where the fake reported nothing,
the router's own count.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.fakes.gemini_app import count_gemini_input_tokens
from tests.harness import JWT_SECRET, RouterProcess, ant, assert_billed, oai, router_config
from tests.tool_round_trip import (PARIS, PNG_1X1, TOOLS, WEATHER, ask_for_a_tool_call,
                                   weather_question)

FLASH = (Decimal("0.30"), Decimal("2.50"), Decimal("0.03"))  # gemini-2.5-flash list prices
WORDS = " ".join(f"w{i}" for i in range(12))


def cost(prompt: int, output: int, cached: int = 0) -> int:
    """Gemini's promptTokenCount includes the cached tokens, billed at the cache price."""
    exact = (prompt - cached) * FLASH[0] + output * FLASH[1] + cached * FLASH[2]
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def _provider(name: str, url: str, key: str) -> str:
    return f"""
[[providers]]
name = "{name}"
kind = "gemini"
base_url = "{url}"
api_keys = ["{key}"]
timeout_connect_s = 2
timeout_idle_s = 5
"""


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeProviderServer]:
    """A second Gemini upstream, healthy while the first one fails."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def grouter(fake: FakeProviderServer, backup: FakeProviderServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    extra = (_provider("gem", fake.gemini_base_url, "AIzaFakeGeminiKey1")
             + _provider("gem2", backup.gemini_base_url, "AIzaFakeGeminiKey2")
             + _provider("gem429", fake.gemini_base_url, "AIzaFakeGeminiKey3") + """
[[models]]
id = "gem-failover"
route = ["gem:gemini-2.5-flash", "gem2:gemini-2.5-flash"]
input_per_mtok = "0.30"
output_per_mtok = "2.50"
cache_read_per_mtok = "0.03"
max_output_tokens = 8192

[[models]]
id = "gem-limited"
route = ["gem429:gemini-2.5-flash"]
input_per_mtok = "0.30"
output_per_mtok = "2.50"
max_output_tokens = 8192
""")
    data_dir: Path = tmp_path_factory.mktemp("gemini-router")
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, extra)
    with RouterProcess(data_dir, config,
                       env={"AUTH_COOKIE_SECRET": JWT_SECRET}) as proc:
        yield proc


def gemini_calls(fake: FakeProviderServer) -> list[Any]:
    return [r for r in fake.state.snapshot() if r.path.startswith("/v1beta/")]


# --- OpenAI SDK ---------------------------------------------------------------------------

def test_chat_client_reaches_gemini_and_pays_its_usage_metadata(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 3
    clean_fake.state.reasoning_tokens = 7
    account, key = grouter.new_account(2_000_000)
    messages: list[Any] = [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello!"},
                           {"role": "developer", "content": "English only."},
                           {"role": "user", "content": "Tell me a story."}]
    raw = oai(grouter, key).chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=messages, max_tokens=50, temperature=0.5,
        stop=["THE END"], seed=7, user="u-1")
    assert raw.headers["x-aura-model"] == "gemini-2.5-flash"
    assert raw.headers["x-aura-provider"] == "gem"
    answer = raw.parse()
    assert answer.choices[0].message.content == WORDS
    assert answer.choices[0].finish_reason == "stop"
    (call,) = gemini_calls(clean_fake)
    assert call.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == "AIzaFakeGeminiKey1"
    body = call.body
    assert "model" not in body and "messages" not in body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."},
                                                   {"text": "English only."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"] == {"temperature": 0.5, "seed": 7,
                                        "stopSequences": ["THE END"], "maxOutputTokens": 50}
    prompt = count_gemini_input_tokens(body)
    usage = answer.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, 12 + 7)
    assert usage.prompt_tokens_details.cached_tokens == 3
    assert usage.completion_tokens_details.reasoning_tokens == 7
    expected = cost(prompt, 19, cached=3)
    assert_billed(grouter, account, 2_000_000, expected)
    row = grouter.last_usage(key)
    assert row["cost_micros"] == expected and row["cache_read_tokens"] == 3


def test_chat_stream_ends_without_done_upstream_and_shows_the_usage(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = grouter.new_account(2_000_000)
    chunks = list(oai(grouter, key).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "Count."}],
        stream=True, stream_options={"include_usage": True}, max_tokens=5))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "w0 w1 w2 w3 w4"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    (call,) = gemini_calls(clean_fake)
    assert call.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    usage = [c.usage for c in chunks if c.usage]
    prompt = count_gemini_input_tokens(call.body)
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (
        prompt, 5)
    assert_billed(grouter, account, 2_000_000, cost(prompt, 5))


def test_chat_tool_call_round_trip_and_an_inline_image(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.tool_call = PARIS
    account, key = grouter.new_account(2_000_000)
    client = oai(grouter, key)
    messages = weather_question()
    _, choice, tool_call = ask_for_a_tool_call(client, "gemini-3.6-flash", messages=messages,
                                               tools=TOOLS, tool_choice="auto")
    assert tool_call.function.arguments == '{"city":"Paris"}'
    request = gemini_calls(clean_fake)[-1].body
    assert request["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": PNG_1X1}}
    assert request["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather in a city",
        "parametersJsonSchema": WEATHER}]}]
    assert request["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 21C"}]
    second = client.chat.completions.create(model="gemini-3.6-flash", messages=messages,
                                            tools=TOOLS, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in second if c.choices)
    assert text == WORDS
    history = gemini_calls(clean_fake)[-1].body["contents"]
    assert [c["role"] for c in history] == ["user", "model", "user"]
    assert history[1]["parts"] == [{"functionCall": {"name": "get_weather",
                                                     "args": {"city": "Paris"}},
                                    "thoughtSignature": "skip_thought_signature_validator"}]
    assert history[2]["parts"] == [{"functionResponse": {
        "name": "get_weather", "response": {"result": "Sunny, 21C"}}}]
    assert grouter.account(account)["held_micros"] == 0


# --- Anthropic SDK -----------------------------------------------------------------------

def test_messages_client_reaches_gemini_whole_and_streamed(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 2
    account, key = grouter.new_account(2_000_000)
    client = ant(grouter, key)
    message = client.messages.create(model="gemini-2.5-flash", max_tokens=100,
                                     system="Be brief.", extra_body={"top_k": 5},
                                     messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].type == "text" and message.content[0].text == WORDS
    assert message.stop_reason == "end_turn"
    body = gemini_calls(clean_fake)[-1].body
    prompt = count_gemini_input_tokens(body)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"topK": 5, "maxOutputTokens": 100}
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.output_tokens) == (prompt - 2, 2, 12)
    first = cost(prompt, 12, cached=2)
    assert_billed(grouter, account, 2_000_000, first)
    with client.messages.stream(model="gemini-2.5-flash", max_tokens=4,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "w0 w1 w2 w3"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 4
    streamed = count_gemini_input_tokens(gemini_calls(clean_fake)[-1].body)
    assert_billed(grouter, account, 2_000_000, first + cost(streamed, 4, cached=2))


def test_messages_tool_use_round_trip_streamed(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Oslo"})
    clean_fake.state.tool_call_text = "Let me check."
    account, key = grouter.new_account(2_000_000)
    client = ant(grouter, key)
    tools: list[Any] = [{"name": "get_weather", "description": "Weather",
                         "input_schema": WEATHER}]
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    with client.messages.stream(model="gemini-2.5-flash", max_tokens=200, tools=tools,
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    use = final.content[1]
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}
    request = gemini_calls(clean_fake)[-1].body
    assert request["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    messages += [{"role": "assistant", "content": [b.model_dump() for b in final.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "Cloudy", "is_error": False}]}]
    answer = client.messages.create(model="gemini-2.5-flash", max_tokens=200, tools=tools,
                                    messages=messages)
    assert answer.content[0].text == WORDS
    history = gemini_calls(clean_fake)[-1].body["contents"]
    assert history[1]["parts"][0] == {"text": "Let me check."}
    assert history[1]["parts"][1] == {"functionCall": {"name": "get_weather",
                                                       "args": {"city": "Oslo"}}}
    assert history[2]["parts"] == [{"functionResponse": {
        "name": "get_weather", "response": {"result": "Cloudy"}}}]
    assert grouter.account(account)["held_micros"] == 0


# --- faults -----------------------------------------------------------------------------

def test_rate_limit_is_a_429_with_googles_retry_delay_as_retry_after(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.fail_status = 429  # RetryInfo retryDelay "1s" in the body, no header
    account, key = grouter.new_account(1_000_000)
    with pytest.raises(openai.RateLimitError) as raised:
        oai(grouter, key).chat.completions.create(
            model="gem-limited", messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "1"
    assert_billed(grouter, account, 1_000_000, 0)


def test_server_error_before_the_first_token_fails_over_or_is_a_502(
        grouter: RouterProcess, clean_fake: FakeProviderServer,
        backup: FakeProviderServer) -> None:
    backup.state.reset()
    clean_fake.state.fail_status = 500
    account, key = grouter.new_account(1_000_000)
    client = oai(grouter, key)
    raw = client.chat.completions.with_raw_response.create(
        model="gem-failover", messages=[{"role": "user", "content": "Hi"}])
    assert raw.headers["x-aura-provider"] == "gem2"
    assert raw.parse().choices[0].message.content == WORDS
    spent = cost(count_gemini_input_tokens(gemini_calls(backup)[-1].body), 12)
    assert_billed(grouter, account, 1_000_000, spent)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 502
    clean_fake.state.fail_status = None
    clean_fake.state.error_before_content = "UNAVAILABLE"
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code >= 500
    assert_billed(grouter, account, 1_000_000, spent)


def test_stream_cut_mid_way_is_billed_for_what_streamed(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cut_after_chunks = 4
    account, key = grouter.new_account(1_000_000)
    text: list[str] = []
    with pytest.raises(anthropic.APIStatusError):
        with ant(grouter, key).messages.stream(
                model="gemini-2.5-flash", max_tokens=50,
                messages=[{"role": "user", "content": "Count."}]) as stream:
            for piece in stream.text_stream:
                text.append(piece)
    assert "".join(text) == "w0 w1 w2 w3"
    prompt = count_gemini_input_tokens(gemini_calls(clean_fake)[-1].body)
    row = grouter.last_usage(key)
    assert (row["input_tokens"], row["output_tokens"]) == (prompt, 4)
    assert_billed(grouter, account, 1_000_000, cost(prompt, 4))


def test_stream_without_usage_metadata_is_billed_from_the_routers_count(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.usage_mode = "none"
    account, key = grouter.new_account(1_000_000)
    chunks = list(oai(grouter, key).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "Count."}],
        stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WORDS
    (usage,) = [c.usage for c in chunks if c.usage]
    assert usage.completion_tokens == 12 and usage.prompt_tokens > 0
    assert (usage.model_extra or {}).get("estimated") is True
    row = grouter.last_usage(key)
    assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, 12)
    assert_billed(grouter, account, 1_000_000, cost(usage.prompt_tokens, 12))


def test_responses_client_reaches_gemini_whole_and_streamed(
        grouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = grouter.new_account(1_000_000)
    client = oai(grouter, key)
    response = client.responses.create(model="gemini-2.5-flash", instructions="Be brief.",
                                       input="Hi", max_output_tokens=100)
    assert response.status == "completed" and response.output_text == WORDS
    body = gemini_calls(clean_fake)[-1].body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    prompt = count_gemini_input_tokens(body)
    assert response.usage is not None and (response.usage.input_tokens,
                                           response.usage.output_tokens) == (prompt, 12)
    with client.responses.stream(model="gemini-2.5-flash", input="Hi",
                                 max_output_tokens=100) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == WORDS and final.output_text == WORDS
    streamed = count_gemini_input_tokens(gemini_calls(clean_fake)[-1].body)
    assert_billed(grouter, account, 1_000_000, cost(prompt, 12) + cost(streamed, 12))
