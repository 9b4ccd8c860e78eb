"""Fake Anthropic upstream: raw ASGI app for ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Wire format follows the public docs: a ``message`` body, or the SSE sequence
``message_start`` / ``content_block_start`` / ``ping`` / ``content_block_delta``... /
``content_block_stop`` / ``message_delta`` (cumulative usage) / ``message_stop``,
each as ``event: <type>`` + ``data: <json>``.  Like the real API it requires the
``anthropic-version`` header and a key (``x-api-key``, or ``Authorization: Bearer``
as the installed anthropic SDK 2.x sends it); errors use
``{"type": "error", "error": {"type", "message"}, "request_id"}`` with the
documented type per status (400 invalid_request_error, 401 authentication_error,
403 permission_error, 404 not_found_error, 413 request_too_large,
429 rate_limit_error, 500 api_error, 529 overloaded_error).

Usage: P = `count_input_tokens` (see state.py); ``input_tokens`` reports the
uncached part ``max(P - cache_read - cache_write, 0)``; cache fields as configured.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._asgi import ASGIApp, Headers, Receive, Scope, Send, rand_id, read_request
from ._asgi import send_json, sleep_if, start_sse, stream_events
from .state import FakeState, capped_words, count_input_tokens, reply_text, word_json

_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(type_: str, message: str, request_id: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    )


def status_error(status: int, request_id: str) -> bytes:
    default = ("invalid_request_error", "Invalid request.") if status < 500 else (
        "api_error", "Internal server error")
    type_, message = _STATUS_ERRORS.get(status, default)
    return error_body(type_, message, request_id)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def build_usage(state: FakeState, prompt: int, output_tokens: int) -> dict[str, Any]:
    read, write = state.cache_read_tokens, state.cache_write_tokens
    return {
        "input_tokens": max(prompt - read - write, 0),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def make_anthropic_app(state: FakeState) -> ASGIApp:
    """Build the ASGI app; it reads its switches from `state` on every request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_request(scope, receive, state)
        await sleep_if(state.first_byte_delay_s)
        request_id = rand_id("req_011C", 20)
        extra: Headers = [(b"request-id", request_id.encode())]
        if state.fail_status is not None:
            status = state.fail_status
            if status == 429:
                extra.append((b"retry-after", b"1"))
            await send_json(send, status, status_error(status, request_id), extra)
            return
        # Classic clients send `x-api-key`; the installed SDK (2.x) sends `Authorization: Bearer`.
        auth = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (
            auth[7:].strip() if auth[:7].lower() == "bearer " else "")
        if not key or (state.expected_api_key is not None and key != state.expected_api_key):
            message = "x-api-key header is required" if not key else "invalid x-api-key"
            await send_json(send, 401, error_body("authentication_error", message, request_id), extra)
            return
        if not request.headers.get("anthropic-version"):
            err = error_body("invalid_request_error", "anthropic-version: header is required", request_id)
            await send_json(send, 400, err, extra)
            return
        path, method = scope["path"], scope.get("method", "GET")
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            await send_json(send, 404, error_body("not_found_error", "Not Found", request_id), extra)
            return
        body = request.body
        if request.json_error or not isinstance(body, dict):
            err = error_body("invalid_request_error", "Request body is not valid JSON.", request_id)
            await send_json(send, 400, err, extra)
            return
        required = ("model", "messages") if path.endswith("count_tokens") else (
            "model", "messages", "max_tokens")
        missing = [name for name in required if name not in body]
        if missing:
            err = error_body("invalid_request_error", f"{missing[0]}: Field required", request_id)
            await send_json(send, 400, err, extra)
            return
        prompt = count_input_tokens(body.get("messages"), body.get("system"))
        if path.endswith("count_tokens"):
            await send_json(send, 200, orjson.dumps({"input_tokens": prompt}), extra)
            return
        await _message(body, prompt, send, extra)

    async def _message(body: dict[str, Any], prompt: int, send: Send, extra: Headers) -> None:
        model = str(body.get("model"))
        n_words, truncated = capped_words(state, body.get("max_tokens"))
        stop_reason = "max_tokens" if truncated else "end_turn"
        message_id = rand_id("msg_01", 22)
        usage = build_usage(state, prompt, n_words)
        if body.get("stream") is not True:
            payload = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": reply_text(n_words)}],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
            await send_json(send, 200, orjson.dumps(payload), extra)
            return
        start_usage = {**usage, "output_tokens": min(1, n_words)}
        head = [
            _sse("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
            b'event: ping\ndata: {"type": "ping"}\n\n',
        ]
        chunks = [b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":' + word_json(i) + b"}}\n\n"
                  for i in range(n_words)]
        delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens")}
        tail = [
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
            _sse("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                   "usage": delta_usage}),
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ]
        await start_sse(send, extra)
        await stream_events(send, head, chunks, tail, state.chunk_delay_s, state.cut_after_chunks)

    return app
