"""AWS Bedrock, without a network: event-stream frames (written by the router, read by
botocore's parser, and the other way), SigV4 signing, model ids and inference-profile
prefixes, the provider's configuration from the environment, the inbound routes."""

from __future__ import annotations

import base64
import re

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from router.catalog import Catalog, build_catalog
from router.errors import ConfigError
from router.protocols.eventstream import (AnthropicEventStreamDecoder, SseToEventStream,
                                          chunk_message, encode_message, exception_message)
from router.providers.base import UpstreamRequest
from router.providers.bedrock import (ADAPTER, GATEWAY, BedrockAdapter, bedrock_model_id,
                                      native_id, parse_credential, profile_prefix)
from router.providers.spec import ProviderSpec
from router.transports.bedrock_surface import bedrock_body, bedrock_target
from tests.fakes.bedrock_app import chunk_frame, exception_frame

START = {"type": "message_start", "message": {"id": "msg_1", "model": "claude",
                                              "usage": {"input_tokens": 7,
                                                        "output_tokens": 1}}}
DELTA = {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "héllo"}}


def _parsed(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


# --- event-stream frames ------------------------------------------------------------------

def test_a_written_frame_is_read_back_by_botocore() -> None:
    frame = encode_message([(":event-type", "chunk"), (":message-type", "event")],
                           b'{"x": 1}')
    ((headers, payload),) = _parsed(frame)
    assert headers == {":event-type": "chunk", ":message-type": "event"}
    assert payload == b'{"x": 1}'
    ((headers, payload),) = _parsed(encode_message([], b""))
    assert headers == {} and payload == b""


def test_a_chunk_carries_the_event_json_in_base64() -> None:
    event = orjson.dumps(DELTA)
    ((headers, payload),) = _parsed(chunk_message(event))
    assert headers == {":event-type": "chunk", ":content-type": "application/json",
                       ":message-type": "event"}
    assert base64.b64decode(orjson.loads(payload)["bytes"]) == event


def test_the_decoder_reads_chunks_split_anywhere() -> None:
    stream = (chunk_frame(orjson.dumps(START)) + chunk_frame(orjson.dumps(DELTA))
              + chunk_frame(orjson.dumps({"type": "message_stop",
                                          "amazon-bedrock-invocationMetrics": {
                                              "inputTokenCount": 7}})))
    decoder = AnthropicEventStreamDecoder()
    events = [e for i in range(len(stream)) for e in decoder.feed(stream[i:i + 1])]
    assert [e.name for e in events] == [b"message_start", b"content_block_delta",
                                        b"message_stop"]
    assert orjson.loads(events[1].data) == DELTA
    assert events[1].raw == b"event: content_block_delta\ndata: " + events[1].data + b"\n\n"
    assert orjson.loads(events[2].data) == {"type": "message_stop"}  # Bedrock's metrics go


@pytest.mark.parametrize(("exception", "error_type"), [
    ("throttlingException", "rate_limit_error"),
    ("serviceUnavailableException", "overloaded_error"),
    ("modelStreamErrorException", "api_error"),
    ("validationException", "invalid_request_error"),
    ("somethingNewException", "api_error")])
def test_an_exception_frame_is_an_error_event(exception: str, error_type: str) -> None:
    (event,) = AnthropicEventStreamDecoder().feed(exception_frame(exception, "slow down"))
    assert event.name == b"error"
    error = orjson.loads(event.data)["error"]
    assert error["type"] == error_type and "slow down" in error["message"]


def test_a_frame_with_a_bad_crc_is_one_error_and_the_rest_is_dropped() -> None:
    good = chunk_frame(orjson.dumps(DELTA))
    bad = bytearray(good)
    bad[-10] ^= 0xFF
    decoder = AnthropicEventStreamDecoder()
    events = decoder.feed(good + bytes(bad))
    assert [e.name for e in events] == [b"content_block_delta", b"error"]
    assert b"ChecksumMismatch" in events[1].data
    assert decoder.feed(good) == []
    # a damaged prelude is the same
    bad_prelude = bytearray(good)
    bad_prelude[9] ^= 0x01
    (event,) = AnthropicEventStreamDecoder().feed(bytes(bad_prelude))
    assert event.name == b"error"


def test_sse_is_reframed_for_bedrock_clients() -> None:
    sse = (b"id: 1\nevent: message_start\ndata: " + orjson.dumps(START) + b"\n\n"
           b": keep-alive\n\nid: 2\nevent: content_block_delta\ndata: "
           + orjson.dumps(DELTA) + b"\n\nevent: error\ndata: "
           + orjson.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                      "message": "Overloaded"}}) + b"\n\n")
    encoder = SseToEventStream()
    out = b"".join(encoder.feed(sse[i:i + 7]) for i in range(0, len(sse), 7))
    frames = _parsed(out)
    assert len(frames) == 3
    assert [orjson.loads(base64.b64decode(orjson.loads(p)["bytes"]))
            for _, p in frames[:2]] == [START, DELTA]
    headers, payload = frames[2]
    assert headers[":message-type"] == "exception"
    assert headers[":exception-type"] == "serviceUnavailableException"
    assert orjson.loads(payload) == {"message": "Overloaded"}
    # and the router's own decoder reads it back
    events = AnthropicEventStreamDecoder().feed(out)
    assert [e.name for e in events] == [b"message_start", b"content_block_delta", b"error"]
    assert exception_message("throttlingException", "x") == exception_frame(
        "throttlingException", "x")


# --- model ids -----------------------------------------------------------------------------

@pytest.mark.parametrize(("region", "prefix"), [
    ("us-east-1", "us."), ("us-west-2", "us."), ("ca-central-1", "us."),
    ("eu-central-1", "eu."), ("eu-west-3", "eu."), ("ap-northeast-1", "apac."),
    ("ap-southeast-2", "apac."), ("us-gov-west-1", "us-gov."), ("me-south-1", ""),
    (None, "")])
def test_the_inference_profile_prefix_follows_the_region(region: str | None,
                                                         prefix: str) -> None:
    assert profile_prefix(region) == prefix
    assert bedrock_model_id("claude-sonnet-4-5", region) == \
        prefix + "anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_model_ids_given_in_bedrock_form_are_kept() -> None:
    assert bedrock_model_id("claude-sonnet-4-5-20250929", "eu-west-1") == \
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert bedrock_model_id("us.anthropic.claude-haiku-4-5-20251001-v1:0", "eu-west-1") == \
        "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert bedrock_model_id("anthropic.claude-3-haiku-20240307-v1:0", "us-east-1") == \
        "us.anthropic.claude-3-haiku-20240307-v1:0"
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
    assert bedrock_model_id(arn, "us-east-1") == arn
    assert bedrock_model_id("meta.llama3-70b-instruct-v1:0", "us-east-1") == \
        "meta.llama3-70b-instruct-v1:0"


def test_bedrock_ids_read_back_as_catalog_ids() -> None:
    assert native_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == \
        "claude-sonnet-4-5-20250929"
    assert native_id("anthropic.claude-3-5-haiku-20241022-v1:0") == "claude-3-5-haiku-20241022"
    assert native_id("global.anthropic.claude-opus-4-6-v1") == "claude-opus-4-6"
    assert native_id("claude-sonnet-4-5") == "claude-sonnet-4-5"


# --- signing -------------------------------------------------------------------------------

def _bound(region: str = "eu-west-1", url: str = "https://bedrock-runtime.eu-west-1."
           "amazonaws.com") -> BedrockAdapter:
    return ADAPTER.bound(ProviderSpec("br", "bedrock", url, region=region))


def test_a_call_is_signed_with_sigv4_and_speaks_invoke_model() -> None:
    body = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]})
    call = _bound().build_request(
        UpstreamRequest("anthropic.messages", "claude-sonnet-4-5", body, True,
                        passthrough_headers=(("anthropic-beta", "a-1, b-2"),)),
        "AKIAEXAMPLE:secret/key:session-token")
    assert call.path == ("/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/"
                         "invoke-with-response-stream")
    headers = dict(call.headers)
    assert re.fullmatch(rb"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/\d{8}/eu-west-1/bedrock/"
                        rb"aws4_request, SignedHeaders=accept;content-type;host;x-amz-date;"
                        rb"x-amz-security-token, Signature=[0-9a-f]{64}",
                        headers[b"authorization"])
    assert headers[b"x-amz-security-token"] == b"session-token"
    assert re.fullmatch(rb"\d{8}T\d{6}Z", headers[b"x-amz-date"])
    assert headers[b"accept"] == b"application/vnd.amazon.eventstream"
    sent = orjson.loads(call.body)
    assert "model" not in sent and "stream" not in sent
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert sent["anthropic_beta"] == ["a-1", "b-2"]


def test_the_signature_is_botocores_over_the_wire_request() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = orjson.dumps({"model": "m", "max_tokens": 5, "messages": []})
    call = _bound("us-east-1", "http://127.0.0.1:8123/prefix").build_request(
        UpstreamRequest("anthropic.messages", "anthropic.claude-x-v1:0", body, False),
        "AKIDX:sekrit")
    headers = {k.decode(): v.decode() for k, v in call.headers}
    assert call.path == "/model/us.anthropic.claude-x-v1%3A0/invoke"
    request = AWSRequest(method="POST", url="http://127.0.0.1:8123/prefix" + call.path,
                         data=call.body, headers={k: headers[k] for k in (
                             "content-type", "accept", "x-amz-date")})
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials("AKIDX", "sekrit"), "bedrock", "us-east-1")
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                               request)
    assert headers["authorization"].endswith("Signature=" + signature)
    assert "x-amz-security-token" not in headers


def test_credentials_are_key_pairs_or_profiles() -> None:
    assert parse_credential("AK:SK") == ("AK", "SK", None)
    assert parse_credential("AK:SK:TOKEN:with:colons") == ("AK", "SK", "TOKEN:with:colons")
    assert parse_credential("profile:dev") is None
    with pytest.raises(ValueError):
        parse_credential("just-a-key")


def test_the_gateway_speaks_openai_chat_with_bedrock_ids() -> None:
    gateway = GATEWAY.bound(ProviderSpec("bedrock", "bedrock_gateway", "http://gw/api/v1",
                                         ("bearer-key",), region="us-west-2"))
    body = orjson.dumps({"model": "claude-haiku-4-5", "messages": []})
    call = gateway.build_request(UpstreamRequest("openai.chat", "claude-haiku-4-5", body,
                                                 False), "bearer-key")
    assert call.path == "/chat/completions"
    assert dict(call.headers)[b"authorization"] == b"Bearer bearer-key"
    assert orjson.loads(call.body)["model"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"


# --- configuration -------------------------------------------------------------------------

def _catalog(env: dict[str, str], toml: str = "") -> Catalog:
    import tomllib

    return build_catalog(tomllib.loads(toml), toml, None, {}, env)


def test_native_bedrock_from_the_environment_serves_claude() -> None:
    catalog = _catalog({"BEDROCK_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "AKIDENV",
                        "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "tok"})
    spec = catalog.providers["bedrock"]
    assert (spec.kind, spec.region, spec.base_url) == (
        "bedrock", "eu-central-1", "https://bedrock-runtime.eu-central-1.amazonaws.com")
    assert spec.api_keys == ("AKIDENV:secret:tok",)
    model = catalog.models["claude-sonnet-4-5"]
    assert [(t.provider, t.upstream_model) for t in model.route] == [
        ("bedrock", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0")]
    assert not catalog.models["gpt-4o"].route


def test_bedrock_keys_win_over_aws_keys_and_a_profile_is_the_fallback() -> None:
    catalog = _catalog({"AWS_REGION": "us-east-1", "BEDROCK_ACCESS_KEY_ID": "AKB",
                        "BEDROCK_SECRET_ACCESS_KEY": "SB", "AWS_ACCESS_KEY_ID": "AKA",
                        "AWS_SECRET_ACCESS_KEY": "SA"})
    assert catalog.providers["bedrock"].api_keys == ("AKB:SB",)
    catalog = _catalog({"BEDROCK_REGION": "us-east-1", "AWS_PROFILE": "dev"})
    assert catalog.providers["bedrock"].api_keys == ("profile:dev",)
    aws_only = _catalog({"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "A",
                         "AWS_SECRET_ACCESS_KEY": "S"})
    assert "bedrock" not in aws_only.providers
    with pytest.raises(ConfigError, match="region"):
        _catalog({"BEDROCK_ACCESS_KEY_ID": "A", "BEDROCK_SECRET_ACCESS_KEY": "S"})


def test_a_bedrock_base_url_is_gateway_mode() -> None:
    catalog = _catalog({"BEDROCK_BASE_URL": "https://gw.example/api/v1/",
                        "BEDROCK_API_KEY": "gw-key"})
    spec = catalog.providers["bedrock"]
    assert (spec.kind, spec.base_url, spec.api_keys) == (
        "bedrock_gateway", "https://gw.example/api/v1", ("gw-key",))
    route = catalog.models["claude-haiku-4-5"].route
    assert [(t.provider, t.upstream_model) for t in route] == [
        ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0")]


def test_a_configured_anthropic_provider_keeps_claude() -> None:
    toml = """
[[providers]]
name = "ant"
kind = "anthropic"
base_url = "http://127.0.0.1:1"
api_keys = ["k"]

[[providers]]
name = "aws"
kind = "bedrock"
base_url = "http://127.0.0.1:2"
region = "ap-southeast-2"
api_keys = ["AK:SK"]
"""
    catalog = _catalog({}, toml)
    assert catalog.models["claude-sonnet-4-5"].route[0].provider == "ant"
    assert catalog.providers["aws"].region == "ap-southeast-2"
    resolved = catalog.resolve("aws/claude-sonnet-4-5")
    assert resolved.route[0].provider == "aws"
    with pytest.raises(ConfigError, match="region"):
        _catalog({}, toml.replace("ap-southeast-2", "Sydney"))


# --- the inbound routes ----------------------------------------------------------------------

def test_the_bedrock_shaped_paths() -> None:
    def target(raw: bytes) -> object:
        return bedrock_target({"path": raw.decode(), "raw_path": raw})

    assert target(b"/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke") == (
        "claude-sonnet-4-5-20250929", False)
    assert target(b"/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/"
                  b"invoke-with-response-stream") == ("claude-sonnet-4-5-20250929", True)
    assert target(b"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2F"
                  b"eu.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke") == (
        "claude-haiku-4-5-20251001", False)
    assert target(b"/model/house-model/invoke") == ("house-model", False)
    assert target(b"/model/x/converse") is None
    assert target(b"/v1/messages") is None


def test_the_bedrock_body_becomes_a_messages_body() -> None:
    body = orjson.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                         "anthropic_beta": ["x"], "messages": []})
    assert orjson.loads(bedrock_body(body, "claude-haiku-4-5", True)) == {
        "max_tokens": 5, "messages": [], "model": "claude-haiku-4-5", "stream": True}
    assert "stream" not in orjson.loads(bedrock_body(body, "m", False))
    assert bedrock_body(b"[1]", "m", False) == b"[1]"
    assert bedrock_body(b"{nope", "m", False) == b"{nope"


def test_a_bedrock_api_key_goes_as_a_bearer_token() -> None:
    call = _bound().build_request(
        UpstreamRequest("anthropic.messages", "claude-haiku-4-5", b'{"model": "x"}', False),
        "bearer:ABSKbedrockapikey")
    headers = dict(call.headers)
    assert headers[b"authorization"] == b"Bearer ABSKbedrockapikey"
    assert b"x-amz-date" not in headers
    catalog = _catalog({"BEDROCK_REGION": "us-east-1", "AWS_BEARER_TOKEN_BEDROCK": "ABSK1"})
    assert catalog.providers["bedrock"].api_keys == ("bearer:ABSK1",)


def test_a_profile_that_cannot_sign_sends_the_call_unsigned(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path) + "/none")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path) + "/none")
    call = _bound().build_request(
        UpstreamRequest("anthropic.messages", "claude-haiku-4-5", b"{}", False),
        "profile:no-such-profile-here")
    assert b"authorization" not in dict(call.headers)  # Bedrock answers 403
    assert "ProfileNotFound" in caplog.text


def test_a_malformed_bedrock_key_is_a_config_error() -> None:
    toml = """
[[providers]]
name = "aws"
kind = "bedrock"
base_url = "http://127.0.0.1:2"
region = "us-east-1"
api_keys = ["only-one-part"]
"""
    with pytest.raises(ConfigError, match=r"providers\[0\]\.api_keys.*ACCESS_KEY_ID"):
        _catalog({}, toml)


# --- Converse (models that are not Claude) --------------------------------------------------

def test_a_model_that_is_not_claude_is_called_through_converse() -> None:
    from router.providers.bedrock_converse import converse_body

    body = orjson.dumps({
        "model": "m", "max_tokens": 9, "temperature": 0.2, "top_p": 0.9, "top_k": 5,
        "stop_sequences": ["END"], "stream": True, "system": [{"type": "text", "text": "S"}],
        "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBO"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "tool_use", "id": "t1", "name": "get", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": "42", "is_error": True}]}]})
    call = _bound("us-east-1").build_request(
        UpstreamRequest("anthropic.messages", "amazon.nova-pro-v1:0", body, True),
        "AK:SK")
    assert call.path == "/model/amazon.nova-pro-v1%3A0/converse-stream"
    assert orjson.loads(call.body) == orjson.loads(converse_body(body)) == {
        "system": [{"text": "S"}],
        "inferenceConfig": {"maxTokens": 9, "temperature": 0.2, "topP": 0.9,
                            "stopSequences": ["END"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "get", "description": "d",
                                               "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"tool": {"name": "get"}}},
        "messages": [
            {"role": "user", "content": [
                {"text": "hi"}, {"image": {"format": "png", "source": {"bytes": "iVBO"}}}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "t1", "name": "get", "input": {"a": 1}}}]},
            {"role": "user", "content": [{"toolResult": {
                "toolUseId": "t1", "content": [{"text": "42"}], "status": "error"}}]}]}
    plain = _bound("us-east-1").build_request(
        UpstreamRequest("anthropic.messages", "meta.llama3-8b-instruct-v1:0",
                        orjson.dumps({"model": "m", "max_tokens": 3, "messages": []}), False),
        "AK:SK")
    assert plain.path == "/model/meta.llama3-8b-instruct-v1%3A0/converse"


def test_a_converse_answer_reads_as_an_anthropic_message() -> None:
    from router.providers.bedrock_converse import anthropic_answer

    answer = orjson.loads(anthropic_answer(orjson.dumps({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "hi"}, {"toolUse": {"toolUseId": "t", "name": "f", "input": {"x": 1}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14,
                  "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2}}), "amazon.nova"))
    assert answer["content"] == [{"type": "text", "text": "hi"},
                                 {"type": "tool_use", "id": "t", "name": "f",
                                  "input": {"x": 1}}]
    assert answer["stop_reason"] == "tool_use" and answer["model"] == "amazon.nova"
    assert answer["usage"] == {"input_tokens": 10, "output_tokens": 4,
                               "cache_read_input_tokens": 3,
                               "cache_creation_input_tokens": 2}


def test_converse_stream_events_read_as_anthropic_events() -> None:
    from router.providers.bedrock import BedrockDecoder

    def event(kind: str, payload: dict[str, object]) -> bytes:
        return encode_message([(":event-type", kind), (":content-type", "application/json"),
                               (":message-type", "event")], orjson.dumps(payload))

    stream = b"".join([
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockStart", {"contentBlockIndex": 1, "start": {
            "toolUse": {"toolUseId": "t1", "name": "f"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1,
                                    "delta": {"toolUse": {"input": "{\"a\":"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1,
                                    "delta": {"toolUse": {"input": "1}"}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 8, "outputTokens": 5},
                           "metrics": {"latencyMs": 9}})])
    events = BedrockDecoder().feed(stream)
    assert [e.name for e in events] == [
        b"message_start", b"content_block_start", b"content_block_delta",
        b"content_block_stop", b"content_block_start", b"content_block_delta",
        b"content_block_delta", b"content_block_stop", b"message_delta", b"message_stop"]
    data = [orjson.loads(e.data) for e in events]
    assert data[1]["content_block"] == {"type": "text", "text": ""}
    assert data[4]["content_block"]["type"] == "tool_use"
    assert data[6]["delta"] == {"type": "input_json_delta", "partial_json": "1}"}
    assert data[8]["delta"]["stop_reason"] == "tool_use"
    assert data[8]["usage"] == {"input_tokens": 8, "output_tokens": 5}


def test_the_region_comes_from_the_entry_or_the_endpoint() -> None:
    from router.providers.bedrock import region_of

    assert region_of("https://bedrock-runtime.eu-west-3.amazonaws.com") == "eu-west-3"
    assert region_of("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com") == \
        "us-gov-west-1"
    assert region_of("http://127.0.0.1:9000") is None
    assert ADAPTER.bound(ProviderSpec("b", "bedrock", "https://bedrock-runtime.ap-south-1."
                                      "amazonaws.com")).region == "ap-south-1"
    assert ADAPTER.bound(ProviderSpec("b", "bedrock", "http://proxy")).region == "us-east-1"


def test_a_converse_event_that_cannot_be_read_is_skipped() -> None:
    from router.providers.bedrock import BedrockDecoder

    bad = encode_message([(":event-type", "contentBlockDelta"), (":message-type", "event")],
                         b'{"contentBlockIndex": "x", "delta": {"text": "a"}}')
    assert BedrockDecoder().feed(bad) == []
