"""Providers fail; users get the next target before the first byte, an honest error
after it, and a bill only for what streamed."""

from __future__ import annotations

import time

import socket
from typing import Iterator

import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, ant, oai, router_config, stream_until_error

MESSAGES = [{"role": "user", "content": "hello"}]


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def faulty_router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[RouterProcess]:
    extra = f"""
[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:{_dead_port()}/v1"
api_keys = ["sk-dead"]
timeout_connect_s = 1

[[models]]
id = "failover-model"
route = ["dead:gpt-4o-mini", "oai:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
"""
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, extra)
    with RouterProcess(tmp_path_factory.mktemp("faulty"), config) as proc:
        yield proc


def test_dead_first_target_fails_over_before_the_first_byte(
        faulty_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = faulty_router.new_account(1_000_000)
    client = oai(faulty_router, key)
    raw = client.chat.completions.with_raw_response.create(model="failover-model",
                                                           messages=MESSAGES, max_tokens=4)
    assert raw.headers["x-aura-provider"] == "oai"
    assert raw.parse().choices[0].message.content == "w0 w1 w2 w3"
    state = faulty_router.account(account)
    assert state["held_micros"] == 0 and 0 < 1_000_000 - state["balance_micros"]


def test_provider_5xx_without_another_target_is_a_502_and_costs_nothing(
        faulty_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.fail_status = 500
    account, key = faulty_router.new_account(1_000_000)
    client = oai(faulty_router, key)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 502
    assert faulty_router.account(account)["balance_micros"] == 1_000_000


def test_provider_429_keeps_its_retry_after(
        faulty_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.fail_status = 429
    _, key = faulty_router.new_account(1_000_000)
    client = oai(faulty_router, key)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "1"
    # the key now rests for its retry-after: the next call is refused without asking
    clean_fake.state.clear()
    with pytest.raises(openai.RateLimitError) as resting:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert resting.value.response.headers["retry-after"] == "1"
    assert clean_fake.state.received == []
    time.sleep(1.1)  # and is used again once it has rested
    clean_fake.state.fail_status = None
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices


def test_stream_cut_mid_way_ends_with_an_error_and_bills_what_streamed(
        faulty_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.cut_after_chunks = 4
    account, key = faulty_router.new_account(1_000_000)
    text = stream_until_error(ant(faulty_router, key), model="claude-haiku-4-5",
                              max_tokens=50, messages=MESSAGES)
    assert text == "w0 w1 w2 w3"
    usage = faulty_router.usage(key)
    assert usage["held_micros"] == 0
    assert usage["recent"][0]["output_tokens"] == 4
    assert usage["balance_micros"] == 1_000_000 - usage["recent"][0]["cost_micros"]


def test_provider_that_stalls_ends_the_stream_with_an_error_and_a_fair_bill(
        faulty_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.first_byte_delay_s = 8  # longer than timeout_idle_s = 5
    account, key = faulty_router.new_account(1_000_000)
    client = oai(faulty_router, key, timeout=30)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert raised.value.status_code == 504
    assert faulty_router.account(account)["balance_micros"] == 1_000_000
    assert faulty_router.account(account)["held_micros"] == 0
