"""The stack's floor for `scripts/bench --floor`: hypercorn + trio serving the least an
OpenAI-shaped answer needs, with no router behind it.

`python scripts/benchlib/floor_app.py --reply-words N --chunk-delay S [--patched]`
serves `POST /v1/chat/completions`: it reads the body whole, then answers either one
pre-encoded chat completion (JSON) or, for `"stream": true`, N pre-encoded chunk events
(the role chunk at once, then one word each, S seconds apart) plus the usage chunk and
`data: [DONE]` — the shapes of the bench's fake provider. No auth, no
credits, no upstream: what is left is hypercorn's cost per request and per event, and
trio's per wake-up. `--patched` installs the router's patches of hypercorn
(router/transports/hypercorn_socket.py, client_gone.py) and its backlog, so that the
floor is measured both as hypercorn ships and as the router runs it.

`--upstream URL --upstream-key K` makes it the floor of a gateway instead: the least a
router must do, pass-through. It forwards each request's body unchanged to `URL` with the
router's upstream client (router/providers/h11_pool.py, its read watchdog running) and
`K` as the bearer token, and answers with the upstream's status and bytes as they arrive
(a non-streaming answer whole, with its length). No auth, credits, parsing, translation,
metering or settlement: what is left is two HTTP exchanges on this stack per request.
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
        if await _lifespan(scope, receive, send):
            return
        body = await _body(receive)
        if b'"stream":true' not in body:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.whole)).encode())]})
            await send({"type": "http.response.body", "body": self.whole})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i, event in enumerate(self.events):
            if self.delay_s and i:
                await trio.sleep(self.delay_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": self.tail, "more_body": False})


class ProxyFloor:
    """Pass-through to one upstream with the router's pool: a gateway doing nothing else."""

    def __init__(self, upstream: str, key: str) -> None:
        from router.providers.h11_pool import H11Pool
        self.pool = H11Pool(upstream, max_connections=1 << 16, connect_timeout_s=5.0,
                            idle_timeout_s=60.0)
        self.headers = ((b"authorization", b"Bearer " + key.encode()),
                        (b"content-type", b"application/json"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from router.providers.base import HttpCall
        if await _lifespan(scope, receive, send):
            return
        call = HttpCall("/chat/completions", self.headers, await _body(receive))
        async with self.pool.send(call) as answer:
            headers = [(b"content-type", answer.content_type.encode())]
            if not answer.content_type.startswith("text/event-stream"):
                whole = await answer.read(1 << 24)
                headers.append((b"content-length", str(len(whole)).encode()))
                await send({"type": "http.response.start", "status": answer.status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": whole})
                return
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": headers})
            async for chunk in answer.aiter_bytes():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """Answer the lifespan protocol; True unless `scope` is an HTTP request."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
    return scope["type"] != "http"


async def _body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reply-words", type=int, default=12)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    p.add_argument("--patched", action="store_true")
    p.add_argument("--upstream", help="forward to this base URL (implies --patched)")
    p.add_argument("--upstream-key", default="")
    args = p.parse_args()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    if args.patched or args.upstream:
        sys.path.insert(0, str(ROOT))
        from actors.root import LISTEN_BACKLOG
        from router.transports.client_gone import signal_client_gone
        from router.transports.hypercorn_socket import direct_socket_io
        direct_socket_io()
        signal_client_gone()
        config.backlog = LISTEN_BACKLOG
    app: FloorApp | ProxyFloor = (ProxyFloor(args.upstream, args.upstream_key) if args.upstream
                                  else FloorApp(args.reply_words, args.chunk_delay))

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            if isinstance(app, ProxyFloor):
                nursery.start_soon(app.pool.watch_reads)
            binds = await nursery.start(serve, app, config)
            print(f"listening on {binds[0]}", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
