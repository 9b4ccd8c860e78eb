"""Fake OpenAI upstream: raw ASGI app for ``POST /v1/chat/completions`` and ``GET /v1/models``.

Wire format follows the public API reference: ``chat.completion`` bodies,
``chat.completion.chunk`` SSE events ending with ``data: [DONE]``; with
``stream_options.include_usage`` every chunk carries ``"usage": null`` and one extra
chunk with ``"choices": []`` and the usage object precedes ``[DONE]``.  Errors use
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ._asgi import ASGIApp, Headers, Receive, Scope, Send, rand_id, read_request
from ._asgi import send_json, sleep_if, start_sse, stream_events
from .state import FakeState, capped_words, count_input_tokens, reply_text, word_json

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

    return app
