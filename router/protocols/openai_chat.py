"""OpenAI Chat Completions: validation, the upstream body, and metering of answers.

Streams ask the upstream for `stream_options.include_usage` so the provider's usage is
the bill; the extra usage chunk is hidden from clients that did not ask for it (SPEC
§4.4). Usage: `prompt_tokens` includes cached tokens, which are billed at the cache-read
price; `completion_tokens` includes reasoning tokens.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.api import (ClientRequest, Meter, check_service_tier, json_object,
                                  new_request)
from router.protocols.sse import SseEvent


def _record_usage(meter: Meter, usage: dict[str, Any]) -> None:
    prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    out_details = usage.get("completion_tokens_details") or {}
    meter.input_tokens = max(prompt - cached, 0)
    meter.cache_read_tokens = cached
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
        return request

    def upstream_body(self, request: ClientRequest, upstream_model: str,
                      max_output: int) -> bytes:
        body = dict(request.body)
        body["model"] = upstream_model
        if "max_tokens" in body and "max_completion_tokens" not in body:
            body["max_tokens"] = max_output
        else:
            body["max_completion_tokens"] = max_output
        if request.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}),
                                      "include_usage": True}
        return orjson.dumps(body)

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        data = event.data
        if data == b"[DONE]":
            meter.completed = True
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
            meter.upstream_error = str((chunk["error"] or {}).get("message", "error"))[:200]
            return True
        choices = chunk.get("choices") or ()
        for choice in choices:
            delta = choice.get("delta")
            if delta:
                _meter_delta(meter, delta)
        usage = chunk.get("usage")
        if usage:
            _record_usage(meter, usage)
            if not choices and not request.wants_usage:
                return False
        return True

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
