"""One call through an HTTP provider against the fake OpenAI upstream on loopback: a key
the upstream refuses is swapped for the next within the same call, and whatever the call
took (its credential, its pool slot, its connection) is given back however it ends."""

from __future__ import annotations

import orjson
import pytest

from router.providers.base import UpstreamRequest
from router.providers.http import HttpProvider
from router.providers.registry import adapter
from router.providers.spec import ProviderSpec
from tests.fakes import FakeProviderServer

MESSAGES = [{"role": "user", "content": "hi"}]


def provider_for(fake: FakeProviderServer) -> HttpProvider:
    """Two keys, tried in order: the upstream takes only the second."""
    fake.state.expected_api_key = "sk-good"
    spec = ProviderSpec("oa", "openai", fake.openai_base_url, api_keys=("sk-bad", "sk-good"),
                        strategy="priority")
    provider = adapter("openai").connect(spec)
    assert isinstance(provider, HttpProvider)
    return provider


def request(stream: bool) -> UpstreamRequest:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
    return UpstreamRequest("openai.chat", "gpt-4o-mini", orjson.dumps(body), stream)


def assert_nothing_taken(provider: HttpProvider) -> None:
    assert [c.in_flight for c in provider.credentials.credentials] == [0, 0]
    stats = provider.stats()
    assert stats is not None and stats["in_flight"] == 0


async def test_a_refused_key_is_swapped_within_the_call(clean_fake: FakeProviderServer) -> None:
    provider = provider_for(clean_fake)
    await provider.start()
    try:
        async with provider.open(request(False)) as answer:
            assert answer.status == 200
            body = orjson.loads(await answer.read(1 << 20))
        assert body["choices"][0]["message"]["content"]
        bad, good = provider.credentials.credentials
        assert bad.bad and not good.bad
        assert_nothing_taken(provider)
        stats = provider.stats()
        # the refusal's connection was closed unread; the answer's, read whole, is kept
        assert stats is not None and stats["idle"] == 1 and stats["opened"] == 2
    finally:
        await provider.aclose()


async def test_a_stream_left_midway_gives_back_its_key_and_closes_its_connection(
        clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 50
    clean_fake.state.chunk_delay_s = 0.01
    provider = provider_for(clean_fake)
    await provider.start()
    try:
        with pytest.raises(RuntimeError, match="went away"):
            async with provider.open(request(True)) as answer:
                assert answer.status == 200
                async for _ in answer.aiter_bytes():
                    raise RuntimeError("the client went away")
        assert_nothing_taken(provider)
        stats = provider.stats()
        # neither the refusal's connection nor the abandoned stream's is kept
        assert stats is not None and stats["idle"] == 0 and stats["opened"] == 2
    finally:
        await provider.aclose()
