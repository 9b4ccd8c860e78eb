"""Bedrock's Converse API for models that are not Claude (Amazon Nova, Llama, Mistral,
...): the `bedrock` adapter speaks Anthropic Messages to the router and, for such a
model, writes the Converse body, and reads Converse answers and ConverseStream events
back as Anthropic's (docs/providers.md#aws-bedrock-bedrock-bedrock_gateway).

What is translated: `system` (text), messages of text, base64 images, `tool_use` and
`tool_result` blocks; `max_tokens`, `temperature`, `top_p`, `stop_sequences` (as
`inferenceConfig`); `tools` and `tool_choice` (`auto`, `any`, `tool`; `none` sends no
tools). Dropped: `thinking` and thinking blocks, `top_k`, `metadata`, `service_tier`,
documents and image URLs (Converse takes only bytes), `cache_control`. Answers: text,
`toolUse` (its input), `stopReason` (`guardrail_intervened` / `content_filtered` are
`refusal`), usage (`inputTokens`, `outputTokens`, `cacheReadInputTokens`,
`cacheWriteInputTokens`, from the stream's `metadata` event).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from router.protocols.eventstream import sse_event
from router.protocols.sse import SseEvent

STOP_REASONS = {"end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens",
                "stop_sequence": "stop_sequence", "guardrail_intervened": "refusal",
                "content_filtered": "refusal"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}


def uses_converse(model_id: str) -> bool:
    """Claude goes through InvokeModel with Anthropic's own body; every other model (and
    an application inference profile's ARN, which may be anything) through Converse."""
    return "anthropic." not in model_id


def _text(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"text": value}] if value else []
    return [{"text": b["text"]} for b in value or () if isinstance(b, dict)
            and b.get("type") == "text" and b.get("text")]


def _block(block: Any) -> dict[str, Any] | None:
    if isinstance(block, str):
        return {"text": block}
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return {"text": block.get("text", "")}
    if kind == "image":
        source = block.get("source") or {}
        fmt = _IMAGE_FORMATS.get(str(source.get("media_type")))
        if source.get("type") != "base64" or fmt is None:
            return None
        return {"image": {"format": fmt, "source": {"bytes": source.get("data", "")}}}
    if kind == "tool_use":
        return {"toolUse": {"toolUseId": block.get("id"), "name": block.get("name"),
                            "input": block.get("input") or {}}}
    if kind == "tool_result":
        content = block.get("content")
        parts = _text(content) if not isinstance(content, list) else [
            p for p in (_block(c) for c in content) if p and ("text" in p or "image" in p)]
        result: dict[str, Any] = {"toolUseId": block.get("tool_use_id"),
                                  "content": parts or [{"text": ""}]}
        if block.get("is_error"):
            result["status"] = "error"
        return {"toolResult": result}
    return None  # thinking, documents, server tools: not Converse's


def converse_body(messages_body: bytes) -> bytes:
    """The Converse request for an Anthropic Messages body (model and stream dropped:
    they are in the path)."""
    body = orjson.loads(messages_body)
    out: dict[str, Any] = {"messages": []}
    for message in body.get("messages") or ():
        content = message.get("content")
        blocks = [b for b in (_block(c) for c in (
            [content] if isinstance(content, str) else content or ())) if b]
        if blocks:
            out["messages"].append({"role": message.get("role"), "content": blocks})
    system = _text(body.get("system"))
    if system:
        out["system"] = system
    config = {name: body[key] for key, name in (
        ("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"),
        ("stop_sequences", "stopSequences")) if body.get(key) is not None}
    if config:
        out["inferenceConfig"] = config
    choice = body.get("tool_choice") or {}
    if body.get("tools") and choice.get("type") != "none":
        tools = [{"toolSpec": {"name": t["name"], "description": t.get("description") or
                               t["name"], "inputSchema": {"json": t.get("input_schema") or
                                                          {"type": "object"}}}}
                 for t in body["tools"] if isinstance(t, dict) and t.get("name")
                 and t.get("type") in (None, "custom")]
        if tools:
            out["toolConfig"] = {"tools": tools}
            if choice.get("type") == "any":
                out["toolConfig"]["toolChoice"] = {"any": {}}
            elif choice.get("type") == "tool":
                out["toolConfig"]["toolChoice"] = {"tool": {"name": choice.get("name")}}
    return orjson.dumps(out)


def anthropic_usage(usage: dict[str, Any]) -> dict[str, int]:
    out = {"input_tokens": int(usage.get("inputTokens") or 0),
           "output_tokens": int(usage.get("outputTokens") or 0)}
    if usage.get("cacheReadInputTokens") is not None:
        out["cache_read_input_tokens"] = int(usage["cacheReadInputTokens"])
    if usage.get("cacheWriteInputTokens") is not None:
        out["cache_creation_input_tokens"] = int(usage["cacheWriteInputTokens"])
    return out


def _message_id() -> str:
    return "msg_bdrk_" + secrets.token_hex(12)


def anthropic_answer(converse: bytes, model: str) -> bytes:
    """A Converse answer as the Anthropic message it stands for."""
    answer = orjson.loads(converse)
    content: list[dict[str, Any]] = []
    for block in ((answer.get("output") or {}).get("message") or {}).get("content") or ():
        if "text" in block:
            content.append({"type": "text", "text": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            content.append({"type": "tool_use", "id": use.get("toolUseId"),
                            "name": use.get("name"), "input": use.get("input") or {}})
    return orjson.dumps({
        "id": _message_id(), "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(answer.get("stopReason")), "end_turn"),
        "stop_sequence": None, "usage": anthropic_usage(answer.get("usage") or {})})


class ConverseEvents:
    """ConverseStream events -> Anthropic stream events. Converse opens no text block
    (its first delta does) and reports usage after `messageStop`, in `metadata`: the
    Anthropic `message_delta` (stop reason and usage) and `message_stop` go out then."""

    def __init__(self) -> None:
        self.open: int | None = None
        self.stop_reason = "end_turn"

    def _start_block(self, index: int, block: dict[str, Any]) -> list[SseEvent]:
        out = self._stop_block()
        self.open = index
        out.append(_json("content_block_start", {"type": "content_block_start",
                                                 "index": index, "content_block": block}))
        return out

    def _stop_block(self) -> list[SseEvent]:
        if self.open is None:
            return []
        index, self.open = self.open, None
        return [_json("content_block_stop", {"type": "content_block_stop", "index": index})]

    def feed(self, event_type: str, payload: bytes) -> list[SseEvent]:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        if event_type == "messageStart":
            return [_json("message_start", {"type": "message_start", "message": {
                "id": _message_id(), "type": "message", "role": "assistant", "model": "",
                "content": [], "stop_reason": None, "stop_sequence": None}})]
        index = int(event.get("contentBlockIndex") or 0)
        if event_type == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse") or {}
            return self._start_block(index, {"type": "tool_use", "id": use.get("toolUseId"),
                                             "name": use.get("name"), "input": {}})
        if event_type == "contentBlockDelta":
            delta = event.get("delta") or {}
            out = [] if self.open == index else self._start_block(
                index, {"type": "text", "text": ""})
            if "text" in delta:
                out.append(_json("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": delta["text"]}}))
            elif "toolUse" in delta:
                out.append(_json("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta",
                              "partial_json": (delta["toolUse"] or {}).get("input", "")}}))
            return out
        if event_type == "contentBlockStop":
            return self._stop_block()
        if event_type == "messageStop":
            self.stop_reason = STOP_REASONS.get(str(event.get("stopReason")), "end_turn")
            return self._stop_block()
        if event_type == "metadata":
            return self._stop_block() + [
                _json("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": self.stop_reason,
                                                  "stop_sequence": None},
                                        "usage": anthropic_usage(event.get("usage") or {})}),
                _json("message_stop", {"type": "message_stop"})]
        return []


def _json(name: str, payload: dict[str, Any]) -> SseEvent:
    return sse_event(name, orjson.dumps(payload))
