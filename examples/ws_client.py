"""A reference websocket client for Aura Router that survives network drops by itself.

    python examples/ws_client.py ws://localhost:3000/v1/ws ar_sk_... "Tell me a story"

`stream_completion` sends one request and yields its events; when the connection drops
(a tunnel, wifi to 5G) it reconnects with backoff and sends `resume` with the last
sequence number it saw, so every event arrives exactly once and the answer is billed
once. It also pings when the socket is quiet, because a dead mobile connection often
looks like silence rather than an error. A refused key (a 401 or 403 error frame without
a stream id) stops it at once with `StreamFailed`: reconnecting cannot help.

Needs `trio` and `trio-websocket` (`pip install trio trio-websocket`; the repository's
`.venv` has both once `scripts/test` has run).
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from typing import Any, AsyncIterator

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

QUIET_PING_S = 10.0  # ping after this much silence ...
DEAD_AFTER_S = 20.0  # ... and give the socket up after this much
MAX_RECONNECTS = 8


def answer_pings_only_while_open() -> None:
    """Work around trio-websocket 0.12 answering a ping that arrives after its own close
    frame went out: wsproto refuses the pong and the error escapes `open_websocket_url`
    (python-trio/trio-websocket#184; the fix, #198, is not released). The router pings
    idle sockets, so a client that closes at that moment would crash. Idempotent."""
    from trio_websocket._impl import WebSocketConnection
    from wsproto.connection import ConnectionState

    answer = WebSocketConnection._handle_ping_event
    if getattr(answer, "only_while_open", False):
        return

    async def answer_while_open(self: Any, event: Any) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            await answer(self, event)

    answer_while_open.only_while_open = True  # type: ignore[attr-defined]
    WebSocketConnection._handle_ping_event = answer_while_open  # type: ignore[method-assign]


POLICY_VIOLATION = 1008  # the router's close after a refused credential


class StreamFailed(Exception):
    """The router refused the request or the stream cannot be resumed."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('status')}: {frame.get('error', {}).get('message')}")
        self.frame = frame


async def _frames(ws: Any) -> AsyncIterator[dict[str, Any]]:
    """Frames from the socket; raises ConnectionClosed on a socket that went silent."""
    quiet_since = trio.current_time()
    while True:
        message = None
        with trio.move_on_after(QUIET_PING_S):  # (never yield inside a cancel scope)
            message = await ws.get_message()
        if message is not None:
            quiet_since = trio.current_time()
            yield json.loads(message)
            continue
        if trio.current_time() - quiet_since >= DEAD_AFTER_S:
            raise ConnectionClosed(None)
        await ws.send_message('{"type":"ping"}')


async def stream_completion(url: str, key: str, api: str, body: dict[str, Any]
                            ) -> AsyncIterator[dict[str, Any]]:
    """Yield the stream's `event` frames, then its `done` frame; resume across drops."""
    answer_pings_only_while_open()
    stream_id = uuid.uuid4().hex
    last_seq = 0
    sent = False
    reconnects = 0
    while True:
        try:
            async with open_websocket_url(
                    url, extra_headers=[(b"authorization", f"Bearer {key}".encode())]) as ws:
                if not sent:
                    await ws.send_message(json.dumps({"type": "request", "id": stream_id,
                                                      "api": api, "body": body}))
                    sent = True
                else:
                    await ws.send_message(json.dumps({"type": "resume", "id": stream_id,
                                                      "after": last_seq}))
                async for frame in _frames(ws):
                    if frame.get("type") == "error" and "id" not in frame and frame.get(
                            "status") in (401, 403):
                        raise StreamFailed(frame)  # the key is refused: no retry helps
                    if frame.get("id") != stream_id:
                        continue  # pong, or another stream's frame
                    reconnects = 0
                    if frame["type"] == "event":
                        if frame["seq"] > last_seq:  # never twice, even across a resume
                            last_seq = frame["seq"]
                            yield frame
                    elif frame["type"] == "done":
                        yield frame
                        return
                    elif frame["type"] == "error":
                        raise StreamFailed(frame)
        except ConnectionClosed as exc:
            reason = getattr(exc, "reason", None)
            if reason is not None and reason.code == POLICY_VIOLATION:
                # The router closes with 1008 only after refusing the credential; its
                # error frame may be lost when our send raced that close.
                raise StreamFailed({"status": 401, "error": {
                    "message": reason.reason or "the router refused the credential"}}) \
                    from None
            reconnects += 1
            if reconnects > MAX_RECONNECTS:
                raise
            await trio.sleep(min(8.0, 0.25 * 2 ** reconnects) * random.uniform(0.5, 1.0))
        except (HandshakeError, OSError, trio.BrokenResourceError):
            reconnects += 1
            if reconnects > MAX_RECONNECTS:
                raise
            await trio.sleep(min(8.0, 0.25 * 2 ** reconnects) * random.uniform(0.5, 1.0))


async def _main(url: str, key: str, prompt: str) -> None:
    body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async for frame in stream_completion(url, key, "openai.chat", body):
        if frame["type"] == "event":
            for choice in frame["data"].get("choices", []):
                print(choice["delta"].get("content") or "", end="", flush=True)
        else:
            print(f"\n[{frame['usage']['output_tokens']} tokens, "
                  f"{frame['cost_micros']} micro-USD, {frame['available_micros']} left]")


if __name__ == "__main__":
    trio.run(_main, *sys.argv[1:4])
