"""Anthropic Messages: validation, the upstream body, and metering of answers.

Anthropic always reports usage: `message_start` carries input and cache tokens, and
`message_delta` the cumulative output tokens (newer API versions repeat the input
figures there too), so the last figure seen for each field is the truth. Compatible
servers that report 0 get the router's count in both places, marked `"estimated": true`
(the SDKs take `message_delta`'s input figure over `message_start`'s).
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.api import (ClientRequest, Meter, UpstreamOptions, json_object,
                                  new_event, new_request, render_json_event, upstream_json)
from router.protocols.sse import SseEvent
from router.protocols.translate import TokenCounts
from router.usage import Usage

_DELTA_TEXT_FIELDS = ("text", "partial_json", "thinking")


def _record_usage(meter: Meter, usage: dict[str, Any]) -> None:
    if usage.get("cache_read_input_tokens") is not None:
        meter.cache_read_tokens = int(usage["cache_read_input_tokens"])
    if usage.get("cache_creation_input_tokens") is not None:
        meter.cache_write_tokens = int(usage["cache_creation_input_tokens"])
    if usage.get("input_tokens") is not None:
        meter.reported_input(usage["input_tokens"],
                             meter.cache_read_tokens + meter.cache_write_tokens)
    if usage.get("output_tokens") is not None:
        meter.output_tokens = int(usage["output_tokens"])


def _estimated(meter: Meter) -> bool:
    """The figures the client reads would be missing or zero: the router's count instead."""
    return meter.input_tokens is None or (not meter.output_tokens and meter.output_deltas > 0)


MID_CONVERSATION_SYSTEM_BETA = "mid-conversation-system"


def keeps_system_entries(passthrough: tuple[tuple[str, str], ...]) -> bool:
    """Did the client opt in (anthropic-beta) to system entries inside `messages`?"""
    return any(name == "anthropic-beta" and MID_CONVERSATION_SYSTEM_BETA in value
               for name, value in passthrough)


def hoist_system_messages(body: dict[str, Any]) -> dict[str, Any]:
    """Move `role: "system"` entries of `messages` (Claude Code sends them) into `system`,
    after what is there, in order: the Messages API refuses them unless the client sent
    the mid-conversation-system beta (then an Anthropic upstream gets them as sent), and
    every translation starts from the hoisted body."""
    system = body.get("system")
    blocks: list[Any] = ([{"type": "text", "text": system}] if isinstance(system, str)
                         and system else list(system) if isinstance(system, list) else [])
    messages = []
    for i, message in enumerate(body["messages"]):
        if message["role"] != "system":
            messages.append(message)
            continue
        content = message.get("content")
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text"
                                               for b in content):
            blocks.extend(content)
        else:
            raise BadRequest(f"'messages[{i}].content' of a system message must be text",
                             param=f"messages[{i}].content")
    if not messages:
        raise BadRequest("'messages' needs at least one user or assistant message",
                         param="messages")
    return {**body, "system": blocks, "messages": messages}


class AnthropicMessages:
    name = "anthropic.messages"
    shape = "anthropic"

    def parse(self, body: dict[str, Any]) -> ClientRequest:
        request = new_request(body, ("max_tokens",))
        if any(m["role"] == "system" for m in body["messages"]):
            request.body, request.as_sent = hoist_system_messages(body), body
        return request

    def upstream_body(self, request: ClientRequest, options: UpstreamOptions) -> bytes:
        body = dict(request.body)
        body["model"] = options.model
        body[options.limit_field] = options.max_output
        return upstream_json(body)

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        name = event.name
        if name == b"message_stop":
            meter.completed = True
            return True
        if name == b"content_block_start":
            meter.open_block, meter.blocks = meter.blocks, meter.blocks + 1
            return True
        if name == b"content_block_stop":
            meter.open_block = None
            return True
        if name == b"ping":
            return True
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(payload, dict):
            return True
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            for key in _DELTA_TEXT_FIELDS:
                text = delta.get(key)
                if isinstance(text, str):
                    meter.add_text(text)
        elif kind == "message_start":
            message = payload.get("message") or {}
            meter.identity = {"id": message.get("id"), "model": message.get("model")}
            _record_usage(meter, message.get("usage") or {})
            meter.needs_usage = meter.input_tokens is None
        elif kind == "message_delta":
            _record_usage(meter, payload.get("usage") or {})
            meter.needs_usage = _estimated(meter)
        elif kind == "error":
            error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
            meter.upstream_error = str(error.get("message", "error"))[:200]
            meter.upstream_error_type = str(error.get("type") or "api_error")
        return True

    def usage_events(self, request: ClientRequest, meter: Meter, event: SseEvent,
                     usage: Usage) -> list[tuple[SseEvent, bool]]:
        payload = orjson.loads(event.data)
        shown = TokenCounts.of(usage).anthropic()
        if payload.get("type") == "message_start":
            message = dict(payload.get("message") or {})
            message["usage"] = {**(message.get("usage") or {}), **shown}
            payload["message"] = message
        else:
            payload["usage"] = shown
        return [(render_json_event(event, payload), True)]

    def end_events(self, request: ClientRequest, meter: Meter,
                   usage: Usage) -> list[tuple[SseEvent, bool]]:
        out = []
        if meter.open_block is not None:
            out.append(new_event("content_block_stop", {"type": "content_block_stop",
                                                        "index": meter.open_block}))
        out.append(new_event("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": "max_tokens",
                                               "stop_sequence": None},
            "usage": TokenCounts.of(usage).anthropic()}))
        out.append(new_event("message_stop", {"type": "message_stop"}))
        return [(event, True) for event in out]

    def on_body(self, meter: Meter, body: bytes) -> None:
        parsed = json_object(body)
        if parsed is None:
            return
        for block in parsed.get("content") or ():
            for key in ("text", "thinking"):
                if isinstance(block.get(key), str):
                    meter.add_text(block[key])
            if block.get("type") == "tool_use":
                meter.add_text(orjson.dumps(block.get("input")).decode())
        meter.output_deltas = -(-meter.output_bytes // 4)
        meter.completed = True
        _record_usage(meter, parsed.get("usage") or {})

    def body_with_usage(self, body: bytes, usage: Usage) -> bytes:
        parsed = orjson.loads(body)
        parsed["usage"] = {**(parsed.get("usage") or {}), **TokenCounts.of(usage).anthropic()}
        return orjson.dumps(parsed)
