"""Service-to-service calls (INTERNAL_SERVICE_TOKEN, docs/integration.md): the platform's
backend calls for one of its users with its own token and `x-aura-account`; the call is
held, billed and reported as that user's, through either SDK. Without the header it is a
400 naming it; a token that is not the service's is a 401; the token is never shown."""

from __future__ import annotations

from typing import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

SERVICE_TOKEN = "svc-" + "t" * 40


@pytest.fixture(scope="module")
def router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("svc"), config,
                       env={"INTERNAL_SERVICE_TOKEN": SERVICE_TOKEN}) as proc:
        yield proc


def test_a_service_call_is_billed_to_the_account_it_names(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    alice, _ = router.new_account(1_000_000)
    bob, _ = router.new_account(1_000_000)
    as_alice = openai.OpenAI(base_url=router.base_url + "/v1", api_key=SERVICE_TOKEN,
                             max_retries=0, default_headers={"x-aura-account": alice})
    chat = as_alice.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    as_bob = anthropic.Anthropic(base_url=router.base_url, api_key=SERVICE_TOKEN,
                                 max_retries=0, default_headers={"x-aura-account": bob})
    message = as_bob.messages.with_raw_response.create(
        model="claude-3-5-haiku-latest", max_tokens=4,
        messages=[{"role": "user", "content": "hi"}])
    for account, answer in ((alice, chat), (bob, message)):
        rows = router.admin("GET", f"/admin/usage?account={account}").json()["data"]
        assert [r["request_id"] for r in rows] == [answer.headers["x-request-id"]]
        assert rows[0]["cost_micros"] > 0
        state = router.account(account)
        assert state["balance_micros"] == 1_000_000 - rows[0]["cost_micros"]
        assert state["held_micros"] == 0


def test_a_service_call_without_an_account_or_with_another_token_is_refused(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    service = openai.OpenAI(base_url=router.base_url + "/v1", api_key=SERVICE_TOKEN,
                            max_retries=0)
    with pytest.raises(openai.BadRequestError) as missing:
        service.chat.completions.create(model="gpt-4o-mini", max_tokens=4,
                                        messages=[{"role": "user", "content": "hi"}])
    assert "x-aura-account" in str(missing.value)
    forged = openai.OpenAI(base_url=router.base_url + "/v1", api_key=SERVICE_TOKEN + "x",
                           max_retries=0, default_headers={"x-aura-account": "alice"})
    with pytest.raises(openai.AuthenticationError):
        forged.chat.completions.create(model="gpt-4o-mini", max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}])
    assert clean_fake.state.snapshot() == [], "nothing reached a provider"
    ready = httpx.get(router.base_url + "/ready", timeout=10)
    assert SERVICE_TOKEN not in ready.text
    assert not any(SERVICE_TOKEN in line for line in router.output), "never logged"
