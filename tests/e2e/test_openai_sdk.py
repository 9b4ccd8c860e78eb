"""The official OpenAI SDK, unchanged, through the real router to a fake OpenAI upstream."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer, count_input_tokens
from tests.harness import RouterProcess, oai

GPT_4O_MINI = (Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the billing router."}]


def expected_cost(prompt: int, completion: int, cached: int = 0) -> int:
    inp, out, cache = GPT_4O_MINI
    exact = (prompt - cached) * inp + completion * out + cached * cache
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def assert_settled(router: RouterProcess, account: str, granted: int, debited: int) -> None:
    state = router.account(account)
    assert state["held_micros"] == 0, "a hold was left open"
    assert state["balance_micros"] == granted - debited
    assert state["available_micros"] == granted - debited


def test_non_streaming_debit_equals_reported_usage_times_price(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(5_000_000)
    answer = oai(router, key).chat.completions.create(model="gpt-4o-mini",
                                                         messages=MESSAGES)
    assert answer.choices[0].message.content.startswith("w0 w1")
    assert answer.usage is not None and answer.usage.completion_tokens == 12
    cost = expected_cost(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert cost > 0
    assert_settled(router, account, 5_000_000, cost)
    upstream = clean_fake.state.last
    assert upstream.headers["authorization"] == "Bearer sk-fake-openai-1"
    assert upstream.body["model"] == "gpt-4o-mini"


def test_streaming_passes_chunks_and_hides_the_usage_chunk_it_added(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(5_000_000)
    chunks = list(oai(router, key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"w{i}" for i in range(12))
    assert all(c.choices for c in chunks), "the client did not ask for the usage chunk"
    upstream = clean_fake.state.last.body
    assert upstream["stream_options"] == {"include_usage": True}
    # the fake's formula is what the provider reported
    cost = expected_cost(count_input_tokens(upstream["messages"]), 12)
    assert_settled(router, account, 5_000_000, cost)


def test_streaming_client_that_asks_for_usage_gets_it_and_pays_it(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cache_read_tokens = 4
    account, key = router.new_account(5_000_000)
    chunks = list(oai(router, key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True}, max_tokens=5))
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == 5
    cost = expected_cost(usage[0].prompt_tokens, 5, cached=4)
    assert_settled(router, account, 5_000_000, cost)
    assert router.usage(key)["recent"][0]["cost_micros"] == cost
    assert router.usage(key)["recent"][0]["cache_read_tokens"] == 4


def test_upstream_that_ignores_include_usage_is_billed_from_what_streamed(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.ignore_include_usage = True
    account, key = router.new_account(5_000_000)
    chunks = list(oai(router, key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 12
    recent = router.usage(key)["recent"][0]
    assert recent["output_tokens"] == 12  # one token per streamed delta
    assert recent["input_tokens"] > 0
    assert_settled(router, account, 5_000_000,
                   expected_cost(recent["input_tokens"], 12))


def test_bad_key_is_a_typed_401_that_tells_sdks_not_to_retry(router: RouterProcess) -> None:
    with pytest.raises(openai.AuthenticationError):
        oai(router, "ar_sk_" + "x" * 43).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES)
    raw = httpx.post(router.base_url + "/v1/chat/completions",
                     headers={"authorization": "Bearer nope"},
                     json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert raw.status_code == 401 and raw.headers["x-should-retry"] == "false"
    assert raw.json()["error"]["type"] == "authentication_error"


def test_no_credit_is_402_before_any_chunk_and_nothing_reaches_the_provider(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(50)  # 50 micro-USD: not enough for the hold
    with pytest.raises(openai.APIStatusError) as raised:
        for _ in oai(router, key).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, max_tokens=1000):
            pytest.fail("no chunk may arrive when the hold is refused")
    assert raised.value.status_code == 402
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert "available" in raised.value.message
    assert clean_fake.state.received == []
    assert_settled(router, account, 50, 0)


def test_revoked_key_is_403_on_the_next_request(router: RouterProcess) -> None:
    account, key = router.new_account(1_000_000)
    key_id = router.account(account)["keys"][0]["id"]
    assert router.admin("DELETE", f"/admin/keys/{key_id}").status_code == 200
    with pytest.raises(openai.PermissionDeniedError):
        oai(router, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_alias_and_provider_prefix_reach_the_configured_upstream(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(1_000_000)
    answer = oai(router, key).chat.completions.with_raw_response.create(
        model="fast", messages=MESSAGES)
    assert answer.headers["x-aura-model"] == "house-model"
    assert answer.headers["x-aura-provider"] == "oai"
    assert answer.headers["x-request-id"].startswith("req_")
    assert clean_fake.state.last.body["model"] == "gpt-4o-mini"
    oai(router, key).chat.completions.create(model="oai/gpt-4o", messages=MESSAGES)
    assert clean_fake.state.last.body["model"] == "gpt-4o"


def test_hs256_jwt_bills_its_subject_and_bad_tokens_are_refused(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    import time
    import uuid

    import jwt

    from tests.harness import JWT_SECRET

    subject = "jwt_" + uuid.uuid4().hex[:10]
    grant = router.admin("POST", f"/admin/accounts/{subject}/credits",
                         json={"amount_micros": 1_000_000})
    assert grant.status_code == 200
    now = int(time.time())
    token = jwt.encode({"sub": subject, "exp": now + 60}, JWT_SECRET, algorithm="HS256")
    answer = oai(router, token).chat.completions.create(model="gpt-4o-mini",
                                                           messages=MESSAGES, max_tokens=4)
    cost = expected_cost(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert_settled(router, subject, 1_000_000, cost)

    expired = jwt.encode({"sub": subject, "exp": now - 120}, JWT_SECRET, algorithm="HS256")
    wrong_alg = jwt.encode({"sub": subject, "exp": now + 60}, JWT_SECRET, algorithm="HS512")
    no_exp = jwt.encode({"sub": subject}, JWT_SECRET, algorithm="HS256")
    for bad in (expired, wrong_alg, no_exp):
        with pytest.raises(openai.AuthenticationError):
            oai(router, bad).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_settled(router, subject, 1_000_000, cost)


def test_new_jwt_subject_gets_the_starting_grant_once_under_concurrent_first_requests(
        fake: FakeProviderServer, tmp_path) -> None:
    import time
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import jwt

    from tests.harness import JWT_SECRET, router_config

    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    env = {"AUTH_COOKIE_SECRET": JWT_SECRET, "STARTING_GRANT_MICROS": "250000"}
    with RouterProcess(tmp_path, config, env=env) as fresh:
        subject = "new_" + uuid.uuid4().hex[:8]
        token = jwt.encode({"sub": subject, "exp": int(time.time()) + 60}, JWT_SECRET,
                           algorithm="HS256")

        def first_call(_: int) -> int:
            return oai(fresh, token).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=2).usage.completion_tokens

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(first_call, range(16))) == [2] * 16
        grants = [e for e in fresh.ledger(subject) if e["kind"] == "grant"]
        assert len(grants) == 1 and grants[0]["amount_micros"] == 250_000
        state = fresh.account(subject)
        spent = sum(r["cost_micros"] for r in fresh.usage(token)["recent"])
        assert state["held_micros"] == 0 and state["balance_micros"] == 250_000 - spent


def test_request_without_max_tokens_on_a_small_balance_gets_what_it_can_afford(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(1_000)  # $0.001: ~1,600 output tokens, not 16,384
    answer = oai(router, key).chat.completions.create(model="gpt-4o-mini",
                                                         messages=MESSAGES)
    limit = clean_fake.state.last.body["max_completion_tokens"]
    assert 1_000 < limit < 16_384
    assert limit * GPT_4O_MINI[1] <= 1_000, "the hold it implies fits the balance"
    cost = expected_cost(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert_settled(router, account, 1_000, cost)

    _, broke = router.new_account(1)  # not even one output token
    clean_fake.state.clear()
    with pytest.raises(openai.APIStatusError) as raised:
        oai(router, broke).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 402
    assert clean_fake.state.received == []


def test_key_spend_cap_is_a_429_that_sdks_do_not_retry(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(5_000_000, spend_cap_micros=60)
    answer = oai(router, key).chat.completions.create(model="gpt-4o-mini",
                                                         messages=MESSAGES, max_tokens=40)
    spent = expected_cost(answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert 0 < spent < 60
    clean_fake.state.clear()
    with pytest.raises(openai.RateLimitError) as raised:
        oai(router, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                    max_tokens=100)
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert "spend cap" in raised.value.message
    assert clean_fake.state.received == []
    assert_settled(router, account, 5_000_000, spent)


def test_reasoning_tokens_are_billed_as_output(router: RouterProcess,
                                               clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reasoning_tokens = 30
    account, key = router.new_account(1_000_000)
    answer = oai(router, key).chat.completions.create(model="gpt-4o-mini",
                                                         messages=MESSAGES, max_tokens=100)
    assert answer.usage.completion_tokens == 12 + 30
    assert_settled(router, account, 1_000_000,
                   expected_cost(answer.usage.prompt_tokens, 12 + 30))
