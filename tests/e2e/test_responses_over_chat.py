"""/v1/responses to a provider that speaks only Chat Completions (llama.cpp, vLLM, Ollama,
OpenRouter, any OpenAI-compatible server), with the official OpenAI SDK: translated
through the Responses -> Messages -> Chat bridges, streaming and not, with function
calls, billed from the usage the server reported."""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal
from typing import Any, Iterator

import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, assert_billed, every_kind_config, oai

PRICES = (Decimal("1"), Decimal("2"))  # USD per million tokens, input and output
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}


def cost(inp: int, out: int) -> int:
    return int((inp * PRICES[0] + out * PRICES[1]).to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def chat_only(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[RouterProcess]:
    config = every_kind_config(fake)  # "llama": a Chat-only server, PRICES below
    with RouterProcess(tmp_path_factory.mktemp("responses-over-chat"), config) as proc:
        yield proc


def test_a_response_from_a_chat_only_server(chat_only: RouterProcess,
                                            clean_fake: FakeProviderServer) -> None:
    account, key = chat_only.new_account(1_000_000)
    raw = oai(chat_only, key).responses.with_raw_response.create(
        model="llama", instructions="Be brief.", max_output_tokens=40,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
               {"role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
               {"role": "user", "content": "A story?"}])
    assert raw.headers["x-aura-provider"] == "local"
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == " ".join(f"w{i}" for i in range(12))
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/chat/completions"
    assert upstream.body["model"] == "llama-3"
    assert [(m["role"], m["content"]) for m in upstream.body["messages"]] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
        ("user", "A story?")]
    assert upstream.body.get("max_tokens", upstream.body.get("max_completion_tokens")) == 40
    usage = response.usage
    assert usage.output_tokens == 12 and usage.input_tokens > 0
    assert_billed(chat_only, account, 1_000_000, cost(usage.input_tokens, 12))


def test_a_streamed_response_from_a_chat_only_server_satisfies_the_sdk(
        chat_only: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = chat_only.new_account(1_000_000)
    with oai(chat_only, key).responses.stream(model="llama", input="Stream it.",
                                              max_output_tokens=6) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.incomplete"  # cut at the 6 tokens asked for
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.output_text == "w0 w1 w2 w3 w4 w5"
    assert clean_fake.state.last.body["stream"] is True
    assert final.usage.output_tokens == 6
    assert_billed(chat_only, account, 1_000_000, cost(final.usage.input_tokens, 6))


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip_through_a_chat_only_server(
        chat_only: RouterProcess, clean_fake: FakeProviderServer, stream: bool) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Lima"})
    account, key = chat_only.new_account(1_000_000)
    client = oai(chat_only, key)
    items: list[Any] = [{"role": "user", "content": "Weather in Lima?"}]
    if stream:
        with client.responses.stream(model="llama", input=items, tools=[TOOL],
                                     max_output_tokens=200) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(model="llama", input=items, tools=[TOOL],
                                           max_output_tokens=200)
    assert clean_fake.state.last.body["tools"][0]["function"]["name"] == "get_weather"
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Lima"}
    items += [{"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
               "arguments": calls[0].arguments},
              {"type": "function_call_output", "call_id": calls[0].call_id,
               "output": "25 C"}]
    final = client.responses.create(model="llama", input=items, tools=[TOOL],
                                    max_output_tokens=200)
    assert final.output_text.startswith("w0")
    history = clean_fake.state.last.body["messages"]
    assert history[1]["role"] == "assistant"
    assert history[1]["tool_calls"][0]["id"] == calls[0].call_id
    assert history[2] == {"role": "tool", "tool_call_id": calls[0].call_id,
                          "content": "25 C"}
    assert chat_only.account(account)["held_micros"] == 0
