"""Whole-product paths: the demo out of the box, the CLI next to a running server,
a client that hangs up mid-stream, a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import openai
import pytest

from tests.backends import backend_env
from tests.fakes import FakeProviderServer
from tests.harness import ADMIN_KEY, RouterProcess, router_config

MESSAGES = [{"role": "user", "content": "hello"}]


def _cli(data_dir: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], cwd=str(data_dir),
                          env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(data_dir),
                               "HOME": str(data_dir), **(env or {})},
                          capture_output=True, text=True, timeout=30)


def _wait_settled(router: RouterProcess, account: str, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = router.account(account)
        if state["held_micros"] == 0 or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_fresh_install_serves_the_demo_model_with_a_real_debit(tmp_path: Path) -> None:
    with RouterProcess(tmp_path) as router:
        assert any("demo" in line for line in router.output)
        account, key = router.new_account(1_000_000)
        client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="demo", messages=MESSAGES, stream=True) if c.choices)
        assert text.startswith("Hello from Aura Router")
        usage = router.usage(key)
        assert usage["recent"][0]["output_tokens"] == len(text.split(" "))
        assert usage["balance_micros"] == 1_000_000 - usage["recent"][0]["cost_micros"] < 1_000_000
        assert usage["held_micros"] == 0
        models = httpx.get(router.base_url + "/v1/models",
                           headers={"authorization": f"Bearer {key}"}).json()
        assert [m["id"] for m in models["data"]] == ["demo"]
        assert httpx.get(router.base_url + "/ready").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_cli_keys_and_credits_work_on_the_ledger_of_a_running_server(
        tmp_path: Path, fake: FakeProviderServer, backend: str) -> None:
    env = backend_env(backend, tmp_path)
    cli = partial(_cli, tmp_path, env=env)
    with RouterProcess(tmp_path, router_config(fake.openai_base_url,
                                               fake.anthropic_base_url), env=env) as router:
        issued = cli("keys", "issue", "carol", "--label", "cli", "--json")
        assert issued.returncode == 0, issued.stderr
        key = json.loads(issued.stdout)["key"]
        assert cli("credits", "grant", "carol", "300000").returncode == 0
        client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
        balance = json.loads(cli("credits", "balance", "carol", "--json").stdout)
        assert balance["held_micros"] == 0
        assert 0 < 300_000 - balance["balance_micros"] == router.usage(key)["recent"][0][
            "cost_micros"]
        refused = cli("credits", "grant", "carol", "-999999999")
        assert refused.returncode == 1 and "refused" in refused.stderr
        key_id = json.loads(cli("keys", "list", "--json").stdout)[0]["id"]
        assert cli("keys", "revoke", key_id).returncode == 0
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            raise AssertionError("a revoked key must be refused")
        except openai.PermissionDeniedError:
            pass
        doctor = cli("doctor", "--json")
        assert doctor.returncode == 0 and ADMIN_KEY not in doctor.stdout
        ledger = json.loads(doctor.stdout)["ledger"]
        assert ledger["backend"] == backend and ledger["usable"]
        if backend == "redis":  # the machine's Redis keeps nothing on disk: doctor says so
            assert "appendfsync always" in ledger["warning"]


def test_disconnect_mid_stream_bills_streamed_tokens_and_stops_the_upstream(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.reply_words = 200
    clean_fake.state.chunk_delay_s = 0.02
    account, key = router.new_account(5_000_000)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 500}
    with httpx.stream("POST", router.base_url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {key}"}, timeout=10) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"w' in line.replace(" ", ""):
                seen += 1
            if seen == 5:
                break  # the user pressed stop
    state = _wait_settled(router, account)
    assert state["held_micros"] == 0
    recent = router.usage(key)["recent"][0]
    assert 5 <= recent["output_tokens"] < 60, "billed what streamed, not the whole answer"
    assert state["balance_micros"] == 5_000_000 - recent["cost_micros"]
    assert recent["cost_micros"] > 0


def test_balances_and_keys_survive_a_restart(tmp_path: Path, fake: FakeProviderServer) -> None:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path, config) as router:
        account, key = router.new_account(400_000)
        client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=3)
        before = router.account(account)
    with RouterProcess(tmp_path, config) as router:
        assert router.account(account)["balance_micros"] == before["balance_micros"] < 400_000
        client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                              max_tokens=3).choices
