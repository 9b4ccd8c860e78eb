"""OpenAI Chat Completions: validation, the upstream body, and metering of answers.

Streams ask the upstream for `stream_options.include_usage` so the provider's usage is
the bill; the extra usage chunk is hidden from clients that did not ask for it
(docs/billing.md). A server that never sends it (llama.cpp) or reports a prompt of 0 gets the
router's count in its place, marked `"estimated": true`. Usage: `prompt_tokens` includes
cached tokens, which are billed at the cache-read price; `completion_tokens` includes
reasoning tokens. `n` asks for several choices: the hold covers every one of them.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.api import (ClientRequest, Meter, UpstreamOptions, check_service_tier,
                                  json_object, new_event, new_request, render_json_event,
                                  upstream_json)
from router.protocols.sse import SseEvent
from router.protocols.translate import TokenCounts
from router.usage import Usage

MAX_CHOICES = 128  # OpenAI's own bound for `n`
_DONE = SseEvent(None, b"[DONE]", b"data: [DONE]\n\n")


def _record_usage(meter: Meter, usage: dict[str, Any]) -> None:
    prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    # OpenRouter says what went into a prompt cache (Anthropic and Gemini models behind
    # it bill cache writes dearer than input); OpenAI itself never sends it.
    written = int(details.get("cache_write_tokens") or 0)
    out_details = usage.get("completion_tokens_details") or {}
    meter.reported_input(max(prompt - cached - written, 0), cached + written)
    meter.cache_read_tokens = cached
    meter.cache_write_tokens = written
    meter.output_tokens = int(usage.get("completion_tokens") or 0)
    meter.reasoning_tokens = int(out_details.get("reasoning_tokens") or 0)


def _meter_delta(meter: Meter, delta: dict[str, Any]) -> None:
    for key in ("content", "reasoning_content", "reasoning", "refusal"):
        text = delta.get(key)
        if isinstance(text, str):
            meter.add_text(text)
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        meter.add_text((function.get("name") or "") + (function.get("arguments") or ""))


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise BadRequest(f"'n' must be an integer from 1 to {MAX_CHOICES}", param="n")
    return n


# Outputs the catalog's token prices do not cover: refused rather than under-billed.
_UNPRICED = {"audio": "audio output is priced apart from this router's catalog",
             "web_search_options": "web search carries fees outside the token prices"}


def _refuse_unpriced(body: dict[str, Any]) -> None:
    for name, why in _UNPRICED.items():
        if body.get(name):
            raise BadRequest(f"'{name}' is not supported by this router: {why}", param=name)
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or any(
            m != "text" for m in modalities)):
        raise BadRequest("'modalities' may only ask for text: other outputs are priced apart "
                         "from this router's catalog", param="modalities")


def flatten_text_content(messages: list[Any]) -> list[Any]:
    """Text-only content arrays as plain strings: OpenAI-compatible servers' chat
    templates (llama.cpp's among them) render arrays as nothing."""
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and content and all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                for p in content):
            message = {**message, "content": "\n".join(p["text"] for p in content)}
        out.append(message)
    return out


def _usage_chunk(meter: Meter, usage: Usage) -> SseEvent:
    return new_event(None, {**(meter.identity or {}), "object": "chat.completion.chunk",
                            "choices": [], "usage": TokenCounts.of(usage).openai()})


class OpenAIChat:
    name = "openai.chat"
    shape = "openai"

    def parse(self, body: dict[str, Any]) -> ClientRequest:
        request = new_request(body, ("max_completion_tokens", "max_tokens"))
        check_service_tier(body)
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise BadRequest("'stream_options' must be an object", param="stream_options")
        request.wants_usage = bool(options and options.get("include_usage"))
        request.choices = _choices(body)
        _refuse_unpriced(body)
        return request

    def upstream_body(self, request: ClientRequest, options: UpstreamOptions) -> bytes:
        body = dict(request.body)
        body["model"] = options.model
        body.pop("max_tokens", None)
        body.pop("max_completion_tokens", None)
        body[options.limit_field] = options.max_output
        if options.flatten_text:
            body["messages"] = flatten_text_content(body["messages"])
        if request.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}),
                                      "include_usage": True}
        return upstream_json(body)

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        data = event.data
        if data == b"[DONE]":
            meter.completed = True
            if meter.output_tokens is None:  # no usage chunk came: the router shows its count
                meter.needs_usage = True
            return True
        if not data:
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            meter.upstream_error = str(error.get("message", "error"))[:200]
            meter.upstream_error_type = str(error.get("type") or "server_error")
            return True
        if meter.identity is None:
            meter.identity = {key: chunk[key] for key in ("id", "created", "model")
                              if key in chunk}
        choices = chunk.get("choices") or ()
        for choice in choices:
            delta = choice.get("delta")
            if delta:
                _meter_delta(meter, delta)
            if choice.get("finish_reason"):
                meter.finished_choices.add(choice.get("index", 0))
        usage = chunk.get("usage")
        if usage:
            _record_usage(meter, usage)
            if meter.input_tokens is None or not meter.output_tokens and meter.output_deltas:
                meter.needs_usage = True
            if not choices and not request.wants_usage:
                return False
        return True

    def usage_events(self, request: ClientRequest, meter: Meter, event: SseEvent,
                     usage: Usage) -> list[tuple[SseEvent, bool]]:
        if event.data == b"[DONE]":
            return [(_usage_chunk(meter, usage), request.wants_usage), (event, True)]
        chunk = orjson.loads(event.data)
        chunk["usage"] = TokenCounts.of(usage).openai()
        return [(render_json_event(event, chunk), bool(chunk.get("choices"))
                 or request.wants_usage)]

    def end_events(self, request: ClientRequest, meter: Meter,
                   usage: Usage) -> list[tuple[SseEvent, bool]]:
        base = {**(meter.identity or {}), "object": "chat.completion.chunk"}
        out = [(new_event(None, {**base, "choices": [{"index": index, "delta": {},
                                                      "logprobs": None,
                                                      "finish_reason": "length"}]}), True)
               for index in range(request.choices) if index not in meter.finished_choices]
        return out + [(_usage_chunk(meter, usage), request.wants_usage), (_DONE, True)]

    def on_body(self, meter: Meter, body: bytes) -> None:
        parsed = json_object(body)
        if parsed is None:
            return
        for choice in parsed.get("choices") or ():
            message = choice.get("message") or {}
            _meter_delta(meter, message)
        meter.output_deltas = -(-meter.output_bytes // 4)
        meter.completed = True
        if parsed.get("usage"):
            _record_usage(meter, parsed["usage"])

    def body_with_usage(self, body: bytes, usage: Usage) -> bytes:
        parsed = orjson.loads(body)
        parsed["usage"] = TokenCounts.of(usage).openai()
        return orjson.dumps(parsed)
