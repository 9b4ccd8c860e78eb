"""AWS Bedrock through the real router: Claude on a native Bedrock provider (InvokeModel,
SigV4, the binary event stream; tests/fakes/bedrock_app.py checks the signature and the
body) and on an OpenAI-compatible Bedrock gateway, reached with the official OpenAI and
Anthropic SDKs; and the Bedrock-shaped inbound routes (`/model/{id}/invoke*`), reached
with the Anthropic SDK's `AnthropicBedrock` and a router key as its bearer token.

Every bill is the fake's usage at the catalog's list price (claude-sonnet-4-5: $3 in,
$15 out, $0.30 cache read, $3.75 cache write per million tokens).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import pytest
from botocore.eventstream import EventStreamBuffer

from router.providers.credentials import DEFAULT_COOLDOWN_S
from tests.fakes import FakeProviderServer
from tests.fakes.bedrock_app import KNOWN_KEYS
from tests.fakes.state import count_input_tokens
from tests.harness import (JWT_SECRET, RouterProcess, ant, assert_billed, oai,
                           router_config, stream_until_error, words)
from tests.tool_round_trip import (PARIS, PNG_1X1, TOOLS, WEATHER, ask_for_a_tool_call,
                                   weather_question)

AKID = next(iter(KNOWN_KEYS))
CREDENTIAL = f"{AKID}:{KNOWN_KEYS[AKID]}:FwoGZXIvYXdzEFAKESESSIONTOKEN"
MESSAGES: list[Any] = [{"role": "user", "content": "Tell me a story."}]
PROMPT = count_input_tokens(MESSAGES)
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_PRICES = """
input_per_mtok = "3.00"
output_per_mtok = "15.00"
cache_read_per_mtok = "0.30"
cache_write_per_mtok = "3.75"
max_output_tokens = 8192
"""


def sonnet_cost(inp: int, out: int, read: int = 0, write: int = 0) -> int:
    """Micro-dollars, the total rounded up once."""
    return -(-(inp * 300 + out * 1500 + read * 30 + write * 375) // 100)


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeProviderServer]:
    """A second Bedrock endpoint, healthy while the first one fails."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def brouter(fake: FakeProviderServer, backup: FakeProviderServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    extra = f"""
[[providers]]
name = "aws"
kind = "bedrock"
base_url = "{fake.base_url}"
region = "us-west-2"
api_keys = ["{CREDENTIAL}"]
timeout_connect_s = 2
timeout_idle_s = 5

[[providers]]
name = "awsbad"
kind = "bedrock"
base_url = "{fake.base_url}"
region = "us-west-2"
api_keys = ["{AKID}:not-the-secret"]
timeout_connect_s = 2
timeout_idle_s = 5

[[models]]
id = "nova-pro"
route = ["aws:us.amazon.nova-pro-v1:0"]
input_per_mtok = "0.80"
output_per_mtok = "3.20"
max_output_tokens = 5000

[[providers]]
name = "awsb"
kind = "bedrock"
base_url = "{backup.base_url}"
region = "us-west-2"
api_keys = ["{CREDENTIAL}"]
timeout_connect_s = 2
timeout_idle_s = 5

[[providers]]
name = "aws429"
kind = "bedrock"
base_url = "{fake.base_url}"
region = "us-west-2"
api_keys = ["{CREDENTIAL}"]
timeout_connect_s = 2
timeout_idle_s = 5

[[models]]
id = "sonnet-failover"
route = ["aws:{SONNET}", "awsb:{SONNET}"]
{SONNET_PRICES}
[[models]]
id = "sonnet-limited"
route = ["aws429:{SONNET}"]
{SONNET_PRICES}
[[providers]]
name = "awsgw"
kind = "bedrock_gateway"
base_url = "{fake.openai_base_url}"
region = "eu-west-1"
api_keys = ["gw-bearer-key"]
timeout_connect_s = 2
timeout_idle_s = 5
"""
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, extra)
    data_dir: Path = tmp_path_factory.mktemp("bedrock-router")
    with RouterProcess(data_dir, config,
                       env={"AUTH_COOKIE_SECRET": JWT_SECRET}) as proc:
        yield proc


def bedrock_calls(fake: FakeProviderServer) -> list[Any]:
    return [r for r in fake.state.snapshot() if r.path.startswith("/model/")]


def paid(router: RouterProcess, key: str, granted: int, cost: int) -> dict[str, Any]:
    usage = router.usage(key)
    assert usage["held_micros"] == 0, "a hold was left open"
    assert usage["balance_micros"] == granted - cost
    return usage


# --- a native Bedrock provider ---------------------------------------------------------------

def test_anthropic_client_reaches_claude_on_bedrock_signed_and_billed(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 2
    clean_fake.state.cache_write_tokens = 3
    account, key = brouter.new_account(1_000_000)
    client = ant(brouter, key)
    raw = client.messages.with_raw_response.create(
        model="aws/claude-sonnet-4-5", max_tokens=50, messages=MESSAGES,
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert raw.headers["x-aura-provider"] == "aws"
    message = raw.parse()
    assert message.content[0].type == "text"
    assert message.content[0].text == words(12)
    (call,) = bedrock_calls(clean_fake)
    assert call.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"  # decoded
    assert call.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "/us-west-2/bedrock/aws4_request" in call.headers["authorization"]
    assert call.headers["x-amz-security-token"] == "FwoGZXIvYXdzEFAKESESSIONTOKEN"
    assert "model" not in call.body and "stream" not in call.body
    assert call.body["anthropic_version"] == "bedrock-2023-05-31"
    assert call.body["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert message.usage.input_tokens == PROMPT - 5
    paid(brouter, key, 1_000_000, sonnet_cost(PROMPT - 5, 12, 2, 3))

    clean_fake.state.clear()
    with client.messages.stream(model="aws/claude-sonnet-4-5", max_tokens=5,
                                messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "w0 w1 w2 w3 w4" and final.stop_reason == "max_tokens"
    (call,) = bedrock_calls(clean_fake)
    assert call.path.endswith("/invoke-with-response-stream")
    assert call.headers["accept"] == "application/vnd.amazon.eventstream"
    assert final.usage.output_tokens == 5
    paid(brouter, key, 1_000_000, sonnet_cost(PROMPT - 5, 12, 2, 3)
         + sonnet_cost(PROMPT - 5, 5, 2, 3))


def test_openai_client_reaches_claude_on_bedrock(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = brouter.new_account(1_000_000)
    client = oai(brouter, key)
    answer = client.chat.completions.create(model="aws/claude-sonnet-4-5", max_tokens=40,
                                            messages=MESSAGES)
    assert answer.choices[0].message.content == words(12)
    assert answer.usage is not None and answer.usage.prompt_tokens == PROMPT
    chunks = list(client.chat.completions.create(
        model="aws/claude-sonnet-4-5", max_tokens=40, messages=MESSAGES, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == words(12)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert [c.path.rsplit("/", 1)[1] for c in bedrock_calls(clean_fake)] == [
        "invoke", "invoke-with-response-stream"]
    paid(brouter, key, 1_000_000, 2 * sonnet_cost(PROMPT, 12))


@pytest.mark.parametrize("fault, streamed", [
    (("exception_after", 4, "modelStreamErrorException"), 4),  # an exception frame
    (("corrupt_after", 3), 3),                                 # a corrupt frame
], ids=["exception-frame", "corrupt-frame"])
def test_a_fault_mid_stream_ends_it_bills_what_streamed_and_the_router_still_serves(
        brouter: RouterProcess, clean_fake: FakeProviderServer, fault: tuple[Any, ...],
        streamed: int) -> None:
    setattr(clean_fake.state, "bedrock_fault", fault)
    clean_fake.state.chunk_delay_s = 0.01  # the content reaches the client before the fault
    try:
        account, key = brouter.new_account(1_000_000)
        client = ant(brouter, key)
        text = stream_until_error(client, model="aws/claude-sonnet-4-5", max_tokens=50,
                                  messages=MESSAGES)
        assert text == words(streamed)
        usage = paid(brouter, key, 1_000_000, sonnet_cost(PROMPT, streamed))
        assert usage["recent"][0]["output_tokens"] == streamed
    finally:
        delattr(clean_fake.state, "bedrock_fault")
    # an error, not a crash: the router is still serving
    answer = client.messages.create(model="aws/claude-sonnet-4-5", max_tokens=3,
                                    messages=MESSAGES)
    assert answer.usage.output_tokens == 3


def test_a_wrong_secret_is_refused_by_bedrock_and_not_billed(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = brouter.new_account(1_000_000)
    client = ant(brouter, key)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="awsbad/claude-sonnet-4-5", max_tokens=5,
                               messages=MESSAGES)
    # Bedrock's 403 InvalidSignatureException is about the platform's key: a 502, no hint
    assert raised.value.status_code == 502
    assert "signature" not in raised.value.response.text.lower()
    (call,) = bedrock_calls(clean_fake)
    assert call.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    paid(brouter, key, 1_000_000, 0)


def test_openai_tools_and_an_image_reach_claude_on_bedrock_and_the_call_comes_back(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.tool_call = PARIS
    account, key = brouter.new_account(1_000_000)
    client = oai(brouter, key)
    messages = weather_question()
    first, choice, tool_call = ask_for_a_tool_call(
        client, "aws/claude-sonnet-4-5", max_tokens=100, messages=messages, tools=TOOLS)
    (sent,) = bedrock_calls(clean_fake)
    assert sent.path.endswith("/invoke")
    assert sent.body["tools"] == [{"name": "get_weather", "description": "Weather in a city",
                                   "input_schema": WEATHER}]
    assert sent.body["messages"][0]["content"][1] == {  # the image, byte for byte
        "type": "image", "source": {"type": "base64", "media_type": "image/png",
                                    "data": PNG_1X1}}
    first_prompt = count_input_tokens(sent.body["messages"], sent.body.get("system"))
    assert first.usage is not None and (first.usage.prompt_tokens,
                                        first.usage.completion_tokens) == (first_prompt, 3)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 21C"}]
    chunks = list(client.chat.completions.create(
        model="aws/claude-sonnet-4-5", max_tokens=100, messages=messages, tools=TOOLS,
        stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == words(12)
    second = bedrock_calls(clean_fake)[-1]
    assert second.path.endswith("/invoke-with-response-stream")
    history = second.body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert [b for b in history[1]["content"] if b["type"] == "tool_use"] == [{
        "type": "tool_use", "id": tool_call.id, "name": "get_weather",
        "input": {"city": "Paris"}}]
    (result,) = history[2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_call.id
    assert json.dumps(result["content"]).count("Sunny, 21C") == 1
    second_prompt = count_input_tokens(history, second.body.get("system"))
    assert_billed(brouter, account, 1_000_000,
                  sonnet_cost(first_prompt, 3) + sonnet_cost(second_prompt, 12))


def test_anthropic_tool_use_streamed_from_bedrock_with_an_image_then_the_result(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.tool_call = ("get_weather", {"city": "Oslo"})
    clean_fake.state.tool_call_text = "Let me check."
    account, key = brouter.new_account(1_000_000)
    client = ant(brouter, key)
    tools: list[Any] = [{"name": "get_weather", "description": "Weather",
                         "input_schema": WEATHER}]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_1X1}}
    messages: list[Any] = [{"role": "user", "content": [
        image, {"type": "text", "text": "Weather where this was taken?"}]}]
    with client.messages.stream(model="aws/claude-sonnet-4-5", max_tokens=200, tools=tools,
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    use = final.content[1]
    assert use.type == "tool_use" and use.name == "get_weather"
    assert use.input == {"city": "Oslo"}
    (sent,) = bedrock_calls(clean_fake)
    assert sent.body["messages"][0]["content"][0] == image
    assert sent.body["tools"] == tools
    assert sent.body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    first_prompt = count_input_tokens(sent.body["messages"])
    assert final.usage.output_tokens == 3 + 3  # "Let me check." and three argument pieces
    messages += [{"role": "assistant",
                  "content": [b.model_dump(exclude_none=True) for b in final.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "Cloudy"}]}]
    answer = client.messages.create(model="aws/claude-sonnet-4-5", max_tokens=200,
                                    tools=tools, messages=messages)
    assert answer.content[0].type == "text" and answer.content[0].text == words(12)
    history = bedrock_calls(clean_fake)[-1].body["messages"]
    assert history[1]["content"][1] == {"type": "tool_use", "id": use.id,
                                        "name": "get_weather", "input": {"city": "Oslo"}}
    assert history[2]["content"] == [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "Cloudy"}]
    assert_billed(brouter, account, 1_000_000, sonnet_cost(first_prompt, 6)
                  + sonnet_cost(count_input_tokens(history), 12))


def test_throttling_is_a_429_with_a_retry_after_when_no_other_target_remains(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    # Bedrock's ThrottlingException: HTTP 429, `x-amzn-errortype`, `{"message": ...}`, and
    # no Retry-After (AWS gives no delay): the router says how long it rests the key.
    clean_fake.state.fail_status = 429
    account, key = brouter.new_account(1_000_000)
    client = ant(brouter, key)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="sonnet-limited", max_tokens=5, messages=MESSAGES)
    assert raised.value.status_code == 429
    told = int(raised.value.response.headers["retry-after"])
    assert told == math.ceil(DEFAULT_COOLDOWN_S), "the rest the key is given"
    (call,) = bedrock_calls(clean_fake)
    assert call.path == f"/model/{SONNET}/invoke"
    # the key rests as long as the client was told: the next call does not reach Bedrock
    with pytest.raises(anthropic.RateLimitError) as resting:
        client.messages.create(model="sonnet-limited", max_tokens=5, messages=MESSAGES)
    assert 1 <= int(resting.value.response.headers["retry-after"]) <= told
    assert len(bedrock_calls(clean_fake)) == 1
    assert_billed(brouter, account, 1_000_000, 0)


def test_a_server_error_before_the_first_byte_fails_over_or_is_a_502(
        brouter: RouterProcess, clean_fake: FakeProviderServer,
        backup: FakeProviderServer) -> None:
    backup.state.reset()
    clean_fake.state.fail_status = 500  # InternalServerException
    account, key = brouter.new_account(1_000_000)
    client = ant(brouter, key)
    with client.messages.with_streaming_response.create(
            model="sonnet-failover", max_tokens=50, messages=MESSAGES, stream=True) as raw:
        assert raw.headers["x-aura-provider"] == "awsb"
        text = "".join(e.delta.text for e in raw.parse()
                       if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == words(12)
    assert [c.path for c in bedrock_calls(clean_fake)] == [
        f"/model/{SONNET}/invoke-with-response-stream"]
    assert [c.path for c in bedrock_calls(backup)] == [
        f"/model/{SONNET}/invoke-with-response-stream"]
    spent = sonnet_cost(PROMPT, 12)
    assert_billed(brouter, account, 1_000_000, spent)
    clean_fake.state.fail_status = 503  # ServiceUnavailableException, no other target
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="aws/claude-sonnet-4-5", max_tokens=5, messages=MESSAGES)
    assert raised.value.status_code == 502
    assert_billed(brouter, account, 1_000_000, spent)
    clean_fake.state.fail_status = None
    answer = client.messages.create(model="aws/claude-sonnet-4-5", max_tokens=3,
                                    messages=MESSAGES)
    assert answer.usage.output_tokens == 3  # and the provider serves again


def test_a_connection_cut_mid_stream_is_billed_for_what_streamed(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cut_after_chunks = 4  # Bedrock's connection drops after 4 words
    clean_fake.state.chunk_delay_s = 0.01
    account, key = brouter.new_account(1_000_000)
    text = stream_until_error(ant(brouter, key), model="aws/claude-sonnet-4-5",
                              max_tokens=50, messages=MESSAGES)
    assert text == words(4)
    row = brouter.last_usage(key)
    assert (row["input_tokens"], row["output_tokens"]) == (PROMPT, 4)
    assert row["cost_micros"] == sonnet_cost(PROMPT, 4)
    assert_billed(brouter, account, 1_000_000, sonnet_cost(PROMPT, 4))


def test_a_model_that_is_not_claude_goes_through_converse(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = brouter.new_account(1_000_000)
    chunks = list(oai(brouter, key).chat.completions.create(
        model="nova-pro", max_tokens=7, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "w0 w1 w2 w3 w4 w5 w6"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    prompt = count_input_tokens(MESSAGES, "Be brief.")
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (prompt, 7)
    message = ant(brouter, key).messages.create(model="nova-pro", max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text"
    assert message.content[0].text == words(12)
    assert message.stop_reason == "end_turn" and message.usage.input_tokens == PROMPT
    calls = bedrock_calls(clean_fake)
    assert [c.path for c in calls] == ["/model/us.amazon.nova-pro-v1:0/converse-stream",
                                       "/model/us.amazon.nova-pro-v1:0/converse"]
    assert calls[0].body["system"] == [{"text": "Be brief."}]
    assert calls[0].body["inferenceConfig"] == {"maxTokens": 7}
    assert calls[1].body["messages"] == [{"role": "user",
                                          "content": [{"text": "Tell me a story."}]}]
    nova = -(-(prompt * 80 + 7 * 320) // 100) + -(-(PROMPT * 80 + 12 * 320) // 100)
    paid(brouter, key, 1_000_000, nova)


# --- a Bedrock gateway (OpenAI-compatible) -----------------------------------------------------

def test_a_bedrock_gateway_gets_openai_chat_with_bedrock_ids(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = brouter.new_account(1_000_000)
    client = ant(brouter, key)
    with client.messages.stream(model="awsgw/claude-sonnet-4-5", max_tokens=40,
                                messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == words(12)
    (call,) = [r for r in clean_fake.state.snapshot() if r.path == "/v1/chat/completions"]
    assert call.headers["authorization"] == "Bearer gw-bearer-key"
    assert call.body["model"] == "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    paid(brouter, key, 1_000_000, sonnet_cost(final.usage.input_tokens, 12))


# --- the Bedrock-shaped inbound routes ----------------------------------------------------------

def _bedrock_client(router: RouterProcess, key: str) -> anthropic.AnthropicBedrock:
    return anthropic.AnthropicBedrock(api_key=key, base_url=router.base_url,
                                      aws_region="us-east-1", max_retries=0)


def test_anthropic_bedrock_client_reaches_claude_through_the_router(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = brouter.new_account(1_000_000)
    client = _bedrock_client(brouter, key)
    whole = client.messages.with_raw_response.create(model=SONNET, max_tokens=8,
                                                     messages=MESSAGES)
    message = whole.parse()
    assert message.content[0].type == "text"
    assert message.content[0].text == words(8)
    assert whole.headers["x-aura-model"] == "claude-sonnet-4-5"  # the alias's model
    with client.messages.stream(model=SONNET, max_tokens=6, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "w0 w1 w2 w3 w4 w5" and final.usage.output_tokens == 6
    sent = [r for r in clean_fake.state.snapshot() if r.path.startswith("/v1/messages")]
    assert [r.body.get("stream", False) for r in sent] == [False, True]
    assert all(r.body["model"] == "claude-sonnet-4-5" and "anthropic_version"
               not in r.body and "anthropic_beta" not in r.body for r in sent)
    paid(brouter, key, 1_000_000, sonnet_cost(PROMPT, 8) + sonnet_cost(PROMPT, 6))


def test_an_error_mid_answer_reaches_a_bedrock_client_as_an_exception_frame(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cut_after_chunks = 3
    clean_fake.state.chunk_delay_s = 0.01
    account, key = brouter.new_account(1_000_000)
    text = stream_until_error(_bedrock_client(brouter, key), model=SONNET, max_tokens=50,
                              messages=MESSAGES)
    assert text == "w0 w1 w2"
    usage = paid(brouter, key, 1_000_000, sonnet_cost(PROMPT, 3))
    assert usage["recent"][0]["output_tokens"] == 3


def test_the_streamed_answer_is_amazon_event_stream(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = brouter.new_account(1_000_000)
    response = httpx.post(
        brouter.base_url + "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/"
        "invoke-with-response-stream", headers={"authorization": f"Bearer {key}"},
        json={"anthropic_version": "bedrock-2023-05-31", "max_tokens": 3,
              "messages": MESSAGES}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(response.content)
    messages = list(buffer)  # botocore checks both CRCs of every frame
    assert all(m.headers == {":event-type": "chunk", ":content-type": "application/json",
                             ":message-type": "event"} for m in messages)
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    paid(brouter, key, 1_000_000, sonnet_cost(PROMPT, 3))


def test_a_bedrock_call_without_a_router_credential_is_refused(
        brouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        _bedrock_client(brouter, "not-a-router-key").messages.create(
            model=SONNET, max_tokens=8, messages=MESSAGES)
    # SigV4 is no router credential (the SDK's signing needs boto3: botocore signs here)
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = brouter.base_url + "/model/" + SONNET.replace(":", "%3A") + "/invoke"
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
                       "messages": MESSAGES}).encode()
    signed = AWSRequest(method="POST", url=url, data=body,
                        headers={"content-type": "application/json"})
    SigV4Auth(Credentials(AKID, "secret"), "bedrock", "us-east-1").add_auth(signed)
    refused = httpx.post(url, content=body, headers=dict(signed.headers.items()))
    assert refused.status_code == 401
    assert clean_fake.state.snapshot() == []
