"""The stack's floor for `scripts/bench --floor`: hypercorn + trio serving the least an
OpenAI-shaped answer needs, with no router behind it.

`python scripts/benchlib/floor_app.py --reply-words N --chunk-delay S [--patched]`
serves `POST /v1/chat/completions`: it reads the body whole, then answers either one
pre-encoded chat completion (JSON) or, for `"stream": true`, N pre-encoded chunk events
(one word each, S seconds apart, the first after S too) plus the usage chunk and
`data: [DONE]` — the same shapes and pacing as the bench's fake provider. No auth, no
credits, no upstream: what is left is hypercorn's cost per request and per event, and
trio's per wake-up. `--patched` installs the router's patches of hypercorn
(router/transports/hypercorn_socket.py, client_gone.py) and its backlog, so that the
floor is measured both as hypercorn ships and as the router runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

ROOT = Path(__file__).resolve().parents[2]


def _chunk(delta: dict[str, Any], finish: str | None = None,
           usage: dict[str, int] | None = None) -> bytes:
    event: dict[str, Any] = {"id": "chatcmpl-floor", "object": "chat.completion.chunk",
                             "created": 1, "model": "gpt-4o-mini",
                             "choices": [] if usage else [{"index": 0, "delta": delta,
                                                           "finish_reason": finish}]}
    if usage:
        event["usage"] = usage
    return b"data: " + orjson.dumps(event) + b"\n\n"


class FloorApp:
    def __init__(self, words: int, delay_s: float) -> None:
        self.delay_s = delay_s
        usage = {"prompt_tokens": 9, "completion_tokens": words, "total_tokens": 9 + words}
        self.events = [_chunk({"role": "assistant", "content": ""})] + [
            _chunk({"content": f"w{i} "}) for i in range(words)]
        self.tail = _chunk({}, "stop") + _chunk({}, usage=usage) + b"data: [DONE]\n\n"
        self.whole = orjson.dumps({
            "id": "chatcmpl-floor", "object": "chat.completion", "created": 1,
            "model": "gpt-4o-mini", "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant",
                            "content": " ".join(f"w{i}" for i in range(words))}}],
            "usage": usage})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if b'"stream":true' not in body:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.whole)).encode())]})
            await send({"type": "http.response.body", "body": self.whole})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for event in self.events:
            if self.delay_s:
                await trio.sleep(self.delay_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": self.tail, "more_body": False})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reply-words", type=int, default=12)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    p.add_argument("--patched", action="store_true")
    args = p.parse_args()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    if args.patched:
        sys.path.insert(0, str(ROOT))
        from actors.root import LISTEN_BACKLOG
        from router.transports.client_gone import signal_client_gone
        from router.transports.hypercorn_socket import direct_socket_io
        direct_socket_io()
        signal_client_gone()
        config.backlog = LISTEN_BACKLOG
    app = FloorApp(args.reply_words, args.chunk_delay)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, config)
            print(f"listening on {binds[0]}", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
