"""Vertex AI as a provider (router/providers/vertex.py): Claude and Gemini models at
Google's endpoint, with access tokens the router gets from a service account through google-auth (before
traffic, then ahead of their expiry, never on a request's path), through the official
SDKs (tools, images), billed exactly; Vertex's faults (a quota 429, a token it did not
issue, 5xx, a stream cut mid-way); a service account that cannot be used stops the start."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from router.providers.credentials import DEFAULT_COOLDOWN_S
from router.providers.vertex import vertex_base_url
from tests.fakes import FakeProviderServer
from tests.fakes.state import count_input_tokens
from tests.fakes.vertex_app import FakeVertex
from tests.harness import (RouterProcess, ant, assert_billed, oai, router_config,
                           stream_until_error, words)
from tests.tool_round_trip import (PARIS, PNG_1X1, TOOLS, WEATHER, ask_for_a_tool_call,
                                   weather_question)

EMAIL = "router@platform-project.iam.gserviceaccount.com"
MODEL = """
[[models]]
id = "claude-on-vertex"
route = ["vertex:claude-3-5-haiku@20241022"]
input_per_mtok = "0.80"
output_per_mtok = "4.00"
"""
LIMITED = """
[[providers]]
name = "vertex429"
kind = "vertex"
base_url = "{base}"

[[models]]
id = "claude-on-vertex-limited"
route = ["vertex429:claude-3-5-haiku@20241022"]
input_per_mtok = "0.80"
output_per_mtok = "4.00"
"""
HAIKU = ("/v1/projects/platform-project/locations/us-east5/publishers/anthropic/models/"
         "claude-3-5-haiku@20241022")
HI: list[Any] = [{"role": "user", "content": "hi"}]


def haiku_cost(inp: int, out: int) -> int:
    """0.80 and 4.00 USD per Mtok, rounded up to the micro-USD."""
    return -(-(inp * 80 + out * 400) // 100)


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def vertex(account_key: rsa.RSAPrivateKey) -> Iterator[FakeVertex]:
    public = account_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with FakeVertex(public, EMAIL) as fake:
        yield fake


def _service_account(path: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "platform-project",
        "private_key_id": "k1", "private_key": pem, "client_email": EMAIL,
        "client_id": "1", "token_uri": token_uri}))
    return path


@pytest.fixture(scope="module")
def routed(fake: FakeProviderServer, vertex: FakeVertex, account_key: rsa.RSAPrivateKey,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    data = tmp_path_factory.mktemp("vertex")
    sa = _service_account(data / "sa.json", account_key, vertex.token_uri)
    limited = LIMITED.format(base=vertex_base_url("platform-project", "us-east5",
                                                  vertex.base_url))
    with RouterProcess(data, router_config(fake.openai_base_url, fake.anthropic_base_url,
                                           MODEL + limited),
                       env={"VERTEX_AI_SERVICE_ACCOUNT_JSON": str(sa),
                            "VERTEX_AI_LOCATION": "us-east5",
                            "VERTEX_AI_BASE_URL": vertex.base_url}) as proc:
        yield proc


def test_claude_on_vertex_through_both_sdks_with_a_service_account_token(
        routed: RouterProcess, vertex: FakeVertex) -> None:
    assert vertex.issued, "the token was fetched before the server took traffic"
    account, key = routed.new_account(5_000_000)
    chat = openai.OpenAI(base_url=routed.base_url + "/v1", api_key=key, max_retries=0)
    answer = chat.chat.completions.with_raw_response.create(
        model="claude-on-vertex", max_tokens=6, messages=[{"role": "user", "content": "hi"}])
    assert answer.parse().choices[0].message.content
    claude = anthropic.Anthropic(base_url=routed.base_url, api_key=key, max_retries=0)
    with claude.messages.stream(model="claude-on-vertex", max_tokens=6,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream)
    paths = [path for path, _, _ in vertex.calls]
    assert paths == [
        "/v1/projects/platform-project/locations/us-east5/publishers/anthropic/models/"
        f"claude-3-5-haiku@20241022:{verb}" for verb in ("rawPredict", "streamRawPredict")]
    assert {bearer for _, bearer, _ in vertex.calls} <= set(vertex.issued)
    rows = routed.admin("GET", f"/admin/usage?account={account}").json()["data"]
    assert [(r["provider"], r["model"]) for r in rows] == [("vertex", "claude-on-vertex")] * 2
    for row in rows:  # 0.80 and 4.00 USD per Mtok, rounded up to the micro-USD
        exact = row["input_tokens"] * 80 + row["output_tokens"] * 400
        assert row["cost_micros"] == -(-exact // 100) > 0
    providers = {p["name"]: p for p in routed.admin("GET", "/admin/providers").json()["data"]}
    shown = json.dumps(providers["vertex"])
    assert providers["vertex"]["usable"] and not any(t in shown for t in vertex.issued)


def test_gemini_models_go_to_vertex_when_no_google_ai_key_is_set(
        routed: RouterProcess, vertex: FakeVertex) -> None:
    account, key = routed.new_account(5_000_000)
    chat = openai.OpenAI(base_url=routed.base_url + "/v1", api_key=key, max_retries=0)
    whole = chat.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", max_tokens=6, messages=[{"role": "user", "content": "hi"}])
    assert whole.parse().choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in chat.chat.completions.create(
        model="gemini-2.5-flash", max_tokens=6, stream=True,
        messages=[{"role": "user", "content": "hi"}]) if c.choices)
    assert streamed
    generated = [(path, bearer) for path, bearer, _ in vertex.calls if "google" in path]
    base = "/v1/projects/platform-project/locations/us-east5/publishers/google/models/"
    assert [path for path, _ in generated] == [
        base + "gemini-2.5-flash:generateContent",
        base + "gemini-2.5-flash:streamGenerateContent"]
    assert {bearer for _, bearer in generated} <= set(vertex.issued)
    rows = routed.admin("GET", f"/admin/usage?account={account}").json()["data"]
    assert [(r["provider"], r["model"]) for r in rows] == \
        [("vertex-gemini", "gemini-2.5-flash")] * 2
    assert all(r["cost_micros"] > 0 for r in rows)


@pytest.fixture
def clean_vertex(vertex: FakeVertex) -> Iterator[FakeVertex]:
    vertex.state.reset()
    vertex.refuse_tokens = False
    with vertex._lock:
        vertex.calls.clear()
        vertex.refused.clear()
    yield vertex
    vertex.state.reset()
    vertex.refuse_tokens = False


def claude_calls(vertex: FakeVertex) -> list[tuple[str, str, dict[str, Any]]]:
    return [call for call in vertex.calls if "/publishers/anthropic/" in call[0]]


def test_openai_tools_and_an_image_reach_claude_on_vertex_and_the_result_goes_back(
        routed: RouterProcess, clean_vertex: FakeVertex) -> None:
    clean_vertex.state.tool_call = PARIS
    account, key = routed.new_account(1_000_000)
    client = oai(routed, key)
    messages = weather_question()
    first, choice, tool_call = ask_for_a_tool_call(
        client, "claude-on-vertex", max_tokens=100, messages=messages, tools=TOOLS)
    ((path, _, body),) = claude_calls(clean_vertex)
    assert path == HAIKU + ":rawPredict"
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["tools"] == [{"name": "get_weather", "description": "Weather in a city",
                              "input_schema": WEATHER}]
    assert body["messages"][0]["content"][1] == {  # the image, byte for byte
        "type": "image", "source": {"type": "base64", "media_type": "image/png",
                                    "data": PNG_1X1}}
    first_prompt = count_input_tokens(body["messages"], body.get("system"))
    assert first.usage is not None and (first.usage.prompt_tokens,
                                        first.usage.completion_tokens) == (first_prompt, 3)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 21C"}]
    chunks = list(client.chat.completions.create(
        model="claude-on-vertex", max_tokens=100, messages=messages, tools=TOOLS,
        stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == words(12)
    path, _, body = claude_calls(clean_vertex)[-1]
    assert path == HAIKU + ":streamRawPredict"
    history = body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert [b for b in history[1]["content"] if b["type"] == "tool_use"] == [{
        "type": "tool_use", "id": tool_call.id, "name": "get_weather",
        "input": {"city": "Paris"}}]
    (result,) = history[2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_call.id
    assert json.dumps(result["content"]).count("Sunny, 21C") == 1
    second_prompt = count_input_tokens(history, body.get("system"))
    assert_billed(routed, account, 1_000_000,
                  haiku_cost(first_prompt, 3) + haiku_cost(second_prompt, 12))


def test_anthropic_tool_use_streamed_from_vertex_with_an_image(
        routed: RouterProcess, clean_vertex: FakeVertex) -> None:
    clean_vertex.state.tool_call = ("get_weather", {"city": "Oslo"})
    account, key = routed.new_account(1_000_000)
    client = ant(routed, key)
    tools: list[Any] = [{"name": "get_weather", "description": "Weather",
                         "input_schema": WEATHER}]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_1X1}}
    messages: list[Any] = [{"role": "user", "content": [
        image, {"type": "text", "text": "Weather where this was taken?"}]}]
    with client.messages.stream(model="claude-on-vertex", max_tokens=200, tools=tools,
                                messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (use,) = final.content
    assert use.type == "tool_use" and use.name == "get_weather"
    assert use.input == {"city": "Oslo"}
    ((_, _, body),) = claude_calls(clean_vertex)
    assert body["messages"][0]["content"][0] == image and body["tools"] == tools
    first_prompt = count_input_tokens(body["messages"])
    messages += [{"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "Cloudy"}]}]
    answer = client.messages.create(model="claude-on-vertex", max_tokens=200, tools=tools,
                                    messages=messages)
    assert answer.content[0].type == "text" and answer.content[0].text == words(12)
    history = claude_calls(clean_vertex)[-1][2]["messages"]
    assert history[2]["content"] == [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "Cloudy"}]
    assert_billed(routed, account, 1_000_000, haiku_cost(first_prompt, 3)
                  + haiku_cost(count_input_tokens(history), 12))


def test_a_quota_429_reaches_the_client_with_a_retry_after(
        routed: RouterProcess, clean_vertex: FakeVertex) -> None:
    # RESOURCE_EXHAUSTED, as Vertex sends it for Claude: no Retry-After, no RetryInfo;
    # the client is told the rest the router gives the key
    clean_vertex.state.fail_status = 429
    account, key = routed.new_account(1_000_000)
    client = oai(routed, key)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="claude-on-vertex-limited", max_tokens=6,
                                       messages=HI)
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == str(math.ceil(DEFAULT_COOLDOWN_S))
    assert [path for path, _, _ in claude_calls(clean_vertex)] == [HAIKU + ":rawPredict"]
    with pytest.raises(openai.RateLimitError) as resting:  # the key rests: Vertex is spared
        client.chat.completions.create(model="claude-on-vertex-limited", max_tokens=6,
                                       messages=HI)
    assert 1 <= int(resting.value.response.headers["retry-after"]) <= DEFAULT_COOLDOWN_S
    assert len(claude_calls(clean_vertex)) == 1
    assert_billed(routed, account, 1_000_000, 0)


def test_a_token_vertex_did_not_issue_is_a_502_and_not_billed(
        routed: RouterProcess, clean_vertex: FakeVertex) -> None:
    issued = list(clean_vertex.issued)
    clean_vertex.refuse_tokens = True  # 401 UNAUTHENTICATED for the router's token
    account, key = routed.new_account(1_000_000)
    client = ant(routed, key)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude-on-vertex", max_tokens=6, messages=HI)
    assert raised.value.status_code == 502  # the platform's credential, not the user's
    assert claude_calls(clean_vertex) == [] and clean_vertex.refused == [issued[-1]]
    assert_billed(routed, account, 1_000_000, 0)
    clean_vertex.refuse_tokens = False  # accepted again: the same token serves again
    answer = client.messages.create(model="claude-on-vertex", max_tokens=6, messages=HI)
    assert answer.usage.output_tokens == 6
    assert clean_vertex.issued == issued  # no token was fetched for this
    assert_billed(routed, account, 1_000_000, haiku_cost(count_input_tokens(HI), 6))


def test_a_server_error_before_the_answer_is_a_502_and_not_billed(
        routed: RouterProcess, clean_vertex: FakeVertex) -> None:
    account, key = routed.new_account(1_000_000)
    client = oai(routed, key)
    for status in (500, 503):
        clean_vertex.state.fail_status = status
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="claude-on-vertex", max_tokens=6,
                                           messages=HI, stream=status == 503)
        assert raised.value.status_code == 502
    assert len(claude_calls(clean_vertex)) == 2
    assert_billed(routed, account, 1_000_000, 0)


def test_a_stream_cut_mid_way_is_billed_for_what_streamed(
        routed: RouterProcess, clean_vertex: FakeVertex) -> None:
    clean_vertex.state.cut_after_chunks = 4
    clean_vertex.state.chunk_delay_s = 0.01
    account, key = routed.new_account(1_000_000)
    text = stream_until_error(ant(routed, key), model="claude-on-vertex", max_tokens=50,
                              messages=HI)
    assert text == words(4)
    ((path, _, _),) = claude_calls(clean_vertex)
    assert path == HAIKU + ":streamRawPredict"
    prompt = count_input_tokens(HI)
    row = routed.last_usage(key)
    assert (row["input_tokens"], row["output_tokens"]) == (prompt, 4)
    assert row["cost_micros"] == haiku_cost(prompt, 4)
    assert_billed(routed, account, 1_000_000, haiku_cost(prompt, 4))


def test_a_service_account_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "sa.json").write_text('{"type": "authorized_user"}')
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "DATA_DIR": str(tmp_path), "VERTEX_AI_SERVICE_ACCOUNT_JSON": str(tmp_path / "sa.json")}
    done = subprocess.run([sys.executable, "-m", "actors.cli", "serve", "--port", "0"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "VERTEX_AI_SERVICE_ACCOUNT_JSON" in done.stderr + done.stdout
