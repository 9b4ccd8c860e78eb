"""An Anthropic Messages client served by a Google AI (Gemini) provider.

Request: `system` becomes `systemInstruction`; text, base64 `image` and `document`
(base64 PDF, plain text) blocks become `text` / `inlineData` parts; assistant `tool_use`
blocks become `functionCall` parts (a model turn), `tool_result` blocks
`functionResponse` parts (named after the call they answer; images inside a result
follow as `inlineData`); tools become `functionDeclarations` (`input_schema` as
`parametersJsonSchema`), `tool_choice` becomes `toolConfig.functionCallingConfig`;
`stop_sequences`, `temperature`, `top_p`, `top_k` and `output_config.format` go in
`generationConfig`; `thinking` (models marked `reasoning`) becomes
`thinkingConfig` with `includeThoughts`, so thought summaries come back as thinking
blocks. Answer: text parts -> text blocks, thought parts -> thinking blocks,
`functionCall` parts -> `tool_use` blocks (streamed as one `input_json_delta`);
finish reasons and usage map (`input_tokens` excludes cached tokens).

Dropped: `metadata`, `cache_control`, `service_tier`, thinking blocks in history,
`disable_parallel_tool_use`, a tool's extra fields, `context_management`. Refused with
a 400: server tools, `mcp_servers`, `container`, image URLs, documents other than
base64 PDFs or text, more than 5 stop sequences.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols import gemini
from router.protocols.sse import SseEvent
from router.protocols.translate import (ANTHROPIC_PLATFORM_ONLY, AnthropicBlockWriter,
                                        FunctionBridge,
                                        TokenCounts, UpstreamTarget,
                                        anthropic_custom_tools, checked_base64_image,
                                        event_json, new_id, object_schema, reject_unknown,
                                        sse, text_of, tool_result_content)



def _image(source: Any, param: str) -> dict[str, Any]:
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise BadRequest(f"'{param}' must be a base64 image source to reach a Gemini model "
                         "(it cannot fetch image URLs)", param=param)
    media_type, data = checked_base64_image(source.get("media_type"), source.get("data"),
                                            param)
    return gemini.inline_image(media_type, data)


def _document(source: Any, param: str) -> dict[str, Any]:
    source = source if isinstance(source, dict) else {}
    if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        return {"inlineData": {"mimeType": "application/pdf",
                               "data": str(source.get("data") or "")}}
    if source.get("type") == "text":
        return {"text": str(source.get("data") or "")}
    raise BadRequest(f"'{param}' must be a base64 PDF or a text document to reach a Gemini "
                     "model", param=param)


def _tool_result(block: dict[str, Any], param: str,
                 names: dict[str, str]) -> list[dict[str, Any]]:
    call_id, text, images = tool_result_content(block, param, names, _image)
    return [gemini.function_response(names[call_id], text, bool(block.get("is_error"))),
            *images]


def _contents(body: dict[str, Any], target: UpstreamTarget) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_use id -> function name
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        role, content = message["role"], message.get("content")
        if role not in ("user", "assistant"):
            raise BadRequest(f"'{where}.role' must be 'user' or 'assistant'",
                             param=f"{where}.role")
        turn = "user" if role == "user" else "model"
        if isinstance(content, str):
            gemini.append_content(contents, turn, [{"text": content}] if content else [])
            continue
        if not isinstance(content, list):
            raise BadRequest(f"'{where}.content' must be a string or a list of blocks",
                             param=f"{where}.content")
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            param = f"{where}.content[{j}]"
            if not isinstance(block, dict):
                raise BadRequest(f"'{param}' must be an object", param=param)
            kind = block.get("type")
            if kind == "text":
                if block.get("text"):
                    parts.append({"text": str(block["text"])})
            elif kind in ("thinking", "redacted_thinking"):
                continue
            elif kind == "image" and role == "user":
                parts.append(_image(block.get("source"), f"{param}.source"))
            elif kind == "document" and role == "user":
                parts.append(_document(block.get("source"), param))
            elif kind == "tool_result" and role == "user":
                parts += _tool_result(block, param, names)
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"),
                                                                          str):
                    raise BadRequest(f"'{param}' needs an 'id' and a 'name'", param=param)
                names[block["id"]] = block["name"]
                args = block.get("input")
                parts.append({"functionCall": {"name": block["name"],
                                               "args": args if isinstance(args, dict) else {}}})
            else:
                raise BadRequest(f"'{param}' of type {kind!r} cannot be sent to a Gemini "
                                 "model", param=param)
        gemini.append_content(contents, turn, parts)
    if not contents:
        raise BadRequest("'messages' needs at least one non-empty message", param="messages")
    gemini.sign_calls(contents, target.model_id)
    return contents


def _tools(tools: Any) -> list[dict[str, Any]]:
    return [{"functionDeclarations": [gemini.function_declaration(
        tool["name"], tool.get("description"),
        object_schema(tool.get("input_schema"), f"{param}.input_schema"))
        for tool, param in anthropic_custom_tools(tools, "a Gemini model")]}]


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "any", "none"):
        return {"functionCallingConfig": {"mode": kind.upper()}}
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"functionCallingConfig": {"mode": "ANY",
                                          "allowedFunctionNames": [choice["name"]]}}
    raise BadRequest("'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"none\"} or "
                     "{\"type\": \"tool\", \"name\": ...}", param="tool_choice")


def _thinking(thinking: Any) -> dict[str, Any] | None:
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    config: dict[str, Any] = {"includeThoughts": True}
    budget = thinking.get("budget_tokens")
    if thinking.get("type") == "enabled" and isinstance(budget, int) \
            and not isinstance(budget, bool):
        config["thinkingBudget"] = budget
    return config


def to_gemini_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    """An Anthropic Messages body as a `generateContent` body (no output limit yet)."""
    reject_unknown(body, ANTHROPIC_PLATFORM_ONLY, target.model_id, empty_ok=True)
    out: dict[str, Any] = {"contents": _contents(body, target)}
    system = text_of(body.get("system"), "system")
    if system:
        out["systemInstruction"] = {"parts": [{"text": system}]}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            out["toolConfig"] = config
    generation: dict[str, Any] = {}
    temperature = gemini.check_temperature(body.get("temperature"))
    if temperature is not None:
        generation["temperature"] = temperature
    for name, field in (("top_p", "topP"), ("top_k", "topK")):
        if body.get(name) is not None:
            generation[field] = body[name]
    if body.get("stop_sequences"):
        generation["stopSequences"] = gemini.stop_sequences(body["stop_sequences"],
                                                            "stop_sequences")
    thinking = _thinking(body.get("thinking"))
    if thinking is not None and target.reasoning:
        generation["thinkingConfig"] = thinking
    output_config = body.get("output_config")
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(output_format, dict):
        if output_format.get("type") != "json_schema" or not isinstance(
                output_format.get("schema"), dict):
            raise BadRequest("'output_config.format' must be a json_schema with a 'schema' "
                             "object", param="output_config.format")
        generation["responseMimeType"] = "application/json"
        generation["responseJsonSchema"] = output_format["schema"]
    if generation:
        out["generationConfig"] = generation
    return out


# --- the answer --------------------------------------------------------------------------------

def _message_id(response_id: Any) -> str:
    return "msg_" + (str(response_id) if response_id else new_id(""))


def _blocks(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parts as content blocks; adjacent text (or thought) parts join into one block."""
    out: list[dict[str, Any]] = []
    for part in found:
        if isinstance(part.get("text"), str):
            thought = part.get("thought") is True
            kind, key = ("thinking", "thinking") if thought else ("text", "text")
            if not part["text"]:
                continue
            if out and out[-1]["type"] == kind:
                out[-1][key] += part["text"]
            else:
                out.append({"type": "thinking", "thinking": part["text"], "signature": ""}
                           if thought else {"type": "text", "text": part["text"]})
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            args = call.get("args")
            out.append({"type": "tool_use", "id": call.get("id") or new_id("toolu_"),
                        "name": call.get("name") or "",
                        "input": args if isinstance(args, dict) else {}})
    return out


def to_messages_response(body: dict[str, Any]) -> dict[str, Any]:
    """A whole `GenerateContentResponse` as an Anthropic message."""
    content = _blocks(gemini.parts(body))
    called = any(b["type"] == "tool_use" for b in content)
    counts = TokenCounts()
    gemini.take_gemini(counts, body.get("usageMetadata") or {})
    return {"id": _message_id(body.get("responseId")), "type": "message", "role": "assistant",
            "model": body.get("modelVersion"), "content": content,
            "stop_reason": gemini.anthropic_finish(gemini.finish_reason(body), called),
            "stop_sequence": None, "usage": counts.anthropic()}


class MessagesFromGeminiStream(AnthropicBlockWriter):
    """`GenerateContentResponse` chunks in, Anthropic stream events out; the chunk with
    a finish reason ends the message (`message_delta` with the usage, `message_stop`)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.called = False
        self.done = False
        self.counts = TokenCounts()

    def feed(self, event: SseEvent) -> bytes:
        chunk = event_json(event)
        if chunk is None or self.done:
            return b""
        if gemini.error_of(chunk) is not None:
            message, kind = gemini.stream_error(chunk)
            return sse({"type": "error", "error": {"type": kind, "message": message}},
                       "error")
        if isinstance(chunk.get("usageMetadata"), dict):
            self.counts = TokenCounts()
            gemini.take_gemini(self.counts, chunk["usageMetadata"])
        out = b""
        if not self.started:
            self.started = True
            start_usage = self.counts.anthropic()
            start_usage["output_tokens"] = 0
            out += sse({"type": "message_start", "message": {
                "id": _message_id(chunk.get("responseId")), "type": "message",
                "role": "assistant", "model": chunk.get("modelVersion"), "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage}},
                "message_start")
        for part in gemini.parts(chunk):
            if isinstance(part.get("text"), str) and part["text"]:
                out += self._text("thinking" if part.get("thought") is True else "text",
                                 part["text"])
            elif isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                self.called = True
                out += self._open("tool", {"type": "tool_use",
                                           "id": call.get("id") or new_id("toolu_"),
                                           "name": call.get("name") or "", "input": {}})
                out += self._delta({"type": "input_json_delta", "partial_json":
                                    orjson.dumps(call.get("args") or {}).decode()})
                out += self._close()
        reason = gemini.finish_reason(chunk)
        if reason is not None:
            self.done = True
            out += self._close() + sse({"type": "message_delta", "delta": {
                "stop_reason": gemini.anthropic_finish(reason, self.called),
                "stop_sequence": None}, "usage": self.counts.anthropic()}, "message_delta")
            out += sse({"type": "message_stop"}, "message_stop")
        return out


BRIDGE = FunctionBridge(
    "anthropic.messages", gemini.NAME, to_gemini_request,
    lambda body, client_body, wants_usage: to_messages_response(body),
    lambda client_body, wants_usage: MessagesFromGeminiStream())
