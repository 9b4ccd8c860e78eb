"""Fake Anthropic upstream: raw ASGI app for ``POST /v1/messages`` and ``/v1/messages/count_tokens``,
and ``GET /v1/models`` (``?limit=`` 1-1000, default 20): ``{"data": [{"type": "model", "id",
"display_name", "created_at"}], "has_more", "first_id", "last_id"}``, newest first, behind
the same key and ``anthropic-version`` checks as every route (what routers probe).

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

Tool use (``FakeState.tool_call``) and extended thinking (``FakeState.thinking_text``)
follow the documented block sequence: a ``thinking`` block (``thinking_delta``s, then one
``signature_delta``), an optional ``text`` block, a ``tool_use`` block whose
``content_block_start`` carries ``"input": {}`` and whose ``input_json_delta``s start with
an empty ``partial_json``; ``stop_reason`` is ``tool_use`` for a tool call.

Usage: P = `count_input_tokens` (see state.py); ``input_tokens`` reports the
uncached part ``max(P - cache_read - cache_write, 0)``; cache fields as configured.
Misbehaviour switches (``ignore_limits``, ``usage_mode``, ``error_before_content``) are
described in state.py.

OAuth access tokens (``sk-ant-oat...``, Claude Code's logins) are checked as the real API
does: only as ``Authorization: Bearer`` with ``oauth-2025-04-20`` among the
``anthropic-beta`` values (else 401 "OAuth authentication is currently not supported."),
never as ``x-api-key`` (401 "invalid x-api-key"). Per-key rate limits: set
``state.rate_limited_keys = {key: retry_after_seconds}`` (an extra attribute, not a
`FakeState` field: ``reset()`` leaves it, so use it on a server of your own); that key is
answered 429 with that ``retry-after``.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import orjson

from ._asgi import ASGIApp, Headers, Receive, Scope, Send, rand_id, read_request
from ._asgi import send_json, sleep_if, split_stream, start_sse, stream_events
from .state import FakeState, capped_words, count_input_tokens, reply_text, text_pieces
from .state import tool_call_fragments, usage_mode, word, word_json

MODELS = (("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
          ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
          ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"))
OAUTH_TOKEN_PREFIX = "sk-ant-oat"
OAUTH_BETA = "oauth-2025-04-20"

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
    mode = usage_mode(state)
    if mode != "normal":  # "zero_input": no input / cache counts; "none": all counts 0
        prompt = read = write = 0
        if mode == "none":
            output_tokens = 0
    return {
        "input_tokens": max(prompt - read - write, 0),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def stream_error_message(type_: str) -> str:
    """The documented message for an error of this type ("Internal server error" otherwise)."""
    for known, message in _STATUS_ERRORS.values():
        if known == type_:
            return message
    return _STATUS_ERRORS[500][1]


def _tool_call_applies(body: dict[str, Any]) -> bool:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return False
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return False
    messages = body.get("messages")
    for msg in reversed(messages if isinstance(messages, list) else []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            return not (isinstance(content, list) and any(
                isinstance(block, dict) and block.get("type") == "tool_result" for block in content))
    return True


def _thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _block_event(kind: str, index: int, extra: dict[str, Any]) -> bytes:
    return _sse(kind, {"type": kind, "index": index, **extra})


def _delta(index: int, delta: dict[str, Any]) -> tuple[bool, bytes]:
    return True, _block_event("content_block_delta", index, {"delta": delta})


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
        if key.startswith(OAUTH_TOKEN_PREFIX):
            betas = {b.strip() for b in request.headers.get("anthropic-beta", "").split(",")}
            message = ("invalid x-api-key" if request.headers.get("x-api-key") else
                       None if OAUTH_BETA in betas else
                       "OAuth authentication is currently not supported.")
            if message is not None:
                await send_json(send, 401, error_body("authentication_error", message, request_id),
                                extra)
                return
        limited = getattr(state, "rate_limited_keys", None) or {}
        if key in limited:
            extra.append((b"retry-after", str(limited[key]).encode()))
            await send_json(send, 429, status_error(429, request_id), extra)
            return
        if not request.headers.get("anthropic-version"):
            err = error_body("invalid_request_error", "anthropic-version: header is required", request_id)
            await send_json(send, 400, err, extra)
            return
        path, method = scope["path"], scope.get("method", "GET")
        if method == "GET" and path == "/v1/models":
            await _models(scope, send, extra, request_id)
            return
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
        await _message(body, prompt, receive, send, extra)

    async def _models(scope: Scope, send: Send, extra: Headers, request_id: str) -> None:
        query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode()
                     .split("&") if "=" in p)
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            err = error_body("invalid_request_error",
                             "limit: Input should be greater than or equal to 1", request_id)
            await send_json(send, 400, err, extra)
            return
        data = [{"type": "model", "id": id_, "display_name": name, "created_at": created}
                for id_, name, created in sorted(MODELS, key=lambda m: m[2],
                                                 reverse=True)[:limit]]
        await send_json(send, 200, orjson.dumps({
            "data": data, "has_more": limit < len(MODELS), "first_id": data[0]["id"],
            "last_id": data[-1]["id"]}), extra)

    async def _message(body: dict[str, Any], prompt: int, receive: Receive, send: Send,
                       extra: Headers) -> None:
        if state.error_before_content is not None and body.get("stream") is True:
            await _error_before_content(body, prompt, state.error_before_content, send, extra)
            return
        if ((state.tool_call is not None and _tool_call_applies(body))
                or (state.thinking_text is not None and _thinking_enabled(body))):
            await _message_blocks(body, prompt, receive, send, extra)
            return
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
        start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
        head = [
            _sse("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
            b'event: ping\ndata: {"type": "ping"}\n\n',
        ]
        chunks = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":' + word_json(i) + b"}}\n\n"
                  for i in range(n_words))
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
        await stream_events(send, head, chunks, tail, state.chunk_delay_s,
                            state.cut_after_chunks, receive)

    async def _error_before_content(body: dict[str, Any], prompt: int, type_: str, send: Send,
                                    extra: Headers) -> None:
        """HTTP 200, ``message_start``, then a mid-stream ``error`` event; the body ends."""
        events = [
            _sse("message_start", {"type": "message_start", "message": {
                "id": rand_id("msg_01", 22), "type": "message", "role": "assistant",
                "model": str(body.get("model")), "content": [], "stop_reason": None,
                "stop_sequence": None, "usage": build_usage(state, prompt, 1)}}),
            _sse("error", {"type": "error",
                           "error": {"type": type_, "message": stream_error_message(type_)}}),
        ]
        await start_sse(send, extra)
        await stream_events(send, events, (), (), 0.0, None)

    async def _message_blocks(body: dict[str, Any], prompt: int, receive: Receive, send: Send,
                              extra: Headers) -> None:
        """An answer with a thinking block and/or a tool call (see state.py for the token model)."""
        model = str(body.get("model"))
        tool = state.tool_call if _tool_call_applies(body) else None
        thinking = state.thinking_text if _thinking_enabled(body) else None
        think_pieces = text_pieces(thinking) if thinking else []
        content: list[dict[str, Any]] = []
        # per block: (content block at start, its delta payloads)
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        if thinking is not None:
            signature = base64.b64encode(os.urandom(72)).decode()
            content.append({"type": "thinking", "thinking": thinking, "signature": signature})
            blocks.append(({"type": "thinking", "thinking": "", "signature": ""},
                           [*({"type": "thinking_delta", "thinking": p} for p in think_pieces),
                            {"type": "signature_delta", "signature": signature}]))
        output_tokens = len(think_pieces)
        if tool is not None:
            name, arguments = tool
            lead = state.tool_call_text
            if lead and lead.strip():
                pieces = text_pieces(lead)
                output_tokens += len(pieces)
                content.append({"type": "text", "text": lead})
                blocks.append(({"type": "text", "text": ""},
                               [{"type": "text_delta", "text": p} for p in pieces]))
            _, fragments = tool_call_fragments(arguments)
            output_tokens += len(fragments)
            tool_id = rand_id("toolu_01", 22)
            content.append({"type": "tool_use", "id": tool_id, "name": name, "input": arguments})
            blocks.append(({"type": "tool_use", "id": tool_id, "name": name, "input": {}},
                           [{"type": "input_json_delta", "partial_json": f}
                            for f in ("", *fragments)]))
            stop_reason = "tool_use"
        else:
            cap = body.get("max_tokens")
            if isinstance(cap, int) and not isinstance(cap, bool):
                cap = max(cap - output_tokens, 0)
            n_words, truncated = capped_words(state, cap)
            output_tokens += n_words
            content.append({"type": "text", "text": reply_text(n_words)})
            blocks.append(({"type": "text", "text": ""},
                           [{"type": "text_delta", "text": word(i)} for i in range(n_words)]))
            stop_reason = "max_tokens" if truncated else "end_turn"
        message_id = rand_id("msg_01", 22)
        usage = build_usage(state, prompt, output_tokens)
        if body.get("stream") is not True:
            payload = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
            await send_json(send, 200, orjson.dumps(payload), extra)
            return
        start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
        events: list[tuple[bool, bytes]] = [(False, _sse("message_start", {
            "type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}))]
        for index, (block, deltas) in enumerate(blocks):
            events.append((False, _block_event("content_block_start", index, {"content_block": block})))
            if index == 0:
                events.append((False, b'event: ping\ndata: {"type": "ping"}\n\n'))
            events.extend(_delta(index, delta) for delta in deltas)
            events.append((False, _block_event("content_block_stop", index, {})))
        delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens")}
        events.append((False, _sse("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": delta_usage})))
        events.append((False, b'event: message_stop\ndata: {"type":"message_stop"}\n\n'))
        head, chunks, tail = split_stream(events, 3)
        await start_sse(send, extra)
        await stream_events(send, head, chunks, tail, state.chunk_delay_s,
                            state.cut_after_chunks, receive)

    return app
