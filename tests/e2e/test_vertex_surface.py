"""The Vertex-shaped Claude routes (`...:rawPredict`, `...:streamRawPredict`), as Claude
Code in Vertex mode and the Anthropic SDK's `AnthropicVertex` call them: served and billed
like `/v1/messages`, authenticated with a router key as the bearer token."""

from __future__ import annotations

import anthropic
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess


def _vertex(router: RouterProcess, key: str) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(region="us-east5", project_id="platform-project",
                                     access_token=key, base_url=router.base_url + "/v1",
                                     max_retries=0)


def test_a_vertex_client_reaches_claude_through_the_router(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    account, key = router.new_account(5_000_000)
    client = _vertex(router, key)
    whole = client.messages.with_raw_response.create(
        model="claude-3-5-haiku@20241022", max_tokens=8,
        messages=[{"role": "user", "content": "hi"}])
    message = whole.parse()
    assert message.content and message.usage.output_tokens > 0
    with client.messages.stream(model="claude-3-5-haiku@20241022", max_tokens=8,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0
    sent = [r for r in clean_fake.state.snapshot() if r.path.startswith("/v1/messages")]
    assert len(sent) == 2 and all("anthropic_version" not in r.body for r in sent)
    assert [r.body.get("stream", False) for r in sent] == [False, True]
    rows = router.admin("GET", f"/admin/usage?account={account}").json()["data"]
    assert len(rows) == 2 and all(r["cost_micros"] > 0 for r in rows)
    assert whole.headers["x-aura-model"] == rows[0]["model"]


def test_a_vertex_call_without_a_router_credential_is_refused(
        router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        _vertex(router, "ya29.a-google-token").messages.create(
            model="claude-3-5-haiku@20241022", max_tokens=8,
            messages=[{"role": "user", "content": "hi"}])
    assert clean_fake.state.snapshot() == []
