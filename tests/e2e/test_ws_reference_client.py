"""The reference client (examples/ws_client.py) through a loopback proxy that cuts the
network mid-stream: it reconnects and resumes by itself, every event exactly once."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess

_spec = importlib.util.spec_from_file_location(
    "ws_client", Path(__file__).parents[2] / "examples" / "ws_client.py")
assert _spec is not None and _spec.loader is not None
ws_client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ws_client)


class CuttingProxy:
    """Forwards loopback TCP to the router; `cut()` drops every open connection at once."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open: set[trio.SocketStream] = set()
        self.connections = 0

    async def handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        upstream = await trio.open_tcp_stream("127.0.0.1", self.port)
        self.open |= {client, upstream}

        async def pump(a: trio.SocketStream, b: trio.SocketStream) -> None:
            try:
                while data := await a.receive_some(65536):
                    await b.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                await b.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, upstream)
            nursery.start_soon(pump, upstream, client)

    async def cut(self) -> None:
        for stream in list(self.open):
            await stream.aclose()
        self.open.clear()


async def test_reference_client_resumes_across_a_network_loss(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 40
    clean_fake.state.chunk_delay_s = 0.02
    account, key = router.new_account(5_000_000)
    router_port = int(router.base_url.rsplit(":", 1)[1])
    proxy = CuttingProxy(router_port)
    frames: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0,
                                                host="127.0.0.1"))
        url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1/ws"
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        with trio.fail_after(30):
            async for frame in ws_client.stream_completion(url, key, "openai.chat", body):
                frames.append(frame)
                if len(frames) == 6:
                    await proxy.cut()  # the tunnel
        nursery.cancel_scope.cancel()
    assert proxy.connections >= 2, "it reconnected"
    events, done = frames[:-1], frames[-1]
    assert [f["seq"] for f in events] == list(range(1, len(events) + 1))
    text = "".join(c["delta"].get("content") or "" for f in events for c in f["data"]["choices"])
    assert text == " ".join(f"w{i}" for i in range(40))
    assert done["type"] == "done" and done["usage"]["output_tokens"] == 40
    state = router.account(account)
    assert state["held_micros"] == 0
    assert 5_000_000 - state["balance_micros"] == done["cost_micros"], "billed once"


async def test_reference_client_stops_at_once_on_a_refused_key(router: RouterProcess) -> None:
    """A refused key is a 401 error frame without a stream id: the client raises
    StreamFailed after one connection instead of reconnecting with backoff."""
    router_port = int(router.base_url.rsplit(":", 1)[1])
    proxy = CuttingProxy(router_port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0,
                                                host="127.0.0.1"))
        url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1/ws"
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(ws_client.StreamFailed) as refused:
            async for _ in ws_client.stream_completion(url, "ar_sk_not-a-real-key",
                                                       "openai.chat", body):
                pass
        nursery.cancel_scope.cancel()
    assert refused.value.frame["status"] == 401
    assert proxy.connections == 1, "no reconnect for a refused key"
