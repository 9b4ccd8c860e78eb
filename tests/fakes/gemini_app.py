"""Fake Google AI (Gemini API) upstream: raw ASGI app for
``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``.

Wire format follows the public REST reference: the key in ``x-goog-api-key`` (or
``?key=``); a ``GenerateContentRequest`` body (``contents`` of ``user`` / ``model`` turns
made of ``text``, ``inlineData``, ``functionCall``, ``functionResponse`` parts,
``systemInstruction``, ``tools[].functionDeclarations``, ``toolConfig``,
``generationConfig``), unknown fields refused with a 400 as the real API does (so a
translation that sends ``model`` or ``max_tokens`` fails loudly).  The answer is a
``GenerateContentResponse``: ``candidates[0].content.parts``, ``finishReason``
(``STOP`` / ``MAX_TOKENS``; a function call finishes with ``STOP``), ``usageMetadata``,
``modelVersion``, ``responseId``.  ``:streamGenerateContent?alt=sse`` streams one
``data: <GenerateContentResponse>`` event per chunk, with no ``[DONE]``: every chunk
carries ``usageMetadata`` with the prompt count, the last one ``finishReason`` and the
full counts; without ``alt=sse`` the chunks come as one JSON array, as Google sends them.
Errors are Google's ``{"error": {"code", "message", "status"}}`` (400
INVALID_ARGUMENT, also for an invalid key; 403 PERMISSION_DENIED without a key; 404
NOT_FOUND; 429 RESOURCE_EXHAUSTED with a ``RetryInfo`` detail (``retryDelay`` "1s", and
no ``Retry-After`` header); 500 INTERNAL; 503 UNAVAILABLE; an invalid key carries an
``ErrorInfo`` detail with reason ``API_KEY_INVALID``).

Token model (the other fakes' one, over Gemini's shapes): P = ceil(B / 4) + 3 * C where
B is the UTF-8 bytes of every ``text`` part, of ``systemInstruction`` and of the string
values of ``functionResponse.response``, and C the number of ``contents``;
``promptTokenCount = max(P, cache_read_tokens)`` (it includes the cached part),
``cachedContentTokenCount = cache_read_tokens`` when set, ``candidatesTokenCount`` =
words sent (tool call: fragments F of the arguments' JSON + words of
``tool_call_text``), ``thoughtsTokenCount = reasoning_tokens`` (+ words of
``thinking_text`` when ``thinkingConfig.includeThoughts`` is set: then they come first,
as ``thought: true`` parts).  ``maxOutputTokens`` caps the words (``MAX_TOKENS``).

Switches (state.py): ``fail_status``, ``expected_api_key``, ``first_byte_delay_s``,
``chunk_delay_s``, ``cut_after_chunks`` (content chunks; a cut stream has no finish),
``ignore_limits``, ``usage_mode`` ("none": no ``usageMetadata`` at all; "zero_input":
``promptTokenCount`` 0, no cache), ``error_before_content`` (streaming: HTTP 200 then
one ``data: {"error": {...}}`` whose ``status`` is the value, e.g. "UNAVAILABLE"),
``tool_call``, ``tool_call_text``, ``thinking_text``, ``reasoning_tokens``,
``cache_read_tokens``.

``GET /v1beta/models?pageSize=N`` (``models.list``, what routers probe) answers
``{"models": [...], "nextPageToken"}`` behind the same key check (no key: 403; a key
other than ``expected_api_key``: 400 ``API key not valid``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ._asgi import ASGIApp, Headers, Receive, Scope, Send, rand_id, read_request
from ._asgi import send_json, sleep_if, start_sse, stream_events
from .state import (PER_MESSAGE_OVERHEAD_TOKENS, FakeState, capped_words, text_pieces,
                    tool_call_fragments, usage_mode, word)

_PATH = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")
LISTED_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash")
_STATUS = {400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
           403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers "
                 "without established identity). Please use API Key or other form of API "
                 "consumer identity to call this API."),
           404: ("NOT_FOUND", "models/unknown is not found for API version v1beta, or is not "
                 "supported for generateContent."),
           429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your "
                 "plan and billing details."),
           500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                 "https://developers.generativeai.google/guide/troubleshooting"),
           503: ("UNAVAILABLE", "The model is overloaded. Please try again later.")}
_TOP_LEVEL = {"contents", "systemInstruction", "system_instruction", "tools", "toolConfig",
              "tool_config", "generationConfig", "generation_config", "safetySettings",
              "safety_settings", "cachedContent", "cached_content"}
_GENERATION = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
               "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
               "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
               "thinkingConfig", "responseModalities", "mediaResolution"}


def error_body(status: int, message: str | None = None, google_status: str | None = None
               ) -> bytes:
    default = _STATUS.get(status, _STATUS[500] if status >= 500 else _STATUS[400])
    error: dict[str, Any] = {"code": status, "message": message or default[1],
                             "status": google_status or default[0]}
    if status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": "1s"}]
    elif error["message"].startswith("API key not valid"):
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                             "metadata": {"service": "generativelanguage.googleapis.com"}}]
    return orjson.dumps({"error": error})


def _text_bytes(parts: Any) -> int:
    total = 0
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            total += len(part["text"].encode())
        response = (part.get("functionResponse") or {}).get("response")
        if isinstance(response, dict):
            total += sum(len(v.encode()) for v in response.values() if isinstance(v, str))
    return total


def count_gemini_input_tokens(body: dict[str, Any]) -> int:
    """P for a GenerateContentRequest (see the module docstring)."""
    contents = body.get("contents") if isinstance(body.get("contents"), list) else []
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    n_bytes = _text_bytes(system.get("parts") if isinstance(system, dict) else None)
    for content in contents:
        if isinstance(content, dict):
            n_bytes += _text_bytes(content.get("parts"))
    return (n_bytes + 3) // 4 + PER_MESSAGE_OVERHEAD_TOKENS * len(contents)


def _invalid(body: Any) -> str | None:
    """The real API's complaint about a malformed body, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    for name in body:
        if name not in _TOP_LEVEL:
            return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    config = body.get("generationConfig") or {}
    for name in config if isinstance(config, dict) else ():
        if name not in _GENERATION:
            return (f'Invalid JSON payload received. Unknown name "{name}" at '
                    f"'generation_config': Cannot find field.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    for i, content in enumerate(contents):
        where = f"* GenerateContentRequest.contents[{i}]"
        if not isinstance(content, dict) or content.get("role", "user") not in ("user",
                                                                                 "model"):
            return "Please use a valid role: user, model."
        if not isinstance(content.get("parts"), list) or not content["parts"]:
            return f"{where}.parts: contents.parts must not be empty."
        for part in content["parts"]:
            if isinstance(part, dict) and "functionResponse" in part and not (
                    part["functionResponse"] or {}).get("name"):
                return f"{where}: function_response.name: Name cannot be empty."
    stops = config.get("stopSequences") if isinstance(config, dict) else None
    if isinstance(stops, list) and len(stops) > 5:
        return "* GenerateContentRequest.generation_config.stop_sequences: at most 5"
    return None


def _tool_call_applies(body: dict[str, Any]) -> bool:
    tools = body.get("tools")
    if not isinstance(tools, list) or not any(
            isinstance(t, dict) and t.get("functionDeclarations") for t in tools):
        return False
    config = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {})
    if config.get("mode") == "NONE":
        return False
    last = body["contents"][-1]
    return not any(isinstance(p, dict) and "functionResponse" in p for p in last["parts"])


def make_gemini_app(state: FakeState) -> ASGIApp:
    """Build the ASGI app; it reads its switches from `state` on every request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_request(scope, receive, state)
        await sleep_if(state.first_byte_delay_s)
        extra: Headers = [(b"server", b"scaffolding on HTTPServer2")]
        if state.fail_status is not None:
            await send_json(send, state.fail_status, error_body(state.fail_status), extra)
            return
        query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode()
                     .split("&") if "=" in p)
        key = request.headers.get("x-goog-api-key") or query.get("key")
        if not key:
            await send_json(send, 403, error_body(403), extra)
            return
        if state.expected_api_key is not None and key != state.expected_api_key:
            await send_json(send, 400, error_body(
                400, "API key not valid. Please pass a valid API key."), extra)
            return
        if scope.get("method") == "GET" and scope["path"] == "/v1beta/models":
            await _list_models(query, send, extra)
            return
        match = _PATH.match(scope["path"])
        if scope.get("method") != "POST" or match is None:
            await send_json(send, 404, error_body(404), extra)
            return
        complaint = "Invalid JSON payload received." if request.json_error else _invalid(
            request.body)
        if complaint is not None:
            await send_json(send, 400, error_body(400, complaint), extra)
            return
        model, method = match.group(1), match.group(2)
        await _answer(request.body, model, method == "streamGenerateContent",
                      query.get("alt") == "sse", receive, send, extra)

    async def _list_models(query: dict[str, str], send: Send, extra: Headers) -> None:
        """`models.list`: `pageSize` models (default 50, at most 1000) and a
        `nextPageToken` while more remain."""
        try:
            size = int(query.get("pageSize", "50"))
        except ValueError:
            await send_json(send, 400, error_body(400, "Invalid value at 'page_size' "
                                                  "(TYPE_INT32)"), extra)
            return
        size = min(size if size > 0 else 50, 1000)
        models = [{"name": f"models/{m}", "version": "001", "displayName": m,
                   "description": "A fake Gemini model.", "inputTokenLimit": 1048576,
                   "outputTokenLimit": 65536,
                   "supportedGenerationMethods": ["generateContent", "countTokens"],
                   "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2}
                  for m in LISTED_MODELS]
        page: dict[str, Any] = {"models": models[:size]}
        if size < len(models):
            page["nextPageToken"] = rand_id("", 24)
        await send_json(send, 200, orjson.dumps(page), extra)

    def _usage(prompt: int, candidates: int, thoughts: int) -> dict[str, Any] | None:
        mode = usage_mode(state)
        if mode == "none":
            return None
        read = state.cache_read_tokens if mode == "normal" else 0
        prompt = max(prompt, read) if mode == "normal" else 0
        usage: dict[str, Any] = {"promptTokenCount": prompt,
                                 "candidatesTokenCount": candidates,
                                 "totalTokenCount": prompt + candidates + thoughts,
                                 "promptTokensDetails": [{"modality": "TEXT",
                                                          "tokenCount": prompt}]}
        if read:
            usage["cachedContentTokenCount"] = read
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    async def _answer(body: dict[str, Any], model: str, stream: bool, sse: bool,
                      receive: Receive, send: Send, extra: Headers) -> None:
        prompt = count_gemini_input_tokens(body)
        config = body.get("generationConfig") or {}
        response_id = rand_id("", 22)
        base = {"modelVersion": model, "responseId": response_id}
        if stream and state.error_before_content is not None:
            event = b"data: " + error_body(503, google_status=state.error_before_content) \
                + b"\r\n\r\n"
            await start_sse(send, extra)
            await stream_events(send, [event], (), (), 0.0, None)
            return
        thinking = state.thinking_text if (config.get("thinkingConfig") or {}).get(
            "includeThoughts") else None
        thought_pieces = text_pieces(thinking) if thinking else []
        thoughts = state.reasoning_tokens + len(thought_pieces)
        pieces: list[dict[str, Any]] = [{"text": p, "thought": True} for p in thought_pieces]
        if state.tool_call is not None and _tool_call_applies(body):
            name, arguments = state.tool_call
            lead = text_pieces(state.tool_call_text) if state.tool_call_text else []
            _, fragments = tool_call_fragments(arguments)
            pieces += [{"text": p} for p in lead]
            pieces.append({"functionCall": {"name": name, "args": arguments}})
            candidates, reason = len(lead) + len(fragments), "STOP"
        else:
            n_words, truncated = capped_words(state, config.get("maxOutputTokens"))
            pieces += [{"text": word(i)} for i in range(n_words)]
            candidates, reason = n_words, "MAX_TOKENS" if truncated else "STOP"
        usage = _usage(prompt, candidates, thoughts)
        if not stream:
            whole: list[dict[str, Any]] = []
            for piece in pieces:  # adjacent text parts of one kind arrive joined
                if whole and "text" in piece and "text" in whole[-1] and \
                        piece.get("thought") == whole[-1].get("thought"):
                    whole[-1] = {**whole[-1], "text": whole[-1]["text"] + piece["text"]}
                else:
                    whole.append(dict(piece))
            answer: dict[str, Any] = {"candidates": [{
                "content": {"parts": whole or [{"text": ""}], "role": "model"},
                "finishReason": reason, "index": 0}], **base}
            if usage is not None:
                answer["usageMetadata"] = usage
            await send_json(send, 200, orjson.dumps(answer), extra)
            return
        running = _usage(prompt, 0, 0)
        if running is not None:
            running = {k: running[k] for k in ("promptTokenCount", "promptTokensDetails")}
            running["totalTokenCount"] = running["promptTokenCount"]
        chunks: list[dict[str, Any]] = []
        for i, piece in enumerate(pieces or [{"text": ""}]):
            chunk: dict[str, Any] = {"candidates": [{"content": {"parts": [piece],
                                                                 "role": "model"},
                                                     "index": 0}], **base}
            last = i == max(len(pieces), 1) - 1
            if last:
                chunk["candidates"][0]["finishReason"] = reason
            if (usage if last else running) is not None:
                chunk["usageMetadata"] = usage if last else running
            chunks.append(chunk)
        if not sse:  # without alt=sse Google streams one JSON array
            await send_json(send, 200, orjson.dumps(chunks), extra)
            return
        events = [b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks]
        await start_sse(send, extra)
        await stream_events(send, [], events, [], state.chunk_delay_s,
                            state.cut_after_chunks, receive)

    return app
