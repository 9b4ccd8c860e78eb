"""The real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed by scripts/test)
against the router, in each of its three modes: Anthropic (`ANTHROPIC_BASE_URL`), Bedrock
(`CLAUDE_CODE_USE_BEDROCK`, the router key as `AWS_BEARER_TOKEN_BEDROCK`) and Vertex
(`CLAUDE_CODE_USE_VERTEX`, the router key in `ANTHROPIC_CUSTOM_HEADERS`). Each run of
`claude -p` must finish with the fake upstream's answer, and every request it made must
be billed to the key's account (docs/api.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.fakes import FakeProviderServer
from tests.harness import ROOT, RouterProcess, router_config

CLAUDE = ROOT / ".venv" / "claude-code" / "node_modules" / ".bin" / "claude"
HAIKU = "claude-3-5-haiku-20241022"


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLAUDE.exists():
        pytest.skip("!!! the Claude Code CLI is not installed (scripts/test installs it with "
                    "npm): the real-client tests of the three modes did NOT run !!!")
    return CLAUDE


@pytest.fixture(scope="module")
def served(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("claude-cli"), config) as proc:
        yield proc


def _run(cli: Path, home: Path, env: dict[str, str]) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(cli), "-p", "say hi", "--output-format", "json"], capture_output=True,
        text=True, timeout=120, cwd=str(home),
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DISABLE_TELEMETRY": "1",
             "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
             **env})
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    result = json.loads(done.stdout)
    assert result["is_error"] is False and result["result"].startswith("w0"), result
    return result


def _billed(router: RouterProcess, account: str) -> list[dict[str, Any]]:
    return router.admin("GET", f"/admin/usage?account={account}").json()["data"]


@pytest.mark.parametrize("mode", ["anthropic", "bedrock", "vertex"])
def test_claude_code_in_each_of_its_modes_is_served_and_billed(
        mode: str, cli: Path, served: RouterProcess, clean_fake: FakeProviderServer,
        tmp_path: Path) -> None:
    account, key = served.new_account(50_000_000)
    env = {"anthropic": {"ANTHROPIC_BASE_URL": served.base_url, "ANTHROPIC_API_KEY": key,
                         "ANTHROPIC_MODEL": HAIKU},
           "bedrock": {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1",
                       "ANTHROPIC_BEDROCK_BASE_URL": served.base_url,
                       "AWS_BEARER_TOKEN_BEDROCK": key,
                       "ANTHROPIC_MODEL": f"us.anthropic.{HAIKU}-v1:0",
                       "ANTHROPIC_SMALL_FAST_MODEL": f"us.anthropic.{HAIKU}-v1:0"},
           "vertex": {"CLAUDE_CODE_USE_VERTEX": "1", "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
                      "ANTHROPIC_VERTEX_BASE_URL": served.base_url + "/v1",
                      "CLOUD_ML_REGION": "us-east5",
                      "ANTHROPIC_VERTEX_PROJECT_ID": "platform-project",
                      "ANTHROPIC_CUSTOM_HEADERS": f"Authorization: Bearer {key}",
                      "ANTHROPIC_MODEL": "claude-3-5-haiku@20241022",
                      "ANTHROPIC_SMALL_FAST_MODEL": "claude-3-5-haiku@20241022"}}[mode]
    result = _run(cli, tmp_path / "home", env)
    rows = _billed(served, account)
    main = [r for r in rows if r["model"] == "claude-3-5-haiku-latest"]
    assert main and all(r["cost_micros"] > 0 for r in rows), rows
    told = result["usage"]
    assert (main[-1]["input_tokens"], main[-1]["output_tokens"]) == \
        (told["input_tokens"], told["output_tokens"]), "billed what Claude Code was told"
    upstream = [r for r in clean_fake.state.snapshot() if r.path.startswith("/v1/messages")]
    assert len(upstream) == len(rows), "every request it made, and only those, billed"
    assert all(key not in line for line in served.output)
