"""A lean paced fake provider for `scripts/bench --paced-load` (never used by tests).

`python -m tests.fakes` (hypercorn) spends ~100 µs of CPU per paced SSE event: 1 000
streams of one event per 20 ms (50 000 events/s) would need several cores, so there the
fake, not the router, would set the pace. This one is a raw HTTP/1.1 keep-alive server on
trio's low-level socket waits: one task per connection reads requests; streaming replies
are driven by one timer task per process, which wakes at the earliest due event and
writes every event due with a single non-blocking `send` (the events are built from
pre-encoded pieces). On a partial write the rest waits for the next wake-up.

Wire formats are those of tests/fakes/openai_app.py and anthropic_app.py, byte for byte
(usage in the final chunk / `message_delta` as they send it): `POST /v1/chat/completions`
and `POST /v1/messages`, streaming only, plus `GET /v1/models` for the router's probes.
The timing is theirs too: `--first-byte-delay`, then the status line and the opening
events (OpenAI's role chunk; Anthropic's message_start, content_block_start, ping), then
one content event every `--chunk-delay` (the closing events ride with the last one).

`--processes N` runs N processes on one port (SO_REUSEPORT), each with its own loop.
Prints `listening on http://HOST:PORT` once every socket is listening.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import socket
import string
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

_ALNUM = string.ascii_letters + string.digits
_rng = random.Random()
SYSTEM_FINGERPRINT = b"fp_f4k3upstr3"
PER_MESSAGE_OVERHEAD_TOKENS = 3
_WORDS: list[bytes] = []


def _word_json(i: int) -> bytes:
    while len(_WORDS) <= i:
        n = len(_WORDS)
        _WORDS.append(orjson.dumps(f"w{n}" if n == 0 else f" w{n}"))
    return _WORDS[i]


def _rand_id(prefix: str, length: int) -> str:
    return prefix + "".join(_rng.choices(_ALNUM, k=length))


def _text_bytes(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode())
    total = 0
    for part in content if isinstance(content, list) else ():
        if isinstance(part, str):
            total += len(part.encode())
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            total += len(part["text"].encode())
    return total


def _prompt_tokens(messages: Any, system: Any = None) -> int:
    """tests/fakes/state.py's count_input_tokens: ceil(text bytes / 4) + 3 per message."""
    msgs = messages if isinstance(messages, list) else []
    n = _text_bytes(system) + sum(_text_bytes(m.get("content")) for m in msgs
                                  if isinstance(m, dict))
    return (n + 3) // 4 + PER_MESSAGE_OVERHEAD_TOKENS * len(msgs)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _head(status: int, reason: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join(lines) + b"\r\n"


def _json_reply(status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> bytes:
    return _head(status, "OK" if status == 200 else "Error", [
        (b"content-type", b"application/json"), *extra,
        (b"content-length", str(len(body)).encode())]) + body


@dataclass(eq=False)
class Stream:
    """One streaming reply: what goes out at the first due time, then content i = prefix +
    word i + suffix, the closing events with the last one."""

    sock: socket.socket
    first: bytes
    prefix: bytes
    suffix: bytes
    closing: bytes
    n: int
    sent: int = -1  # -1: nothing sent yet
    pending: bytes = b""
    retrying: bool = False
    dead: bool = False


@dataclass
class Server:
    ttft_s: float
    delay_s: float
    words: int
    heap: list[tuple[float, int, Stream, bool]] = field(default_factory=list)
    seq: int = 0
    wake_at: float = float("inf")
    sleeper: trio.CancelScope | None = None

    def schedule(self, due: float, stream: Stream, retry: bool = False) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, stream, retry))
        if due < self.wake_at and self.sleeper is not None:
            self.sleeper.cancel()

    async def ticker(self) -> None:
        while True:
            self.wake_at = self.heap[0][0] if self.heap else float("inf")
            with trio.CancelScope(deadline=self.wake_at) as self.sleeper:
                await trio.sleep_forever()
            self.sleeper = None
            now = trio.current_time()
            heap = self.heap
            while heap and heap[0][0] <= now:
                due, _, stream, retry = heapq.heappop(heap)
                self._step(stream, due, now, retry)

    def _step(self, stream: Stream, due: float, now: float, retry: bool) -> None:
        if stream.dead:
            return
        if retry:
            stream.retrying = False
            data = b""
        elif stream.sent < 0:
            data = stream.first
        else:
            i = stream.sent
            data = _chunk(stream.prefix + _word_json(i) + stream.suffix)
            if i == stream.n - 1:
                data += stream.closing
        out = stream.pending + data if stream.pending else data
        try:
            sent = stream.sock.send(out) if out else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            stream.dead = True
            return
        stream.pending = out[sent:]
        if data:
            stream.sent += 1
            if stream.sent < stream.n:
                # absolute schedule; a late event does not make the next one early
                nxt = due + self.delay_s
                self.schedule(nxt if nxt > now else now + self.delay_s, stream)
        if stream.pending and not stream.retrying:
            stream.retrying = True
            self.schedule(now + 0.001, stream, retry=True)

    async def connection(self, sock: socket.socket) -> None:
        buf = b""
        current: Stream | None = None
        try:
            while True:
                while (end := buf.find(b"\r\n\r\n")) < 0:
                    await trio.lowlevel.wait_readable(sock)
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head = buf[:end].decode("latin-1").split("\r\n")
                method, target = head[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip()
                           for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)}
                size = int(headers.get("content-length", "0"))
                while len(buf) < end + 4 + size:
                    await trio.lowlevel.wait_readable(sock)
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[end + 4:end + 4 + size], buf[end + 4 + size:]
                reply = self.answer(sock, method, target.split("?", 1)[0], headers, body)
                if isinstance(reply, Stream):
                    current = reply
                else:
                    sock.sendall(reply)
        except (OSError, ValueError):
            return
        finally:
            if current is not None:  # the ticker checks it before every send
                current.dead = True
            sock.close()

    def answer(self, sock: socket.socket, method: str, path: str, headers: dict[str, str],
               raw: bytes) -> bytes | Stream:
        """The whole reply as bytes, or the stream scheduled to send it."""
        if method == "GET" and path == "/v1/models":
            if headers.get("anthropic-version"):
                data = [{"type": "model", "id": "claude-haiku-4-5",
                         "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}]
                return _json_reply(200, orjson.dumps({"data": data, "has_more": False,
                                                      "first_id": data[0]["id"],
                                                      "last_id": data[0]["id"]}), [])
            data = [{"id": "gpt-4o-mini", "object": "model", "created": 1715367049,
                     "owned_by": "system"}]
            return _json_reply(200, orjson.dumps({"object": "list", "data": data}), [])
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/messages") \
                or not isinstance(body, dict) or body.get("stream") is not True:
            msg = b"the paced bench fake answers streaming chat completions and messages only"
            return _json_reply(400, b'{"error":{"message":"' + msg + b'"}}', [])
        cap = body.get("max_completion_tokens", body.get("max_tokens"))
        n = min(self.words, cap) if isinstance(cap, int) and cap >= 0 else self.words
        finish = n < self.words
        if path == "/v1/messages":
            stream = self._anthropic(sock, body, n, finish)
        else:
            stream = self._openai(sock, body, n, finish)
        if n == 0:
            return stream.first + stream.closing
        self.schedule(trio.current_time() + self.ttft_s, stream)
        return stream

    def _openai(self, sock: socket.socket, body: dict[str, Any], n: int,
                truncated: bool) -> Stream:
        model = body.get("model")
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        prompt = _prompt_tokens(body.get("messages"))
        head = (b'data: {"id":"' + _rand_id("chatcmpl-", 29).encode()
                + b'","object":"chat.completion.chunk","created":' + str(int(time.time())).encode()
                + b',"model":' + orjson.dumps(model) + b',"service_tier":"default",'
                b'"system_fingerprint":"' + SYSTEM_FINGERPRINT + b'","choices":[')
        end = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        role = (head + b'{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
                b'"logprobs":null,"finish_reason":null}' + end)
        finish = b"length" if truncated else b"stop"
        closing = [head + b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"' + finish
                   + b'"}' + end]
        if include_usage:
            usage = {"prompt_tokens": prompt, "completion_tokens": n,
                     "total_tokens": prompt + n,
                     "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                     "completion_tokens_details": {
                         "reasoning_tokens": 0, "audio_tokens": 0,
                         "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
            closing.append(head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n")
        closing.append(b"data: [DONE]\n\n")
        status = _head(200, "OK", [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", _rand_id("req_", 32).encode()),
            (b"openai-version", b"2020-10-01"), (b"openai-processing-ms", b"1"),
            (b"transfer-encoding", b"chunked")])
        return Stream(sock, status + _chunk(role),
                      head + b'{"index":0,"delta":{"content":',
                      b'},"logprobs":null,"finish_reason":null}' + end,
                      _chunk(b"".join(closing)) + b"0\r\n\r\n", n)

    def _anthropic(self, sock: socket.socket, body: dict[str, Any], n: int,
                   truncated: bool) -> Stream:
        prompt = _prompt_tokens(body.get("messages"), body.get("system"))
        usage = {"input_tokens": prompt, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0,
                 "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                    "ephemeral_1h_input_tokens": 0},
                 "output_tokens": n, "service_tier": "standard"}
        start_usage = {**usage, "output_tokens": min(1, n)}
        start = {"type": "message_start", "message": {
            "id": _rand_id("msg_01", 22), "type": "message", "role": "assistant",
            "model": str(body.get("model")), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": start_usage}}
        opening = (b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n"
                   + b'event: content_block_start\ndata: {"type":"content_block_start",'
                   b'"index":0,"content_block":{"type":"text","text":""}}\n\n'
                   + b'event: ping\ndata: {"type": "ping"}\n\n')
        delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens")}
        message_delta = {"type": "message_delta", "delta": {
            "stop_reason": "max_tokens" if truncated else "end_turn", "stop_sequence": None},
            "usage": delta_usage}
        closing = (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
                   + b"event: message_delta\ndata: " + orjson.dumps(message_delta) + b"\n\n"
                   + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        status = _head(200, "OK", [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"request-id", _rand_id("req_011C", 20).encode()),
            (b"transfer-encoding", b"chunked")])
        return Stream(sock, status + _chunk(opening),
                      b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                      b'"index":0,"delta":{"type":"text_delta","text":',
                      b"}}\n\n", _chunk(closing) + b"0\r\n\r\n", n)

    async def serve(self, listener: socket.socket) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.ticker)
            while True:
                await trio.lowlevel.wait_readable(listener)
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    except OSError:  # EMFILE and the like: let the client retry
                        await trio.sleep(0.01)
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    nursery.start_soon(self.connection, sock)


def _listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="paced_fake", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reply-words", type=int, default=100, help="content events per reply")
    p.add_argument("--first-byte-delay", type=float, default=0.1, metavar="SECONDS")
    p.add_argument("--chunk-delay", type=float, default=0.02, metavar="SECONDS")
    p.add_argument("--processes", type=int, default=1)
    args = p.parse_args(argv)
    listeners = [_listener(args.host, args.port)]
    port = listeners[0].getsockname()[1]
    listeners += [_listener(args.host, port) for _ in range(args.processes - 1)]
    mine = listeners[0]
    for sock in listeners[1:]:
        if os.fork() == 0:
            mine = sock
            break
    for sock in listeners:
        if sock is not mine:
            sock.close()
    if mine is listeners[0]:
        print(f"listening on http://{args.host}:{port}", flush=True)
    server = Server(args.first_byte_delay, args.chunk_delay, args.reply_words)
    try:
        trio.run(server.serve, mine)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
