"""Browser pages calling the router (CORS_ORIGINS): a preflight is answered without a
credential, a listed origin gets its answers (with credentials), an unlisted one gets no
CORS header (the browser keeps the answer from the page), and with CORS_ORIGINS unset
any origin may call, without credentials."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

APP = "https://app.example.com"
BODY = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _preflight(router: RouterProcess, origin: str) -> httpx.Response:
    return httpx.options(router.base_url + "/v1/chat/completions", timeout=10, headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})


@pytest.fixture(scope="module")
def listed(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("cors"), config,
                       env={"CORS_ORIGINS": f"{APP}, https://admin.example.com"}) as proc:
        yield proc


def test_a_listed_origin_gets_its_preflight_and_answers_with_credentials(
        listed: RouterProcess, clean_fake: FakeProviderServer) -> None:
    preflight = _preflight(listed, APP)
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert clean_fake.state.snapshot() == [], "a preflight never reaches a provider"

    _, key = listed.new_account(1_000_000)
    answer = httpx.post(listed.base_url + "/v1/chat/completions", json=BODY, timeout=30,
                        headers={"origin": APP, "authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in answer.headers["access-control-expose-headers"]
    refused = httpx.get(listed.base_url + "/v1/usage", timeout=10, headers={"origin": APP})
    assert refused.status_code == 401  # errors carry CORS too: the page can read why
    assert refused.headers["access-control-allow-origin"] == APP


def test_an_unlisted_origin_gets_no_cors_header(listed: RouterProcess) -> None:
    evil = "https://evil.example.net"
    preflight = _preflight(listed, evil)
    assert "access-control-allow-origin" not in preflight.headers
    _, key = listed.new_account(1_000_000)
    answer = httpx.get(listed.base_url + "/v1/usage", timeout=10,
                       headers={"origin": evil, "authorization": f"Bearer {key}"})
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-credentials" not in answer.headers


def test_unset_cors_origins_lets_any_origin_call_without_credentials(
        router: RouterProcess) -> None:
    preflight = _preflight(router, "http://localhost:5173")
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    _, key = router.new_account(0)
    answer = httpx.get(router.base_url + "/v1/usage", timeout=10, headers={
        "origin": "http://localhost:5173", "authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    plain = httpx.get(router.base_url + "/v1/usage", timeout=10,
                      headers={"authorization": f"Bearer {key}"})
    assert "access-control-allow-origin" not in plain.headers, "no Origin, no CORS"


def test_the_setting_reads_exact_origins() -> None:
    from router.transports.cors import CorsPolicy

    policy = CorsPolicy.from_setting(" https://a.example/ ,https://b.example")
    assert policy.origins == frozenset({b"https://a.example", b"https://b.example"})
    assert CorsPolicy.from_setting("*").origins is None
    assert CorsPolicy.from_setting(None).origins is None
