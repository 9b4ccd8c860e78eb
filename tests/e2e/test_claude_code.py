"""Claude Code's real request shape through the real router: a ~58 KB streamed body with
16 tools (some with `defer_loading`, the last with `cache_control`), a system prompt in
cached blocks, a `role: "system"` entry inside `messages`, thinking, metadata, `?beta=true`
and `anthropic-beta`, to an Anthropic-kind model and to an OpenAI-kind one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess

BODY: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "golden" / "claude_code_request.json").read_text())["payload"]
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"


def _stream(router: RouterProcess, key: str, body: dict[str, Any]) -> tuple[httpx.Response, str]:
    with httpx.stream("POST", router.base_url + "/v1/messages?beta=true", json=body,
                      timeout=20, headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                                           "anthropic-beta": BETA}) as response:
        return response, response.read().decode()


def _events(text: str) -> list[str]:
    return [line[7:] for line in text.splitlines() if line.startswith("event: ")]


def test_claude_code_request_reaches_an_anthropic_model_intact(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.thinking_text = "Let me look at the files."
    assert len(json.dumps(BODY)) > 50_000
    account, key = router.new_account(5_000_000)
    response, text = _stream(router, key, BODY)
    assert response.status_code == 200, text
    assert response.headers["x-aura-model"] == "claude-sonnet-4-0"
    events = _events(text)
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "thinking_delta" in text and "signature_delta" in text
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/messages?beta=true"
    assert upstream.headers["anthropic-beta"] == BETA
    sent = upstream.body
    assert [m["role"] for m in sent["messages"]] == ["user"], "the system entry was hoisted"
    hoisted = [m for m in BODY["messages"] if m["role"] == "system"][0]["content"]
    hoisted_text = hoisted if isinstance(hoisted, str) else hoisted[0]["text"]
    assert sent["system"][: len(BODY["system"])] == BODY["system"]
    assert sent["system"][-1]["text"] == hoisted_text
    assert sent["tools"] == BODY["tools"], "tools pass through with their extra fields"
    assert sent["thinking"] == BODY["thinking"] and sent["metadata"] == BODY["metadata"]
    assert sent["max_tokens"] == 32000
    state = router.account(account)
    assert state["held_micros"] == 0 and state["balance_micros"] < 5_000_000


def test_claude_code_request_reaches_an_openai_model(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    clean_fake.state.tool_call = ("Bash", {"command": "ls -la", "description": "List files"})
    account, key = router.new_account(5_000_000)
    response, text = _stream(router, key, {**BODY, "model": "gpt-4o-mini",
                                           "max_tokens": 16000})
    assert response.status_code == 200, text
    assert response.headers["x-aura-provider"] == "oai"
    events = _events(text)
    assert events[0] == "message_start" and events[-1] == "message_stop"
    data = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    start = [d for d in data if d["type"] == "content_block_start"][-1]
    assert start["content_block"]["name"] == "Bash"
    arguments = "".join(d["delta"]["partial_json"] for d in data
                        if d["type"] == "content_block_delta"
                        and d["delta"]["type"] == "input_json_delta")
    assert json.loads(arguments) == {"command": "ls -la", "description": "List files"}
    assert [d for d in data if d["type"] == "message_delta"][0]["delta"]["stop_reason"] == \
        "tool_use"
    upstream = clean_fake.state.last
    assert upstream.path == "/v1/chat/completions"
    sent = upstream.body
    assert sent["messages"][0]["role"] == "system"
    assert len(sent["tools"]) == 16
    assert "defer_loading" not in upstream.raw_body.decode()
    assert "cache_control" not in upstream.raw_body.decode()
    assert sent["max_completion_tokens"] == 16000
    state = router.account(account)
    assert state["held_micros"] == 0 and state["balance_micros"] < 5_000_000


def test_system_entries_reach_anthropic_as_sent_when_the_client_opted_in(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    _, key = router.new_account(5_000_000)
    beta = "claude-code-20250219,mid-conversation-system-2026-04-07"
    with httpx.stream("POST", router.base_url + "/v1/messages?beta=true", json=BODY, timeout=20,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                               "anthropic-beta": beta}) as response:
        response.read()
    assert response.status_code == 200
    sent = clean_fake.state.last.body
    assert [m["role"] for m in sent["messages"]] == ["user", "system"]
    assert sent["system"] == BODY["system"]
