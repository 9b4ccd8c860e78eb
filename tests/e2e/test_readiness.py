"""Readiness that probes: each provider's actor looks at its upstream on start-up and every
PROVIDER_PROBE_S seconds (connect, plus the kind's free authenticated call with each key),
so a dead host or a wrong key shows on /ready and /admin/providers before any user pays
for finding out; /ready also covers the shared services (REDIS_URL here) and lists the
outbox backlog as information.

Every router here is the real one (a subprocess on loopback), the upstreams the fake
providers; nothing is mocked, and background work is waited for with `eventually`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.backends import redis_db
from tests.fakes import FakeProviderServer
from tests.harness import ADMIN_KEY, RouterProcess, eventually, oai
from tests.tcp_proxy import TcpProxy

GOOD = "sk-good-key-0123456789"
WRONG = "sk-wrong-key-9876543210"
GOOD_ANT = "sk-ant-good-0123456789"
WRONG_ANT = "sk-ant-wrong-987654321"
GOOD_GEMINI = "AIzaSyFakeGoodKey0123456789abcdefghij"
WRONG_GEMINI = "AIzaSyFakeWrongKey987654321abcdefghi"
REDIS_PASSWORD = "sekret-redis-pw"
MODEL = """
[[models]]
id = "house-model"
route = [{route}]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
"""


def free_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def provider(name: str, kind: str, base_url: str, keys: list[str] | None = None,
             extra: str = "") -> str:
    keys_line = "api_keys = [" + ", ".join(f'"{k}"' for k in keys) + "]" if keys else ""
    return f"""
[[providers]]
name = "{name}"
kind = "{kind}"
base_url = "{base_url}"
{keys_line}
timeout_connect_s = 2
{extra}
"""


def ready(router: RouterProcess) -> httpx.Response:
    return httpx.get(router.base_url + "/ready", timeout=10)


def providers(router: RouterProcess) -> dict[str, dict[str, Any]]:
    r = router.admin("GET", "/admin/providers")
    assert r.status_code == 200, r.text
    body = r.json()
    listed = body["data"]
    return {p["name"]: p for p in listed}


def probed(router: RouterProcess, name: str) -> bool:
    return providers(router)[name]["probe"]["state"] != "pending"


@pytest.fixture
def own_fake() -> Iterator[FakeProviderServer]:
    """A fake of this test's own: its key switch and probe record are nobody else's."""
    with FakeProviderServer() as server:
        yield server


def test_a_dead_only_provider_is_503_before_any_request_and_200_once_it_comes_back(
        tmp_path: Path) -> None:
    port = free_port()
    config = provider("gone", "openai", f"http://127.0.0.1:{port}/v1", [GOOD]) + MODEL.format(
        route='"gone:gpt-4o-mini"')
    with RouterProcess(tmp_path, config, env={"PROVIDER_PROBE_S": "0.3"}) as router:
        eventually(lambda: ready(router).status_code == 503, within_s=10,
                   what="the first probe failing")
        body = ready(router).json()
        assert any("gone" in r and "connect_failed" in r for r in body["reasons"]), body
        assert {"provider": "gone", "reason": "connect_failed"} in body["degraded"]
        shown = providers(router)["gone"]
        assert shown["probe"]["state"] == "failed"
        assert shown["probe"]["reason"] == "connect_failed"
        assert shown["probe"]["age_s"] is not None and shown["usable"] is False
        assert str(port) not in ready(router).text, "no upstream address in /ready"

        with FakeProviderServer(port=port) as back:  # the upstream comes back
            eventually(lambda: ready(router).status_code == 200, within_s=10,
                       what="the next probe seeing the provider back")
            assert ready(router).json()["degraded"] == []
            assert providers(router)["gone"]["probe"]["state"] == "ok"
            probe = back.state.probe_snapshot()[-1]
            assert (probe.method, probe.path) == ("GET", "/v1/models")
            assert probe.headers["authorization"] == f"Bearer {GOOD}"
            assert back.state.snapshot() == [], "a probe is no model call"
            _, key = router.new_account(1_000_000)
            answer = oai(router, key).chat.completions.create(
                model="house-model", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content


def test_a_wrong_key_is_503_auth_refused_and_the_key_is_shown_refused(
        tmp_path: Path, own_fake: FakeProviderServer) -> None:
    own_fake.state.expected_api_key = GOOD
    config = provider("oai", "openai", own_fake.openai_base_url, [WRONG]) + MODEL.format(
        route='"oai:gpt-4o-mini"')
    with RouterProcess(tmp_path, config) as router:
        eventually(lambda: ready(router).status_code == 503, within_s=10,
                   what="the probe refused")
        text = ready(router).text
        assert "oai" in text and "auth_refused" in text, text
        shown = providers(router)["oai"]
        assert shown["probe"]["reason"] == "auth_refused"
        assert shown["probe"]["refused_credentials"] == [0]
        assert shown["credentials"][0]["state"] == "bad"
        admin_text = router.admin("GET", "/admin/providers").text
        for secret in (WRONG, GOOD, ADMIN_KEY):
            assert secret not in text and secret not in admin_text
        assert not any(WRONG in line for line in router.output), "never logged"
        probe = own_fake.state.probe_snapshot()[0]
        assert (probe.method, probe.path) == ("GET", "/v1/models")
        assert probe.headers["authorization"] == f"Bearer {WRONG}"
        assert own_fake.state.snapshot() == [], "no user request was made"


def test_some_providers_down_is_200_listing_them_and_each_key_is_probed(
        tmp_path: Path, own_fake: FakeProviderServer) -> None:
    """One provider good (one of its two keys wrong), one with only a wrong key, one dead:
    the router serves, and says which are down and which key is refused."""
    own_fake.state.expected_api_key = GOOD_ANT
    dead = free_port()
    config = (provider("ant", "anthropic", own_fake.anthropic_base_url, [GOOD_ANT, WRONG_ANT])
              + provider("gem", "gemini", own_fake.gemini_base_url, [WRONG_GEMINI])
              + provider("gone", "openai", f"http://127.0.0.1:{dead}/v1", [GOOD])
              + MODEL.format(route='"ant:claude-haiku-4-5", "gone:gpt-4o-mini"'))
    with RouterProcess(tmp_path, config) as router:
        eventually(lambda: all(probed(router, n) for n in ("ant", "gem", "gone")),
                   within_s=10, what="the first probes")
        r = ready(router)
        assert r.status_code == 200, r.text
        degraded = {d["provider"]: d["reason"] for d in r.json()["degraded"]}
        assert degraded == {"gem": "auth_refused", "gone": "connect_failed"}
        shown = providers(router)
        assert shown["ant"]["probe"]["state"] == "ok"
        assert shown["ant"]["probe"]["refused_credentials"] == [1]
        assert [c["state"] for c in shown["ant"]["credentials"]] == ["ok", "bad"]
        assert shown["ant"]["usable"] is True
        sent = own_fake.state.probe_snapshot()
        anthropic_probes = [p for p in sent if p.path == "/v1/models?limit=1"]
        assert sorted(p.headers["x-api-key"] for p in anthropic_probes) == sorted(
            [GOOD_ANT, WRONG_ANT])
        assert all(p.headers["anthropic-version"] == "2023-06-01" for p in anthropic_probes)
        gemini = [p for p in sent if p.path == "/v1beta/models?pageSize=1"]
        assert [p.headers["x-goog-api-key"] for p in gemini] == [WRONG_GEMINI]
        for secret in (WRONG_ANT, GOOD_ANT, WRONG_GEMINI):
            assert secret not in r.text and secret not in router.admin(
                "GET", "/admin/providers").text


def test_azure_and_openrouter_are_probed_with_their_own_auth(
        tmp_path: Path, own_fake: FakeProviderServer) -> None:
    own_fake.state.expected_api_key = GOOD
    config = (provider("az", "azure", own_fake.base_url, [GOOD])
              + provider("az1", "azure", own_fake.base_url + "/openai/v1", [GOOD])
              + provider("or", "openrouter", own_fake.openai_base_url, [GOOD])
              + provider("or-bad", "openrouter", own_fake.openai_base_url, [WRONG])
              + MODEL.format(route='"az:gpt-4o-mini"'))
    with RouterProcess(tmp_path, config) as router:
        eventually(lambda: all(probed(router, n) for n in ("az", "az1", "or", "or-bad")),
                   within_s=10, what="the first probes")
        shown = providers(router)
        assert {n: shown[n]["probe"]["state"] for n in shown} == {
            "az": "ok", "az1": "ok", "or": "ok", "or-bad": "failed"}
        assert shown["or-bad"]["probe"]["reason"] == "auth_refused"
        sent = own_fake.state.probe_snapshot()
        by_path = {p.path: p for p in sent}
        assert by_path["/openai/models?api-version=2024-10-21"].headers["api-key"] == GOOD
        assert by_path["/openai/v1/models"].headers["api-key"] == GOOD
        assert sorted(p.headers["authorization"] for p in sent if p.path == "/v1/key") == [
            f"Bearer {GOOD}", f"Bearer {WRONG}"]
        assert ready(router).status_code == 200


def test_a_provider_started_without_a_key_makes_the_router_unready(
        tmp_path: Path, own_fake: FakeProviderServer) -> None:
    config = (provider("oai", "openai", own_fake.openai_base_url, [GOOD])
              + provider("keyless", "anthropic", own_fake.anthropic_base_url)
              + MODEL.format(route='"oai:gpt-4o-mini"'))
    with RouterProcess(tmp_path, config, env={"ALLOW_PROVIDERS_WITHOUT_KEYS": "true"}
                       ) as router:
        r = ready(router)
        assert r.status_code == 503, r.text
        assert any("keyless" in reason and "no credential" in reason
                   for reason in r.json()["reasons"]), r.text
        eventually(lambda: probed(router, "keyless") and probed(router, "oai"),
                   what="the first probes")
        assert providers(router)["keyless"]["probe"]["reason"] == "no_credential"
        sent = own_fake.state.probe_snapshot()
        assert [p.headers["authorization"] for p in sent] == [f"Bearer {GOOD}"], \
            "the keyed provider is probed; nothing is sent for the one with no key"


def test_redis_down_is_503_naming_it_without_its_password(
        tmp_path: Path, own_fake: FakeProviderServer) -> None:
    proxy = TcpProxy(6379)
    try:
        url = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{proxy.port}/{redis_db(15)}"
        config = provider("oai", "openai", own_fake.openai_base_url, [GOOD]) + MODEL.format(
            route='"oai:gpt-4o-mini"')
        with RouterProcess(tmp_path, config, env={"REDIS_URL": url}) as router:
            eventually(lambda: ready(router).status_code == 200, what="ready")
            assert ready(router).json()["services"]["redis"] == "ok"
            proxy.cut()
            eventually(lambda: ready(router).status_code == 503, within_s=10,
                       what="Redis seen down")
            body = ready(router).json()
            assert any("Redis" in r and f"127.0.0.1:{proxy.port}" in r
                       for r in body["reasons"]), body
            assert body["services"]["redis"] == "down"
            assert REDIS_PASSWORD not in ready(router).text
            assert not any(REDIS_PASSWORD in line for line in router.output)
            proxy.restore()
            eventually(lambda: ready(router).status_code == 200, within_s=15,
                       what="Redis seen back")
    finally:
        proxy.close()


def test_ready_lists_the_outbox_backlog_as_information(
        tmp_path: Path, own_fake: FakeProviderServer) -> None:
    """A sink that is down loses nothing: its backlog is listed, the router stays ready."""
    dead = free_port()
    config = provider("oai", "openai", own_fake.openai_base_url, [GOOD]) + MODEL.format(
        route='"oai:gpt-4o-mini"')
    env = {"AURA_NETWORK_URL": f"http://127.0.0.1:{dead}", "AURA_NETWORK_TOKEN": "tok-" + "n" * 20}
    with RouterProcess(tmp_path, config, env=env) as router:
        _, key = router.new_account(1_000_000)
        oai(router, key).chat.completions.create(
            model="house-model", messages=[{"role": "user", "content": "hi"}])
        eventually(lambda: ready(router).json()["outbox"]["pending"].get("usage", 0) >= 1,
                   what="the usage event queued")
        r = ready(router)
        assert r.status_code == 200, r.text
        outbox = r.json()["outbox"]
        assert outbox["oldest_pending_age_s"] is not None and outbox["oldest_pending_age_s"] >= 0
        assert "loses nothing" in outbox["note"]
        assert str(dead) not in r.text
