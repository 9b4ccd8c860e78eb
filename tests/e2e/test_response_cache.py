"""The response cache (RESPONSE_CACHE=memory): a deterministic request's whole answer is
kept; the same request again (same account) is answered from it, in the client's format,
streamed when asked, without reaching a provider, and billed CACHE_HIT_PRICE times the
list price of the usage it first cost, as a usage row whose provider is `cache`. Tool
requests, non-deterministic ones and errors are never kept."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any, Iterator

import anthropic
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

ASK = {"model": "gpt-4o-mini", "max_tokens": 6, "temperature": 0,
       "messages": [{"role": "user", "content": "what is 2 + 2?"}]}


@pytest.fixture(scope="module")
def caching(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("cache"), config,
                       env={"RESPONSE_CACHE": "memory", "CACHE_HIT_PRICE": "0.5"}) as proc:
        yield proc


def _rows(router: RouterProcess, account: str) -> dict[str, dict[str, Any]]:
    data = router.admin("GET", f"/admin/usage?account={account}").json()["data"]
    return {r["request_id"]: r for r in data}


def test_the_same_deterministic_request_is_answered_from_the_cache(
        caching: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = caching.new_account(5_000_000)
    client = openai.OpenAI(base_url=caching.base_url + "/v1", api_key=key, max_retries=0)
    first = client.chat.completions.with_raw_response.create(**ASK)
    second = client.chat.completions.with_raw_response.create(**ASK)
    assert (first.headers["x-aura-cache"], second.headers["x-aura-cache"]) == ("miss", "hit")
    assert second.parse().choices[0].message.content == \
        first.parse().choices[0].message.content
    assert len(clean_fake.state.snapshot()) == 1, "the hit reached no provider"
    rows = _rows(caching, account)
    kept, hit = rows[first.headers["x-request-id"]], rows[second.headers["x-request-id"]]
    assert hit["provider"] == "cache" and hit["input_tokens"] == kept["input_tokens"]
    half = (Decimal(kept["cost_micros"]) / 2).to_integral_value(rounding=ROUND_CEILING)
    assert hit["cost_micros"] == int(half) > 0, "CACHE_HIT_PRICE x the list price"
    assert caching.account(account)["balance_micros"] == \
        5_000_000 - kept["cost_micros"] - hit["cost_micros"]

    streamed = ["".join(c.choices[0].delta.content or "" for c in
                        client.chat.completions.create(**ASK, stream=True) if c.choices)
                for _ in range(2)]
    assert streamed[0] == streamed[1] != ""
    assert len(clean_fake.state.snapshot()) == 2, "a stream is its own entry, then a hit"
    other, other_key = caching.new_account(5_000_000)
    openai.OpenAI(base_url=caching.base_url + "/v1", api_key=other_key,
                  max_retries=0).chat.completions.create(**ASK)
    assert len(clean_fake.state.snapshot()) == 3, "another account's answers are not ours"


def test_only_deterministic_tool_free_whole_answers_are_kept(
        caching: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = caching.new_account(5_000_000)
    client = openai.OpenAI(base_url=caching.base_url + "/v1", api_key=key, max_retries=0)
    warm = {**ASK, "temperature": 0.7}
    for _ in range(2):
        assert client.chat.completions.with_raw_response.create(**warm) \
            .headers.get("x-aura-cache") is None
    asked = [client.chat.completions.with_raw_response.create(
        **warm, extra_headers={"x-aura-cache": "true"}).headers["x-aura-cache"]
        for _ in range(2)]
    assert asked == ["miss", "hit"]
    tools = [{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {}}}}]
    for _ in range(2):
        client.chat.completions.create(**ASK, tools=tools)
    clean_fake.state.fail_status = 500
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(**{**ASK, "max_tokens": 7})
    clean_fake.state.fail_status = None
    again = client.chat.completions.with_raw_response.create(**{**ASK, "max_tokens": 7})
    assert again.headers["x-aura-cache"] == "miss", "an error is never kept"
    claude = anthropic.Anthropic(base_url=caching.base_url, api_key=key, max_retries=0)
    texts = [claude.messages.with_raw_response.create(
        model="claude-3-5-haiku-latest", max_tokens=5, extra_headers={"x-aura-cache": "true"},
        messages=[{"role": "user", "content": "hi"}]) for _ in range(2)]
    assert [t.headers["x-aura-cache"] for t in texts] == ["miss", "hit"]
    assert texts[1].parse().content[0].text == texts[0].parse().content[0].text
