"""The ledger's service going away and coming back, through the real router: requests
fail closed (503 `billing_unavailable` in the client's own shape, nothing sent to a
provider, no hold left), /ready says why, and the router recovers by itself. And a
service that is wrong or unreachable at start-up: the router refuses to start with one
line naming the setting, never its password."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.backends import backend_env
from tests.fakes import FakeProviderServer
from tests.harness import ROOT, RouterProcess, router_config
from tests.tcp_proxy import TcpProxy

SERVICE_PORT = {"postgres": 5432, "redis": 6379}
BODY = {"model": "gpt-4o-mini", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hello"}]}


def _through(proxy: TcpProxy, env: dict[str, str]) -> dict[str, str]:
    """The backend's URL, pointed at the proxy instead of the service."""
    name = "DATABASE_URL" if "DATABASE_URL" in env else "REDIS_URL"
    port = SERVICE_PORT["postgres" if name == "DATABASE_URL" else "redis"]
    return {**env, name: env[name].replace(f":{port}/", f":{proxy.port}/")}


@pytest.fixture(params=["postgres", "redis"])
def router_behind_proxy(request: pytest.FixtureRequest, fake: FakeProviderServer,
                        tmp_path: Path) -> Iterator[tuple[RouterProcess, TcpProxy]]:
    env = backend_env(request.param, tmp_path)
    proxy = TcpProxy(SERVICE_PORT[request.param])
    try:
        with RouterProcess(tmp_path, router_config(fake.openai_base_url,
                                                   fake.anthropic_base_url),
                           env=_through(proxy, env)) as proc:
            yield proc, proxy
    finally:
        proxy.close()


def test_a_lost_ledger_fails_closed_and_the_router_recovers_by_itself(
        router_behind_proxy: tuple[RouterProcess, TcpProxy],
        clean_fake: FakeProviderServer) -> None:
    router, proxy = router_behind_proxy
    account, key = router.new_account(5_000_000)
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(**BODY).choices[0].message.content
    calls_before = len(clean_fake.state.snapshot())

    proxy.cut()
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(**BODY)
    assert refused.value.status_code == 503
    assert refused.value.body["code"] == "billing_unavailable"  # type: ignore[index]
    claude = anthropic.Anthropic(base_url=router.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused_too:
        claude.messages.create(model="gpt-4o-mini", max_tokens=20,
                               messages=[{"role": "user", "content": "hello"}])
    assert refused_too.value.status_code == 503
    assert refused_too.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert len(clean_fake.state.snapshot()) == calls_before, "nothing reached a provider"
    ready = httpx.get(router.base_url + "/ready", timeout=10)
    assert ready.status_code == 503 and "ledger unreachable" in ready.text, ready.text

    proxy.restore()
    deadline = time.monotonic() + 20
    while True:  # the router reconnects by itself: no restart
        try:
            assert client.chat.completions.create(**BODY).choices[0].message.content
            break
        except openai.APIStatusError as exc:
            assert exc.status_code == 503 and time.monotonic() < deadline, exc
            time.sleep(0.2)
    assert httpx.get(router.base_url + "/ready", timeout=10).status_code == 200
    state = router.account(account)
    assert state["held_micros"] == 0, "no hold left open by the outage"
    assert state["balance_micros"] < 5_000_000


@pytest.mark.parametrize("backend,setting,url", [
    ("postgres", "DATABASE_URL", "postgresql://aura:s3cretpw@127.0.0.1:1/aura"),
    ("postgres", "DATABASE_URL", "postgresql://aura:s3cretpw@127.0.0.1:5432/no_such_db"),
    ("redis", "REDIS_URL", "redis://:s3cretpw@127.0.0.1:1/0"),
])
def test_an_unusable_service_url_stops_the_start_with_one_line_naming_it(
        tmp_path: Path, backend: str, setting: str, url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATA_DIR": str(tmp_path),
           "BILLING_BACKEND": backend, setting: url}
    done = subprocess.run([sys.executable, "-m", "actors.cli", "serve", "--port", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and setting in lines[0], done.stderr
    assert "s3cretpw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
