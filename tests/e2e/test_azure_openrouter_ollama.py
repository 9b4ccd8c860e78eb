"""Azure OpenAI, OpenRouter and Ollama, and LLM_PROVIDER_MODE, through the real router with
the official SDKs, to fakes that check what arrives (api-version, api-key, deployment)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message

from router.catalog import build_catalog
from tests.fakes import FakeProviderServer, count_input_tokens
from tests.harness import RouterProcess, ant, assert_billed, oai, stream_until_error
from tests.tool_round_trip import (DATA_URL, PARIS, PNG_1X1, TOOLS, WEATHER, the_tool_call,
                                   weather_question)

MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the billing router."}]
TEXT = " ".join(f"w{i}" for i in range(12))
_SHIPPED = build_catalog(toml={}, toml_text="", path=None, settings={}, env={}).models


# the config's own models: (input, output) USD per million tokens
CONFIGURED = {"v1-4o": (Decimal("2.50"), Decimal("10.00")),
              "llama-local": (Decimal("0.10"), Decimal("0.20")),
              "az-limited": (Decimal("0.15"), Decimal("0.60")),
              "az-failover": (Decimal("0.15"), Decimal("0.60")),
              "az-alone": (Decimal("0.15"), Decimal("0.60")),
              "or-limited": (Decimal("3.00"), Decimal("15.00"))}


def cost(model: str, prompt: int, completion: int) -> int:
    """The exact bill, in micro-USD, of a call without cached tokens."""
    inp, out = CONFIGURED.get(model) or (_SHIPPED[model].prices.input,
                                         _SHIPPED[model].prices.output)
    exact = prompt * inp + completion * out
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def ask(client: anthropic.Anthropic, stream: bool, **request: Any) -> tuple[str, Message]:
    """A Messages request, streamed or not: the text the client got, and the message."""
    if stream:
        with client.messages.stream(**request) as events:
            text = "".join(events.text_stream)
            return text, events.get_final_message()
    message = client.messages.create(**request)
    return message.content[0].text, message


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeProviderServer]:
    """A second Azure resource, healthy while the first one fails."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def azure_router(fake: FakeProviderServer, backup: FakeProviderServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """LLM_PROVIDER_MODE names the Azure provider `az`: what its deployments list goes
    there, the rest to its own provider."""
    config = f"""
[[providers]]
name = "az"
kind = "azure"
base_url = "{fake.base_url}"
api_keys = ["azure-key-1"]
api_version = "2024-10-21"
deployments = {{ "gpt-4o-mini" = "my-4o-mini" }}
timeout_connect_s = 2

[[providers]]
name = "azv1"
kind = "azure"
base_url = "{fake.base_url}/openai/v1"
api_keys = ["azure-key-2"]
deployments = {{ "gpt-4o" = "my-4o" }}

[[providers]]
name = "oai"
kind = "openai"
base_url = "{fake.openai_base_url}"
api_keys = ["sk-fake-openai-1"]

[[providers]]
name = "or"
kind = "openrouter"
base_url = "{fake.openai_base_url}"
api_keys = ["sk-or-1"]
headers = {{ "HTTP-Referer" = "https://app.example.com" }}

[[providers]]
name = "az429"
kind = "azure"
base_url = "{fake.base_url}"
api_keys = ["azure-key-429"]
deployments = {{ "gpt-4o-mini" = "my-4o-mini" }}

[[providers]]
name = "az5"
kind = "azure"
base_url = "{fake.base_url}"
api_keys = ["azure-key-5"]
deployments = {{ "gpt-4o-mini" = "my-4o-mini" }}
timeout_connect_s = 2
timeout_idle_s = 5

[[providers]]
name = "az2"
kind = "azure"
base_url = "{backup.base_url}"
api_keys = ["azure-key-backup"]
deployments = {{ "gpt-4o-mini" = "my-4o-mini" }}

[[providers]]
name = "or429"
kind = "openrouter"
base_url = "{fake.openai_base_url}"
api_keys = ["sk-or-429"]

[[models]]
id = "or-limited"
route = ["or429:anthropic/claude-sonnet-4.5"]
input_per_mtok = "3.00"
output_per_mtok = "15.00"

[[models]]
id = "az-limited"
route = ["az429:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"

[[models]]
id = "az-failover"
route = ["az5:gpt-4o-mini", "az2:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"

[[models]]
id = "az-alone"
route = ["az5:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"

[[models]]
id = "v1-4o"
route = ["azv1:gpt-4o"]
input_per_mtok = "2.50"
output_per_mtok = "10.00"

[[models]]
id = "claude-sonnet-4-5"
route = ["or:anthropic/claude-sonnet-4.5"]

[[models]]
id = "llama-local"
route = ["ollama:llama3.2"]
input_per_mtok = "0.10"
output_per_mtok = "0.20"
"""
    data_dir: Path = tmp_path_factory.mktemp("azure-router")
    with RouterProcess(data_dir, config, env={"LLM_PROVIDER_MODE": "az",
                                              "OLLAMA_BASE_URL": fake.base_url}) as proc:
        yield proc


@pytest.fixture(scope="module")
def openrouter_router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[RouterProcess]:
    """Everything through OpenRouter (env-implied), Anthropic for what it does not list;
    an env-implied Azure provider beside them."""
    data_dir: Path = tmp_path_factory.mktemp("openrouter-router")
    with RouterProcess(data_dir, None, env={
            "LLM_PROVIDER_MODE": "openrouter", "OPENROUTER_API_KEY": "sk-or-env",
            "OPENROUTER_BASE_URL": fake.openai_base_url, "ANTHROPIC_API_KEY": "sk-ant-fake-1",
            "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
            "AZURE_OPENAI_ENDPOINT": fake.base_url + "/", "AZURE_OPENAI_API_KEY": "az-env-key",
            "AZURE_OPENAI_API_VERSION": "2025-04-01-preview"}) as proc:
        yield proc


# --- Azure: the deployments API ----------------------------------------------------------

def test_chat_client_reaches_the_deployment_with_api_version_and_api_key(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = azure_router.new_account(5_000_000)
    raw = oai(azure_router, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=40)
    answer = raw.parse()
    assert raw.headers["x-aura-provider"] == "az"
    assert answer.choices[0].message.content == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/openai/deployments/my-4o-mini/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "azure-key-1" and "authorization" not in sent.headers
    assert sent.body["max_completion_tokens"] == 40 and "max_tokens" not in sent.body
    expected = cost("gpt-4o-mini", answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert azure_router.last_usage(key)["cost_micros"] == expected
    assert azure_router.account(account)["balance_micros"] == 5_000_000 - expected


def test_streamed_deployment_hides_azures_annotation_chunk_and_bills_its_usage(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = azure_router.new_account(5_000_000)
    chunks = list(oai(azure_router, key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks), "neither Azure's annotation nor the usage chunk"
    assert all(c.id for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT
    sent = clean_fake.state.last
    assert sent.path.endswith("?api-version=2024-10-21")
    assert sent.body["stream_options"] == {"include_usage": True}
    recent = azure_router.last_usage(key)
    assert not recent.get("estimated")
    assert recent["cost_micros"] == cost("gpt-4o-mini", count_input_tokens(
        sent.body["messages"]), 12)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_client_reaches_the_deployment_through_the_bridge(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, stream: bool) -> None:
    _, key = azure_router.new_account(5_000_000)
    text, message = ask(ant(azure_router, key), stream, model="gpt-4o-mini", max_tokens=50,
                        system="Be brief.", messages=[
                            {"role": "user", "content": "Say hello to the billing router."}])
    assert text == TEXT and message.stop_reason == "end_turn"
    sent = clean_fake.state.last
    assert sent.path.startswith("/openai/deployments/my-4o-mini/chat/completions?")
    assert sent.headers["api-key"] == "azure-key-1"
    assert sent.body["max_completion_tokens"] == 50
    prompt = count_input_tokens(sent.body["messages"])
    assert message.usage.input_tokens == prompt and message.usage.output_tokens == 12
    assert azure_router.last_usage(key)["cost_micros"] == cost("gpt-4o-mini", prompt, 12)


def test_azure_content_filter_refusal_reaches_the_client_and_costs_nothing(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = azure_router.new_account(5_000_000)
    with pytest.raises(openai.BadRequestError) as raised:
        oai(azure_router, key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "FILTER_ME please"}])
    assert "content management policy" in raised.value.message
    assert azure_router.account(account)["balance_micros"] == 5_000_000


@pytest.mark.parametrize("stream", [False, True])
def test_a_filtered_completion_is_a_refusal_for_a_messages_client(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, stream: bool) -> None:
    _, key = azure_router.new_account(5_000_000)
    _, message = ask(ant(azure_router, key), stream, model="gpt-4o-mini", max_tokens=50,
                     messages=[{"role": "user", "content": "FILTER_OUTPUT this"}])
    assert message.stop_reason == "refusal"
    prompt = count_input_tokens(clean_fake.state.last.body["messages"])
    assert azure_router.last_usage(key)["cost_micros"] == cost("gpt-4o-mini", prompt, 12)


def test_a_key_azure_refuses_is_a_502_that_names_no_key(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.expected_api_key = "another-key"
    _, key = azure_router.new_account(5_000_000)
    with pytest.raises(openai.APIStatusError) as raised:
        oai(azure_router, key).chat.completions.create(model="gpt-4o-mini",
                                                         messages=MESSAGES)
    assert raised.value.status_code == 502
    assert "azure-key-1" not in raised.value.response.text


# --- Azure: the v1 API -------------------------------------------------------------------

def test_v1_api_takes_the_deployment_in_the_body_for_chat_and_responses(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = azure_router.new_account(5_000_000)
    answer = oai(azure_router, key).chat.completions.create(model="v1-4o", messages=MESSAGES)
    sent = clean_fake.state.last
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.body["model"] == "my-4o" and sent.headers["api-key"] == "azure-key-2"
    assert azure_router.last_usage(key)["cost_micros"] == cost(
        "v1-4o", answer.usage.prompt_tokens, answer.usage.completion_tokens)
    response = oai(azure_router, key).responses.create(model="v1-4o", input="Hello there.")
    assert response.output_text == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/openai/v1/responses" and sent.body["model"] == "my-4o"
    assert sent.headers["api-key"] == "azure-key-2"
    assert azure_router.last_usage(key)["cost_micros"] == cost(
        "v1-4o", response.usage.input_tokens, response.usage.output_tokens)


# --- the provider mode: what the provider cannot serve goes to its own provider ---------------

def test_a_model_the_mode_provider_cannot_serve_falls_back_to_its_own_provider(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = azure_router.new_account(5_000_000)
    raw = oai(azure_router, key).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES)
    assert raw.headers["x-aura-provider"] == "oai"
    sent = clean_fake.state.last
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "gpt-4o"
    assert sent.headers["authorization"] == "Bearer sk-fake-openai-1"
    usage = raw.parse().usage
    assert azure_router.last_usage(key)["cost_micros"] == cost(
        "gpt-4o", usage.prompt_tokens, usage.completion_tokens)


# --- OpenRouter and Ollama ----------------------------------------------------------------

def test_openrouter_gets_its_headers_usage_field_and_model_id_and_we_bill_our_price(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = azure_router.new_account(5_000_000)
    chunks = list(oai(azure_router, key).chat.completions.create(
        model="claude-sonnet-4-5", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "anthropic/claude-sonnet-4.5"
    assert sent.body["usage"] == {"include": True}
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.headers["authorization"] == "Bearer sk-or-1"
    assert sent.headers["http-referer"] == "https://app.example.com"
    assert sent.headers["x-title"] == "Aura Router"
    assert azure_router.last_usage(key)["cost_micros"] == cost(
        "claude-sonnet-4-5", count_input_tokens(sent.body["messages"]), 12)


def test_ollama_implied_by_its_base_url_is_spoken_to_on_v1(
        azure_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = azure_router.new_account(5_000_000)
    chunks = list(oai(azure_router, key).chat.completions.create(
        model="llama-local", messages=MESSAGES, stream=True, max_tokens=30))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "llama3.2"
    assert "authorization" not in sent.headers
    assert sent.body["max_tokens"] == 30 and "max_completion_tokens" not in sent.body
    assert sent.body["stream_options"] == {"include_usage": True}
    assert azure_router.last_usage(key)["cost_micros"] == cost(
        "llama-local", count_input_tokens(sent.body["messages"]), 12)


# --- LLM_PROVIDER_MODE=openrouter --------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_openrouter_mode_sends_a_catalog_model_under_its_openrouter_id(
        openrouter_router: RouterProcess, clean_fake: FakeProviderServer, stream: bool) -> None:
    account, key = openrouter_router.new_account(5_000_000)
    text, _ = ask(ant(openrouter_router, key), stream, model="claude-sonnet-4-5",
                  max_tokens=64,
                  messages=[{"role": "user", "content": "Say hello to the billing router."}])
    assert text == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "anthropic/claude-sonnet-4.5"
    assert sent.headers["authorization"] == "Bearer sk-or-env"
    assert sent.headers["x-title"] == "Aura Router" and "http-referer" not in sent.headers
    expected = cost("claude-sonnet-4-5", count_input_tokens(sent.body["messages"]), 12)
    assert openrouter_router.last_usage(key)["cost_micros"] == expected
    assert openrouter_router.account(account)["balance_micros"] == 5_000_000 - expected


def test_openrouter_mode_leaves_an_untranslated_model_with_its_own_provider(
        openrouter_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = openrouter_router.new_account(5_000_000)
    message = ant(openrouter_router, key).messages.create(
        model="claude-fable-5", max_tokens=64,
        messages=[{"role": "user", "content": "Say hello."}])
    assert message.content[0].text == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/v1/messages" and sent.body["model"] == "claude-fable-5"
    assert sent.headers["x-api-key"] == "sk-ant-fake-1"


def test_openrouter_mode_takes_a_responses_request_through_chat_completions(
        openrouter_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    """OpenRouter speaks Chat Completions only: a Responses request reaches it through the
    Responses -> Chat bridge, at the catalog price."""
    _, key = openrouter_router.new_account(5_000_000)
    response = oai(openrouter_router, key).responses.create(model="claude-sonnet-4-5",
                                                             input="Say hello.")
    assert response.output_text == TEXT
    sent = clean_fake.state.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "anthropic/claude-sonnet-4.5"
    [message] = sent.body["messages"]
    assert message["role"] == "user" and message["content"] in (
        "Say hello.", [{"type": "text", "text": "Say hello."}])
    assert sent.headers["authorization"] == "Bearer sk-or-env"
    assert openrouter_router.last_usage(key)["cost_micros"] == cost(
        "claude-sonnet-4-5", response.usage.input_tokens, response.usage.output_tokens)


def test_env_implied_azure_is_reached_by_provider_prefix_with_its_api_version(
        openrouter_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = openrouter_router.new_account(5_000_000)
    raw = oai(openrouter_router, key).chat.completions.with_raw_response.create(
        model="azure/gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-aura-provider"] == "azure"
    sent = clean_fake.state.last
    assert sent.path == ("/openai/deployments/gpt-4o-mini/chat/completions"
                         "?api-version=2025-04-01-preview")
    assert sent.headers["api-key"] == "az-env-key"
    usage = raw.parse().usage
    assert openrouter_router.last_usage(key)["cost_micros"] == cost(
        "gpt-4o-mini", usage.prompt_tokens, usage.completion_tokens)


# --- tools, images, usage and faults: Azure, and OpenRouter / Ollama where they differ -------
# (OpenRouter gets content arrays as sent and bills by our catalog, not its `usage.cost`;
# Ollama is keyless and has text-only arrays flattened, never ones with an image.)

# a model of azure_router -> the provider that serves it
VIA = {"gpt-4o-mini": "az", "claude-sonnet-4-5": "or", "llama-local": "ollama"}
each_provider = pytest.mark.parametrize("model", list(VIA))


def billed(model: str, sent: Any, completion: int) -> int:
    """The bill of one call: the fake's prompt count for what it got, at `model`'s price."""
    return cost(model, count_input_tokens(sent.body["messages"]), completion)


@each_provider
def test_chat_client_tool_call_round_trip_with_an_inline_image(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.tool_call = PARIS
    account, key = azure_router.new_account(5_000_000)
    client = oai(azure_router, key)
    messages = weather_question()
    image = messages[0]["content"][1]  # the inline PNG
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="auto")
    assert raw.headers["x-aura-provider"] == VIA[model]
    first = raw.parse()
    choice, call = the_tool_call(first)
    assert call.function.arguments == '{"city":"Paris"}'
    sent = clean_fake.state.last
    assert sent.body["messages"][0]["content"] == messages[0]["content"]  # the image intact
    assert sent.body["tools"] == TOOLS and sent.body["tool_choice"] == "auto"
    assert first.usage is not None and (first.usage.prompt_tokens, first.usage.completion_tokens
                                        ) == (count_input_tokens(sent.body["messages"]), 3)
    spent = billed(model, sent, 3)  # three argument fragments
    assert azure_router.last_usage(key)["cost_micros"] == spent
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"}]
    chunks = list(client.chat.completions.create(model=model, messages=messages, tools=TOOLS,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    sent = clean_fake.state.last
    history = sent.body["messages"]
    assert history[0]["content"][1] == image
    assert history[1]["tool_calls"] == [{"id": call.id, "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert history[2] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"}
    assert azure_router.last_usage(key)["cost_micros"] == billed(model, sent, 12)
    assert_billed(azure_router, account, 5_000_000, spent + billed(model, sent, 12))


@each_provider
def test_messages_client_tool_use_round_trip_with_a_base64_image(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Oslo"})
    clean_fake.state.tool_call_text = "Let me check."
    account, key = azure_router.new_account(5_000_000)
    client = ant(azure_router, key)
    tools: list[Any] = [{"name": "get_weather", "description": "Weather",
                         "input_schema": WEATHER}]
    messages: list[Any] = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG_1X1}},
        {"type": "text", "text": "What is the weather where this was taken?"}]}]
    with client.messages.stream(model=model, max_tokens=200, tools=tools, messages=messages,
                                tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me check."  # type: ignore[union-attr]
    use = final.content[1]
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}  # type: ignore[union-attr]
    sent = clean_fake.state.last
    assert sent.body["messages"][0]["content"][0] == {"type": "image_url",
                                                      "image_url": {"url": DATA_URL}}
    assert sent.body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather", "parameters": WEATHER}}]
    assert sent.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        count_input_tokens(sent.body["messages"]), 3 + 3)  # three words, three fragments
    spent = billed(model, sent, 6)
    assert azure_router.last_usage(key)["cost_micros"] == spent
    messages += [{"role": "assistant", "content": [b.model_dump() for b in final.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "Cloudy"}]}]
    answer = client.messages.create(model=model, max_tokens=200, tools=tools,
                                    messages=messages)
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].text == TEXT  # type: ignore[union-attr]
    sent = clean_fake.state.last
    history = sent.body["messages"]
    assert history[0]["content"][0] == {"type": "image_url", "image_url": {"url": DATA_URL}}
    assert history[1]["tool_calls"][0]["id"] == use.id
    assert history[1]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                       "arguments": '{"city":"Oslo"}'}
    assert history[2] == {"role": "tool", "tool_call_id": use.id, "content": "Cloudy"}
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (
        count_input_tokens(history), 12)
    assert_billed(azure_router, account, 5_000_000, spent + billed(model, sent, 12))


@each_provider
def test_a_stream_cut_mid_way_is_billed_for_what_streamed(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.cut_after_chunks = 4
    account, key = azure_router.new_account(5_000_000)
    text = stream_until_error(ant(azure_router, key), model=model, max_tokens=50,
                              messages=[{"role": "user", "content": "Count."}])
    assert text == "w0 w1 w2 w3"
    # The cut came before the usage chunk: the input billed is the router's own count.
    first = azure_router.last_usage(key)
    assert first["output_tokens"] == 4
    assert first["cost_micros"] == cost(model, first["input_tokens"], 4)
    pieces: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in oai(azure_router, key).chat.completions.create(
                model=model, messages=MESSAGES, stream=True):
            pieces += [c.delta.content or "" for c in chunk.choices]
    assert "".join(pieces) == "w0 w1 w2 w3"
    second = azure_router.last_usage(key)
    assert second["output_tokens"] == 4
    assert second["cost_micros"] == cost(model, second["input_tokens"], 4)
    assert_billed(azure_router, account, 5_000_000,
                  first["cost_micros"] + second["cost_micros"])


@pytest.mark.parametrize("model", ["az-limited", "or-limited", "llama-local"])
def test_a_rate_limit_reaches_the_client_as_a_429_with_its_retry_after(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    """Azure sends `retry-after` and `retry-after-ms`; the client gets the seconds. A keyed
    provider's key then rests that long: the next call is refused without asking."""
    clean_fake.state.fail_status = 429
    account, key = azure_router.new_account(1_000_000)
    with pytest.raises(openai.RateLimitError) as raised:
        oai(azure_router, key).chat.completions.create(model=model, messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "1"
    assert len(clean_fake.state.received) == 1
    with pytest.raises(anthropic.RateLimitError) as limited:
        with ant(azure_router, key).messages.stream(
                model=model, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]):
            pass
    assert limited.value.response.headers["retry-after"] == "1"
    assert len(clean_fake.state.received) == (2 if model == "llama-local" else 1)
    assert_billed(azure_router, account, 1_000_000, 0)


def test_the_fake_refuses_and_rate_limits_as_azure_does(clean_fake: FakeProviderServer) -> None:
    """The shapes the router meets above are Azure's: a 401 of `{"error": {"code": "401",
    "message": "Access denied due to invalid subscription key..."}}`, a 429 with both
    `retry-after` (seconds) and `retry-after-ms`."""
    url = (clean_fake.base_url + "/openai/deployments/my-4o-mini/chat/completions"
           "?api-version=2024-10-21")
    clean_fake.state.expected_api_key = "right-key"
    refused = httpx.post(url, json={"messages": MESSAGES}, headers={"api-key": "wrong-key"})
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "401" and set(error) == {"code", "message"}
    assert error["message"].startswith("Access denied due to invalid subscription key")
    clean_fake.state.fail_status = 429
    limited = httpx.post(url, json={"messages": MESSAGES}, headers={"api-key": "right-key"})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "429"
    assert (limited.headers["retry-after"], limited.headers["retry-after-ms"]) == ("1", "1000")


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-5"])
def test_a_refused_key_is_a_502_for_a_streaming_messages_client_and_costs_nothing(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.expected_api_key = "another-key"
    account, key = azure_router.new_account(1_000_000)
    with pytest.raises(anthropic.APIStatusError) as raised:
        with ant(azure_router, key).messages.stream(
                model=model, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]):
            pass
    assert raised.value.status_code == 502
    assert "azure-key-1" not in raised.value.response.text
    assert "sk-or-1" not in raised.value.response.text
    assert_billed(azure_router, account, 1_000_000, 0)


def test_azure_server_error_before_the_first_byte_fails_over_or_is_a_502(
        azure_router: RouterProcess, clean_fake: FakeProviderServer,
        backup: FakeProviderServer) -> None:
    backup.state.reset()
    clean_fake.state.fail_status = 500
    account, key = azure_router.new_account(1_000_000)
    client = oai(azure_router, key)
    raw = client.chat.completions.with_raw_response.create(model="az-failover",
                                                           messages=MESSAGES)
    assert raw.headers["x-aura-provider"] == "az2"
    assert raw.parse().choices[0].message.content == TEXT
    assert clean_fake.state.last.headers["api-key"] == "azure-key-5"
    sent = backup.state.last
    assert sent.headers["api-key"] == "azure-key-backup"
    spent = billed("az-failover", sent, 12)
    assert_billed(azure_router, account, 1_000_000, spent)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="az-alone", stream=True, messages=MESSAGES)
    assert raised.value.status_code == 502
    with pytest.raises(anthropic.APIStatusError) as refused:
        ant(azure_router, key).messages.create(model="az-alone", max_tokens=50,
                                               messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 502
    clean_fake.state.fail_status = None
    clean_fake.state.error_before_content = "server_error"
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="az-alone", stream=True, messages=MESSAGES)
    assert raised.value.status_code >= 500
    assert_billed(azure_router, account, 1_000_000, spent)


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "llama-local"])
def test_openrouter_or_ollama_server_error_before_the_first_byte_is_a_502(
        azure_router: RouterProcess, clean_fake: FakeProviderServer, model: str) -> None:
    clean_fake.state.fail_status = 503
    account, key = azure_router.new_account(1_000_000)
    with pytest.raises(openai.APIStatusError) as raised:
        oai(azure_router, key).chat.completions.create(model=model, stream=True,
                                                       messages=MESSAGES)
    assert raised.value.status_code == 502
    with pytest.raises(anthropic.APIStatusError) as refused:
        ant(azure_router, key).messages.create(model=model, max_tokens=50,
                                               messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 502
    assert_billed(azure_router, account, 1_000_000, 0)
