"""Two real routers on one Redis (`REDIS_URL`, database 14) and one SQLite ledger (the
same DATA_DIR): a rate limit is one limit across both, and a provider one of them finds
failing is skipped by the other without being called; when it recovers, both know."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from typing import Any, Iterator

import openai
import pytest

from tests.backends import fresh_redis_url
from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, eventually, oai, router_config

MESSAGES = [{"role": "user", "content": "hi"}]
COOLDOWN_S = 3


@pytest.fixture(scope="module")
def sick() -> Iterator[FakeProviderServer]:
    """A provider of its own, so that its faults and its request count are its own."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def pair(fake: FakeProviderServer, sick: FakeProviderServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RouterProcess, ...]]:
    extra = f"""
[[providers]]
name = "sick"
kind = "openai"
base_url = "{sick.openai_base_url}"
api_keys = ["sk-sick-provider-1"]
breaker_failures = 2
breaker_cooldown_s = {COOLDOWN_S}

[[models]]
id = "guarded"
route = ["sick:gpt-4o-mini", "oai:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
"""
    config = router_config(fake.openai_base_url, fake.anthropic_base_url, extra)
    shared = tmp_path_factory.mktemp("shared")  # one DATA_DIR: one SQLite ledger
    env = {"REDIS_URL": fresh_redis_url(db=14), "RATE_LIMIT_RPM": "5",
           "BILLING_BACKEND": "sqlite"}
    with RouterProcess(shared, config, env=env) as a, RouterProcess(shared, config, env=env) as b:
        yield a, b


def breaker(router: RouterProcess, provider: str) -> dict[str, Any]:
    answer = router.admin("GET", "/admin/providers")
    assert answer.status_code == 200, answer.text
    return {p["name"]: p for p in answer.json()["data"]}[provider]["breaker"]


def test_a_rate_limit_of_5_is_5_across_two_instances(
        pair: tuple[RouterProcess, RouterProcess], clean_fake: FakeProviderServer) -> None:
    a, b = pair
    _, key = a.new_account(1_000_000)  # made through a, used through both
    for router in (a, b, a, b, a):
        assert oai(router, key).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=2).choices
    assert len(clean_fake.state.snapshot()) == 5
    for router in (b, a):
        with pytest.raises(openai.RateLimitError) as refused:
            oai(router, key).chat.completions.create(model="gpt-4o-mini",
                                                        messages=MESSAGES, max_tokens=2)
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 120
        assert "this account may make 5 requests per minute" in refused.value.message
    assert len(clean_fake.state.snapshot()) == 5, "refused before any provider is called"
    _, other = b.new_account(1_000_000)
    assert oai(a, other).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=2).choices, \
        "another account has its own window"


def test_a_circuit_opened_on_one_instance_is_skipped_by_the_other_until_it_closes(
        pair: tuple[RouterProcess, RouterProcess], clean_fake: FakeProviderServer,
        sick: FakeProviderServer) -> None:
    a, b = pair
    sick.state.reset()
    sick.state.fail_status = 500
    _, key = a.new_account(5_000_000)
    for _ in range(2):  # a tries the sick provider, fails over, and its circuit opens
        raw = oai(a, key).chat.completions.with_raw_response.create(
            model="guarded", messages=MESSAGES, max_tokens=2)
        assert raw.headers["x-aura-provider"] == "oai"
    assert len(sick.state.snapshot()) == 2
    assert breaker(a, "sick")["state"] == "open"
    eventually(lambda: breaker(b, "sick")["state"] == "open")
    assert breaker(b, "sick")["opened_by"] == "another instance"

    _, b_key = b.new_account(5_000_000)
    raw = oai(b, b_key).chat.completions.with_raw_response.create(
        model="guarded", messages=MESSAGES, max_tokens=2)
    assert raw.headers["x-aura-provider"] == "oai"
    assert len(sick.state.snapshot()) == 2, "b never called the provider a found failing"
    assert breaker(b, "sick")["consecutive_failures"] == 0, "b had no failure of its own"

    # The provider recovers; after the cooldown a's probe succeeds and closes a's
    # circuit, and b hears of it (b's own circuit would still say "open" otherwise).
    sick.state.fail_status = None
    time.sleep(COOLDOWN_S + 0.2)
    raw = oai(a, key).chat.completions.with_raw_response.create(
        model="guarded", messages=MESSAGES, max_tokens=2)
    assert raw.headers["x-aura-provider"] == "sick"
    assert breaker(a, "sick")["state"] == "closed"
    eventually(lambda: breaker(b, "sick")["state"] == "closed")
    raw = oai(b, b_key).chat.completions.with_raw_response.create(
        model="guarded", messages=MESSAGES, max_tokens=2)
    assert raw.headers["x-aura-provider"] == "sick"
    sick.state.reset()


def test_an_unreachable_redis_at_start_is_one_line_naming_redis_url(tmp_path) -> None:
    probe = RouterProcess(tmp_path, env={
        "REDIS_URL": "redis://:sekret-password@127.0.0.1:9/14"})  # nothing listens on 9
    done = subprocess.run(
        [sys.executable, "-m", "actors.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=str(tmp_path), env=probe.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("config error: REDIS_URL "), lines
    assert "redis://127.0.0.1:9/14" in lines[0] and "sekret" not in lines[0]
    assert "listening" not in done.stdout


def test_an_idempotency_key_replayed_on_the_other_instance_is_billed_once(
        pair: tuple[RouterProcess, RouterProcess], clean_fake: FakeProviderServer) -> None:
    a, b = pair
    account, key = a.new_account(1_000_000)
    headers = {"Idempotency-Key": "order-42"}
    first = oai(a, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=5, extra_headers=headers)
    again = oai(b, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=5, extra_headers=headers)
    assert again.parse().model_dump() == first.parse().model_dump(), "the first answer, replayed"
    assert len(clean_fake.state.snapshot()) == 1, "one provider call for both"
    usage = a.usage(key)
    assert len(usage["recent"]) == 1
    assert usage["balance_micros"] == 1_000_000 - usage["recent"][0]["cost_micros"]
    # The claim lives in Redis (shared by instances on any machine), not in the file.
    conn = sqlite3.connect(str(a.data_dir / "ledger.sqlite3"))
    try:
        assert conn.execute("SELECT COUNT(*) FROM idempotency").fetchone() == (0,)
    finally:
        conn.close()
