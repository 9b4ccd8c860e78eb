"""`auto`, `auto:<tier>` (router/tiers.py): the router picks the tier's model from the
prompt, serves and bills that model, and says which in `x-aura-tier` and `x-aura-model`,
through the official SDKs."""

from __future__ import annotations

from typing import Iterator

import anthropic
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

TIERS = """
[tiers]
eco = "house-model"
balanced = "gpt-4o-mini"
premium = "claude-3-5-haiku-latest"
"""
HARD = ("Explain why this is slow, analyze the trade-offs and optimize it step by step:\n"
        + "def f(items):\n    return [x for x in items if x in items]\n" * 150)


@pytest.fixture(scope="module")
def tiered(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, TIERS)
    with RouterProcess(tmp_path_factory.mktemp("tiers"), config,
                       env={"LOG_REQUESTS": "true"}) as proc:
        yield proc


def test_auto_picks_the_tier_from_the_prompt_and_bills_that_model(
        tiered: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = tiered.new_account(5_000_000)
    client = openai.OpenAI(base_url=tiered.base_url + "/v1", api_key=key, max_retries=0)
    seen = {}
    for name, model, text in (("short", "auto", "What is the capital of France?"),
                              ("hard", "auto", HARD),
                              ("asked", "auto:balanced", "What is the capital of France?")):
        answer = client.chat.completions.with_raw_response.create(
            model=model, max_tokens=5, messages=[{"role": "user", "content": text}])
        seen[name] = (answer.headers["x-aura-tier"], answer.headers["x-aura-model"],
                      answer.headers["x-request-id"])
    assert [t for t, _, _ in seen.values()] == ["eco", "premium", "balanced"]
    assert [m for _, m, _ in seen.values()] == ["house-model", "claude-3-5-haiku-latest",
                                                "gpt-4o-mini"]
    rows = {r["request_id"]: r for r in
            tiered.admin("GET", f"/admin/usage?account={account}").json()["data"]}
    for tier, model, request_id in seen.values():
        assert rows[request_id]["model"] == model and rows[request_id]["cost_micros"] > 0
    paths = [r.path for r in clean_fake.state.snapshot()]
    assert paths.count("/v1/messages") == 1, "the premium tier went to the Anthropic model"
    logged = [line for line in tiered.output if '"tier":"premium' in line]
    assert logged and "code" in logged[0] and "reasoning cues" in logged[0]


def test_an_anthropic_client_may_ask_for_a_tier_too(
        tiered: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = tiered.new_account(5_000_000)
    claude = anthropic.Anthropic(base_url=tiered.base_url, api_key=key, max_retries=0)
    answer = claude.messages.with_raw_response.create(
        model="auto:eco", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert answer.headers["x-aura-tier"] == "eco"
    assert answer.headers["x-aura-model"] == "house-model"
