"""Fake OpenAI upstream: raw ASGI app for ``POST /v1/chat/completions``, ``POST /v1/responses``
and ``GET /v1/models`` (what routers probe; with ``expected_api_key`` set, a wrong key is
OpenAI's 401 ``invalid_api_key``), and OpenRouter's ``GET /api/v1/key`` (also at
``/v1/key``): ``{"data": {"label", "limit", "usage", ...}}``, 401 ``{"error": {"message":
"User not found.", "code": 401}}`` for a wrong key.

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

Misbehaviour switches (``ignore_limits``, ``honour_only_max_tokens``, ``honour_n``,
``usage_mode``, ``error_before_content``) are described in state.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ._asgi import ASGIApp, Headers, Receive, Scope, Send, rand_hex, rand_id, read_request
from ._asgi import send_json, sleep_if, split_stream, split_stream_lazy, start_sse, stream_events
from .state import FakeState, capped_words, count_input_tokens, count_response_input_tokens
from .state import reply_text, text_pieces, tool_call_fragments, usage_mode, word, word_json

SYSTEM_FINGERPRINT = "fp_f4k3upstr3"
# OpenRouter's key info (its base URL is https://openrouter.ai/api/v1; tests point it at
# the fake's /v1).
OPENROUTER_KEY_PATHS = ("/v1/key", "/api/v1/key")
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


def stream_error_message(type_: str) -> str:
    """The message the real API sends with an error of this type (server error otherwise)."""
    for message, known, _ in _STATUS_ERRORS.values():
        if known == type_:
            return message
    return _STATUS_ERRORS[500][0]


def _masked(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 7 else key


def build_usage(state: FakeState, prompt: int, n_words: int) -> dict[str, Any]:
    zero_input = usage_mode(state) == "zero_input"
    cached = 0 if zero_input else state.cache_read_tokens
    prompt_tokens = 0 if zero_input else max(prompt, cached)
    completion = n_words + state.reasoning_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
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


def _n_choices(state: FakeState, body: dict[str, Any]) -> int:
    n = body.get("n")
    if state.honour_n and isinstance(n, int) and not isinstance(n, bool) and n > 1:
        return n
    return 1


def _include_usage(state: FakeState, body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return (isinstance(options, dict) and options.get("include_usage") is True
            and not state.ignore_include_usage and usage_mode(state) != "none")


def _lead_text(state: FakeState) -> str | None:
    text = state.tool_call_text
    return text if text and text.strip() else None


class _Events:
    """Responses API SSE events with a running ``sequence_number``."""

    def __init__(self) -> None:
        self.seq = 0

    def make(self, type_: str, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self.seq
        self.seq += 1
        return (b"event: " + type_.encode() + b"\ndata: "
                + orjson.dumps({"type": type_, **data}) + b"\n\n")


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
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        path, method = scope["path"], scope.get("method", "GET")
        if path in OPENROUTER_KEY_PATHS and method == "GET":
            await _openrouter_key(key, send, extra)
            return
        if state.expected_api_key is not None:
            if key != state.expected_api_key:
                message = _NO_KEY if not key else (
                    f"Incorrect API key provided: {_masked(key)}. You can find your API key "
                    "at https://platform.openai.com/account/api-keys.")
                code = "invalid_api_key" if key else None
                await send_json(send, 401, error_body(message, "invalid_request_error", code), extra)
                return
        if path == "/v1/chat/completions" and method == "POST":
            await _chat(request.body, request.json_error, receive, send, extra)
        elif path == "/v1/responses" and method == "POST":
            await _responses(request.body, request.json_error, receive, send, extra)
        elif path == "/v1/models" and method == "GET":
            data = [{"id": m, "object": "model", "created": _MODELS_CREATED, "owned_by": "system"}
                    for m in MODELS]
            await send_json(send, 200, orjson.dumps({"object": "list", "data": data}), extra)
        else:
            body = error_body(f"Invalid URL ({method} {path})", "invalid_request_error")
            await send_json(send, 404, body, extra)

    async def _openrouter_key(key: str, send: Send, extra: Headers) -> None:
        """OpenRouter's `GET /api/v1/key`: the calling key's label, limits and usage (a
        key is needed; a wrong one is OpenRouter's 401 "User not found.")."""
        if not key or (state.expected_api_key is not None and key != state.expected_api_key):
            message = "No auth credentials found" if not key else "User not found."
            await send_json(send, 401, orjson.dumps({"error": {"message": message,
                                                               "code": 401}}), extra)
            return
        label = key[:11] + "..." + key[-3:] if len(key) > 14 else key[:3] + "..."
        data = {"label": label, "limit": None, "limit_reset": None, "limit_remaining": None,
                "include_byok_in_limit": False, "usage": 0, "usage_daily": 0,
                "usage_weekly": 0, "usage_monthly": 0, "byok_usage": 0, "byok_usage_daily": 0,
                "byok_usage_weekly": 0, "byok_usage_monthly": 0, "is_free_tier": False,
                "is_provisioning_key": False}
        await send_json(send, 200, orjson.dumps({"data": data}), extra)

    async def _chat(body: Any, json_error: bool, receive: Receive, send: Send,
                    extra: Headers) -> None:
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
        stream = body.get("stream") is True
        if stream and state.error_before_content is not None:
            # HTTP 200, then an error as the first SSE event; the body ends (no [DONE])
            type_ = state.error_before_content
            await start_sse(send, extra)
            await stream_events(send, [b"data: " + error_body(stream_error_message(type_), type_)
                                       + b"\n\n"], (), (), 0.0, None)
            return
        tool = state.tool_call
        if tool is not None and _tool_call_applies(
                body, isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"):
            await _chat_tool_call(body, model, messages, tool, receive, send, extra)
            return
        cap = body.get("max_completion_tokens")
        if cap is None or state.honour_only_max_tokens:
            cap = body.get("max_tokens")
        n_words, truncated = capped_words(state, cap)
        n_choices = _n_choices(state, body)
        finish = "length" if truncated else "stop"
        usage = build_usage(state, count_input_tokens(messages), n_words * n_choices)
        completion_id = rand_id("chatcmpl-", 29)
        created = int(time.time())
        if not stream:
            content = reply_text(n_words)
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": index,
                    "message": {"role": "assistant", "content": content,
                                "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish,
                } for index in range(n_choices)],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            if usage_mode(state) == "none":
                del payload["usage"]
            await send_json(send, 200, orjson.dumps(payload), extra)
            return
        include_usage = _include_usage(state, body)
        head = (b'data: {"id":"' + completion_id.encode() + b'","object":"chat.completion.chunk",'
                b'"created":' + str(created).encode() + b',"model":' + orjson.dumps(model)
                + b',"service_tier":"default","system_fingerprint":"' + SYSTEM_FINGERPRINT.encode()
                + b'","choices":[')
        end = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        # n > 1 (honour_n): every chunk carries one choice; per word, one delta per choice
        indexes = [b'{"index":' + str(index).encode() for index in range(n_choices)]
        roles = [head + index + (b',"delta":{"role":"assistant","content":"","refusal":null},'
                                 b'"logprobs":null,"finish_reason":null}') + end
                 for index in indexes]
        starts = [head + index + b',"delta":{"content":' for index in indexes]
        stop = b'},"logprobs":null,"finish_reason":null}' + end
        if n_choices == 1:
            start0 = starts[0]
            chunks: Iterable[bytes] = (start0 + word_json(i) + stop for i in range(n_words))
        else:
            chunks = (start + word_json(i) + stop for i in range(n_words) for start in starts)
        tail = [head + index + b',"delta":{},"logprobs":null,"finish_reason":"'
                + finish.encode() + b'"}' + end for index in indexes]
        if include_usage:
            tail.append(head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n")
        tail.append(b"data: [DONE]\n\n")
        await start_sse(send, extra)
        await stream_events(send, roles, chunks, tail, state.chunk_delay_s,
                            state.cut_after_chunks, receive, lambda: state.hold_streams,
                            first_now=state.first_chunk_now)

    async def _chat_tool_call(body: dict[str, Any], model: str, messages: list[Any],
                              tool: tuple[str, dict[str, Any]], receive: Receive, send: Send,
                              extra: Headers) -> None:
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
            if usage_mode(state) == "none":
                del payload["usage"]
            await send_json(send, 200, orjson.dumps(payload), extra)
            return
        include_usage = _include_usage(state, body)
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
        await stream_events(send, head, chunks, tail, state.chunk_delay_s,
                            state.cut_after_chunks, receive)

    async def _responses(body: Any, json_error: bool, receive: Receive, send: Send,
                         extra: Headers) -> None:
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
        if use_tool and tool is not None:
            lead = _lead_text(state)
            pieces = text_pieces(lead) if lead else []
            args_json, fragments = tool_call_fragments(tool[1])
            n_out = len(pieces) + len(fragments)
            has_text = lead is not None
        else:
            lead, pieces, args_json, fragments = None, [], "", []
            n_words, truncated = capped_words(state, body.get("max_output_tokens"))
            n_out = n_words
            has_text = True
        mode = usage_mode(state)
        usage: dict[str, Any] | None = None
        if mode != "none":
            cached = 0 if mode == "zero_input" else state.cache_read_tokens
            input_tokens = 0 if mode == "zero_input" else max(prompt, cached)
            output_tokens = n_out + state.reasoning_tokens
            usage = {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": cached},
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
        call: dict[str, Any] = {}
        if use_tool and tool is not None:
            call = {"id": rand_hex("fc_", 48), "type": "function_call", "status": "completed",
                    "arguments": args_json, "call_id": rand_id("call_", 24), "name": tool[0]}

        def output_of() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
            """(text part, message item, whole output); the reply text is built only here."""
            text = lead if use_tool else reply_text(n_words)
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text or ""}
            message = {"id": message_id, "type": "message", "status": status,
                       "content": [part], "role": "assistant"}
            output = [message] if has_text else []
            if call:
                output.append(call)
            return part, message, output

        if body.get("stream") is not True:
            await send_json(send, 200, orjson.dumps(response(status, output_of()[2], usage)), extra)
            return
        if state.error_before_content is not None:
            type_ = state.error_before_content
            ev = _Events()
            error = [ev.make("response.created", {"response": response("in_progress", [], None)}),
                     ev.make("error", {"code": type_, "message": stream_error_message(type_),
                                       "param": None})]
            await start_sse(send, extra)
            await stream_events(send, error, (), (), 0.0, None)
            return

        def events() -> Iterator[tuple[bool, bytes]]:
            ev = _Events()
            yield False, ev.make("response.created", {"response": response("in_progress", [], None)})
            yield False, ev.make("response.in_progress",
                                 {"response": response("in_progress", [], None)})
            output: list[dict[str, Any]] = [call] if call else []
            if has_text:
                yield False, ev.make("response.output_item.added", {"item": {
                    "id": message_id, "type": "message", "status": "in_progress", "content": [],
                    "role": "assistant"}, "output_index": 0})
                yield False, ev.make("response.content_part.added", {
                    "content_index": 0, "item_id": message_id, "output_index": 0,
                    "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}})
                for piece in (pieces if use_tool else map(word, range(n_words))):
                    yield True, ev.make("response.output_text.delta", {
                        "content_index": 0, "delta": piece, "item_id": message_id, "logprobs": [],
                        "output_index": 0})
                part, message, output = output_of()
                yield False, ev.make("response.output_text.done", {
                    "content_index": 0, "item_id": message_id, "logprobs": [], "output_index": 0,
                    "text": part["text"]})
                yield False, ev.make("response.content_part.done", {
                    "content_index": 0, "item_id": message_id, "output_index": 0, "part": part})
                yield False, ev.make("response.output_item.done", {"item": message, "output_index": 0})
            if call:
                index = len(output) - 1
                yield False, ev.make("response.output_item.added", {"item": {
                    **call, "status": "in_progress", "arguments": ""}, "output_index": index})
                for frag in fragments:
                    yield True, ev.make("response.function_call_arguments.delta", {
                        "delta": frag, "item_id": call["id"], "output_index": index})
                yield False, ev.make("response.function_call_arguments.done", {
                    "arguments": args_json, "item_id": call["id"], "output_index": index})
                yield False, ev.make("response.output_item.done", {"item": call, "output_index": index})
            yield False, ev.make("response.incomplete" if truncated else "response.completed",
                                 {"response": response(status, output, usage)})

        head, chunks, tail = split_stream_lazy(events(), 4 if has_text else 3 if call else 2)
        await start_sse(send, extra)
        await stream_events(send, head, chunks, tail, state.chunk_delay_s,
                            state.cut_after_chunks, receive)

    return app
