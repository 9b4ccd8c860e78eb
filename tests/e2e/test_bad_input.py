"""Bad input gets a clear error in the caller's API shape; nothing reaches the provider,
no hold stays open, the process keeps serving."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess

GOOD_MESSAGES = [{"role": "user", "content": "hi"}]

CASES: list[tuple[str, Any, int, str | None]] = [
    # (name, body, expected status, field the message must name)
    ("malformed json", b'{"model": "gpt-4o-mini", "messages": [', 400, "JSON"),
    ("not an object", b'[1, 2, 3]', 400, "object"),
    ("missing model", {"messages": GOOD_MESSAGES}, 400, "model"),
    ("model not a string", {"model": 42, "messages": GOOD_MESSAGES}, 400, "model"),
    ("unknown model", {"model": "no-such-model", "messages": GOOD_MESSAGES}, 404,
     "no-such-model"),
    ("messages not a list", {"model": "M", "messages": "hi"}, 400, "messages"),
    ("empty messages", {"model": "M", "messages": []}, 400, "messages"),
    ("message without role", {"model": "M", "messages": [{"content": "x"}]}, 400, "messages[0]"),
    ("stream not a bool", {"model": "M", "messages": GOOD_MESSAGES, "stream": "yes"}, 400,
     "stream"),
    ("negative max_tokens", {"model": "M", "messages": GOOD_MESSAGES, "max_tokens": -5}, 400,
     "max_tokens"),
    ("float max_tokens", {"model": "M", "messages": GOOD_MESSAGES, "max_tokens": 1.5}, 400,
     "max_tokens"),
]

ROUTES = {"openai": ("/v1/chat/completions", "gpt-4o-mini"),
          "anthropic": ("/v1/messages", "claude-haiku-4-5")}


def _post(router: RouterProcess, path: str, key: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else httpx.Request(
        "POST", "http://x", json=body).content
    return httpx.post(router.base_url + path, content=content, timeout=10,
                      headers={"authorization": f"Bearer {key}",
                               "content-type": "application/json"})


def _error_message(shape: str, response: httpx.Response) -> str:
    body = response.json()
    if shape == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        return body["error"]["message"]
    assert set(body["error"]) >= {"message", "type", "code"}
    return body["error"]["message"]


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
@pytest.mark.parametrize("name,body,status,names", CASES, ids=[c[0] for c in CASES])
def test_bad_body_is_refused_in_the_callers_shape(
        router: RouterProcess, clean_fake: FakeProviderServer, shape: str, name: str,
        body: Any, status: int, names: str | None) -> None:
    path, model = ROUTES[shape]
    if isinstance(body, dict) and body.get("model") == "M":
        body = {**body, "model": model}
    account, key = router.new_account(1_000_000)
    response = _post(router, path, key, body)
    assert response.status_code == status, response.text
    message = _error_message(shape, response)
    if names:
        assert names in message
    assert clean_fake.state.received == [], "bad input must never reach the provider"
    state = router.account(account)
    assert state["held_micros"] == 0 and state["balance_micros"] == 1_000_000


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_body_over_the_limit_is_413_and_the_router_keeps_serving(
        router: RouterProcess, clean_fake: FakeProviderServer, shape: str) -> None:
    path, model = ROUTES[shape]
    account, key = router.new_account(1_000_000)
    huge = {"model": model, "max_tokens": 5,
            "messages": [{"role": "user", "content": "x" * (11 * 1024 * 1024)}]}
    response = _post(router, path, key, huge)
    assert response.status_code == 413
    _error_message(shape, response)
    assert clean_fake.state.received == []
    ok = _post(router, path, key, {"model": model, "max_tokens": 5, "messages": GOOD_MESSAGES})
    assert ok.status_code == 200
    assert router.account(account)["held_micros"] == 0


def test_unknown_route_is_a_json_404(router: RouterProcess) -> None:
    response = httpx.get(router.base_url + "/v1/nope")
    assert response.status_code == 404
    assert "error" in response.json()
