"""A provider kind is one adapter and one registry line: a kind added here, by a test,
through the registry alone, is accepted by the config, routed, called with its own
addressing and signing, metered and billed by the real runtime (docs/providers.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import trio

from actors.root import start_actors
from actors.runtime import build_runtime
from router.config import ConfigError, load_config
from router.errors import ApiShape, RouterError
from router.gateway import ModelCall, Settled
from router.providers import registry
from router.providers.base import HttpCall, UpstreamRequest
from router.providers.http import HttpAdapter
from tests.fakes import FakeProviderServer


class AcmeAdapter(HttpAdapter):
    """An imaginary vendor: the deployment in the query, its own key header."""

    kind = "acme"
    apis = ("openai.chat",)

    def limit_field(self, api: str) -> str:
        return "max_tokens"

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        headers = ((b"content-type", b"application/json"),
                   (b"x-acme-key", (credential or "").encode()))
        return HttpCall(f"/chat/completions?deployment={quote(request.model)}", headers,
                        request.body)


class Collected:
    """A `ClientSink` that keeps the answer."""

    def __init__(self) -> None:
        self.started, self.status, self.data = False, 0, b""
        self.bill: Settled | None = None

    async def start(self, status: int, headers: Any) -> None:
        self.started, self.status = True, status

    async def body(self, data: bytes) -> None:
        self.data += data

    async def error(self, error: RouterError, shape: ApiShape) -> None:
        await self.start(error.status, ())
        await self.body(error.body(shape))

    def settled(self, settled: Settled) -> None:
        self.bill = settled


def _config(tmp_path: Path, fake: FakeProviderServer) -> Any:
    toml = tmp_path / "aura-router.toml"
    toml.write_text(f"""
[[providers]]
name = "acme-eu"
kind = "acme"
base_url = "{fake.openai_base_url}"
api_keys = ["acme-secret-key"]

[[models]]
id = "acme-model"
route = ["acme-eu:gpt-4o-mini"]
input_per_mtok = "1"
output_per_mtok = "2"
""")
    return load_config(env={"DATA_DIR": str(tmp_path), "AURA_CONFIG": str(toml),
                            "RATE_LIMIT_RPM": "0", "LOG_REQUESTS": "false"}, cwd=tmp_path)


async def test_a_kind_added_through_the_registry_alone_is_routed_called_and_billed(
        tmp_path: Path, clean_fake: FakeProviderServer) -> None:
    with pytest.raises(ConfigError, match="kind"):  # unknown until registered
        _config(tmp_path, clean_fake)
    registry.register(AcmeAdapter())
    try:
        config = _config(tmp_path, clean_fake)
        rt = build_runtime(config)
        await rt.accounts.grant("alice", 1_000_000, "test", rt.clock())
        key, _ = await rt.keys.issue("alice", at=rt.clock())
        sink = Collected()
        body = {"model": "acme-model", "max_tokens": 20,
                "messages": [{"role": "user", "content": "hello"}]}
        async with trio.open_nursery() as nursery:
            await start_actors(rt, nursery)
            await rt.model_call(ModelCall("openai.chat", orjson.dumps(body), key,
                                          "req_acme0000000000000000000"), sink)
            nursery.cancel_scope.cancel()
        rt.stores.close()
    finally:
        registry.unregister("acme")
    assert sink.status == 200, sink.data
    answer = orjson.loads(sink.data)
    assert answer["choices"][0]["message"]["content"]
    sent = clean_fake.state.last
    assert sent is not None and sent.path == "/v1/chat/completions?deployment=gpt-4o-mini"
    assert sent.headers["x-acme-key"] == "acme-secret-key"
    assert sent.body["max_tokens"] == 20 and "max_completion_tokens" not in sent.body
    assert sink.bill is not None and sink.bill.cost_micros > 0
    assert sink.bill.settlement is not None and sink.bill.settlement.held == 0
