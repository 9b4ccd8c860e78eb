"""Providers fail, users don't notice: a refused key is skipped for the next one within
the same call, a dead provider's circuit opens and its traffic goes straight to the next
target, and /admin/providers shows it all without ever showing a key."""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, eventually, oai

REVOKED, GOOD = "sk-revoked-0000000000", "sk-fake-openai-1"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def frouter(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    config = f"""
[[providers]]
name = "pool"
kind = "openai"
base_url = "{fake.openai_base_url}"
api_keys = ["{REVOKED}", "{GOOD}"]
strategy = "priority"

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["sk-dead-key-000000000"]
timeout_connect_s = 1
breaker_failures = 2
breaker_cooldown_s = 2

[[providers]]
name = "slowpoke"
kind = "anthropic"
base_url = "{fake.anthropic_base_url}"
api_keys = ["sk-ant-slow-00000000"]
timeout_total_s = 1

[[models]]
id = "hasty"
route = ["slowpoke:claude-haiku-4-5"]
input_per_mtok = "1"
output_per_mtok = "5"

[[models]]
id = "pooled"
route = ["pool:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"

[[models]]
id = "guarded"
route = ["dead:gpt-4o-mini", "pool:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
"""
    # A probe that ran while a test refuses the revoked key would mark it bad before the
    # call whose refusal the test looks at. The first probe runs while the router already
    # serves, so the tests start once it has finished; no other runs in the module's life.
    with RouterProcess(tmp_path_factory.mktemp("failover"), config,
                       env={"PROVIDER_PROBE_S": "3600"}) as proc:
        eventually(lambda: all(p["probe"]["state"] != "pending"
                               for p in proc.admin("GET", "/admin/providers").json()["data"]),
                   within_s=15, what="every provider's first probe")
        yield proc


def providers(router: RouterProcess) -> dict[str, dict]:
    answer = router.admin("GET", "/admin/providers")
    assert answer.status_code == 200
    assert REVOKED not in answer.text and GOOD not in answer.text, "keys never shown"
    return {p["name"]: p for p in answer.json()["data"]}


def test_a_refused_key_is_marked_bad_and_the_call_goes_on_with_the_next(
        frouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.expected_api_key = GOOD
    _, key = frouter.new_account(1_000_000)
    answer = oai(frouter, key).chat.completions.create(model="pooled", messages=MESSAGES)
    assert answer.choices[0].message.content.startswith("w0")
    used = [r.headers["authorization"] for r in clean_fake.state.snapshot()]
    assert used == [f"Bearer {REVOKED}", f"Bearer {GOOD}"], "one call, two keys"
    credentials = providers(frouter)["pool"]["credentials"]
    assert [c["state"] for c in credentials] == ["bad", "ok"]
    assert credentials[0]["prefix"] == REVOKED[:6] + "…"
    clean_fake.state.clear()
    oai(frouter, key).chat.completions.create(model="pooled", messages=MESSAGES)
    assert [r.headers["authorization"] for r in clean_fake.state.snapshot()] == [
        f"Bearer {GOOD}"], "the bad key is skipped from now on"


def test_a_dead_provider_opens_its_circuit_and_traffic_skips_it(
        frouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.expected_api_key = GOOD
    _, key = frouter.new_account(5_000_000)
    for _ in range(2):  # both answered through the next target
        raw = oai(frouter, key).chat.completions.with_raw_response.create(
            model="guarded", messages=MESSAGES)
        assert raw.headers["x-aura-provider"] == "pool"
    dead = providers(frouter)["dead"]
    assert dead["breaker"]["state"] == "open" and not dead["usable"]
    raw = oai(frouter, key).chat.completions.with_raw_response.create(
        model="guarded", messages=MESSAGES)
    assert raw.headers["x-aura-provider"] == "pool"
    assert providers(frouter)["dead"]["breaker"]["consecutive_failures"] == 2, \
        "an open circuit is not even tried"
    assert httpx.get(frouter.base_url + "/ready").status_code == 200
    time.sleep(2.2)  # the cooldown: the next call probes the dead provider once
    oai(frouter, key).chat.completions.create(model="guarded", messages=MESSAGES)
    dead = providers(frouter)["dead"]["breaker"]
    assert dead["state"] == "open" and dead["times_opened"] == 2


def test_rate_limits_per_account_and_per_key_are_429s_with_retry_after(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path) -> None:
    from tests.harness import router_config

    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path, config, env={"RATE_LIMIT_RPM": "3"}) as limited:
        account, key = limited.new_account(1_000_000)
        calls = oai(limited, key).chat.completions
        for _ in range(3):
            calls.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=2)
        clean_fake.state.clear()
        with pytest.raises(openai.RateLimitError) as raised:
            calls.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=2)
        assert int(raised.value.response.headers["retry-after"]) >= 1
        assert raised.value.response.headers.get("x-should-retry") != "false"
        assert clean_fake.state.received == [] and limited.account(account)["held_micros"] == 0
        counting = httpx.post(limited.base_url + "/v1/messages/count_tokens",
                              headers={"x-api-key": key},
                              json={"model": "claude-haiku-4-5", "messages": MESSAGES})
        assert counting.status_code == 429, "counting spends provider quota: limited too"
        _, other = limited.new_account(1_000_000)  # another account has its own window
        assert oai(limited, other).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=2).choices

        _, slow_key = limited.new_account(1_000_000, rpm=1)
        oai(limited, slow_key).chat.completions.create(model="gpt-4o-mini",
                                                          messages=MESSAGES, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as per_key:
            oai(limited, slow_key).chat.completions.create(model="gpt-4o-mini",
                                                              messages=MESSAGES, max_tokens=2)
        assert "this key may make 1 requests per minute" in per_key.value.message


def test_a_stream_past_its_total_deadline_ends_with_an_error_and_a_fair_bill(
        frouter: RouterProcess, clean_fake: FakeProviderServer) -> None:
    import anthropic

    clean_fake.state.reply_words = 40
    clean_fake.state.chunk_delay_s = 0.1  # 4 s of answer; the provider's total is 1 s
    account, key = frouter.new_account(1_000_000)
    ant = anthropic.Anthropic(base_url=frouter.base_url, api_key=key, max_retries=0)
    text: list[str] = []
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        with ant.messages.stream(model="hasty", max_tokens=100, messages=MESSAGES) as stream:
            for piece in stream.text_stream:
                text.append(piece)
    assert time.monotonic() - started < 3
    assert "did not finish within 1 s" in str(raised.value)
    streamed = len("".join(text).split())
    assert 3 <= streamed < 40
    recent = frouter.usage(key)["recent"][0]
    assert recent["output_tokens"] == streamed, "billed for what streamed, no more"
    assert frouter.account(account)["held_micros"] == 0


def test_ready_is_503_with_reasons_when_no_provider_is_usable(tmp_path) -> None:
    config = """
[[providers]]
name = "gone"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["sk-gone-000000000000"]
breaker_failures = 1
breaker_cooldown_s = 60

[[models]]
id = "lonely"
route = ["gone:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
"""
    with RouterProcess(tmp_path, config) as lonely:  # (its probe fails too: test_readiness)
        _, key = lonely.new_account(1_000_000)
        with pytest.raises(openai.APIStatusError) as failed:
            oai(lonely, key).chat.completions.create(model="lonely", messages=MESSAGES)
        assert failed.value.status_code == 502
        assert "127.0.0.1" not in failed.value.message, "no upstream address in errors"
        ready = httpx.get(lonely.base_url + "/ready")
        assert ready.status_code == 503
        assert "gone: circuit open" in " ".join(ready.json()["reasons"])
        with pytest.raises(openai.APIStatusError) as skipped:
            oai(lonely, key).chat.completions.create(model="lonely", messages=MESSAGES)
        assert skipped.value.status_code == 503 and "circuit is open" in skipped.value.message
