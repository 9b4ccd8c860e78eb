"""The official Anthropic SDK, unchanged, through the real router to a fake Anthropic upstream."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import anthropic
import pytest

from tests.fakes import FakeProviderServer, count_input_tokens
from tests.harness import RouterProcess

HAIKU_4_5 = {"input": Decimal("1.00"), "output": Decimal("5.00"),
             "cache_read": Decimal("0.10"), "cache_write": Decimal("1.25")}
MESSAGES = [{"role": "user", "content": "Tell the billing router a short story."}]


def expected_cost(input_tokens: int, output_tokens: int, cache_read: int = 0,
                  cache_write: int = 0) -> int:
    exact = (input_tokens * HAIKU_4_5["input"] + output_tokens * HAIKU_4_5["output"]
             + cache_read * HAIKU_4_5["cache_read"] + cache_write * HAIKU_4_5["cache_write"])
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def client(router: RouterProcess, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.base_url, api_key=key, max_retries=0)


def assert_debited(router: RouterProcess, account: str, granted: int, debited: int) -> None:
    state = router.account(account)
    assert state["held_micros"] == 0, "a hold was left open"
    assert state["balance_micros"] == granted - debited


def test_non_streaming_message_is_billed_from_reported_usage(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(2_000_000)
    message = client(router, key).messages.create(model="claude-haiku-4-5", max_tokens=100,
                                                  system="Be brief.", messages=MESSAGES)
    assert message.content[0].text.startswith("w0 w1")
    assert message.usage.output_tokens == 12
    assert_debited(router, account, 2_000_000,
                   expected_cost(message.usage.input_tokens, message.usage.output_tokens))
    upstream = clean_fake.state.last
    assert upstream.headers["x-api-key"] == "sk-ant-fake-1", "the platform's key, not the user's"
    assert key not in str(upstream.headers)


def test_streaming_with_cache_tokens_prices_each_kind(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 3
    clean_fake.state.cache_write_tokens = 2
    account, key = router.new_account(2_000_000)
    with client(router, key).messages.stream(model="claude-haiku-4-5", max_tokens=7,
                                             messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "w0 w1 w2 w3 w4 w5 w6"
    assert final.stop_reason == "max_tokens"
    prompt = count_input_tokens(MESSAGES)
    assert final.usage.input_tokens == prompt - 5
    assert_debited(router, account, 2_000_000,
                   expected_cost(prompt - 5, 7, cache_read=3, cache_write=2))


def test_claude_code_style_beta_query_and_headers_pass_through(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(2_000_000)
    client(router, key).messages.create(
        model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES,
        extra_query={"beta": "true"},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/messages?beta=true"
    assert upstream.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert "anthropic-version" in upstream.headers


def test_legacy_prefix_reaches_the_messages_route(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(2_000_000)
    legacy = anthropic.Anthropic(base_url=router.base_url + "/api/latest/anthropic",
                                 api_key=key, max_retries=0)
    message = legacy.messages.create(model="claude-haiku-4-5", max_tokens=3, messages=MESSAGES)
    assert message.content[0].text == "w0 w1 w2"


def test_no_credit_is_a_typed_402_in_anthropic_shape(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(10)
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client(router, key).messages.stream(model="claude-haiku-4-5", max_tokens=500,
                                                 messages=MESSAGES) as stream:
            for _ in stream.text_stream:
                pytest.fail("no event may arrive when the hold is refused")
    assert raised.value.status_code == 402
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "billing_error"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert clean_fake.state.received == []
    assert_debited(router, account, 10, 0)


def test_bad_key_is_a_typed_authentication_error(router: RouterProcess) -> None:
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client(router, "ar_sk_" + "y" * 43).messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
    assert raised.value.body["error"]["type"] == "authentication_error"


def test_provider_error_is_normalised_without_leaking_the_platform_key(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.expected_api_key = "some-other-key"  # the platform's key is "wrong"
    account, key = router.new_account(2_000_000)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client(router, key).messages.create(model="claude-haiku-4-5", max_tokens=5,
                                            messages=MESSAGES)
    assert raised.value.status_code == 502
    assert "sk-ant-fake-1" not in raised.value.response.text
    assert "127.0.0.1" not in raised.value.response.text
    assert_debited(router, account, 2_000_000, 0)
