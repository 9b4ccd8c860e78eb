"""Anthropic Messages: validation, the upstream body, and metering of answers.

Anthropic always reports usage: `message_start` carries input and cache tokens, and
`message_delta` the cumulative output tokens (newer API versions repeat the input
figures there too), so the last figure seen for each field is the truth.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.api import ClientRequest, Meter, json_object, new_request
from router.protocols.sse import SseEvent

_DELTA_TEXT_FIELDS = ("text", "partial_json", "thinking")


def _record_usage(meter: Meter, usage: dict[str, Any]) -> None:
    if usage.get("input_tokens") is not None:
        meter.input_tokens = int(usage["input_tokens"])
    if usage.get("output_tokens") is not None:
        meter.output_tokens = int(usage["output_tokens"])
    if usage.get("cache_read_input_tokens") is not None:
        meter.cache_read_tokens = int(usage["cache_read_input_tokens"])
    if usage.get("cache_creation_input_tokens") is not None:
        meter.cache_write_tokens = int(usage["cache_creation_input_tokens"])


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

    def upstream_body(self, request: ClientRequest, upstream_model: str,
                      max_output: int) -> bytes:
        body = dict(request.body)
        body["model"] = upstream_model
        body["max_tokens"] = max_output
        return orjson.dumps(body)

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        name = event.name
        if name == b"message_stop":
            meter.completed = True
            return True
        if name in (b"ping", b"content_block_start", b"content_block_stop"):
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
            _record_usage(meter, (payload.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            _record_usage(meter, payload.get("usage") or {})
        elif kind == "error":
            meter.upstream_error = str((payload.get("error") or {}).get("message", "error"))[:200]
        return True

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
