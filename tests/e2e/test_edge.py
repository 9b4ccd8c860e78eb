"""Edge cases at the router's HTTP, websocket and CLI edges, through the real process.

Each test is what a client (or an operator reading `doctor`) would notice: a keep-alive
connection that hangs after an unread body, a provider's error that leaks the platform's
key or URL, a 500 where a 502 belongs, an error that echoes 100 KB of input, an HTML
redirect on an admin path, a reset instead of a 413, a connection that stalls forever,
a client query string sent on upstream, a websocket frame limit counted in characters,
a credential in a repr. Timeouts here are upper bounds on a wait, never sleeps.

Settings used (docs/configuration.md): `BODY_TIMEOUT_S` (how long the router waits for
the rest of a request body) and `HEADER_TIMEOUT_S` (for the rest of a request's head).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import select
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import anthropic
import httpx
import openai
import orjson
import pytest
import trio
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from tests.fakes import FakeProviderServer
from tests.fakes.server import make_config
from tests.harness import ADMIN_KEY, RouterProcess, router_config

MiB = 1024 * 1024
BOUND_S = 10  # the longest any wait below may take
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL_OF = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}  # upstream kind -> model
API_OF = {"openai": "openai.chat", "anthropic": "anthropic.messages"}
TIGHT_FRAME_BYTES = 1000


# --- a raw HTTP/1.1 connection (what a keep-alive client does on the wire) -------------------

@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def http_request(method: str, path: str, headers: dict[str, str] | None = None,
                 body: bytes = b"", content_length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body or content_length is not None:
        lines.append(f"content-length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawConnection:
    """One TCP connection to the router, reused for several requests."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""
        self.closed = False  # the router closed (or reset) it

    @classmethod
    async def open(cls, router: RouterProcess) -> RawConnection:
        parts = urlsplit(router.base_url)
        assert parts.hostname and parts.port
        return cls(await trio.open_tcp_stream(parts.hostname, parts.port))

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except trio.BrokenResourceError:
            self.closed = True

    async def _fill(self) -> None:
        try:
            chunk = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            self.closed = True
            raise EOFError
        self.buf += chunk

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            await self._fill()
        head, _, self.buf = self.buf.partition(marker)
        return head

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    async def answer(self) -> Answer | None:
        """The next response; None if the router closed the connection before any byte."""
        try:
            head = await self._until(b"\r\n\r\n")
        except EOFError:
            assert not self.buf, f"the connection closed mid-head: {self.buf[:200]!r}"
            return None
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        if "content-length" in headers:
            body = await self._exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self._until(b"\r\n")).split(b";")[0], 16):
                body += await self._exactly(size)
                await self._exactly(2)
            await self._until(b"\r\n")
        else:  # delimited by the close
            try:
                while True:
                    await self._fill()
            except EOFError:
                body, self.buf = self.buf, b""
        return Answer(int(status_line.split()[1]), headers, body)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def exchange(router: RouterProcess, request: bytes) -> Answer:
    """One request on a fresh connection; its answer within the bound."""
    conn = await RawConnection.open(router)
    try:
        with trio.fail_after(BOUND_S):
            await conn.send(request)
            answer = await conn.answer()
    finally:
        await conn.aclose()
    assert answer is not None, "the router closed the connection without an answer"
    return answer


async def stalled_outcome(router: RouterProcess, partial_request: bytes) -> Answer | None:
    """Send part of a request and stall: the router's answer, or None if it closed the
    connection; fails if neither happens within the bound."""
    conn = await RawConnection.open(router)
    try:
        await conn.send(partial_request)
        with trio.move_on_after(BOUND_S) as waited:
            answer = await conn.answer()
        assert not waited.cancelled_caught, (
            f"the router neither answered nor closed a stalled connection within {BOUND_S} s")
        return answer
    finally:
        await conn.aclose()


async def assert_next_request_on_the_connection_is_served(
        router: RouterProcess, first: bytes, status: int) -> None:
    """`first` gets `status`; then the same connection answers GET /health, or the router
    has closed it (the client then retries on a new one), within the bound: never a hang.

    As from a slow uplink, `first` goes out as its head and 1 KiB of body, and the rest of
    the body only after the answer: the router answers before it could read the body."""
    split = first.index(b"\r\n\r\n") + 4 + 1024
    conn = await RawConnection.open(router)
    try:
        with trio.move_on_after(BOUND_S) as waited:
            await conn.send(first[:split])
            answer = await conn.answer()
        assert not waited.cancelled_caught, f"no answer to the first request in {BOUND_S} s"
        assert answer is not None and answer.status == status, answer
        if answer.headers.get("connection", "").lower() != "close":
            with trio.move_on_after(BOUND_S) as waited:
                await conn.send(first[split:])
                await conn.send(http_request("GET", "/health"))
                second = None if conn.closed else await conn.answer()
            assert not waited.cancelled_caught, (
                f"the next request on the same keep-alive connection got no answer within "
                f"{BOUND_S} s, and the connection was not closed either")
            if second is not None:
                assert (second.status, second.body) == (200, b"ok"), second
    finally:
        await conn.aclose()
    fresh = await exchange(router, http_request("GET", "/health"))
    assert (fresh.status, fresh.body) == (200, b"ok")


# --- routers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tight_router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RouterProcess]:
    env = {"MAX_BODY_BYTES": "65536", "BODY_TIMEOUT_S": "1", "HEADER_TIMEOUT_S": "1",
           "WS_MAX_FRAME_BYTES": str(TIGHT_FRAME_BYTES)}
    with RouterProcess(tmp_path_factory.mktemp("tight"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env=env) as proc:
        yield proc


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    then: bytes = b""  # sent once the client saw `body` (`ScriptedUpstream.client_saw`)


class ScriptedUpstream:
    """A minimal provider (hypercorn on loopback, in its own thread) that answers every
    request with its reply, whatever the path: the error bodies the fakes cannot send."""

    def __init__(self) -> None:
        self.reply = Reply(200, b"{}")
        self.client_saw = threading.Event()  # set by the test: the first part arrived
        self.port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer_with(self, reply: Reply) -> None:
        self.client_saw.clear()
        self.reply = reply

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        while (await receive()).get("more_body"):
            pass
        reply = self.reply
        length = [] if reply.then else [(b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"content-type", reply.content_type), *length, *reply.headers]})
        await send({"type": "http.response.body", "body": reply.body, "more_body": True})
        if reply.then:  # a bound, not a pause: the test says when the client has the rest
            await trio.to_thread.run_sync(self.client_saw.wait, BOUND_S)
        await send({"type": "http.response.body", "body": reply.then})

    async def _main(self) -> None:
        self._token, self._stop = trio.lowlevel.current_trio_token(), trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(
                serve, self._app, make_config("127.0.0.1", 0),  # type: ignore[arg-type]
                shutdown_trigger=self._stop.wait))
            self.port = int(binds[0].rsplit(":", 1)[1])
            self._ready.set()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10), "the scripted upstream did not start"
        return self

    def __exit__(self, *_: object) -> None:
        assert self._token is not None and self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def leaky_router(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RouterProcess]:
    """The harness's providers (keys sk-fake-openai-1 / sk-ant-fake-1) on the scripted
    upstream; breakers that never open, so 5xx cases do not starve the next tests."""
    config = router_config(upstream.base_url + "/v1", upstream.base_url).replace(
        "timeout_idle_s = 5", "timeout_idle_s = 5\nbreaker_failures = 100000")
    with RouterProcess(tmp_path_factory.mktemp("leaky"), config) as proc:
        yield proc


# --- 1. an unread body must not hang the connection -----------------------------------------

@pytest.mark.parametrize("method,path,headers", [
    ("POST", "/admin/keys", {"authorization": "Bearer wrong-admin-key"}),
    ("POST", "/v1/messages/count_tokens", {"anthropic-version": "2023-06-01"}),
    ("GET", "/v1/models", {}),
], ids=["admin-keys-wrong-admin-key", "count-tokens-no-credential", "models-with-a-body"])
async def test_an_unread_body_does_not_hang_the_next_request_on_the_connection(
        router: RouterProcess, method: str, path: str, headers: dict[str, str]) -> None:
    body = b'{"pad": "' + b"x" * MiB + b'"}'
    request = http_request(method, path, {**headers, "content-type": "application/json"}, body)
    await assert_next_request_on_the_connection_is_served(router, request, 401)


async def test_a_body_over_max_body_bytes_gets_413_and_the_connection_stays_usable(
        tight_router: RouterProcess) -> None:
    body = b'{"model": "gpt-4o-mini", "pad": "' + b"x" * MiB + b'"}'
    request = http_request("POST", "/v1/chat/completions",
                           {"content-type": "application/json"}, body)
    await assert_next_request_on_the_connection_is_served(tight_router, request, 413)


# --- 2. a provider's error never leaks the platform's credentials or URLs -------------------

LEAKS = ("sk-fak", "sk-ant", "sk-proj", "AIzaSy", "AKIA", "abc.def", "127.0.0.1")
MARKER = "widget_count"  # the harmless part of the provider's message
MESSAGE_BOUND = 500 + 100  # the provider's part (docs/api.md), plus the router's own words


def leaky_message(upstream: ScriptedUpstream) -> str:
    return (f"{MARKER} is invalid. Sent with key sk-fake-openai-1 (or sk-ant-fake-1, starting "
            f"sk-fake-ope) to {upstream.base_url}/v1/chat/completions on host 127.0.0.1; "
            "Authorization: Bearer abc.def; other keys seen: sk-proj-ABCDEF123456 "
            "sk-ant-api03-XYZxyz0123456789abcdef AIzaSyD-0123456789abcdefghijklmnopqrstu "
            "AKIAIOSFODNN7EXAMPLE. " + "More detail follows. " * 150)


def provider_error(kind: str, message: str) -> bytes:
    """The provider's own error body, in its API's shape."""
    if kind == "anthropic":
        return orjson.dumps({"type": "error", "request_id": "req_011Cx",
                             "error": {"type": "invalid_request_error", "message": message}})
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": None}})


def mid_stream_error(kind: str, message: str) -> Reply:
    """HTTP 200, some content ("hello"), then (once the client saw it) the provider's
    error event; the body ends."""
    if kind == "openai":
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                 "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": None,
                                                      "delta": {"role": "assistant",
                                                                "content": "hello"}}]}
        events: list[tuple[str | None, Any]] = [
            (None, chunk), (None, orjson.loads(provider_error(kind, message)))]
    else:
        usage = {"input_tokens": 3, "output_tokens": 1}
        events = [
            ("message_start", {"type": "message_start", "message": {
                "id": "msg_01x", "type": "message", "role": "assistant", "content": [],
                "model": "claude-haiku-4-5", "stop_reason": None, "stop_sequence": None,
                "usage": usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "hello"}}),
            ("error", {"type": "error", "error": {"type": "api_error", "message": message}})]
    sse = [(b"event: " + name.encode() + b"\n" if name else b"") + b"data: "
           + orjson.dumps(data) + b"\n\n" for name, data in events]
    return Reply(200, b"".join(sse[:-1]), b"text/event-stream", then=sse[-1])


@dataclass
class Seen:
    """What a client saw of a call that failed."""

    status: int | None  # the HTTP status of the error (None: the stream failed after 200)
    message: str  # the error's message
    content: str  # answer text that arrived before the error
    everything: str  # all of it, exception text and raw body included


def call_with_sdk(router: RouterProcess, key: str, shape: str, model: str, stream: bool,
                  on_content: Callable[[], None] = lambda: None) -> Seen:
    content = ""
    try:
        if shape == "openai":
            client: Any = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key,
                                        max_retries=0)
            answer: Any = client.chat.completions.create(model=model, messages=MESSAGES,
                                                         max_tokens=50, stream=stream)
            for chunk in answer if stream else ():
                content += "".join(c.delta.content or "" for c in chunk.choices)
                if content:
                    on_content()
        else:
            client = anthropic.Anthropic(base_url=router.base_url, api_key=key, max_retries=0)
            answer = client.messages.create(model=model, messages=MESSAGES, max_tokens=50,
                                            stream=stream)
            for event in answer if stream else ():
                if event.type == "content_block_delta":
                    content += getattr(event.delta, "text", "")
                    on_content()
    except (openai.APIError, anthropic.APIError) as exc:
        status = getattr(exc, "status_code", None)
        if status is not None and status != 200:
            raw = exc.response.text  # type: ignore[union-attr]
            return Seen(status, json.loads(raw)["error"]["message"], content,
                        f"{content}{exc}{exc.body!r}{raw}")
        return Seen(None, exc.message, content, f"{content}{exc}{exc.body!r}")
    pytest.fail(f"the {shape} SDK saw no error (content {content!r})")


def assert_nothing_leaks(seen: str) -> None:
    leaked = [s for s in LEAKS if s in seen]
    assert not leaked, f"the client saw {leaked} in: {seen[:1500]}"


def assert_redacted_and_bounded(message: str) -> None:
    assert_nothing_leaks(message)
    assert MARKER in message and "[redacted]" in message, message
    assert len(message) <= MESSAGE_BOUND, f"{len(message)} characters"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
@pytest.mark.parametrize("shape", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_providers_client_error_reaches_the_client_redacted_and_bounded(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, status: int, shape: str,
        stream: bool) -> None:
    upstream.answer_with(Reply(status, provider_error(shape, leaky_message(upstream))))
    _, key = leaky_router.new_account(5_000_000)
    seen = call_with_sdk(leaky_router, key, shape, MODEL_OF[shape], stream)
    assert seen.status is not None and 400 <= seen.status < 500, seen
    assert_nothing_leaks(seen.everything)
    assert_redacted_and_bounded(seen.message)


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_a_providers_detail_style_error_is_redacted_too(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, shape: str) -> None:
    upstream.answer_with(Reply(400, orjson.dumps({"detail": leaky_message(upstream)})))
    _, key = leaky_router.new_account(5_000_000)
    seen = call_with_sdk(leaky_router, key, shape, MODEL_OF[shape], False)
    assert seen.status == 400, seen
    assert_nothing_leaks(seen.everything)
    assert_redacted_and_bounded(seen.message)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
@pytest.mark.parametrize("shape", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_a_providers_auth_rate_limit_or_server_error_carries_only_the_routers_words(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, status: int, shape: str,
        stream: bool) -> None:
    upstream.answer_with(Reply(status, provider_error(shape, leaky_message(upstream)),
                               headers=((b"retry-after", b"0"),)))  # no key left resting
    _, key = leaky_router.new_account(5_000_000)
    seen = call_with_sdk(leaky_router, key, shape, MODEL_OF[shape], stream)
    assert seen.status is not None and seen.status >= 400, seen
    assert_nothing_leaks(seen.everything)
    assert MARKER not in seen.everything, seen.message


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_a_non_json_provider_error_is_not_echoed(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, shape: str) -> None:
    upstream.answer_with(Reply(400, leaky_message(upstream).encode(), b"text/plain"))
    _, key = leaky_router.new_account(5_000_000)
    seen = call_with_sdk(leaky_router, key, shape, MODEL_OF[shape], False)
    assert seen.status == 400 or (seen.status or 0) >= 500, seen
    assert_nothing_leaks(seen.everything)
    assert MARKER not in seen.everything, seen.message


@pytest.mark.parametrize("shape,kind", [("openai", "openai"), ("anthropic", "anthropic"),
                                        ("openai", "anthropic"), ("anthropic", "openai")],
                         ids=["openai-passthrough", "anthropic-passthrough",
                              "openai-client-anthropic-upstream",
                              "anthropic-client-openai-upstream"])
def test_a_mid_stream_provider_error_is_rebuilt_by_the_router_not_relayed(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, shape: str,
        kind: str) -> None:
    upstream.answer_with(mid_stream_error(kind, leaky_message(upstream)))
    _, key = leaky_router.new_account(5_000_000)
    seen = call_with_sdk(leaky_router, key, shape, MODEL_OF[kind], True,
                         upstream.client_saw.set)
    assert seen.content == "hello", seen  # the error came after content
    assert_nothing_leaks(seen.everything)
    assert MARKER not in seen.everything, f"relayed: {seen.message[:300]}"


def open_ws(router: RouterProcess, key: str) -> Any:
    return open_websocket_url(router.base_url.replace("http://", "ws://") + "/v1/ws",
                              extra_headers=[(b"authorization", f"Bearer {key}".encode())])


async def ws_frames(router: RouterProcess, key: str, api: str,
                    on_content: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """Every frame of one streamed request on /v1/ws, up to its done or error frame."""
    body = {"model": MODEL_OF[api.split(".")[0]], "max_tokens": 50, "stream": True,
            "messages": MESSAGES}
    frames: list[dict[str, Any]] = []
    async with open_ws(router, key) as ws:
        await ws.send_message(json.dumps({"type": "request", "id": "s1", "api": api,
                                          "body": body}))
        with trio.fail_after(BOUND_S):
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(await ws.get_message()))
                if "hello" in json.dumps(frames[-1]):
                    on_content()
    return frames


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
async def test_a_providers_error_reaches_a_websocket_client_redacted_and_bounded(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, shape: str) -> None:
    upstream.answer_with(Reply(400, provider_error(shape, leaky_message(upstream))))
    _, key = leaky_router.new_account(5_000_000)
    frames = await ws_frames(leaky_router, key, API_OF[shape])
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == 400, frames
    assert_nothing_leaks(json.dumps(frames))
    assert_redacted_and_bounded(frames[-1]["error"]["message"])


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
async def test_a_mid_stream_provider_error_is_not_relayed_over_the_websocket(
        leaky_router: RouterProcess, upstream: ScriptedUpstream, shape: str) -> None:
    upstream.answer_with(mid_stream_error(shape, leaky_message(upstream)))
    _, key = leaky_router.new_account(5_000_000)
    everything = json.dumps(await ws_frames(leaky_router, key, API_OF[shape],
                                            upstream.client_saw.set))
    assert "hello" in everything  # the error came after content
    assert_nothing_leaks(everything)
    assert MARKER not in everything


# --- 3. the CLI shows provider URLs without userinfo or query -------------------------------

@pytest.mark.parametrize("command", [["doctor"], ["providers", "list"]],
                         ids=["doctor", "providers-list"])
def test_the_cli_shows_a_provider_url_without_its_password_or_query(
        tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "aura-router.toml"
    config.write_text('[[providers]]\nname = "creds"\nkind = "openai"\n'
                      'base_url = "http://user:secret-pw@127.0.0.1:9/v1?key=sekrit"\n'
                      'api_keys = ["sk-doctor-1"]\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATA_DIR": str(tmp_path),
           "AURA_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "actors.cli", *command], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    # doctor exits 1: nothing listens on port 9, and no ledger exists there yet
    assert done.returncode == (1 if command == ["doctor"] else 0), output
    assert "127.0.0.1:9" in output, output  # the provider is listed
    for secret in ("secret-pw", "sekrit"):
        assert secret not in output, output


# --- 4. a provider's unreadable token count is a 502 ----------------------------------------

def test_a_non_json_token_count_from_the_provider_is_a_502_in_anthropics_shape(
        leaky_router: RouterProcess, upstream: ScriptedUpstream) -> None:
    upstream.answer_with(Reply(200, b"<html>a proxy's login page</html>", b"text/html"))
    _, key = leaky_router.new_account(1_000_000)
    client = anthropic.Anthropic(base_url=leaky_router.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.count_tokens(model=MODEL_OF["anthropic"], messages=MESSAGES)
    assert raised.value.status_code == 502, raised.value.response.text
    body = raised.value.response.json()
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body


# --- 5. error messages quote at most 100 characters of input --------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_an_error_quotes_at_most_100_characters_of_a_huge_model_name(
        router: RouterProcess, clean_fake: FakeProviderServer, path: str) -> None:
    model = "".join(random.Random(5).choices(string.ascii_letters, k=100_000))
    _, key = router.new_account(1_000_000)
    response = httpx.post(router.base_url + path, timeout=BOUND_S,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": model, "max_tokens": 5, "messages": MESSAGES})
    assert response.status_code in (400, 404), response.text[:300]
    assert len(response.content) < 1000, f"an error body of {len(response.content)} bytes"
    text = response.text
    quoted = [i for i in range(len(text) - 100) if text[i:i + 101] in model]
    assert not quoted, f"quotes more than 100 characters of input: {text[:300]}"
    assert clean_fake.state.received == []


# --- 6. odd admin paths answer JSON, never an HTML redirect ---------------------------------

@pytest.mark.parametrize("with_key", [False, True], ids=["no-admin-key", "admin-key"])
@pytest.mark.parametrize("method,path", [("POST", "/admin/accounts/..%2f/credits"),
                                         ("GET", "/admin//keys"), ("GET", "/admin/keys/")])
async def test_an_odd_admin_path_answers_json_never_an_html_redirect(
        router: RouterProcess, method: str, path: str, with_key: bool) -> None:
    headers = {"content-type": "application/json", "connection": "close"}
    if with_key:
        headers["authorization"] = f"Bearer {ADMIN_KEY}"
    body = b'{"amount_micros": 0, "reason": "edge"}' if method == "POST" else b""
    answer = await exchange(router, http_request(method, path, headers, body))
    assert not 300 <= answer.status < 400, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    json.loads(answer.body)
    if not with_key:
        assert answer.status in (401, 404), answer


# --- 7. an async client over the body limit reads its 413 -----------------------------------

ASYNC_RUNNERS: dict[str, Callable[[Callable[[], Any]], Any]] = {
    "asyncio": lambda main: asyncio.run(main()), "trio": trio.run}


@pytest.mark.parametrize("backend", list(ASYNC_RUNNERS))
def test_an_async_client_over_the_body_limit_reads_a_413(
        router: RouterProcess, backend: str) -> None:
    _, key = router.new_account(1_000_000)
    body = (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
            + b"x" * (11 * MiB) + b'"}]}')

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(router.base_url + "/v1/chat/completions", content=body,
                                     headers={"authorization": f"Bearer {key}",
                                              "content-type": "application/json"})

    try:
        response = ASYNC_RUNNERS[backend](post)
    except httpx.TransportError as exc:
        pytest.fail(f"the client got no answer it could read: {exc!r}")
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"]["message"]


# --- 8. a stalled body or head does not hold a connection forever ---------------------------

@pytest.mark.parametrize("path,headers", [
    ("/v1/chat/completions", {}),
    ("/admin/accounts/acct_stall/credits", {"authorization": f"Bearer {ADMIN_KEY}"}),
], ids=["model-call", "admin-route"])
async def test_a_stalled_request_body_gets_an_answer_or_a_close_within_the_body_timeout(
        tight_router: RouterProcess, path: str, headers: dict[str, str]) -> None:
    request = http_request("POST", path, {**headers, "content-type": "application/json"},
                           b'{"model": ', content_length=1000)
    answer = await stalled_outcome(tight_router, request)
    assert answer is None or answer.status in (400, 408), answer


async def test_a_stalled_request_head_is_closed_within_the_header_timeout(
        tight_router: RouterProcess) -> None:
    answer = await stalled_outcome(
        tight_router, b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-partial: ab")
    assert answer is None or answer.status in (400, 408), answer


# --- 9. the client's query string is bounded, and not sent to OpenAI-kind upstreams ---------

def test_a_huge_query_string_is_refused_or_never_reaches_the_provider(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(1_000_000)
    response = httpx.post(router.base_url + "/v1/messages?beta=true&x=" + "q" * 10_000,
                          timeout=BOUND_S, headers={"x-api-key": key,
                                                    "anthropic-version": "2023-06-01"},
                          json={"model": MODEL_OF["anthropic"], "max_tokens": 5,
                                "messages": MESSAGES})
    if response.status_code == 400:
        assert "query" in response.json()["error"]["message"].lower(), response.text[:300]
        assert clean_fake.state.received == []
    else:
        assert response.status_code == 200, response.text[:300]
        sent = [len(r.path.partition("?")[2]) for r in clean_fake.state.snapshot()]
        assert sent and max(sent) <= 2048, f"the provider received a query of {max(sent)} chars"


def test_the_clients_query_string_is_not_sent_to_an_openai_kind_provider(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(1_000_000)
    response = httpx.post(router.base_url + "/v1/chat/completions?foo=bar", timeout=BOUND_S,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": MODEL_OF["openai"], "max_tokens": 5,
                                "messages": MESSAGES})
    assert response.status_code == 200, response.text[:300]
    paths = [r.path for r in clean_fake.state.snapshot()]
    assert paths and all("foo" not in p for p in paths), paths


# --- 10. the websocket frame limit counts bytes ---------------------------------------------

async def test_the_websocket_frame_limit_counts_utf8_bytes_not_characters(
        tight_router: RouterProcess) -> None:
    _, key = tight_router.new_account(1_000_000)
    async with open_ws(tight_router, key) as ws:
        with trio.fail_after(BOUND_S):
            await ws.send_message(json.dumps({"type": "ping", "pad": "e" * 600}))
            assert json.loads(await ws.get_message()) == {"type": "pong"}  # 600 bytes: fine
            euros = json.dumps({"type": "ping", "pad": "€" * 600}, ensure_ascii=False)
            assert len(euros) < TIGHT_FRAME_BYTES < len(euros.encode())
            await ws.send_message(euros)
            frame = json.loads(await ws.get_message())
    assert frame["type"] == "error" and frame["status"] == 413, frame


# --- 11. a model call's repr hides the caller's credential ----------------------------------

def test_the_repr_of_a_model_call_does_not_show_the_callers_credential() -> None:
    try:
        from actors.messages import ModelCall  # type: ignore[attr-defined]
    except ImportError:
        from router.gateway import ModelCall  # type: ignore[no-redef]
    secret = "ar_sk_" + "Zq9xR2" * 7
    call = ModelCall(api="openai.chat", body=b"{}", credential=secret, request_id="req_1")
    assert secret[:16] not in repr(call) and secret[:16] not in str(call), repr(call)


def test_a_burst_of_connections_waits_for_a_busy_router_and_each_is_answered(
        fake: FakeProviderServer, tmp_path: Path) -> None:
    """A router too busy to accept (stopped here, SIGSTOP) leaves new connections in the
    kernel's listen queue; with hypercorn's default of 100 the rest of a burst had their
    handshakes dropped (clients saw resets under load). Every one of 400 completes its
    handshake at once and, once the router runs again, gets its answer."""
    with RouterProcess(tmp_path, router_config(fake.openai_base_url,
                                               fake.anthropic_base_url)) as router:
        assert router.proc is not None
        host, port = urlsplit(router.base_url).hostname, urlsplit(router.base_url).port
        burst: list[socket.socket] = []
        os.kill(router.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(400):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((host, port))
                burst.append(sock)
            # A handshake the queue drops is retried by the kernel only after 1 s.
            pending = set(burst)
            deadline = time.monotonic() + 0.8
            while pending and time.monotonic() < deadline:
                _, writable, _ = select.select([], list(pending), [], 0.1)
                pending -= set(writable)
            connected = [s for s in burst if s not in pending]
            assert len(connected) == len(burst), f"{len(pending)} handshakes were dropped"
        finally:
            os.kill(router.proc.pid, signal.SIGCONT)
        try:
            for sock in burst:
                sock.setblocking(True)
                sock.settimeout(30)
                sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            for sock in burst:
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += sock.recv(65536)
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                length = int(re.search(rb"content-length: (\d+)", head, re.I)[1])
                while len(body) < length:
                    body += sock.recv(65536)
        finally:
            for sock in burst:
                sock.close()
