"""An OpenAI Chat Completions client served by an Anthropic Messages provider.

Request: system and developer messages become `system` (wherever they stand), tool
messages become `tool_result` blocks in a user turn, assistant `tool_calls` become
`tool_use` blocks, images become image blocks, tools and tool_choice map one to one.
Answer: content blocks become `content` / `tool_calls` (thinking becomes
`reasoning_content`), stop reasons and usage map (cached tokens are part of
`prompt_tokens`, as OpenAI counts them).

Documented drops (no Anthropic equivalent, harmless to omit): `frequency_penalty`,
`presence_penalty`, `logit_bias`, `seed`, `store`, `metadata`, `service_tier`,
`prompt_cache_key`, `reasoning_effort`, `verbosity`, `prediction`, a tool's `strict`.
Refused with a 400: `n` > 1, `logprobs`, audio output, `response_format` other than
text, `temperature` above 1.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.sse import SseEvent
from router.protocols.translate import (FunctionBridge, TokenCounts, UpstreamTarget,
                                        answered_call_id, anthropic_tool_choice,
                                        append_turn, chat_assistant_turn,
                                        chat_function_tools, content_blocks, event_json,
                                        image_from_url, new_id, object_schema, openai_stop,
                                        openai_stream_error, reject_unknown, sse,
                                        temperature_for_anthropic, text_of)

_REFUSED = {"logprobs": "Anthropic models return no log probabilities",
            "top_logprobs": "Anthropic models return no log probabilities",
            "audio": "Anthropic models do not produce audio",
            "functions": "use 'tools' (the deprecated 'functions' is not translated)",
            "function_call": "use 'tool_choice' (the deprecated 'function_call' is not "
                             "translated)"}


def _user_block(part: dict[str, Any], kind: Any, param: str) -> dict[str, Any]:
    if kind == "text" and isinstance(part.get("text"), str):
        block: dict[str, Any] = {"type": "text", "text": part["text"]}
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        block = {"type": "image", "source": image_from_url(url, f"{param}.image_url")}
    elif kind == "file":
        block = _document(part.get("file"), param)
    else:
        raise BadRequest(f"'{param}' of type {kind!r} cannot be sent to an Anthropic "
                         "model (text, image_url and PDF file parts can)", param=param)
    if isinstance(part.get("cache_control"), dict):  # OpenRouter-style hint, kept
        block["cache_control"] = part["cache_control"]
    return block


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return content_blocks(content, where, _user_block)


def _document(file: Any, param: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    prefix = "data:application/pdf;base64,"
    if not isinstance(data, str) or not data.startswith(prefix):
        raise BadRequest(f"'{param}.file' must carry a PDF as file_data "
                         f"('{prefix}...'); file ids cannot be translated", param=param)
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                           "data": data[len(prefix):]}}


def _assistant_blocks(message: dict[str, Any], where: str,
                      known_calls: set[str]) -> list[dict[str, Any]]:
    text, calls = chat_assistant_turn(message, where)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call_id, name, args in calls:
        known_calls.add(call_id)
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
    return blocks


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for function, param in chat_function_tools(tools, "an Anthropic model"):
        entry: dict[str, Any] = {"name": function["name"],
                                 "input_schema": object_schema(function.get("parameters"),
                                                               f"{param}.function.parameters")}
        if isinstance(function.get("description"), str):
            entry["description"] = function["description"]
        out.append(entry)
    return out


def to_messages_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    """An OpenAI Chat Completions body as an Anthropic Messages body (no max_tokens yet:
    the pipeline sets the output limit it reserved for)."""
    reject_unknown(body, _REFUSED, target.model_id)
    if body.get("n") not in (None, 1):
        raise BadRequest("'n' must be 1 for Anthropic models", param="n")
    if (body.get("modalities") or ["text"]) != ["text"]:
        raise BadRequest("Anthropic models produce text only", param="modalities")
    response_format = body.get("response_format")
    if response_format is not None and not (isinstance(response_format, dict)
                                            and response_format.get("type") == "text"):
        raise BadRequest("'response_format' other than text cannot be used with model "
                         f"{target.model_id!r}", param="response_format")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    known_calls: set[str] = set()
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        role = message["role"]
        if role in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, list):
                system.extend(b for b in _user_blocks(content, where) if b["type"] == "text")
            elif text_of(content, f"{where}.content"):
                system.append({"type": "text", "text": content})
        elif role == "user":
            append_turn(messages, "user", _user_blocks(message.get("content"), where))
        elif role == "assistant":
            blocks = _assistant_blocks(message, where, known_calls)
            if blocks:
                append_turn(messages, "assistant", blocks)
        elif role == "tool":
            call_id = answered_call_id(message, where, known_calls)
            content = message.get("content")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id,
                                      "content": content if isinstance(content, str)
                                      else _user_blocks(content, where)}
            append_turn(messages, "user", [result])
        else:
            raise BadRequest(f"'{where}.role' {role!r} is not one of system, developer, "
                             "user, assistant, tool", param=f"{where}.role")
    if not messages:
        raise BadRequest("'messages' needs at least one user or assistant message",
                         param="messages")
    out: dict[str, Any] = {"model": target.model_id, "messages": messages}
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 and \
            "cache_control" not in system[0] else system
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    elif known_calls:
        # OpenAI takes a tool-call history without `tools`; Anthropic refuses tool blocks
        # unless their tools are defined. Defining them with tool_choice none keeps the
        # meaning: the model reads the history and calls nothing.
        used = dict.fromkeys(b["name"] for m in messages if m["role"] == "assistant"
                             for b in m["content"] if b["type"] == "tool_use")
        out["tools"] = [{"name": name, "input_schema": {"type": "object"}} for name in used]
        out["tool_choice"] = {"type": "none"}
    choice = anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and body.get("tools"):
        out["tool_choice"] = choice
    temperature = temperature_for_anthropic(body.get("temperature"))
    if temperature is not None:
        out["temperature"] = temperature
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("'stop' must be a string or a list of strings", param="stop")
        if stops:
            out["stop_sequences"] = stops
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    return out


# --- the answer ------------------------------------------------------------------------------

def _chat_id(message_id: Any) -> str:
    return "chatcmpl-" + (str(message_id) if message_id else new_id(""))


def to_chat_response(body: dict[str, Any], wants_usage: bool = True) -> dict[str, Any]:
    """A whole Anthropic message as a `chat.completion`."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": _dumps(block.get("input") or {})}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or
                               not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    counts = TokenCounts()
    counts.take_anthropic(body.get("usage") or {})
    return {"id": _chat_id(body.get("id")), "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": openai_stop(body.get("stop_reason")) or "stop"}],
            "usage": counts.openai()}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class ChatFromMessagesStream:
    """Anthropic stream events in, `chat.completion.chunk` SSE out."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage
        self.base: dict[str, Any] = {"id": _chat_id(None), "object": "chat.completion.chunk",
                                     "created": int(time.time()), "model": None}
        self.tools: dict[int, int] = {}  # content block index -> tool_calls index
        self.counts = TokenCounts()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}]})

    def feed(self, event: SseEvent) -> bytes:
        data = event_json(event)
        if data is None:
            return b""
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if dkind == "input_json_delta":
                index = self.tools.get(data.get("index", -1))
                if index is None or not delta.get("partial_json"):
                    return b""
                return self._chunk({"tool_calls": [{"index": index, "function": {
                    "arguments": delta["partial_json"]}}]})
            if dkind == "thinking_delta":
                return self._chunk({"reasoning_content": delta.get("thinking", "")})
            return b""
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tools[data.get("index", -1)] = len(self.tools)
                return self._chunk({"tool_calls": [{
                    "index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "message_start":
            message = data.get("message") or {}
            self.base["id"] = _chat_id(message.get("id"))
            self.base["model"] = message.get("model")
            self.counts.take_anthropic(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            self.counts.take_anthropic(data.get("usage") or {})
            reason = openai_stop((data.get("delta") or {}).get("stop_reason"))
            return self._chunk({}, reason) if reason else b""
        if kind == "message_stop":
            usage = sse({**self.base, "choices": [], "usage": self.counts.openai()}) \
                if self.wants_usage else b""
            return usage + b"data: [DONE]\n\n"
        if kind == "error":
            return openai_stream_error(data)
        return b""


BRIDGE = FunctionBridge(
    "openai.chat", "anthropic.messages", to_messages_request,
    lambda body, client_body, wants_usage: to_chat_response(body, wants_usage),
    lambda client_body, wants_usage: ChatFromMessagesStream(wants_usage))
