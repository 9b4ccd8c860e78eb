"""Vertex AI's pieces (router/providers/vertex.py, google_sa.py,
actors/services/vertex_tokens.py): the request as Vertex wants it, the service account
checked at start, and a token that is replaced ahead of its expiry and kept through a
failed fetch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest
import trio

from actors.services.vertex_tokens import VertexTokenKeeper
from router.errors import ConfigError
from router.providers.base import UpstreamRequest
from router.providers.credentials import CredentialPool
from router.providers.google_sa import ServiceAccount, load
from router.providers.vertex import ADAPTER, vertex_base_url

SA = {"type": "service_account", "client_email": "r@p.iam", "private_key": "-----",
      "token_uri": "https://oauth2.googleapis.com/token", "project_id": "proj"}


def test_the_request_is_messages_without_model_at_the_models_path() -> None:
    body = orjson.dumps({"model": "claude-x", "max_tokens": 5, "messages": []})
    call = ADAPTER.build_request(UpstreamRequest("anthropic.messages",
                                                 "claude-3-5-haiku@20241022", body, True),
                                 "ya29.tok")
    assert call.path == "/publishers/anthropic/models/claude-3-5-haiku@20241022:streamRawPredict"
    sent = orjson.loads(call.body)
    assert "model" not in sent and sent["anthropic_version"] == "vertex-2023-10-16"
    assert sent["stream"] is True and dict(call.headers)[b"authorization"] == b"Bearer ya29.tok"
    assert vertex_base_url("proj", "global") == \
        "https://aiplatform.googleapis.com/v1/projects/proj/locations/global"
    assert vertex_base_url("proj", "us-east5").startswith("https://us-east5-aiplatform")


class _Answer:
    def __init__(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        self.status, self.content_type, self.retry_after = status, "application/json", \
            retry_after
        self.headers: dict[str, str] = {}
        self.body = body

    async def read(self, limit: int) -> bytes:
        return self.body[:limit]


def test_a_429_says_its_retry_info_else_the_keys_rest() -> None:
    from router.providers.credentials import DEFAULT_COOLDOWN_S
    from router.providers.vertex import VertexPool

    rewrite = VertexPool(None).rewrite
    quota = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                    "message": "Quota exceeded for aiplatform..."}})
    answer = trio.run(rewrite, None, _Answer(429, quota))  # as Vertex sends it for Claude
    assert answer.status == 429 and answer.retry_after == str(int(DEFAULT_COOLDOWN_S))
    assert trio.run(answer.read, 1 << 16) == quota  # the body is still there to read
    timed = orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                    "message": "quota", "details": [
                                        {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                         "retryDelay": "4.2s"}]}})
    assert trio.run(rewrite, None, _Answer(429, timed)).retry_after == "5"
    told = _Answer(429, quota, retry_after="7")
    assert trio.run(rewrite, None, told) is told  # a header is the provider's word
    other = _Answer(500, b"{}")
    assert trio.run(rewrite, None, other) is other


def test_the_service_account_is_checked_at_start(tmp_path: Path) -> None:
    assert load(json.dumps(SA), "S").email == "r@p.iam", "the JSON itself"
    (tmp_path / "sa.json").write_text(json.dumps(SA))
    assert load(str(tmp_path / "sa.json"), "S").project_id == "proj", "or a path"
    for bad, says in ((str(tmp_path / "nope.json"), "cannot read"),
                      ("{not json", "not JSON"),
                      (json.dumps({**SA, "type": "authorized_user"}), "not 'service_account'"),
                      (json.dumps({"type": "service_account"}), "needs")):
        with pytest.raises(ConfigError, match=says) as refused:
            load(bad, "VERTEX_AI_SERVICE_ACCOUNT_JSON")
        assert "-----" not in str(refused.value)


async def test_the_token_is_replaced_ahead_of_expiry_and_kept_through_a_failure() -> None:
    pool = CredentialPool((), "round_robin")
    fetched = trio.Event()
    answers: list[tuple[str, float] | Exception] = [
        ("tok-1", 0.2), RuntimeError("token endpoint down"), ("tok-2", 3600.0)]

    def fetch(account: ServiceAccount) -> tuple[str, float]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            trio.from_thread.run_sync(fetched.set)
            raise answer
        token, valid_s = answer
        return token, time.time() + valid_s

    keeper = VertexTokenKeeper([pool], ServiceAccount("r@p.iam", "proj", SA), fetch=fetch,
                               refresh_before_s=0.1, retry_first_s=0.05)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.serve, None)
            assert [c.key for c in pool.credentials] == ["tok-1"], "before traffic"
            await fetched.wait()  # due again 0.1 s before it expires: that fetch fails
            assert [c.key for c in pool.credentials] == ["tok-1"], "kept through it"
            while [c.key for c in pool.credentials] != ["tok-2"]:  # retried after backoff
                await trio.sleep(0.01)
            assert answers == []
            nursery.cancel_scope.cancel()
