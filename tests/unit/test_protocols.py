"""OpenAI Chat and Anthropic Messages formats: 400s that name the field (docs/api.md), the body sent
upstream, and metering of streamed answers (docs/billing.md)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from router.errors import BadRequest
from router.protocols.anthropic import AnthropicMessages
from router.catalog import ProviderSpec
from router.protocols.api import ClientRequest, Meter, UpstreamOptions
from router.protocols.openai_chat import OpenAIChat
from router.providers import registry
from router.protocols.sse import SseEvent, SseParser
from router.usage import Usage

OPENAI = OpenAIChat()
ANTHROPIC = AnthropicMessages()
MESSAGES = [{"role": "user", "content": "Say hello"}]


def events_of(stream: bytes) -> list[SseEvent]:
    parser = SseParser()
    events = parser.feed(stream)
    assert parser.pending == b""
    return events


def run(fmt: Any, request: ClientRequest, stream: bytes) -> tuple[Meter, list[SseEvent]]:
    """Meter every event; return the meter and the events the client would see."""
    meter = Meter()
    shown = [e for e in events_of(stream) if fmt.on_event(request, meter, e)]
    return meter, shown


# --- parse: 400s naming the field ------------------------------------------------------------

BAD_COMMON = [
    ({"messages": MESSAGES}, "model"),
    ({"model": 42, "messages": MESSAGES}, "model"),
    ({"model": "", "messages": MESSAGES}, "model"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": "hello"}, "messages"),
    ({"model": "m", "messages": {"role": "user"}}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": ["hello"]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "a"}, {"content": "b"}]},
     "messages[1]"),
    ({"model": "m", "messages": MESSAGES, "stream": "yes"}, "stream"),
    ({"model": "m", "messages": MESSAGES, "stream": 1}, "stream"),
    ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": MESSAGES, "max_tokens": -5}, "max_tokens"),
    ({"model": "m", "messages": MESSAGES, "max_tokens": 1.5}, "max_tokens"),
    ({"model": "m", "messages": MESSAGES, "max_tokens": "100"}, "max_tokens"),
    ({"model": "m", "messages": MESSAGES, "max_tokens": True}, "max_tokens"),
]


@pytest.mark.parametrize("fmt", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
@pytest.mark.parametrize("body, field", BAD_COMMON)
def test_bad_body_is_a_400_naming_the_field(fmt: Any, body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as info:
        fmt.parse(body)
    err = info.value
    assert err.status == 400
    assert err.param == field
    assert field in err.message
    # the client's SDK sees the field in its own error shape
    if fmt.shape == "openai":
        shaped = orjson.loads(err.body("openai"))
        assert shaped["error"]["param"] == field
        assert shaped["error"]["type"] == "invalid_request_error"
        assert field in shaped["error"]["message"]
    else:
        shaped = orjson.loads(err.body("anthropic"))
        assert shaped["type"] == "error"
        assert shaped["error"]["type"] == "invalid_request_error"
        assert field in shaped["error"]["message"]


@pytest.mark.parametrize("value", [0, -1, 2.0, "10", False])
def test_openai_max_completion_tokens_is_checked(value: Any) -> None:
    with pytest.raises(BadRequest) as info:
        OPENAI.parse({"model": "m", "messages": MESSAGES, "max_completion_tokens": value})
    assert info.value.param == "max_completion_tokens"


def test_openai_stream_options_must_be_an_object() -> None:
    with pytest.raises(BadRequest) as info:
        OPENAI.parse({"model": "m", "messages": MESSAGES, "stream": True,
                      "stream_options": "include_usage"})
    assert info.value.param == "stream_options"


def test_valid_bodies_parse() -> None:
    req = OPENAI.parse({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                        "max_tokens": 64})
    assert (req.model, req.stream, req.max_output, req.wants_usage) == ("gpt-4o-mini", True,
                                                                         64, False)
    req = OPENAI.parse({"model": "gpt-4o-mini", "messages": MESSAGES,
                        "max_completion_tokens": 32, "stream": True,
                        "stream_options": {"include_usage": True}})
    assert req.max_output == 32 and req.wants_usage is True
    assert OPENAI.parse({"model": "x", "messages": MESSAGES}).max_output is None
    assert OPENAI.parse({"model": "x", "messages": MESSAGES}).stream is False

    # Claude Code sends a system entry inside messages, plus thinking/metadata/cache_control
    req = ANTHROPIC.parse({"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
                           "messages": [{"role": "system", "content": "be brief"}, *MESSAGES],
                           "thinking": {"type": "enabled", "budget_tokens": 512},
                           "metadata": {"user_id": "u1"}})
    assert (req.model, req.stream, req.max_output) == ("claude-sonnet-4-5", True, 1024)


# --- upstream_body ---------------------------------------------------------------------------

OPENAI_ITSELF = ProviderSpec("oai", "openai", "http://x")
LLAMA_CPP = ProviderSpec("local", "openai_compatible", "http://x")


def to(spec: ProviderSpec, model: str, limit: int, api: str = "openai.chat") -> UpstreamOptions:
    adapter = registry.adapter(spec.kind)
    return UpstreamOptions(model, limit, spec.max_tokens_field or adapter.limit_field(api),
                           adapter.flattens_text)


def test_openai_upstream_body_swaps_model_and_limit_and_asks_for_usage() -> None:
    client = {"model": "fast", "messages": MESSAGES, "stream": True, "max_tokens": 50,
              "temperature": 0.2, "tools": [{"type": "function",
                                             "function": {"name": "f", "parameters": {}}}]}
    req = OPENAI.parse(client)
    up = orjson.loads(OPENAI.upstream_body(req, to(OPENAI_ITSELF, "gpt-4o-mini-2024-07-18",
                                                   1000)))
    assert up["model"] == "gpt-4o-mini-2024-07-18"
    assert up["max_completion_tokens"] == 1000, "OpenAI itself reads max_completion_tokens"
    assert "max_tokens" not in up
    assert up["stream_options"] == {"include_usage": True}
    assert up["messages"] == MESSAGES
    assert up["temperature"] == 0.2
    assert up["tools"] == client["tools"]
    # the client's request is untouched: a retry on the next target starts from it again
    assert client["model"] == "fast" and client["max_tokens"] == 50
    assert "stream_options" not in client
    second = orjson.loads(OPENAI.upstream_body(req, to(LLAMA_CPP, "other-upstream", 500)))
    assert second["model"] == "other-upstream" and second["max_tokens"] == 500
    assert "max_completion_tokens" not in second, "llama.cpp ignores it: only max_tokens"


def test_openai_upstream_body_sets_a_limit_when_the_client_gave_none() -> None:
    req = OPENAI.parse({"model": "m", "messages": MESSAGES})
    up = orjson.loads(OPENAI.upstream_body(req, to(OPENAI_ITSELF, "up", 777)))
    assert up["max_completion_tokens"] == 777
    assert "stream_options" not in up  # not a stream: nothing to ask for


def test_compatible_servers_get_the_limit_as_max_tokens_whatever_the_client_sent() -> None:
    req = OPENAI.parse({"model": "m", "messages": MESSAGES, "max_completion_tokens": 10})
    up = orjson.loads(OPENAI.upstream_body(req, to(LLAMA_CPP, "up", 10)))
    assert up["max_tokens"] == 10
    assert "max_completion_tokens" not in up


def test_a_provider_can_override_the_limit_field() -> None:
    odd = ProviderSpec("odd", "openai_compatible", "http://x", max_tokens_field="n_predict")
    req = OPENAI.parse({"model": "m", "messages": MESSAGES, "max_tokens": 10})
    up = orjson.loads(OPENAI.upstream_body(req, to(odd, "up", 7)))
    assert up["n_predict"] == 7 and "max_tokens" not in up


def test_compatible_servers_get_text_only_content_arrays_as_strings() -> None:
    messages = [{"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": [{"type": "text", "text": "one"},
                                             {"type": "text", "text": "two"}]},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                                             {"type": "image_url",
                                              "image_url": {"url": "data:image/png;base64,AA"}}]}]
    req = OPENAI.parse({"model": "m", "messages": messages})
    up = orjson.loads(OPENAI.upstream_body(req, to(LLAMA_CPP, "up", 10)))
    assert [m["content"] for m in up["messages"][:2]] == ["be brief", "one\ntwo"]
    assert up["messages"][2] == messages[2], "an image keeps its array"
    kept = orjson.loads(OPENAI.upstream_body(req, to(OPENAI_ITSELF, "up", 10)))
    assert kept["messages"] == messages, "OpenAI itself reads arrays"


@pytest.mark.parametrize("n", [0, -1, 129, 1.5, "2", True])
def test_bad_n_is_a_400_naming_it(n: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        OPENAI.parse({"model": "m", "messages": MESSAGES, "n": n})
    assert caught.value.param == "n"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_an_absurd_limit_is_a_400_naming_it(field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        OPENAI.parse({"model": "m", "messages": MESSAGES, field: 10**40})
    assert caught.value.param == field


@pytest.mark.parametrize("field,value", [("modalities", ["text", "audio"]),
                                         ("audio", {"voice": "alloy", "format": "wav"}),
                                         ("web_search_options", {}), ("modalities", "text")])
def test_outputs_the_catalog_cannot_price_are_refused(field: str, value: Any) -> None:
    body = {"model": "m", "messages": MESSAGES, field: value}
    if field == "web_search_options":
        body[field] = {"search_context_size": "low"}
    with pytest.raises(BadRequest) as caught:
        OPENAI.parse(body)
    assert caught.value.param == field


def test_n_choices_are_counted() -> None:
    assert OPENAI.parse({"model": "m", "messages": MESSAGES, "n": 8}).choices == 8
    assert OPENAI.parse({"model": "m", "messages": MESSAGES}).choices == 1


def test_openai_upstream_stream_forces_include_usage_and_keeps_other_options() -> None:
    req = OPENAI.parse({"model": "m", "messages": MESSAGES, "stream": True,
                        "stream_options": {"include_usage": False, "include_obfuscation": False}})
    assert req.wants_usage is False
    up = orjson.loads(OPENAI.upstream_body(req, to(OPENAI_ITSELF, "up", 10)))
    assert up["stream_options"] == {"include_usage": True, "include_obfuscation": False}


def test_anthropic_upstream_body_swaps_model_and_limit() -> None:
    client = {"model": "smart", "max_tokens": 4096, "stream": True, "messages": MESSAGES,
              "system": [{"type": "text", "text": "be brief",
                          "cache_control": {"type": "ephemeral"}}],
              "metadata": {"user_id": "u1"}}
    req = ANTHROPIC.parse(client)
    up = orjson.loads(ANTHROPIC.upstream_body(req, UpstreamOptions(
        "claude-haiku-4-5-20251001", 2048, "max_tokens")))
    assert up["model"] == "claude-haiku-4-5-20251001"
    assert up["max_tokens"] == 2048
    assert up["system"] == client["system"]
    assert up["metadata"] == {"user_id": "u1"}
    assert up["stream"] is True
    assert "stream_options" not in up
    assert client["model"] == "smart" and client["max_tokens"] == 4096


# --- OpenAI stream metering ------------------------------------------------------------------

def oa_chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
             "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
             "choices": [{"index": 0, "delta": delta or {}, "logprobs": None,
                          "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


OA_USAGE = {"prompt_tokens": 120, "completion_tokens": 3, "total_tokens": 123,
            "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
OA_USAGE_CHUNK = (b"data: " + orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": OA_USAGE}) + b"\n\n")
OA_HEAD = oa_chunk({"role": "assistant", "content": ""})
OA_DELTAS = [oa_chunk({"content": t}) for t in ("Hel", "lo", " there")]
OA_STREAM = (OA_HEAD + b"".join(OA_DELTAS) + oa_chunk({}, "stop") + OA_USAGE_CHUNK
             + b"data: [DONE]\n\n")


def openai_stream_request(include_usage: bool | None) -> ClientRequest:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    return OPENAI.parse(body)


@pytest.mark.parametrize("asked", [None, False])
def test_openai_usage_chunk_hidden_when_client_did_not_ask(asked: bool | None) -> None:
    meter, shown = run(OPENAI, openai_stream_request(asked), OA_STREAM)
    raws = [e.raw for e in shown]
    assert OA_USAGE_CHUNK not in raws
    # everything else reaches the client, in order
    assert raws == [OA_HEAD, *OA_DELTAS, oa_chunk({}, "stop"), b"data: [DONE]\n\n"]
    # and the hidden usage is still what gets billed
    assert meter.usage(estimated_input=9999) == Usage(
        input_tokens=20, output_tokens=3, cache_read_tokens=100, cache_write_tokens=0,
        reasoning_tokens=0, reported=True)


def test_openai_usage_chunk_shown_when_client_asked() -> None:
    meter, shown = run(OPENAI, openai_stream_request(True), OA_STREAM)
    assert b"".join(e.raw for e in shown) == OA_STREAM
    usage = meter.usage(estimated_input=9999)
    assert usage.input_tokens == 120 - 100  # prompt tokens minus the cached ones
    assert usage.cache_read_tokens == 100
    assert usage.output_tokens == 3
    assert usage.reported


def test_openai_reasoning_tokens_reported() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 50,
             "completion_tokens_details": {"reasoning_tokens": 40}}
    chunk = b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n"
    meter, _ = run(OPENAI, openai_stream_request(True), OA_HEAD + chunk + b"data: [DONE]\n\n")
    got = meter.usage(estimated_input=1)
    assert (got.input_tokens, got.output_tokens, got.reasoning_tokens) == (10, 50, 40)


def test_openai_stream_cut_before_any_delta_costs_nothing() -> None:
    meter, _ = run(OPENAI, openai_stream_request(None), OA_HEAD)
    assert meter.usage(estimated_input=500).is_empty


def test_openai_stream_cut_after_three_deltas_bills_three_output_tokens() -> None:
    meter, _ = run(OPENAI, openai_stream_request(None), OA_HEAD + b"".join(OA_DELTAS))
    usage = meter.usage(estimated_input=42)
    assert usage.output_tokens == 3
    assert usage.input_tokens == 42  # no report: input counted from the request
    assert not usage.reported


def test_openai_stream_without_usage_report_counts_what_was_streamed() -> None:
    # llama.cpp ignores include_usage: a complete stream with no usage chunk
    stream = OA_HEAD + b"".join(OA_DELTAS) + oa_chunk({}, "stop") + b"data: [DONE]\n\n"
    meter, _ = run(OPENAI, openai_stream_request(None), stream)
    usage = meter.usage(estimated_input=42)
    assert (usage.input_tokens, usage.output_tokens, usage.reported) == (42, 3, False)


# --- Anthropic stream metering ---------------------------------------------------------------

def an_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


AN_START = an_event("message_start", {"type": "message_start", "message": {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 25, "cache_creation_input_tokens": 40,
              "cache_read_input_tokens": 300, "output_tokens": 1}}})
AN_BLOCK_START = an_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                  "content_block": {"type": "text", "text": ""}})
AN_PING = an_event("ping", {"type": "ping"})
AN_DELTAS = [an_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": t}})
             for t in ("Hello", " wor", "ld")]
AN_BLOCK_STOP = an_event("content_block_stop", {"type": "content_block_stop", "index": 0})
AN_MESSAGE_DELTA = an_event("message_delta", {
    "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    "usage": {"output_tokens": 17}})
AN_STOP = an_event("message_stop", {"type": "message_stop"})
AN_STREAM = (AN_START + AN_BLOCK_START + AN_PING + b"".join(AN_DELTAS) + AN_BLOCK_STOP
             + AN_MESSAGE_DELTA + AN_STOP)


def anthropic_stream_request() -> ClientRequest:
    return ANTHROPIC.parse({"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
                            "messages": MESSAGES})


def test_anthropic_full_stream_bills_the_reported_usage() -> None:
    meter, shown = run(ANTHROPIC, anthropic_stream_request(), AN_STREAM)
    assert b"".join(e.raw for e in shown) == AN_STREAM  # every event reaches the client
    assert meter.usage(estimated_input=9999) == Usage(
        input_tokens=25, output_tokens=17, cache_read_tokens=300, cache_write_tokens=40,
        reasoning_tokens=0, reported=True)


def test_anthropic_message_delta_repeating_input_figures() -> None:
    # newer API versions repeat input and cache figures in message_delta; last one wins
    delta = an_event("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": "end_turn"},
        "usage": {"input_tokens": 26, "cache_creation_input_tokens": 40,
                  "cache_read_input_tokens": 300, "output_tokens": 17}})
    stream = AN_START + b"".join(AN_DELTAS) + delta + AN_STOP
    meter, _ = run(ANTHROPIC, anthropic_stream_request(), stream)
    got = meter.usage(estimated_input=0)
    assert (got.input_tokens, got.output_tokens, got.cache_read_tokens,
            got.cache_write_tokens) == (26, 17, 300, 40)


def test_anthropic_stream_cut_before_any_delta_costs_nothing() -> None:
    meter, _ = run(ANTHROPIC, anthropic_stream_request(), AN_START + AN_BLOCK_START + AN_PING)
    assert meter.usage(estimated_input=500).is_empty


def test_anthropic_stream_cut_after_three_deltas_bills_three_output_tokens() -> None:
    meter, _ = run(ANTHROPIC, anthropic_stream_request(),
                   AN_START + AN_BLOCK_START + b"".join(AN_DELTAS))
    usage = meter.usage(estimated_input=9999)
    assert usage.output_tokens == 3
    # the input figures message_start reported are still the truth
    assert usage.input_tokens == 25
    assert usage.cache_read_tokens == 300
    assert usage.cache_write_tokens == 40
    assert not usage.reported


def test_anthropic_error_event_is_recorded_and_shown() -> None:
    err = an_event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                        "message": "Overloaded"}})
    meter, shown = run(ANTHROPIC, anthropic_stream_request(), AN_START + AN_DELTAS[0] + err)
    assert shown[-1].raw == err
    assert meter.upstream_error == "Overloaded"
    assert meter.usage(estimated_input=0).output_tokens == 1


# --- non-streamed bodies ---------------------------------------------------------------------

def test_openai_body_usage() -> None:
    body = orjson.dumps({"id": "chatcmpl-2", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello there"},
         "finish_reason": "stop"}], "usage": OA_USAGE})
    meter = Meter()
    OPENAI.on_body(meter, body)
    assert meter.usage(estimated_input=1) == Usage(20, 3, 100, 0, 0, True)


def test_openrouter_cache_writes_are_billed_as_cache_writes() -> None:
    """OpenRouter splits the prompt into fresh input, cache reads and cache writes (the
    writes cost more than input for the Anthropic models behind it)."""
    body = orjson.dumps({"id": "gen-1", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"},
         "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 4, "total_tokens": 1004,
                  "prompt_tokens_details": {"cached_tokens": 300,
                                            "cache_write_tokens": 600}}})
    meter = Meter()
    OPENAI.on_body(meter, body)
    assert meter.usage(estimated_input=1) == Usage(100, 4, 300, 600, 0, True)


def test_anthropic_body_usage() -> None:
    body = orjson.dumps({"id": "msg_2", "type": "message", "role": "assistant",
                         "content": [{"type": "text", "text": "Hello"}],
                         "stop_reason": "end_turn",
                         "usage": {"input_tokens": 11, "output_tokens": 5,
                                   "cache_read_input_tokens": 7,
                                   "cache_creation_input_tokens": 3}})
    meter = Meter()
    ANTHROPIC.on_body(meter, body)
    assert meter.usage(estimated_input=1) == Usage(11, 5, 7, 3, 0, True)


def test_stream_null_means_not_streaming_as_in_openais_api() -> None:
    from router.protocols.openai_chat import OpenAIChat

    request = OpenAIChat().parse({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                  "stream": None})
    assert request.stream is False


def test_alias_may_point_at_a_provider_prefixed_model(tmp_path) -> None:
    from router.config import load_config

    (tmp_path / "aura-router.toml").write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'api_keys = ["sk-p"]\n[aliases]\ncheap = "p/gpt-4o-mini"\n')
    catalog = load_config({}, {}, tmp_path).catalog
    resolved = catalog.resolve("cheap")
    assert resolved is not None and resolved.route[0].provider == "p"
    assert resolved.route[0].upstream_model == "gpt-4o-mini"
