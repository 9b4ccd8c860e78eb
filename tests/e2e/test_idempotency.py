"""Idempotency-Key (I8): a replay returns the first answer and is billed once."""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess

MESSAGES = [{"role": "user", "content": "once only"}]


def test_replay_returns_the_first_answer_and_bills_once(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(1_000_000)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
    headers = {"Idempotency-Key": "order-42"}
    first = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=6, extra_headers=headers)
    balance_after_first = router.account(account)["balance_micros"]
    again = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=6, extra_headers=headers)
    assert again.headers["x-request-id"] == first.headers["x-request-id"]
    assert again.headers["x-aura-idempotent-replay"] == "true"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert len(clean_fake.state.received) == 1, "the provider was called once"
    assert router.account(account)["balance_micros"] == balance_after_first < 1_000_000
    assert len(router.usage(key)["recent"]) == 1


def test_streamed_answer_is_replayed_whole(router: RouterProcess,
                                           clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(1_000_000)
    client = anthropic.Anthropic(base_url=router.base_url, api_key=key, max_retries=0)
    texts = []
    for _ in range(2):
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES,
                                    extra_headers={"Idempotency-Key": "s-1"}) as stream:
            texts.append("".join(stream.text_stream))
    assert texts == ["w0 w1 w2 w3 w4"] * 2
    assert len(clean_fake.state.received) == 1


def test_same_key_with_another_body_is_409_and_not_billed(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(1_000_000)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
    headers = {"Idempotency-Key": "k-1"}
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=3,
                                   extra_headers=headers)
    before = router.account(account)["balance_micros"]
    with pytest.raises(openai.ConflictError):
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=3, extra_headers=headers,
                                       messages=[{"role": "user", "content": "other"}])
    assert router.account(account)["balance_micros"] == before
    assert len(clean_fake.state.received) == 1


def test_replay_while_the_first_is_in_flight_is_409(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.first_byte_delay_s = 1.0
    _, key = router.new_account(1_000_000)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 3}
    headers = {"authorization": f"Bearer {key}", "Idempotency-Key": "slow-1"}
    url = router.base_url + "/v1/chat/completions"
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(
        httpx.post(url, json=body, headers=headers, timeout=10)))
    thread.start()
    time.sleep(0.4)
    second = httpx.post(url, json=body, headers=headers, timeout=10)
    thread.join()
    assert second.status_code == 409
    assert first[0].status_code == 200
    third = httpx.post(url, json=body, headers=headers, timeout=10)
    assert third.status_code == 200 and third.json() == first[0].json()


def test_a_refused_first_attempt_frees_the_key(router: RouterProcess,
                                               clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(1)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
    headers = {"Idempotency-Key": "retry-after-topup"}
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=3,
                                       extra_headers=headers)
    assert raised.value.status_code == 402
    router.admin("POST", f"/admin/accounts/{account}/credits", json={"amount_micros": 100_000})
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                            max_tokens=3, extra_headers=headers)
    assert answer.choices[0].message.content == "w0 w1 w2"
