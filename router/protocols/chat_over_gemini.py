"""An OpenAI Chat Completions client served by a Google AI (Gemini) provider.

Request: system and developer messages become `systemInstruction` (wherever they
stand); user content becomes `text` and `inlineData` parts (base64 `data:` images, PDF
`file_data`); assistant `tool_calls` become `functionCall` parts (a model turn) and
`tool` messages `functionResponse` parts (a user turn; the function's name is the one
of the call answered); tools become `functionDeclarations` (the JSON schema as
`parametersJsonSchema`), `tool_choice` becomes `toolConfig.functionCallingConfig`;
`stop`, `temperature`, `top_p`, `seed` and `response_format` go in `generationConfig`.
Answer: text parts -> `content`, thought parts -> `reasoning_content`, `functionCall`
parts -> `tool_calls` (whole: Gemini streams a call in one piece); finish reasons and
usage map (cached tokens are part of `prompt_tokens`, thoughts of
`completion_tokens`).

Dropped: `frequency_penalty`, `presence_penalty`, `logit_bias`, `user`, `store`,
`metadata`, `service_tier`, `prompt_cache_key`, `reasoning_effort`, `verbosity`,
`prediction`, `parallel_tool_calls`, a tool's `strict`. Refused with a 400: `n` > 1,
`logprobs`, audio, the deprecated `functions`, image URLs that are not `data:` URLs,
files by id, more than 5 stop sequences, `temperature` outside 0..2.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols import gemini
from router.protocols.sse import SseEvent
from router.protocols.translate import (FunctionBridge, TokenCounts, UpstreamTarget,
                                        answered_call_id, chat_assistant_turn,
                                        chat_function_tools, checked_base64_image,
                                        event_json, new_id, object_schema, reject_unknown,
                                        sse, text_of)

_REFUSED = {"logprobs": "Gemini models return no log probabilities here",
            "top_logprobs": "Gemini models return no log probabilities here",
            "audio": "audio output is not translated",
            "functions": "use 'tools' (the deprecated 'functions' is not translated)",
            "function_call": "use 'tool_choice' (the deprecated 'function_call' is not "
                             "translated)"}


def _image(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise BadRequest(f"'{param}' must be a base64 data: URL to reach a Gemini model "
                         "(it cannot fetch image URLs)", param=param)
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise BadRequest(f"'{param}' must be a base64 data: URL", param=param)
    media_type, data = checked_base64_image(header[5:-7], data, param)
    return gemini.inline_image(media_type, data)


def _user_part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        return _image(image.get("url") if isinstance(image, dict) else image,
                      f"{param}.image_url")
    if kind == "file":
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, dict) else None
        prefix = "data:application/pdf;base64,"
        if not isinstance(data, str) or not data.startswith(prefix):
            raise BadRequest(f"'{param}.file' must carry a PDF as file_data ('{prefix}...'); "
                             "file ids cannot be translated", param=param)
        return {"inlineData": {"mimeType": "application/pdf", "data": data[len(prefix):]}}
    raise BadRequest(f"'{param}' of type {kind!r} cannot be sent to a Gemini model (text, "
                     "image_url and PDF file parts can)", param=param)


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"'{where}.content' must be a string or a list of parts",
                         param=f"{where}.content")
    return [_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]


def _assistant_parts(message: dict[str, Any], where: str,
                     names: dict[str, str]) -> list[dict[str, Any]]:
    text, calls = chat_assistant_turn(message, where)
    out: list[dict[str, Any]] = [{"text": text}] if text else []
    for call_id, name, args in calls:
        names[call_id] = name
        out.append({"functionCall": {"name": name, "args": args}})
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    return [{"functionDeclarations": [gemini.function_declaration(
        function["name"], function.get("description"),
        object_schema(function.get("parameters"), f"{param}.function.parameters"))
        for function, param in chat_function_tools(tools, "a Gemini model")]}]


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
        return {"functionCallingConfig": {"mode": mode}}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"functionCallingConfig": {"mode": "ANY",
                                          "allowedFunctionNames": [function["name"]]}}
    raise BadRequest("'tool_choice' must be 'auto', 'none', 'required' or a function",
                     param="tool_choice")


def _response_format(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object",
                                                                "json_schema"):
        raise BadRequest("'response_format' must be text, json_object or json_schema",
                         param="response_format")
    if value["type"] == "text":
        return {}
    out: dict[str, Any] = {"responseMimeType": "application/json"}
    if value["type"] == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema") if isinstance(
            value.get("json_schema"), dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("'response_format.json_schema.schema' must be an object",
                             param="response_format")
        out["responseJsonSchema"] = schema
    return out


def to_gemini_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    """An OpenAI Chat Completions body as a `generateContent` body (no output limit yet:
    the pipeline sets the one it reserved for)."""
    reject_unknown(body, _REFUSED, target.model_id)
    if body.get("n") not in (None, 1):
        raise BadRequest("'n' must be 1 for Gemini models", param="n")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        role = message["role"]
        if role in ("system", "developer"):
            text = text_of(message.get("content"), f"{where}.content")
            if text:
                system.append({"text": text})
        elif role == "user":
            gemini.append_content(contents, "user", _user_parts(message.get("content"), where))
        elif role == "assistant":
            gemini.append_content(contents, "model", _assistant_parts(message, where, names))
        elif role == "tool":
            call_id = answered_call_id(message, where, names)
            text = text_of(message.get("content"), f"{where}.content")
            gemini.append_content(contents, "user",
                                  [gemini.function_response(names[call_id], text)])
        else:
            raise BadRequest(f"'{where}.role' {role!r} is not one of system, developer, "
                             "user, assistant, tool", param=f"{where}.role")
    if not contents:
        raise BadRequest("'messages' needs at least one user or assistant message",
                         param="messages")
    gemini.sign_calls(contents, target.model_id)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            out["toolConfig"] = config
    generation: dict[str, Any] = {}
    temperature = gemini.check_temperature(body.get("temperature"))
    if temperature is not None:
        generation["temperature"] = temperature
    if body.get("top_p") is not None:
        generation["topP"] = body["top_p"]
    if isinstance(body.get("seed"), int) and not isinstance(body.get("seed"), bool):
        generation["seed"] = body["seed"]
    if body.get("stop") is not None:
        stops = gemini.stop_sequences(body["stop"], "stop")
        if stops:
            generation["stopSequences"] = stops
    if body.get("response_format") is not None:
        generation.update(_response_format(body["response_format"]))
    if generation:
        out["generationConfig"] = generation
    return out


# --- the answer -------------------------------------------------------------------------------

def _chat_id(response_id: Any) -> str:
    return "chatcmpl-" + (str(response_id) if response_id else new_id(""))


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _split(found: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """(text, thought text, function calls) of some parts."""
    texts, thoughts, calls = [], [], []
    for part in found:
        if isinstance(part.get("text"), str):
            (thoughts if part.get("thought") is True else texts).append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            calls.append(part["functionCall"])
    return "".join(texts), "".join(thoughts), calls


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"id": call.get("id") or new_id("call_"), "type": "function",
            "function": {"name": call.get("name") or "",
                         "arguments": _dumps(call.get("args") or {})}}


def to_chat_response(body: dict[str, Any], wants_usage: bool = True) -> dict[str, Any]:
    """A whole `GenerateContentResponse` as a `chat.completion`."""
    text, thoughts, calls = _split(gemini.parts(body))
    message: dict[str, Any] = {"role": "assistant",
                               "content": text if text or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = [_tool_call(c) for c in calls]
    if thoughts:
        message["reasoning_content"] = thoughts
    counts = TokenCounts()
    gemini.take_gemini(counts, body.get("usageMetadata") or {})
    return {"id": _chat_id(body.get("responseId")), "object": "chat.completion",
            "created": int(time.time()), "model": body.get("modelVersion"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": gemini.openai_finish(gemini.finish_reason(body),
                                                               bool(calls))}],
            "usage": counts.openai()}


class ChatFromGeminiStream:
    """`GenerateContentResponse` chunks in, `chat.completion.chunk` SSE out; the chunk
    with a finish reason ends the client's stream (usage chunk, `[DONE]`)."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage
        self.base: dict[str, Any] | None = None
        self.calls = 0
        self.counts = TokenCounts()
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        assert self.base is not None
        return sse({**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}]})

    def feed(self, event: SseEvent) -> bytes:
        chunk = event_json(event)
        if chunk is None or self.done:
            return b""
        if gemini.error_of(chunk) is not None:
            message, kind = gemini.stream_error(chunk)
            return sse({"error": {"message": message, "type": kind, "param": None,
                                  "code": None}})
        out = b""
        if self.base is None:
            self.base = {"id": _chat_id(chunk.get("responseId")),
                         "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": chunk.get("modelVersion")}
            out += self._chunk({"role": "assistant", "content": ""})
        text, thoughts, calls = _split(gemini.parts(chunk))
        if thoughts:
            out += self._chunk({"reasoning_content": thoughts})
        if text:
            out += self._chunk({"content": text})
        for call in calls:
            entry = _tool_call(call)
            out += self._chunk({"tool_calls": [{"index": self.calls, **entry}]})
            self.calls += 1
        if isinstance(chunk.get("usageMetadata"), dict):
            self.counts = TokenCounts()
            gemini.take_gemini(self.counts, chunk["usageMetadata"])
        reason = gemini.finish_reason(chunk)
        if reason is not None:
            self.done = True
            out += self._chunk({}, gemini.openai_finish(reason, self.calls > 0))
            if self.wants_usage:
                out += sse({**self.base, "choices": [], "usage": self.counts.openai()})
            out += b"data: [DONE]\n\n"
        return out


BRIDGE = FunctionBridge(
    "openai.chat", gemini.NAME, to_gemini_request,
    lambda body, client_body, wants_usage: to_chat_response(body, wants_usage),
    lambda client_body, wants_usage: ChatFromGeminiStream(wants_usage))
