"""/v1/responses with the official OpenAI SDK: passed through to OpenAI-kind providers,
translated for Anthropic-kind ones, streaming and not, with function calls; billed from
the provider's reported usage."""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import pytest

from tests.fakes import FakeProviderServer, count_input_tokens, count_response_input_tokens
from tests.harness import RouterProcess, assert_billed, oai

HAIKU = (Decimal("1.00"), Decimal("5.00"), Decimal("0.10"))
GPT_MINI = (Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}


def cost(prices: tuple[Decimal, ...], inp: int, out: int, read: int = 0) -> int:
    exact = inp * prices[0] + out * prices[1] + read * prices[2]
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def test_responses_pass_through_to_an_openai_model(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 2
    account, key = router.new_account(2_000_000)
    raw = oai(router, key).responses.with_raw_response.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Tell me a story.",
        max_output_tokens=50)
    assert raw.headers["x-aura-provider"] == "oai"
    response = raw.parse()
    assert response.output_text == " ".join(f"w{i}" for i in range(12))
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/responses"
    assert upstream.body["max_output_tokens"] == 50
    prompt = count_response_input_tokens("Tell me a story.", "Be brief.")
    assert response.usage.input_tokens == prompt
    assert_billed(router, account, 2_000_000, cost(GPT_MINI, prompt - 2, 12, read=2))


def test_responses_stream_passes_through_and_bills_the_completed_usage(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(2_000_000)
    with oai(router, key).responses.stream(model="gpt-4o-mini", input="Stream it.",
                                           max_output_tokens=5) as stream:
        events = list(stream)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    # a cut answer ends with response.incomplete (the SDK's final-response helper, as
    # against OpenAI itself, only accepts response.completed)
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert text == "w0 w1 w2 w3 w4"
    assert final.status == "incomplete" and final.usage.output_tokens == 5
    assert_billed(router, account, 2_000_000,
                  cost(GPT_MINI, final.usage.input_tokens, 5))


def test_responses_reach_a_claude_model(router: RouterProcess,
                                        clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(2_000_000)
    response = oai(router, key).responses.create(
        model="claude-haiku-4-5", instructions="Be brief.", max_output_tokens=40,
        input=[{"role": "developer", "content": "Answer in English."},
               {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
               {"role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
               {"role": "user", "content": "A story?"}])
    assert response.output_text == " ".join(f"w{i}" for i in range(12))
    assert response.status == "completed"
    body = clean_fake.state.last.body
    assert clean_fake.state.last.path == "/v1/messages"
    assert body["system"] == [{"type": "text", "text": "Be brief."},
                              {"type": "text", "text": "Answer in English."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 40
    prompt = count_input_tokens(body["messages"], body["system"])
    assert response.usage.input_tokens == prompt and response.usage.output_tokens == 12
    assert_billed(router, account, 2_000_000, cost(HAIKU, prompt, 12))


def test_responses_stream_from_a_claude_model_satisfies_the_sdk_accumulator(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(2_000_000)
    with oai(router, key).responses.stream(model="claude-haiku-4-5", input="Stream it.",
                                           max_output_tokens=6) as stream:
        events = list(stream)
    final = events[-1].response
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.incomplete"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "w0 w1 w2 w3 w4 w5"
    assert final.usage.output_tokens == 6
    assert_billed(router, account, 2_000_000, cost(HAIKU, final.usage.input_tokens, 6))


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_call_round_trip(router: RouterProcess,
                                            clean_fake: FakeProviderServer, model: str,
                                            stream: bool) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Lima"})
    account, key = router.new_account(5_000_000)
    client = oai(router, key)
    items: list[Any] = [{"role": "user", "content": "Weather in Lima?"}]
    if stream:
        with client.responses.stream(model=model, input=items, tools=[TOOL],
                                     max_output_tokens=200) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(model=model, input=items, tools=[TOOL],
                                           max_output_tokens=200)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Lima"}
    items += [{"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
               "arguments": calls[0].arguments},
              {"type": "function_call_output", "call_id": calls[0].call_id,
               "output": "25 C"}]
    final = client.responses.create(model=model, input=items, tools=[TOOL],
                                    max_output_tokens=200)
    assert final.output_text.startswith("w0")
    if model.startswith("claude"):
        history = clean_fake.state.last.body["messages"]
        assert history[1]["content"][0]["type"] == "tool_use"
        assert history[2]["content"][0] == {"type": "tool_result",
                                            "tool_use_id": calls[0].call_id,
                                            "content": "25 C"}
    assert router.account(account)["held_micros"] == 0


@pytest.mark.parametrize("body,field", [
    ({"input": "x", "previous_response_id": "resp_123"}, "previous_response_id"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": []}, "input"),
    ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}],
      "model": "claude-haiku-4-5"}, "input[0].call_id"),
    ({"input": "x", "text": {"format": {"type": "json_object"}},
      "model": "claude-haiku-4-5"}, "text.format"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
     "file_id"),
    ({"input": "x", "service_tier": "priority"}, "service_tier"),
])
def test_bad_responses_input_is_a_400_naming_the_field(
        router: RouterProcess, clean_fake: FakeProviderServer, body: dict[str, Any],
        field: str) -> None:
    account, key = router.new_account(1_000_000)
    response = httpx.post(router.base_url + "/v1/responses",
                          json={"model": "gpt-4o-mini", **body},
                          headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field
    assert clean_fake.state.received == []
    assert_billed(router, account, 1_000_000, 0)
