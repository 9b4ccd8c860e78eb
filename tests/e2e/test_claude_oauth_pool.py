"""Claude Code logins as a credential pool, through a real router: the official Anthropic
SDK calls the router, the router calls the fake Anthropic upstream with the logins found
under CLAUDE_CODE_HOME and ADDITIONAL_ACCOUNT_DIRS (Bearer + the oauth beta, no
x-api-key), in turn; a rate-limited account rests (visible in /admin/providers and
/v1/accounts) while the other serves; a rewritten file is picked up without a restart;
an expired token is never sent."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, eventually

A = "sk-ant-oat01-" + "a" * 60
B = "sk-ant-oat01-" + "b" * 60
B2 = "sk-ant-oat01-" + "n" * 60
EXPIRED = "sk-ant-oat01-" + "x" * 60
MESSAGES = [{"role": "user", "content": "hi"}]


def login(path: Path, token: str, expires_in_s: float, nested: bool = True) -> None:
    """Write a login the way Claude Code does (a new file renamed over the old)."""
    expires_ms = int((time.time() + expires_in_s) * 1000)
    doc: dict[str, Any] = (
        {"claudeAiOauth": {"accessToken": token, "refreshToken": "sk-ant-ort01-r",
                           "expiresAt": expires_ms, "scopes": ["user:inference"],
                           "subscriptionType": "max"}}
        if nested else {"access_token": token, "expires_at": expires_ms})
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_suffix(".tmp")
    fresh.write_text(json.dumps(doc))
    os.replace(fresh, path)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:  # its own: `rate_limited_keys` is not reset()
        yield server


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("claude")
    paths = {"a": root / "home" / ".credentials.json", "b": root / "second" / "credentials.json",
             "old": root / "third" / "auth.json"}
    login(paths["a"], A, 3600)
    login(paths["b"], B, 3600, nested=False)
    login(paths["old"], EXPIRED, -60)
    return paths


@pytest.fixture(scope="module")
def crouter(upstream: FakeProviderServer, homes: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    env = {"ANTHROPIC_BASE_URL": upstream.anthropic_base_url,
           "CLAUDE_CODE_HOME": str(homes["a"].parent),
           "ADDITIONAL_ACCOUNT_DIRS": f"{homes['b'].parent},{homes['old'].parent}"}
    with RouterProcess(tmp_path_factory.mktemp("router"), env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def sdk(crouter: RouterProcess) -> anthropic.Anthropic:
    _, key = crouter.new_account(50_000_000)
    return anthropic.Anthropic(base_url=crouter.base_url, api_key=key, max_retries=0)


def ask(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES)
    assert message.content[0].text.startswith("w0")


def sent_tokens(upstream: FakeProviderServer) -> list[str]:
    tokens = []
    for request in upstream.state.snapshot():
        assert "x-api-key" not in request.headers, "an OAuth token is no API key"
        assert "oauth-2025-04-20" in request.headers["anthropic-beta"].split(",")
        assert request.headers["authorization"].startswith("Bearer ")
        tokens.append(request.headers["authorization"][len("Bearer "):])
    return tokens


def accounts(crouter: RouterProcess, sdk: anthropic.Anthropic) -> dict[str, dict[str, Any]]:
    r = httpx.get(crouter.base_url + "/v1/accounts",
                  headers={"authorization": f"Bearer {sdk.api_key}"})
    assert r.status_code == 200, r.text
    return {Path(a["account"]).name: a for a in r.json()["data"]}


def claude_code_provider(crouter: RouterProcess) -> dict[str, Any]:
    r = crouter.admin("GET", "/admin/providers")
    assert r.status_code == 200
    return next(p for p in r.json()["data"] if p["name"] == "claude-code")


def test_two_logins_take_turns_as_bearer_tokens_and_the_expired_one_never_goes(
        crouter: RouterProcess, upstream: FakeProviderServer, sdk: anthropic.Anthropic) -> None:
    upstream.state.clear()
    for _ in range(4):
        ask(sdk)
    assert sorted(sent_tokens(upstream)) == [A, A, B, B]
    shown = accounts(crouter, sdk)
    assert shown["home"]["state"] == "ok" and shown["second"]["state"] == "ok"
    assert shown["third"]["state"] == "expired" and shown["third"]["provider"] == "claude-code"
    assert all(t not in json.dumps(shown) for t in (A, B, EXPIRED))


def test_a_rate_limited_login_rests_while_the_other_serves(
        crouter: RouterProcess, upstream: FakeProviderServer, sdk: anthropic.Anthropic) -> None:
    upstream.state.rate_limited_keys = {A: 60}  # type: ignore[attr-defined]
    try:
        upstream.state.clear()
        for _ in range(3):
            ask(sdk)  # the 429 is about one login: the call goes on with the other
        tokens = sent_tokens(upstream)
        assert tokens.count(A) == 1 and tokens.count(B) == 3
    finally:
        upstream.state.rate_limited_keys = {}  # type: ignore[attr-defined]
    home = accounts(crouter, sdk)["home"]
    assert home["state"] == "cooling_down" and 50 < home["cooldown_s"] <= 60
    credentials = claude_code_provider(crouter)["credentials"]
    rested = next(c for c in credentials if c["account"].endswith("home"))
    assert rested["state"] == "cooling_down" and rested["cooldown_s"] > 50
    assert rested["kind"] == "oauth" and A not in json.dumps(credentials)
    upstream.state.clear()
    ask(sdk)
    assert sent_tokens(upstream) == [B]


def test_a_rewritten_login_is_used_without_a_restart(
        crouter: RouterProcess, upstream: FakeProviderServer, sdk: anthropic.Anthropic,
        homes: dict[str, Path]) -> None:
    before = accounts(crouter, sdk)["second"]["expires_at"]
    login(homes["b"], B2, 7200, nested=False)
    eventually(lambda: accounts(crouter, sdk)["second"]["expires_at"] != before, 6,
               "the rewritten file being read")
    upstream.state.clear()
    ask(sdk)
    ask(sdk)
    tokens = sent_tokens(upstream)
    assert B2 in tokens and B not in tokens, "the new token, never the replaced one"
    assert any("claude-code accounts:" in line for line in crouter.output)
    assert not any(t in line for line in crouter.output for t in (A, B, B2, EXPIRED))
