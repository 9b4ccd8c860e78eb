"""OpenAI Responses API: validation, the upstream body, and metering of answers.

Usage comes in the final `response.completed` (or `response.incomplete`) event and in
whole answers: `input_tokens` includes cached tokens (billed at the cache-read price) and
`output_tokens` includes reasoning tokens.

What the router cannot reserve for is refused before anything is held: stored state it
cannot see (`previous_response_id`, `conversation`, stored `prompt` templates) could make
the input any size, and hosted tools (web search, file search, code interpreter ...)
carry fees outside the token prices. Send the full input and function tools instead.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.api import (ClientRequest, Meter, UpstreamOptions, check_service_tier,
                                  json_object, new_event, optional_limit,
                                  render_json_event, require_model_and_stream, upstream_json)
from router.protocols.sse import SseEvent
from router.protocols.translate import TokenCounts
from router.tokens import measure
from router.usage import Usage

_TEXT_DELTAS = (b"response.output_text.delta", b"response.function_call_arguments.delta",
                b"response.reasoning_summary_text.delta", b"response.reasoning_text.delta",
                b"response.refusal.delta", b"response.custom_tool_call_input.delta")
_FINAL = (b"response.completed", b"response.incomplete", b"response.failed")
_LIFECYCLE = (b"response.created", b"response.in_progress")
_STATEFUL = {"previous_response_id": "a stored conversation's size cannot be reserved for; "
                                     "send the whole input",
             "conversation": "a stored conversation's size cannot be reserved for; send the "
                             "whole input",
             "prompt": "a stored prompt template's size cannot be reserved for; send the "
                       "input itself",
             "background": "it must be the boolean true (or false)"}
CLIENT_TOOL_TYPES = ("function", "custom")


def _record_usage(meter: Meter, usage: dict[str, Any]) -> None:
    total = int(usage.get("input_tokens") or 0)
    cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
    meter.reported_input(max(total - cached, 0), cached)
    meter.cache_read_tokens = cached
    meter.output_tokens = int(usage.get("output_tokens") or 0)
    meter.reasoning_tokens = int((usage.get("output_tokens_details") or {})
                                 .get("reasoning_tokens") or 0)


def _meter_output(meter: Meter, output: Any) -> None:
    for item in output or ():
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                meter.add_text(part.get("text") or part.get("refusal") or "")
        elif kind == "function_call":
            meter.add_text((item.get("name") or "") + (item.get("arguments") or ""))
        elif kind == "reasoning":
            for part in item.get("summary") or ():
                meter.add_text(part.get("text") or "")


def validate_responses_body(body: dict[str, Any]) -> tuple[str, bool]:
    model, stream = require_model_and_stream(body)
    items = body.get("input")
    if isinstance(items, list):
        if not items:
            raise BadRequest("'input' must be a non-empty string or list", param="input")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadRequest(f"'input[{i}]' must be an object", param=f"input[{i}]")
            if item.get("type") == "item_reference":
                raise BadRequest(f"'input[{i}]' is an item_reference: stored items cannot be "
                                 "reserved for; send the item itself", param=f"input[{i}]")
    elif not isinstance(items, str) or not items:
        raise BadRequest("'input' must be a non-empty string or list", param="input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("'instructions' must be a string", param="instructions")
    check_service_tier(body)
    for name, why in _STATEFUL.items():
        if body.get(name):
            raise BadRequest(f"'{name}' is not supported by this router: {why}", param=name)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be a list", param="tools")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") not in CLIENT_TOOL_TYPES:
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise BadRequest(f"'tools[{i}].type' {kind!r} is a hosted tool, whose fees this "
                                 "router cannot bill; use function tools",
                                 param=f"tools[{i}].type")
    return model, stream


class OpenAIResponses:
    name = "openai.responses"
    shape = "openai"

    def parse(self, body: dict[str, Any]) -> ClientRequest:
        model, stream = validate_responses_body(body)
        return ClientRequest(body=body, model=model, stream=stream,
                             max_output=optional_limit(body, "max_output_tokens"),
                             size=measure(body))

    def upstream_body(self, request: ClientRequest, options: UpstreamOptions) -> bytes:
        body = dict(request.body)
        body["model"] = options.model
        body[options.limit_field] = options.max_output
        return upstream_json(body)

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        name = event.name
        if name in _TEXT_DELTAS:
            try:
                payload = orjson.loads(event.data)
                delta = payload.get("delta")
                meter.last_seq = payload.get("sequence_number", meter.last_seq)
            except (orjson.JSONDecodeError, AttributeError):
                return True
            if isinstance(delta, str):
                meter.add_text(delta)
        elif name in _LIFECYCLE:
            payload = json_object(event.data)
            if payload is not None:
                meter.last_seq = payload.get("sequence_number", meter.last_seq)
                if isinstance(payload.get("response"), dict):
                    meter.identity = payload["response"]
        elif name in _FINAL or name == b"error":
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return True
            if not isinstance(payload, dict):
                return True
            response = payload.get("response") or {}
            if name == b"error" or name == b"response.failed":
                error = payload.get("error") or response.get("error") or payload
                meter.upstream_error = str(error.get("message", "error"))[:200] \
                    if isinstance(error, dict) else "error"
                meter.upstream_error_type = str(error.get("code") or error.get("type")
                                                or "server_error") \
                    if isinstance(error, dict) else "server_error"
            usage = response.get("usage")
            if isinstance(usage, dict):
                _record_usage(meter, usage)
            if name != b"error" and name != b"response.failed":
                meter.completed = True
                meter.needs_usage = (meter.input_tokens is None or not meter.output_tokens
                                     and meter.output_deltas > 0)
        return True

    def usage_events(self, request: ClientRequest, meter: Meter, event: SseEvent,
                     usage: Usage) -> list[tuple[SseEvent, bool]]:
        payload = orjson.loads(event.data)
        payload["response"] = {**(payload.get("response") or {}),
                               "usage": TokenCounts.of(usage).responses()}
        return [(render_json_event(event, payload), True)]

    def end_events(self, request: ClientRequest, meter: Meter,
                   usage: Usage) -> list[tuple[SseEvent, bool]]:
        # `output` is left out: the SDKs fill an incomplete response's output from the
        # items they accumulated, which is exactly what streamed.
        response = {key: value for key, value in (meter.identity or {}).items()
                    if key != "output"}
        response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"},
                        usage=TokenCounts.of(usage).responses())
        return [(new_event("response.incomplete", {
            "type": "response.incomplete", "response": response,
            "sequence_number": meter.last_seq + 1}), True)]

    def on_body(self, meter: Meter, body: bytes) -> None:
        parsed = json_object(body)
        if parsed is None:
            return
        _meter_output(meter, parsed.get("output"))
        meter.output_deltas = -(-meter.output_bytes // 4)
        meter.completed = True
        if isinstance(parsed.get("usage"), dict):
            _record_usage(meter, parsed["usage"])

    def body_with_usage(self, body: bytes, usage: Usage) -> bytes:
        parsed = orjson.loads(body)
        parsed["usage"] = TokenCounts.of(usage).responses()
        return orjson.dumps(parsed)
