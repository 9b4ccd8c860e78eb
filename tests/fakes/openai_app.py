"""Fake OpenAI upstream: raw ASGI app for ``POST /v1/chat/completions``, ``POST /v1/responses``
and ``GET /v1/models``.

Wire format follows the public API reference: ``chat.completion`` bodies,
``chat.completion.chunk`` SSE events ending with ``data: [DONE]``; with
``stream_options.include_usage`` every chunk carries ``"usage": null`` and one extra
chunk with ``"choices": []`` and the usage object precedes ``[DONE]``.  Tool calls
(``FakeState.tool_call``) stream as in recorded API traffic: the first tool chunk
carries ``index``/``id``/``type``/``function.name`` with ``arguments: ""``, later chunks
only ``{"index": 0, "function": {"arguments": <fragment>}}``, then ``finish_reason:
"tool_calls"``.  Errors use ``{"error": {"message", "type", "param", "code"}}``.

Responses API: a ``response`` object, or with ``stream: true`` the typed SSE events
(``event: <type>`` + ``data``, increasing ``sequence_number``): ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``... , ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done`` (function calls:
``output_item.added`` / ``function_call_arguments.delta``... / ``.done`` /
``output_item.done``), then ``response.completed`` -- or ``response.incomplete`` when
``max_output_tokens`` cut the reply, as the real API does.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ._asgi import ASGIApp, Headers, Receive, Scope, Send, rand_hex, rand_id, read_request
from ._asgi import send_json, sleep_if, split_stream, start_sse, stream_events
from .state import FakeState, capped_words, count_input_tokens, count_response_input_tokens
from .state import reply_text, text_pieces, tool_call_fragments, word, word_json

SYSTEM_FINGERPRINT = "fp_f4k3upstr3"
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini")
_MODELS_CREATED = 1715367049

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted "
    "for a username. You can obtain an API key from https://platform.openai.com/account/api-keys."
)

# status -> (message, type, code) as the real API sends them
_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided: sk-****. You can find your API key at "
          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.",
          "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
          "Please try again in 1s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def status_error(status: int) -> bytes:
    default = ("Bad request.", "invalid_request_error", None) if status < 500 else (
        "The server had an error while processing your request. Sorry about that!",
        "server_error", None)
    message, type_, code = _STATUS_ERRORS.get(status, default)
    return error_body(message, type_, code)


def _masked(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 7 else key


def build_usage(state: FakeState, prompt: int, n_words: int) -> dict[str, Any]:
    prompt_tokens = max(prompt, state.cache_read_tokens)
    completion = n_words + state.reasoning_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": state.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": state.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call_applies(body: dict[str, Any], last_is_tool_result: bool) -> bool:
    tools = body.get("tools")
    return (isinstance(tools, list) and bool(tools) and body.get("tool_choice") != "none"
            and not last_is_tool_result)


def _lead_text(state: FakeState) -> str | None:
    text = state.tool_call_text
    return text if text and text.strip() else None


class _Events:
    """Responses API SSE events with a running ``sequence_number``."""

    def __init__(self) -> None:
        self.seq = 0
        self.items: list[tuple[bool, bytes]] = []

    def add(self, type_: str, data: dict[str, Any], delta: bool = False) -> None:
        data["sequence_number"] = self.seq
        self.seq += 1
        self.items.append((delta, b"event: " + type_.encode() + b"\ndata: "
                           + orjson.dumps({"type": type_, **data}) + b"\n\n"))


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def make_openai_app(state: FakeState) -> ASGIApp:
    """Build the ASGI app; it reads its switches from `state` on every request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_request(scope, receive, state)
        await sleep_if(state.first_byte_delay_s)
        extra: Headers = [
            (b"x-request-id", rand_id("req_", 32).encode()),
            (b"openai-version", b"2020-10-01"),
            (b"openai-processing-ms", b"1"),
        ]
        if state.fail_status is not None:
            status = state.fail_status
            if status == 429:
                extra.append((b"retry-after", b"1"))
            await send_json(send, status, status_error(status), extra)
            return
        if state.expected_api_key is not None:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if key != state.expected_api_key:
                message = _NO_KEY if not key else (
                    f"Incorrect API key provided: {_masked(key)}. You can find your API key "
                    "at https://platform.openai.com/account/api-keys.")
                code = "invalid_api_key" if key else None
                await send_json(send, 401, error_body(message, "invalid_request_error", code), extra)
                return
        path, method = scope["path"], scope.get("method", "GET")
        if path == "/v1/chat/completions" and method == "POST":
            await _chat(request.body, request.json_error, send, extra)
        elif path == "/v1/responses" and method == "POST":
            await _responses(request.body, request.json_error, send, extra)
        elif path == "/v1/models" and method == "GET":
            data = [{"id": m, "object": "model", "created": _MODELS_CREATED, "owned_by": "system"}
                    for m in MODELS]
            await send_json(send, 200, orjson.dumps({"object": "list", "data": data}), extra)
        else:
            body = error_body(f"Invalid URL ({method} {path})", "invalid_request_error")
            await send_json(send, 404, body, extra)

    async def _chat(body: Any, json_error: bool, send: Send, extra: Headers) -> None:
        if json_error or not isinstance(body, dict):
            await send_json(send, 400, error_body(_BAD_JSON, "invalid_request_error"), extra)
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            err = error_body("you must provide a model parameter", "invalid_request_error")
            await send_json(send, 400, err, extra)
            return
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            err = error_body("Missing required parameter: 'messages'.", "invalid_request_error",
                             "missing_required_parameter", "messages")
            await send_json(send, 400, err, extra)
            return
        tool = state.tool_call
        if tool is not None and _tool_call_applies(
                body, isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"):
            await _chat_tool_call(body, model, messages, tool, send, extra)
            return
        cap = body.get("max_completion_tokens")
        n_words, truncated = capped_words(state, body.get("max_tokens") if cap is None else cap)
        finish = "length" if truncated else "stop"
        usage = build_usage(state, count_input_tokens(messages), n_words)
        completion_id = rand_id("chatcmpl-", 29)
        created = int(time.time())
        if body.get("stream") is not True:
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply_text(n_words),
                                "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish,
                }],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            await send_json(send, 200, orjson.dumps(payload), extra)
            return
        options = body.get("stream_options")
        include_usage = (isinstance(options, dict) and options.get("include_usage") is True
                         and not state.ignore_include_usage)
        head = (b'data: {"id":"' + completion_id.encode() + b'","object":"chat.completion.chunk",'
                b'"created":' + str(created).encode() + b',"model":' + orjson.dumps(model)
                + b',"service_tier":"default","system_fingerprint":"' + SYSTEM_FINGERPRINT.encode()
                + b'","choices":[')
        end = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        role = head + (b'{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
                       b'"logprobs":null,"finish_reason":null}') + end
        chunks = [head + b'{"index":0,"delta":{"content":' + word_json(i)
                  + b'},"logprobs":null,"finish_reason":null}' + end for i in range(n_words)]
        tail = [head + b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"'
                + finish.encode() + b'"}' + end]
        if include_usage:
            tail.append(head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n")
        tail.append(b"data: [DONE]\n\n")
        await start_sse(send, extra)
        await stream_events(send, [role], chunks, tail, state.chunk_delay_s, state.cut_after_chunks)

    async def _chat_tool_call(body: dict[str, Any], model: str, messages: list[Any],
                              tool: tuple[str, dict[str, Any]], send: Send, extra: Headers) -> None:
        name, arguments = tool
        args_json, fragments = tool_call_fragments(arguments)
        text = _lead_text(state)
        pieces = text_pieces(text) if text else []
        usage = build_usage(state, count_input_tokens(messages), len(fragments) + len(pieces))
        completion_id = rand_id("chatcmpl-", 29)
        created = int(time.time())
        call_id = rand_id("call_", 24)
        if body.get("stream") is not True:
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "tool_calls": [{
                        "id": call_id, "type": "function",
                        "function": {"name": name, "arguments": args_json}}],
                        "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            await send_json(send, 200, orjson.dumps(payload), extra)
            return
        options = body.get("stream_options")
        include_usage = (isinstance(options, dict) and options.get("include_usage") is True
                         and not state.ignore_include_usage)
        base: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk",
                                "created": created, "model": model, "service_tier": "default",
                                "system_fingerprint": SYSTEM_FINGERPRINT}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}]}
            if include_usage:
                data["usage"] = None
            return b"data: " + orjson.dumps(data) + b"\n\n"

        start = [{"index": 0, "id": call_id, "type": "function",
                  "function": {"name": name, "arguments": ""}}]
        events: list[tuple[bool, bytes]] = []
        if pieces:
            events.append((False, chunk({"role": "assistant", "content": "", "refusal": None})))
            events.extend((True, chunk({"content": piece})) for piece in pieces)
            events.append((False, chunk({"tool_calls": start})))
        else:
            events.append((False, chunk({"role": "assistant", "content": None,
                                         "tool_calls": start, "refusal": None})))
        events.extend((True, chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}))
                      for frag in fragments)
        events.append((False, chunk({}, "tool_calls")))
        if include_usage:
            events.append((False, b"data: " + orjson.dumps({**base, "choices": [], "usage": usage})
                           + b"\n\n"))
        events.append((False, b"data: [DONE]\n\n"))
        head, chunks, tail = split_stream(events, 1)
        await start_sse(send, extra)
        await stream_events(send, head, chunks, tail, state.chunk_delay_s, state.cut_after_chunks)

    async def _responses(body: Any, json_error: bool, send: Send, extra: Headers) -> None:
        if json_error or not isinstance(body, dict):
            await send_json(send, 400, error_body(_BAD_JSON, "invalid_request_error"), extra)
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            err = error_body("Missing required parameter: 'model'.", "invalid_request_error",
                             "missing_required_parameter", "model")
            await send_json(send, 400, err, extra)
            return
        input_ = body.get("input")
        prompt = count_response_input_tokens(input_, body.get("instructions"))
        tool = state.tool_call
        last = input_[-1] if isinstance(input_, list) and input_ else None
        use_tool = tool is not None and _tool_call_applies(
            body, isinstance(last, dict) and last.get("type") == "function_call_output")
        truncated = False
        if use_tool:
            text = _lead_text(state)
            pieces = text_pieces(text) if text else []
            args_json, fragments = tool_call_fragments(tool[1]) if tool else ("", [])
            n_out = len(pieces) + len(fragments)
        else:
            n_words, truncated = capped_words(state, body.get("max_output_tokens"))
            text = reply_text(n_words)
            pieces = [word(i) for i in range(n_words)]
            args_json, fragments = "", []
            n_out = n_words
        input_tokens = max(prompt, state.cache_read_tokens)
        output_tokens = n_out + state.reasoning_tokens
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": state.cache_read_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": state.reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        }
        status = "incomplete" if truncated else "completed"
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        created = int(time.time())

        def response(status_: str, output_: list[Any], usage_: Any) -> dict[str, Any]:
            return {
                "id": response_id, "object": "response", "created_at": created, "status": status_,
                "background": False, "error": None,
                "incomplete_details": ({"reason": "max_output_tokens"}
                                       if status_ == "incomplete" else None),
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "max_tool_calls": body.get("max_tool_calls"),
                "model": model, "output": output_,
                "parallel_tool_calls": _or(body.get("parallel_tool_calls"), True),
                "previous_response_id": body.get("previous_response_id"),
                "prompt_cache_key": body.get("prompt_cache_key"),
                "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
                "safety_identifier": body.get("safety_identifier"),
                "service_tier": "default", "store": _or(body.get("store"), True),
                "temperature": _or(body.get("temperature"), 1.0),
                "text": _or(body.get("text"), {"format": {"type": "text"}, "verbosity": "medium"}),
                "tool_choice": _or(body.get("tool_choice"), "auto"),
                "tools": _or(body.get("tools"), []),
                "top_logprobs": _or(body.get("top_logprobs"), 0),
                "top_p": _or(body.get("top_p"), 1.0),
                "truncation": _or(body.get("truncation"), "disabled"),
                "usage": usage_, "user": body.get("user"), "metadata": _or(body.get("metadata"), {}),
            }

        response_id = rand_hex("resp_", 48)
        message_id = rand_hex("msg_", 48)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text or ""}
        message = {"id": message_id, "type": "message", "status": status,
                   "content": [part], "role": "assistant"}
        output: list[dict[str, Any]] = [message] if text is not None else []
        call: dict[str, Any] = {}
        if use_tool and tool is not None:
            call = {"id": rand_hex("fc_", 48), "type": "function_call", "status": "completed",
                    "arguments": args_json, "call_id": rand_id("call_", 24), "name": tool[0]}
            output.append(call)
        final = response(status, output, usage)
        if body.get("stream") is not True:
            await send_json(send, 200, orjson.dumps(final), extra)
            return
        ev = _Events()
        ev.add("response.created", {"response": response("in_progress", [], None)})
        ev.add("response.in_progress", {"response": response("in_progress", [], None)})
        n_head = 2
        if text is not None:
            ev.add("response.output_item.added", {"item": {
                "id": message_id, "type": "message", "status": "in_progress", "content": [],
                "role": "assistant"}, "output_index": 0})
            ev.add("response.content_part.added", {
                "content_index": 0, "item_id": message_id, "output_index": 0,
                "part": {**part, "text": ""}})
            n_head = 4
            for piece in pieces:
                ev.add("response.output_text.delta", {
                    "content_index": 0, "delta": piece, "item_id": message_id, "logprobs": [],
                    "output_index": 0}, delta=True)
            ev.add("response.output_text.done", {
                "content_index": 0, "item_id": message_id, "logprobs": [], "output_index": 0,
                "text": text})
            ev.add("response.content_part.done", {
                "content_index": 0, "item_id": message_id, "output_index": 0, "part": part})
            ev.add("response.output_item.done", {"item": message, "output_index": 0})
        if call:
            index = len(output) - 1
            ev.add("response.output_item.added", {"item": {
                **call, "status": "in_progress", "arguments": ""}, "output_index": index})
            n_head = max(n_head, 3)
            for frag in fragments:
                ev.add("response.function_call_arguments.delta", {
                    "delta": frag, "item_id": call["id"], "output_index": index}, delta=True)
            ev.add("response.function_call_arguments.done", {
                "arguments": args_json, "item_id": call["id"], "output_index": index})
            ev.add("response.output_item.done", {"item": call, "output_index": index})
        ev.add("response.incomplete" if truncated else "response.completed", {"response": final})
        head, chunks, tail = split_stream(ev.items, n_head)
        await start_sse(send, extra)
        await stream_events(send, head, chunks, tail, state.chunk_delay_s, state.cut_after_chunks)

    return app
