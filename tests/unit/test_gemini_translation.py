"""The Gemini (Google AI) kind, without a network: the bridges from both client formats
(request, whole answer, stream), the upstream format's metering, and the adapter."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
import trio

from router.providers.configured import env_providers as _env_providers
from router.errors import BadRequest
from router.protocols import chat_over_gemini as chat
from router.protocols import messages_over_gemini as messages
from router.protocols.api import ClientRequest, Meter, UpstreamOptions
from router.protocols.formats import BRIDGES, FORMATS, upstream_api
from router.protocols.gemini import SKIP_SIGNATURE, GeminiGenerate
from router.protocols.sse import SseEvent, SseParser
from router.protocols.translate import UpstreamTarget
from router.providers import registry
from router.providers.base import UpstreamRequest
from router.tokens import measure

TARGET = UpstreamTarget("gemini-3.6-flash", "gemini", reasoning=True)
GEMINI_25 = UpstreamTarget("gemini-2.5-flash", "gemini", reasoning=True)
PLAIN = UpstreamTarget("gemini-2.0-flash", "gemini", reasoning=False)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def events(*chunks: dict[str, Any]) -> list[SseEvent]:
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)
    return SseParser().feed(raw)


def chunk(parts: list[dict[str, Any]], finish: str | None = None,
          usage: dict[str, Any] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "responseId": "r1",
                           "modelVersion": "gemini-2.5-flash"}
    if usage is not None:
        out["usageMetadata"] = usage
    return out


USAGE = {"promptTokenCount": 20, "cachedContentTokenCount": 5, "candidatesTokenCount": 7,
         "thoughtsTokenCount": 3, "totalTokenCount": 30}


# --- Chat Completions -> Gemini ---------------------------------------------------------------

def test_chat_request_system_turns_tools_and_generation_config() -> None:
    body = chat.to_gemini_request({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "system", "content": "A"},
                     {"role": "user", "content": [
                         {"type": "text", "text": "look"},
                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
                     {"role": "developer", "content": [{"type": "text", "text": "B"}]},
                     {"role": "assistant", "content": "calling", "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
                         {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "one"},
                     {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
                     {"role": "user", "content": "thanks"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": SCHEMA,
                                                     "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "temperature": 1.5, "top_p": 0.9, "stop": "END", "seed": 3,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
        "frequency_penalty": 1, "user": "u", "parallel_tool_calls": False}, TARGET)
    assert body["systemInstruction"] == {"parts": [{"text": "A"}, {"text": "B"}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png",
                                                              "data": PNG}}
    model_parts = body["contents"][1]["parts"]
    assert model_parts[0] == {"text": "calling"}
    assert model_parts[1] == {"functionCall": {"name": "f", "args": {"x": 1}},
                              "thoughtSignature": SKIP_SIGNATURE}
    assert model_parts[2] == {"functionCall": {"name": "g", "args": {}}}  # only the first
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "f", "response": {"result": "one"}}},
        {"functionResponse": {"name": "g", "response": {"result": "two"}}},
        {"text": "thanks"}]
    assert body["tools"] == [{"functionDeclarations": [{"name": "f",
                                                        "parametersJsonSchema": SCHEMA}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert body["generationConfig"] == {
        "temperature": 1.5, "topP": 0.9, "seed": 3, "stopSequences": ["END"],
        "responseMimeType": "application/json", "responseJsonSchema": SCHEMA}
    assert "model" not in body


@pytest.mark.parametrize("choice, mode", [("auto", "AUTO"), ("none", "NONE"),
                                          ("required", "ANY")])
def test_chat_tool_choice_modes(choice: str, mode: str) -> None:
    body = chat.to_gemini_request({"messages": [{"role": "user", "content": "x"}],
                                   "tools": [{"type": "function", "function": {"name": "f"}}],
                                   "tool_choice": choice}, TARGET)
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
    ({"stop": ["a", "b", "c", "d", "e", "f"]}, "stop"), ({"temperature": 2.5}, "temperature"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://example.com/a.png"}}]}]}, "messages[0].content[0].image_url"),
    ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]},
     "messages[0].tool_call_id"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"response_format": {"type": "xml"}}, "response_format")])
def test_chat_refusals_name_the_field(extra: dict[str, Any], param: str) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(BadRequest) as refused:
        chat.to_gemini_request(body, TARGET)
    assert refused.value.param == param


def test_chat_whole_answer_text_thoughts_calls_and_usage() -> None:
    answer = chat.to_chat_response(chunk([
        {"text": "hmm", "thought": True}, {"text": "Hello"},
        {"functionCall": {"name": "f", "args": {"a": 1}}}], "STOP", USAGE))
    message = answer["choices"][0]["message"]
    assert message["content"] == "Hello" and message["reasoning_content"] == "hmm"
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert message["tool_calls"][0]["id"].startswith("call_")
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["id"] == "chatcmpl-r1" and answer["model"] == "gemini-2.5-flash"
    assert answer["usage"] == {"prompt_tokens": 20, "completion_tokens": 10,
                               "total_tokens": 30, "prompt_tokens_details": {"cached_tokens": 5},
                               "completion_tokens_details": {"reasoning_tokens": 3}}


@pytest.mark.parametrize("reason, openai_reason, anthropic_reason", [
    ("STOP", "stop", "end_turn"), ("MAX_TOKENS", "length", "max_tokens"),
    ("SAFETY", "content_filter", "refusal"), ("RECITATION", "content_filter", "refusal"),
    ("OTHER", "stop", "end_turn"), ("MALFORMED_FUNCTION_CALL", "stop", "end_turn")])
def test_finish_reasons(reason: str, openai_reason: str, anthropic_reason: str) -> None:
    answer = chunk([{"text": "x"}], reason, USAGE)
    assert chat.to_chat_response(answer)["choices"][0]["finish_reason"] == openai_reason
    assert messages.to_messages_response(answer)["stop_reason"] == anthropic_reason


def test_a_blocked_prompt_is_an_empty_filtered_answer() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"},
               "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}
    answer = chat.to_chat_response(blocked)
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert answer["choices"][0]["message"]["content"] == ""
    assert messages.to_messages_response(blocked)["content"] == []


def test_chat_stream_ends_at_the_finish_chunk() -> None:
    stream = chat.ChatFromGeminiStream(wants_usage=True)
    out = b"".join(stream.feed(e) for e in events(
        chunk([{"text": "Hel"}], usage={"promptTokenCount": 20}),
        chunk([{"text": "lo"}, {"functionCall": {"name": "f", "args": {"a": 1}}}], "STOP",
              USAGE)))
    sent = [orjson.loads(e.data) for e in SseParser().feed(out) if e.data != b"[DONE]"]
    assert out.endswith(b"data: [DONE]\n\n")
    assert sent[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in sent
                   if c["choices"]) == "Hello"
    call = next(c for c in sent if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    assert call["choices"][0]["delta"]["tool_calls"][0]["function"] == {
        "name": "f", "arguments": '{"a":1}'}
    assert [c["choices"][0]["finish_reason"] for c in sent if c["choices"]][-1] == "tool_calls"
    assert sent[-1]["usage"]["completion_tokens"] == 10


def test_chat_stream_error_chunk_becomes_the_sdk_error_shape() -> None:
    stream = chat.ChatFromGeminiStream(wants_usage=False)
    (event,) = events({"error": {"code": 429, "message": "quota", "status":
                                 "RESOURCE_EXHAUSTED"}})
    assert orjson.loads(SseParser().feed(stream.feed(event))[0].data) == {
        "error": {"message": "quota", "type": "rate_limit_error", "param": None, "code": None}}


# --- Messages -> Gemini ----------------------------------------------------------------------

def test_messages_request_blocks_tools_thinking_and_output_format() -> None:
    body = messages.to_gemini_request({
        "model": "gemini-2.5-flash", "max_tokens": 100,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {"type": "document", "source": {"type": "base64",
                                                "media_type": "application/pdf",
                                                "data": "JVBERi0="}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "tool_use", "id": "tu1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "tu1", "is_error": True,
                 "content": [{"type": "text", "text": "boom"},
                             {"type": "image", "source": {"type": "base64",
                                                          "media_type": "image/png",
                                                          "data": PNG}}]}]}],
        "tools": [{"name": "f", "input_schema": SCHEMA, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any"}, "stop_sequences": ["X"], "temperature": 0.2,
        "top_k": 4, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        "metadata": {"user_id": "u"}}, TARGET)
    assert body["systemInstruction"] == {"parts": [{"text": "S"}]}
    user, model, result = body["contents"]
    assert user["parts"][1:] == [{"inlineData": {"mimeType": "image/png", "data": PNG}},
                                 {"inlineData": {"mimeType": "application/pdf",
                                                 "data": "JVBERi0="}}]
    assert model == {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}},
                                                 "thoughtSignature": SKIP_SIGNATURE}]}
    assert result["parts"] == [
        {"functionResponse": {"name": "f", "response": {"error": "boom"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {
        "temperature": 0.2, "topK": 4, "stopSequences": ["X"],
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048},
        "responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


def test_gemini_2_models_get_no_placeholder_signature() -> None:
    history = {"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": "ok"}]}]}
    body = messages.to_gemini_request(history, GEMINI_25)
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
    assert "thoughtSignature" in messages.to_gemini_request(history, TARGET)[
        "contents"][1]["parts"][0]


def test_messages_thinking_is_dropped_for_models_that_do_not_reason() -> None:
    body = messages.to_gemini_request({"messages": [{"role": "user", "content": "x"}],
                                       "thinking": {"type": "enabled", "budget_tokens": 1024}},
                                      PLAIN)
    assert "generationConfig" not in body


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"mcp_servers": [{"url": "x"}]}, "mcp_servers"),
    ({"stop_sequences": list("abcdef")}, "stop_sequences"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "url", "url": "https://example.com/a.png"}}]}]}, "messages[0].content[0].source"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result",
                                                 "tool_use_id": "x"}]}]},
     "messages[0].content[0].tool_use_id")])
def test_messages_refusals_name_the_field(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        messages.to_gemini_request({"messages": [{"role": "user", "content": "x"}], **extra},
                                   TARGET)
    assert refused.value.param == param


def test_messages_whole_answer() -> None:
    answer = messages.to_messages_response(chunk([
        {"text": "a", "thought": True}, {"text": "b", "thought": True}, {"text": "Hi"},
        {"functionCall": {"name": "f", "args": {"a": 1}}}], "STOP", USAGE))
    assert [b["type"] for b in answer["content"]] == ["thinking", "text", "tool_use"]
    assert answer["content"][0]["thinking"] == "ab"
    assert answer["content"][2]["input"] == {"a": 1}
    assert answer["stop_reason"] == "tool_use"
    assert answer["usage"] == {"input_tokens": 15, "output_tokens": 10,
                               "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0}


def test_messages_stream_blocks_and_end() -> None:
    stream = messages.MessagesFromGeminiStream()
    out = b"".join(stream.feed(e) for e in events(
        chunk([{"text": "think", "thought": True}], usage={"promptTokenCount": 20}),
        chunk([{"text": "Hi"}]),
        chunk([{"functionCall": {"name": "f", "args": {"a": 1}}}], "STOP", USAGE)))
    sent = [(e.name.decode() if e.name else None, orjson.loads(e.data))
            for e in SseParser().feed(out)]
    names = [n for n, _ in sent]
    assert names == ["message_start", "content_block_start", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert sent[1][1]["content_block"]["type"] == "thinking"
    assert sent[8][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":1}'}
    assert sent[10][1]["delta"]["stop_reason"] == "tool_use"
    assert sent[10][1]["usage"]["output_tokens"] == 10


# --- the upstream format ---------------------------------------------------------------------

def request() -> ClientRequest:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    return ClientRequest(body=body, model="gemini-2.5-flash", stream=True, max_output=None,
                         size=measure(body))


def test_upstream_body_puts_the_limit_in_generation_config() -> None:
    fmt = GeminiGenerate()
    req = request()
    req.body = {**req.body, "generationConfig": {"temperature": 0.1}}
    sent = orjson.loads(fmt.upstream_body(req, UpstreamOptions(
        "gemini-2.5-flash", 99, "generationConfig.maxOutputTokens")))
    assert sent == {"contents": req.body["contents"],
                    "generationConfig": {"temperature": 0.1, "maxOutputTokens": 99}}
    assert req.body["generationConfig"] == {"temperature": 0.1}  # not mutated
    with pytest.raises(BadRequest):
        fmt.parse({"contents": []})


def test_metering_reads_usage_metadata_and_ends_at_the_finish_reason() -> None:
    fmt, meter = GeminiGenerate(), Meter()
    first, last = events(chunk([{"text": "Hello"}], usage={"promptTokenCount": 20}),
                         chunk([{"text": " there"}], "STOP", USAGE))
    fmt.on_event(request(), meter, first)
    assert not meter.completed and meter.input_tokens == 20
    fmt.on_event(request(), meter, last)
    assert meter.completed and not meter.needs_usage
    usage = meter.usage(0)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens,
            usage.reasoning_tokens, usage.reported) == (15, 5, 10, 3, True)


def test_a_stream_without_usage_gets_the_routers_count_marked_estimated() -> None:
    fmt, meter = GeminiGenerate(), Meter()
    for event in events(chunk([{"text": "a"}]), chunk([{"text": " b"}], "STOP")):
        fmt.on_event(request(), meter, event)
    assert meter.completed and meter.needs_usage
    ((rewritten, shown),) = fmt.usage_events(request(), meter, event, meter.usage(7))
    data = orjson.loads(rewritten.data)
    assert shown and data["usageMetadata"] == {"promptTokenCount": 7,
                                               "candidatesTokenCount": 2,
                                               "totalTokenCount": 9, "estimated": True}
    assert data["candidates"][0]["finishReason"] == "STOP"


def test_end_events_and_error_chunks() -> None:
    fmt, meter = GeminiGenerate(), Meter()
    fmt.on_event(request(), meter, events(chunk([{"text": "a"}]))[0])
    ((end, _),) = fmt.end_events(request(), meter, meter.usage(3))
    data = orjson.loads(end.data)
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert data["responseId"] == "r1"
    fmt.on_event(request(), meter, events({"error": {"code": 503, "message": "busy",
                                                     "status": "UNAVAILABLE"}})[0])
    assert (meter.upstream_error, meter.upstream_error_type) == ("busy", "overloaded_error")


def test_whole_answer_metering_and_usage_rewrite() -> None:
    fmt, meter = GeminiGenerate(), Meter()
    fmt.on_body(meter, orjson.dumps(chunk([{"text": "abcdefgh"}], "STOP", USAGE)))
    assert meter.completed and (meter.input_tokens, meter.output_tokens) == (15, 10)
    bare = orjson.dumps(chunk([{"text": "abcdefgh"}], "STOP"))
    meter = Meter()
    fmt.on_body(meter, bare)
    assert meter.input_tokens is None
    rewritten = orjson.loads(fmt.body_with_usage(bare, meter.usage(4)))
    assert rewritten["usageMetadata"]["estimated"] is True
    assert rewritten["usageMetadata"]["candidatesTokenCount"] == 2


# --- the adapter, the registry, the catalog ---------------------------------------------

def test_adapter_addresses_and_signs_calls() -> None:
    adapter = registry.adapter("gemini")
    assert adapter.apis == ("google.gemini",)
    assert adapter.limit_field("google.gemini") == "generationConfig.maxOutputTokens"
    whole = adapter.build_request(UpstreamRequest("google.gemini", "gemini-2.5-flash", b"{}",
                                                  False), "AIzaKey")
    assert whole.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert (b"x-goog-api-key", b"AIzaKey") in whole.headers
    streamed = adapter.build_request(UpstreamRequest("google.gemini", "gemini-2.5-flash",
                                                     b"{}", True), "AIzaKey")
    assert streamed.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert (b"accept", b"text/event-stream") in streamed.headers
    prefixed = adapter.build_request(UpstreamRequest("google.gemini", "models/gemini-2.5-pro",
                                                     b"{}", False), None)
    assert prefixed.path == "/v1beta/models/gemini-2.5-pro:generateContent"
    assert not any(name == b"x-goog-api-key" for name, _ in prefixed.headers)


def test_every_client_format_reaches_gemini_through_a_bridge() -> None:
    for client_api in ("openai.chat", "anthropic.messages", "openai.responses"):
        assert upstream_api(client_api, ("google.gemini",)) == "google.gemini"
    assert ("openai.chat", "google.gemini") in BRIDGES
    assert FORMATS["google.gemini"].name == "google.gemini"


def test_the_environment_key_implies_a_google_provider() -> None:
    (spec,) = _env_providers({"google_ai_api_key": "AIzaKey",
                              "google_ai_base_url": "https://generativelanguage.googleapis.com/"})
    assert (spec.name, spec.kind, spec.base_url, spec.api_keys) == (
        "google", "gemini", "https://generativelanguage.googleapis.com", ("AIzaKey",))


class _Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.content_type, self.retry_after = status, "application/json", None
        self.body = body


def test_error_bodies_say_what_the_status_line_does_not() -> None:
    from router.providers.gemini import ReadError

    limited = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                      "message": "quota", "details": [
                                          {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                           "retryDelay": "12.5s"}]}})
    answer = ReadError(_Answer(429, limited), limited)
    assert (answer.status, answer.retry_after) == (429, "13")
    assert trio.run(answer.read, 1 << 16) == limited  # the body is still there to read
    bad_key = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                      "message": "API key not valid. Please pass a valid "
                                                 "API key.", "details": [
                                          {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                           "reason": "API_KEY_INVALID"}]}})
    assert ReadError(_Answer(400, bad_key), bad_key).status == 401
    wrong = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                    "message": "Unknown name \"x\""}})
    assert ReadError(_Answer(400, wrong), wrong).status == 400
    assert ReadError(_Answer(429, b"not json"), b"not json").retry_after is None


def test_responses_over_gemini_composes_the_two_bridges() -> None:
    from router.protocols.responses_over_gemini import BRIDGE

    body = BRIDGE.request({"model": "gemini-2.5-flash", "instructions": "S",
                           "input": [{"role": "user", "content": "hi"}],
                           "tools": [{"type": "function", "name": "f",
                                      "parameters": SCHEMA}]}, GEMINI_25)
    assert body["systemInstruction"] == {"parts": [{"text": "S"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "f"
    whole = BRIDGE.response(chunk([{"text": "Hi"}, {"functionCall": {
        "name": "f", "args": {"a": 1}}}], "STOP", USAGE), {"model": "gemini-2.5-flash"}, True)
    assert [item["type"] for item in whole["output"]] == ["message", "function_call"]
    assert whole["usage"]["input_tokens"] == 20 and whole["usage"]["output_tokens"] == 10
    stream = BRIDGE.stream({"model": "gemini-2.5-flash"}, True)
    out = b"".join(stream.feed(e) for e in events(chunk([{"text": "Hel"}]),
                                                  chunk([{"text": "lo"}], "MAX_TOKENS", USAGE)))
    kinds = [e.name for e in SseParser().feed(out)]
    assert kinds[0] == b"response.created" and kinds[-1] == b"response.incomplete"


def test_shipped_gemini_models_route_to_the_environments_google_provider() -> None:
    from router.catalog import build_catalog

    catalog = build_catalog({}, "", None, {"google_ai_api_key": "AIzaKey",
                                           "google_ai_base_url": "https://g.example"}, {})
    for model_id in ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"):
        model = catalog.models[model_id]
        assert model.kind == "gemini"
        assert [(t.provider, t.upstream_model) for t in model.route] == [("google", model_id)]


def test_the_fake_speaks_what_googles_own_sdk_reads() -> None:
    """The fake against the official `google-genai` SDK, where it is installed (it is not
    a dependency of the project: the check is skipped otherwise)."""
    genai = pytest.importorskip("google.genai")
    from google.genai import errors, types

    from tests.fakes import FakeProviderServer

    with FakeProviderServer() as fake:
        client = genai.Client(api_key="AIzaX", http_options=types.HttpOptions(
            base_url=fake.gemini_base_url, api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1)))
        answer = client.models.generate_content(
            model="gemini-2.5-flash", contents="hi",
            config=types.GenerateContentConfig(max_output_tokens=5))
        assert answer.text == "w0 w1 w2 w3 w4"
        assert answer.usage_metadata.candidates_token_count == 5
        streamed = "".join(c.text or "" for c in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi"))
        assert streamed == " ".join(f"w{i}" for i in range(12))
        fake.state.tool_call = ("get_weather", {"city": "Paris"})
        tool = types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", parameters_json_schema=SCHEMA)])
        called = client.models.generate_content(
            model="gemini-2.5-flash", contents="weather?", config=types.GenerateContentConfig(
                tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(
                    disable=True)))
        assert called.function_calls[0].args == {"city": "Paris"}
        fake.state.fail_status = 429
        with pytest.raises(errors.APIError) as raised:
            client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert (raised.value.code, raised.value.status) == (429, "RESOURCE_EXHAUSTED")
