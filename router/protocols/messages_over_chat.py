"""An Anthropic Messages client served by an OpenAI Chat Completions provider.

Request: `system` becomes the first system message, `tool_result` blocks become role
"tool" messages (placed before the rest of their user turn, as OpenAI requires them
right after the assistant's tool calls), `tool_use` blocks become `tool_calls`, images
become `image_url` parts (base64 as data: URLs), PDFs become `file` parts, tools and
tool_choice map one to one. Answer: `content` and `tool_calls` become text and
`tool_use` blocks, streamed as `content_block_*` events with `input_json_delta`;
`reasoning_content` becomes a thinking block.

Documented drops: `top_k`, `cache_control` (OpenAI caches by itself), thinking and
redacted-thinking blocks in history (OpenAI takes no reasoning as input), a tool's
extra fields (`defer_loading`, `input_examples`, `strict` ...), `thinking` for models
that do not reason (for those that do it becomes `reasoning_effort`: the explicit
`output_config.effort`, else by budget), `output_config.format` (a JSON schema) becomes
`response_format` json_schema,
`service_tier`, `context_management`, and `is_error` on a tool result becomes an
"Error: " prefix on its text. Refused with a 400: Anthropic server tools (web search,
bash, text editor, computer use ...), `mcp_servers`, `container`, more than 4 stop
sequences, documents other than base64 PDFs or plain text.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.sse import SseEvent
from router.protocols.translate import (ANTHROPIC_PLATFORM_ONLY, AnthropicBlockWriter,
                                        FunctionBridge,
                                        TokenCounts, UpstreamTarget, anthropic_custom_tools,
                                        anthropic_stop, event_json, new_id, object_schema,
                                        reject_unknown, sse, text_of, tool_result_content,
                                        url_from_image)

MAX_STOP_SEQUENCES = 4


def _image_part(source: Any, param: str) -> dict[str, Any]:
    """An Anthropic image source as an OpenAI `image_url` content part."""
    return {"type": "image_url", "image_url": {"url": url_from_image(source, param)}}


def _parts(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """User content blocks other than tool results as OpenAI content parts."""
    parts: list[dict[str, Any]] = []
    for j, block in blocks:
        param = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_image_part(block.get("source"), f"{param}.source"))
        elif kind == "document":
            parts.append(_document(block.get("source"), param))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise BadRequest(f"'{param}' of type {kind!r} cannot be sent to an OpenAI-format "
                             "model", param=param)
    return parts


def _document(source: Any, param: str) -> dict[str, Any]:
    source = source if isinstance(source, dict) else {}
    if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        return {"type": "file", "file": {"filename": "document.pdf", "file_data":
                                         "data:application/pdf;base64," +
                                         str(source.get("data") or "")}}
    if source.get("type") == "text":
        return {"type": "text", "text": str(source.get("data") or "")}
    raise BadRequest(f"'{param}' must be a base64 PDF or a text document to reach an "
                     "OpenAI-format model", param=param)


def _tool_message(block: dict[str, Any], param: str,
                  known_calls: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result as a role "tool" message, plus any images it carried (OpenAI tool
    messages take text only, so those follow in a user turn)."""
    call_id, text, images = tool_result_content(block, param, known_calls, _image_part)
    if block.get("is_error"):
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": text_of(system, "system")})
    known_calls: set[str] = set()
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        role, content = message["role"], message.get("content")
        if role == "system":  # left by a client that parse() did not normalise
            out.append({"role": "system", "content": text_of(content, f"{where}.content")})
            continue
        if role not in ("user", "assistant"):
            raise BadRequest(f"'{where}.role' must be 'user' or 'assistant'",
                             param=f"{where}.role")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise BadRequest(f"'{where}.content' must be a string or a list of blocks",
                             param=f"{where}.content")
        blocks = []
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                raise BadRequest(f"'{where}.content[{j}]' must be an object",
                                 param=f"{where}.content[{j}]")
            blocks.append((j, block))
        if role == "assistant":
            out.append(_assistant(blocks, where, known_calls))
            continue
        images: list[dict[str, Any]] = []
        rest = []
        for j, block in blocks:
            if block.get("type") == "tool_result":
                tool, carried = _tool_message(block, f"{where}.content[{j}]", known_calls)
                out.append(tool)
                images += carried
            else:
                rest.append((j, block))
        parts = images + _parts(rest, where)
        if parts:
            out.append({"role": "user", "content": parts})
    return out


def _assistant(blocks: list[Any], where: str, known_calls: set[str]) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise BadRequest(f"'{where}.content[{j}]' needs an 'id' and a 'name'",
                                 param=f"{where}.content[{j}]")
            known_calls.add(block["id"])
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"],
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise BadRequest(f"'{where}.content[{j}]' of type {kind!r} cannot be sent to an "
                             "OpenAI-format model", param=f"{where}.content[{j}]")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool, param in anthropic_custom_tools(tools, "an OpenAI-format model"):
        function: dict[str, Any] = {"name": tool["name"], "parameters": object_schema(
            tool.get("input_schema"), f"{param}.input_schema")}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """(OpenAI tool_choice, parallel_tool_calls)."""
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        raise BadRequest("'tool_choice' must be an object", param="tool_choice")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise BadRequest("'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"none\"} or "
                     "{\"type\": \"tool\", \"name\": ...}", param="tool_choice")


_EFFORT_BY_BUDGET = ((4096, "low"), (16384, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def _reasoning_effort(thinking: Any, effort: Any) -> str | None:
    """Anthropic's thinking settings as OpenAI's `reasoning_effort`: an explicit
    `output_config.effort` wins; else an enabled budget maps by size; adaptive thinking
    without an effort is the model's default (medium)."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return _EFFORTS.get(effort) if isinstance(effort, str) else None
    if isinstance(effort, str) and effort in _EFFORTS:
        return _EFFORTS[effort]
    if thinking.get("type") == "adaptive":
        return "medium"
    budget = int(thinking.get("budget_tokens") or 0)
    return next((e for limit, e in _EFFORT_BY_BUDGET if budget < limit), "high")


def to_chat_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    """An Anthropic Messages body as an OpenAI Chat Completions body (no output limit yet:
    the pipeline sets the one it reserved for)."""
    reject_unknown(body, ANTHROPIC_PLATFORM_ONLY, target.model_id, empty_ok=True)
    out: dict[str, Any] = {"model": target.model_id, "messages": _messages(body)}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        choice, parallel = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
        if parallel is not None:
            out["parallel_tool_calls"] = parallel
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES:
            raise BadRequest(f"'stop_sequences' may hold at most {MAX_STOP_SEQUENCES} "
                             "sequences for an OpenAI-format model", param="stop_sequences")
        out["stop"] = stops
    user = (body.get("metadata") or {}).get("user_id") if isinstance(
        body.get("metadata"), dict) else None
    if isinstance(user, str):
        out["user"] = user
    output_config = body.get("output_config")
    output_config = output_config if isinstance(output_config, dict) else {}
    effort = _reasoning_effort(body.get("thinking"), output_config.get("effort"))
    if target.reasoning and effort is not None:
        out["reasoning_effort"] = effort
    output_format = output_config.get("format")
    if isinstance(output_format, dict):
        if output_format.get("type") != "json_schema" or not isinstance(
                output_format.get("schema"), dict):
            raise BadRequest("'output_config.format' must be a json_schema with a 'schema' "
                             "object", param="output_config.format")
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": output_format["schema"]}}
    if body.get("stream"):
        out["stream"] = True
    return out


# --- the answer --------------------------------------------------------------------------------

def _message_id(chat_id: Any) -> str:
    return "msg_" + (str(chat_id) if chat_id else new_id(""))


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A model's tool arguments as an object; broken JSON is kept, not dropped."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"_unparsed_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"_arguments": value}


def to_messages_response(body: dict[str, Any]) -> dict[str, Any]:
    """A whole `chat.completion` as an Anthropic message."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or new_id("toolu_"),
                        "name": function.get("name"),
                        "input": _tool_input(function.get("arguments"))})
    counts = TokenCounts()
    counts.take_openai(body.get("usage") or {})
    return {"id": _message_id(body.get("id")), "type": "message", "role": "assistant",
            "model": body.get("model"), "content": content,
            "stop_reason": anthropic_stop(choice.get("finish_reason")) or "end_turn",
            "stop_sequence": None, "usage": counts.anthropic()}


class MessagesFromChatStream(AnthropicBlockWriter):
    """`chat.completion.chunk` SSE in, Anthropic stream events out.

    OpenAI reports usage only in the last chunk, after the finish reason, so
    `message_delta` (stop reason and usage) waits for `[DONE]`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.tools: dict[int, int] = {}  # tool_calls index -> block index
        self.ids: dict[str, int] = {}  # tool call id -> index, for servers that omit it
        self.finish: str | None = None
        self.counts = TokenCounts()

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        return sse({"type": "message_start", "message": {
            "id": _message_id(chunk.get("id")), "type": "message", "role": "assistant",
            "model": chunk.get("model"), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}},
            "message_start")

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        index = call.get("index")
        if not isinstance(index, int):  # some compatible servers omit it: go by the id
            call_id = call.get("id")
            if call_id and call_id not in self.ids:
                self.ids[call_id] = len(self.tools)
            index = self.ids.get(call_id, max(self.tools, default=0)) if call_id \
                else max(self.tools, default=0)
        function = call.get("function") or {}
        out = b""
        if index not in self.tools:
            out = self._open("tool", {"type": "tool_use", "id": call.get("id") or
                                      new_id("toolu_"), "name": function.get("name") or "",
                                      "input": {}})
            self.tools[index] = self.blocks - 1
        arguments = function.get("arguments")
        if arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments},
                               self.tools[index])
        return out

    def _end(self) -> bytes:
        usage = self.counts.anthropic()
        return (self._close() + sse({"type": "message_delta", "delta": {
            "stop_reason": anthropic_stop(self.finish) or "end_turn", "stop_sequence": None},
            "usage": usage}, "message_delta")
            + sse({"type": "message_stop"}, "message_stop"))

    def feed(self, event: SseEvent) -> bytes:
        if event.data == b"[DONE]":
            return self._end() if self.started else b""
        chunk = event_json(event)
        if chunk is None:
            return b""
        if "error" in chunk:
            error = chunk.get("error") or {}
            return sse({"type": "error", "error": {
                "type": "api_error", "message": str(error.get("message", "provider error"))}},
                "error")
        out = b"" if self.started else self._start(chunk)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._text("thinking", reasoning)
            content = delta.get("content") or delta.get("refusal")
            if isinstance(content, str) and content:
                out += self._text("text", content)
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        if chunk.get("usage"):
            self.counts.take_openai(chunk["usage"])
        return out


BRIDGE = FunctionBridge(
    "anthropic.messages", "openai.chat", to_chat_request,
    lambda body, client_body, wants_usage: to_messages_response(body),
    lambda client_body, wants_usage: MessagesFromChatStream())
