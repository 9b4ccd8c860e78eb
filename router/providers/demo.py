"""The built-in `demo` provider: a local model that streams deterministic text.

It speaks both client formats natively and reports usage like the real providers, so
a new user sees the whole flow (key, credits, stream, debit) without any provider key.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import orjson
import trio

from router.providers.base import Provider, ProviderAdapter, UpstreamRequest
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool
from router.providers.probe import ProbeResult, Stopwatch
from router.providers.spec import ProviderSpec
from router.tokens import measure

REPLY = ("Hello from Aura Router's demo model. Every word you read was reserved, "
         "streamed, metered and billed to the micro-dollar. Configure a provider "
         "key to reach a real model.").split(" ")
CHUNK_DELAY_S = 0.005


def _words(body: dict[str, Any]) -> list[str]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(REPLY)
    words = REPLY[: max(1, min(int(limit), len(REPLY)))]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _openai_events(body: dict[str, Any], words: list[str], input_tokens: int,
                   stopped: str) -> list[bytes]:
    base = {"id": "chatcmpl-demo", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body["model"]}
    events = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                "content": ""},
                                         "finish_reason": None}]})]
    events += [_sse({**base, "choices": [{"index": 0, "delta": {"content": w},
                                          "finish_reason": None}]}) for w in words]
    events.append(_sse({**base, "choices": [{"index": 0, "delta": {},
                                             "finish_reason": stopped}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse({**base, "choices": [], "usage": {
            "prompt_tokens": input_tokens, "completion_tokens": len(words),
            "total_tokens": input_tokens + len(words)}}))
    return events + [b"data: [DONE]\n\n"]


def _anthropic_events(body: dict[str, Any], words: list[str], input_tokens: int,
                      stopped: str) -> list[bytes]:
    message = {"id": "msg_demo", "type": "message", "role": "assistant", "content": [],
               "model": body["model"], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": input_tokens, "output_tokens": 1}}
    events = [_sse({"type": "message_start", "message": message}, "message_start"),
              _sse({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}, "content_block_start")]
    events += [_sse({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": w}}, "content_block_delta")
               for w in words]
    events += [_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               _sse({"type": "message_delta", "delta": {"stop_reason": stopped,
                                                        "stop_sequence": None},
                     "usage": {"output_tokens": len(words)}}, "message_delta"),
               _sse({"type": "message_stop"}, "message_stop")]
    return events


def _whole(api: str, body: dict[str, Any], words: list[str], input_tokens: int,
           stopped: str) -> bytes:
    text = "".join(words)
    if api == "anthropic.messages":
        return orjson.dumps({
            "id": "msg_demo", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": stopped,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": len(words)}})
    return orjson.dumps({
        "id": "chatcmpl-demo", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": stopped}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": len(words),
                  "total_tokens": input_tokens + len(words)}})


class DemoResponse:
    status = 200
    retry_after = None

    def __init__(self, request: UpstreamRequest) -> None:
        body = orjson.loads(request.body)
        words = _words(body)
        anthropic = request.api == "anthropic.messages"
        full = len(words) == len(REPLY)
        stopped = ("end_turn" if full else "max_tokens") if anthropic else (
            "stop" if full else "length")
        input_tokens = measure(body).input_estimate(0)
        self._sent = 0
        self.content_type = "text/event-stream" if request.stream else "application/json"
        if request.stream:
            make = _anthropic_events if anthropic else _openai_events
            self._parts = make(body, words, input_tokens, stopped)
        else:
            self._parts = [_whole(request.api, body, words, input_tokens, stopped)]

    async def next_chunk(self) -> bytes | None:
        if self._sent >= len(self._parts):
            return None
        if self._sent:
            await trio.sleep(CHUNK_DELAY_S)
        self._sent += 1
        return self._parts[self._sent - 1]

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while (chunk := await self.next_chunk()) is not None:
            yield chunk

    async def read(self, limit: int) -> bytes:
        return b"".join(self._parts)[:limit]


class DemoProvider:
    running = True

    def __init__(self, spec: ProviderSpec, adapter: ProviderAdapter) -> None:
        self.spec = spec
        self.adapter = adapter
        self.credentials = CredentialPool(())
        self.breaker = CircuitBreaker()

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def watch(self) -> None:
        pass  # no connections to watch

    def stats(self) -> None:
        return None

    async def probe(self) -> ProbeResult:
        """The demo model lives in the process: always there."""
        await trio.lowlevel.checkpoint()
        return Stopwatch().result(True, detail="the built-in demo model")

    @asynccontextmanager
    async def open(self, request: UpstreamRequest) -> AsyncIterator[DemoResponse]:
        await trio.lowlevel.checkpoint()
        yield DemoResponse(request)


class DemoAdapter(ProviderAdapter):
    kind = "demo"
    apis = ("openai.chat", "anthropic.messages")
    needs_base_url = False

    def limit_field(self, api: str) -> str:
        return "max_completion_tokens" if api == "openai.chat" else super().limit_field(api)

    def connect(self, spec: ProviderSpec) -> Provider:
        return DemoProvider(spec, self)


ADAPTER = DemoAdapter()
