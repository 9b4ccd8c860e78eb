"""The catalog as users see it: /v1/models in both SDKs' shapes, model addressing
(prefixes, dated aliases, config aliases, overrides), and /v1/messages/count_tokens."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import httpx
import openai

from tests.fakes import FakeProviderServer, count_input_tokens
from tests.harness import RouterProcess, ant, oai, router_config

MESSAGES = [{"role": "user", "content": "How many tokens is this?"}]


def test_openai_sdk_lists_models_with_prices_and_only_those_the_key_may_use(
        router: RouterProcess) -> None:
    _, key = router.new_account(0)
    listed = {m.id: m for m in oai(router, key).models.list()}
    assert {"gpt-4o-mini", "claude-haiku-4-5", "house-model"} <= listed.keys()
    assert listed["gpt-4o-mini"].model_extra["pricing"]["input_per_mtok"] == "0.15"
    assert listed["claude-haiku-4-5"].owned_by == "anthropic"
    assert "gemini-2.5-flash" not in listed, "no Gemini provider is configured"
    assert oai(router, key).models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"

    _, narrow = router.new_account(0, models=["gpt-4o-mini"])
    assert [m.id for m in oai(router, narrow).models.list()] == ["gpt-4o-mini"]
    try:
        oai(router, narrow).models.retrieve("claude-haiku-4-5")
        raise AssertionError("a model the key may not use must not be found")
    except openai.NotFoundError:
        pass


def test_anthropic_sdk_lists_models_in_its_own_shape(router: RouterProcess) -> None:
    _, key = router.new_account(0)
    page = ant(router, key).models.list()
    by_id = {m.id: m for m in page.data}
    assert by_id["claude-haiku-4-5"].type == "model"
    assert by_id["claude-haiku-4-5"].display_name == "Claude Haiku 4.5"
    assert by_id["claude-haiku-4-5"].created_at.year >= 2025
    assert page.has_more is False
    legacy = httpx.get(router.base_url + "/api/latest/anthropic/v1/models",
                       headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert legacy.status_code == 200 and legacy.json()["data"][0]["type"] == "model"


def test_models_are_reached_by_kind_prefix_dated_alias_and_config_alias(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(5_000_000)
    client = oai(router, key)
    by_prefix = client.chat.completions.with_raw_response.create(
        model="anthropic/claude-haiku-4-5", messages=MESSAGES, max_tokens=3)
    assert by_prefix.headers["x-aura-provider"] == "ant"
    assert by_prefix.headers["x-aura-model"] == "anthropic/claude-haiku-4-5"
    assert clean_fake.state.last.body["model"] == "claude-haiku-4-5"
    dated = client.chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5-20250929", messages=MESSAGES, max_tokens=3)
    assert dated.headers["x-aura-model"] == "claude-sonnet-4-5"
    assert clean_fake.state.last.body["model"] == "claude-sonnet-4-5"
    aliased = client.chat.completions.with_raw_response.create(
        model="fast", messages=MESSAGES, max_tokens=3)
    assert aliased.headers["x-aura-model"] == "house-model"


def test_refusals_after_the_model_is_known_still_name_it(router: RouterProcess) -> None:
    _, key = router.new_account(10)
    response = httpx.post(router.base_url + "/v1/chat/completions",
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": "claude-haiku-4-5", "messages": MESSAGES,
                                "max_tokens": 1000})
    assert response.status_code == 402
    assert response.headers["x-aura-model"] == "claude-haiku-4-5"


def test_config_prices_override_the_shipped_catalog(fake: FakeProviderServer, tmp_path) -> None:
    override = '\n[[models]]\nid = "gpt-4o-mini"\ninput_per_mtok = "10"\noutput_per_mtok = "20"\n'
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, override)
    with RouterProcess(tmp_path, config) as fresh:
        account, key = fresh.new_account(5_000_000)
        listed = {m.id: m for m in oai(fresh, key).models.list()}
        assert listed["gpt-4o-mini"].model_extra["pricing"]["output_per_mtok"] == "20"
        answer = oai(fresh, key).chat.completions.create(model="gpt-4o-mini",
                                                         messages=MESSAGES, max_tokens=4)
        exact = (answer.usage.prompt_tokens * Decimal(10)
                 + answer.usage.completion_tokens * Decimal(20))
        cost = int(exact.to_integral_value(rounding=ROUND_CEILING))
        assert fresh.account(account)["balance_micros"] == 5_000_000 - cost


def test_count_tokens_is_the_providers_count_for_claude_and_free(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(1_000)
    raw = ant(router, key).messages.with_raw_response.count_tokens(
        model="claude-haiku-4-5", system="Be brief.", messages=MESSAGES)
    assert raw.headers["x-aura-provider"] == "ant"
    assert raw.parse().input_tokens == count_input_tokens(MESSAGES, "Be brief.")
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/messages/count_tokens"
    assert upstream.headers["x-api-key"] == "sk-ant-fake-1"
    assert router.account(account)["balance_micros"] == 1_000, "counting is free"


def test_count_tokens_for_other_models_is_a_marked_estimate(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(0)
    raw = ant(router, key).messages.with_raw_response.count_tokens(
        model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-aura-estimate"] == "true"
    text_bytes = len("How many tokens is this?".encode())
    assert raw.parse().input_tokens >= text_bytes // 4
    assert clean_fake.state.received == []
    bad = httpx.post(router.base_url + "/v1/messages/count_tokens",
                     headers={"x-api-key": key}, json={"model": "gpt-4o-mini"})
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    assert "messages" in bad.json()["error"]["message"]
