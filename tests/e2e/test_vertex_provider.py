"""Vertex AI as a provider (router/providers/vertex.py): Claude and Gemini models at
Google's endpoint, with access tokens the router gets from a service account through google-auth (before
traffic, then ahead of their expiry, never on a request's path), through the official
SDKs, billed exactly; a service account that cannot be used stops the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import FakeProviderServer
from tests.fakes.vertex_app import FakeVertex
from tests.harness import RouterProcess, router_config

EMAIL = "router@platform-project.iam.gserviceaccount.com"
MODEL = """
[[models]]
id = "claude-on-vertex"
route = ["vertex:claude-3-5-haiku@20241022"]
input_per_mtok = "0.80"
output_per_mtok = "4.00"
"""


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def vertex(account_key: rsa.RSAPrivateKey) -> Iterator[FakeVertex]:
    public = account_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with FakeVertex(public, EMAIL) as fake:
        yield fake


def _service_account(path: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "platform-project",
        "private_key_id": "k1", "private_key": pem, "client_email": EMAIL,
        "client_id": "1", "token_uri": token_uri}))
    return path


@pytest.fixture(scope="module")
def routed(fake: FakeProviderServer, vertex: FakeVertex, account_key: rsa.RSAPrivateKey,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    data = tmp_path_factory.mktemp("vertex")
    sa = _service_account(data / "sa.json", account_key, vertex.token_uri)
    with RouterProcess(data, router_config(fake.openai_base_url, fake.anthropic_base_url,
                                           MODEL),
                       env={"VERTEX_AI_SERVICE_ACCOUNT_JSON": str(sa),
                            "VERTEX_AI_LOCATION": "us-east5",
                            "VERTEX_AI_BASE_URL": vertex.base_url}) as proc:
        yield proc


def test_claude_on_vertex_through_both_sdks_with_a_service_account_token(
        routed: RouterProcess, vertex: FakeVertex) -> None:
    assert vertex.issued, "the token was fetched before the server took traffic"
    account, key = routed.new_account(5_000_000)
    chat = openai.OpenAI(base_url=routed.base_url + "/v1", api_key=key, max_retries=0)
    answer = chat.chat.completions.with_raw_response.create(
        model="claude-on-vertex", max_tokens=6, messages=[{"role": "user", "content": "hi"}])
    assert answer.parse().choices[0].message.content
    claude = anthropic.Anthropic(base_url=routed.base_url, api_key=key, max_retries=0)
    with claude.messages.stream(model="claude-on-vertex", max_tokens=6,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream)
    paths = [path for path, _, _ in vertex.calls]
    assert paths == [
        "/v1/projects/platform-project/locations/us-east5/publishers/anthropic/models/"
        f"claude-3-5-haiku@20241022:{verb}" for verb in ("rawPredict", "streamRawPredict")]
    assert {bearer for _, bearer, _ in vertex.calls} <= set(vertex.issued)
    rows = routed.admin("GET", f"/admin/usage?account={account}").json()["data"]
    assert [(r["provider"], r["model"]) for r in rows] == [("vertex", "claude-on-vertex")] * 2
    for row in rows:  # 0.80 and 4.00 USD per Mtok, rounded up to the micro-USD
        exact = row["input_tokens"] * 80 + row["output_tokens"] * 400
        assert row["cost_micros"] == -(-exact // 100) > 0
    providers = {p["name"]: p for p in routed.admin("GET", "/admin/providers").json()["data"]}
    shown = json.dumps(providers["vertex"])
    assert providers["vertex"]["usable"] and not any(t in shown for t in vertex.issued)


def test_gemini_models_go_to_vertex_when_no_google_ai_key_is_set(
        routed: RouterProcess, vertex: FakeVertex) -> None:
    account, key = routed.new_account(5_000_000)
    chat = openai.OpenAI(base_url=routed.base_url + "/v1", api_key=key, max_retries=0)
    whole = chat.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", max_tokens=6, messages=[{"role": "user", "content": "hi"}])
    assert whole.parse().choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in chat.chat.completions.create(
        model="gemini-2.5-flash", max_tokens=6, stream=True,
        messages=[{"role": "user", "content": "hi"}]) if c.choices)
    assert streamed
    generated = [(path, bearer) for path, bearer, _ in vertex.calls if "google" in path]
    base = "/v1/projects/platform-project/locations/us-east5/publishers/google/models/"
    assert [path for path, _ in generated] == [
        base + "gemini-2.5-flash:generateContent",
        base + "gemini-2.5-flash:streamGenerateContent"]
    assert {bearer for _, bearer in generated} <= set(vertex.issued)
    rows = routed.admin("GET", f"/admin/usage?account={account}").json()["data"]
    assert [(r["provider"], r["model"]) for r in rows] == \
        [("vertex-gemini", "gemini-2.5-flash")] * 2
    assert all(r["cost_micros"] > 0 for r in rows)


def test_a_service_account_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "sa.json").write_text('{"type": "authorized_user"}')
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "DATA_DIR": str(tmp_path), "VERTEX_AI_SERVICE_ACCOUNT_JSON": str(tmp_path / "sa.json")}
    done = subprocess.run([sys.executable, "-m", "actors.cli", "serve", "--port", "0"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "VERTEX_AI_SERVICE_ACCOUNT_JSON" in done.stderr + done.stdout
