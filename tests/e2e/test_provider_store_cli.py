"""`aura-router providers add|list|show|remove|import` against a running router's ledger:
what the CLI stores, the router serves within seconds without a restart; keys never
show in the CLI's output or in the ledger file; bad entries are named, one line each."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import openai
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, oai, router_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = secrets.token_hex(32)
KEY = "sk-cli-store-" + "c" * 24
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    with RouterProcess(tmp_path_factory.mktemp("store-cli"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env={"ROUTER_SECRET_KEY": SECRET}) as proc:
        yield proc


def cli(router: RouterProcess, *args: str, stdin: str | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI run from the router's directory (its aura-router.toml and DATA_DIR)."""
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", "providers", *args], cwd=router.data_dir,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(router.data_dir),
             "PYTHONPATH": str(ROOT), "DATA_DIR": str(router.data_dir),
             "ROUTER_SECRET_KEY": SECRET, **env},
        input=stdin, capture_output=True, text=True, timeout=60)


def served(client: openai.OpenAI, model: str, within_s: float = 30.0) -> None:
    """Call until the router knows the model (its watcher polls every few seconds)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            client.chat.completions.create(model=model, messages=HI, max_tokens=5)
            return
        except openai.NotFoundError:
            assert time.monotonic() < deadline, f"{model} was never served"
            time.sleep(0.2)


def test_a_provider_added_from_the_cli_is_served_by_the_running_router(
        router: RouterProcess, fake: FakeProviderServer) -> None:
    fake.state.reset()
    _, key = router.new_account(2_000_000)
    added = cli(router, "add", "from-cli", "--kind", "openai", "--base-url",
                fake.openai_base_url, "--api-key-env", "CLI_KEYS", "--json", CLI_KEYS=KEY)
    assert added.returncode == 0, added.stderr
    view = json.loads(added.stdout)
    assert (view["name"], view["keys_present"], view["key_count"], view["source"]) == (
        "from-cli", True, 1, "store")

    served(oai(router, key), "from-cli/gpt-4o-mini")
    calls = [r for r in fake.state.snapshot() if r.path.startswith("/v1/chat")]
    assert calls and calls[-1].headers["authorization"] == f"Bearer {KEY}"
    assert router.usage(key)["recent"][0]["provider"] == "from-cli"

    listed = cli(router, "list", "--json")
    shown = cli(router, "show", "from-cli", "--json")
    table = cli(router, "list")
    for done in (listed, shown, table):
        assert done.returncode == 0, done.stderr
        assert KEY not in done.stdout + done.stderr and "sk-cli" not in done.stdout
    assert {p["name"]: p["source"] for p in json.loads(listed.stdout)}["from-cli"] == "store"
    assert json.loads(shown.stdout)["base_url"] == fake.openai_base_url
    ledger = next(router.data_dir.glob("ledger*"))
    assert KEY.encode() not in ledger.read_bytes(), "a key is stored in clear"

    removed = cli(router, "remove", "from-cli", "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["deleted"] is True
    deadline = time.monotonic() + 30
    while router.admin("GET", "/admin/providers/from-cli").status_code != 404:
        assert time.monotonic() < deadline, "the removal never reached the router"
        time.sleep(0.2)
    again = cli(router, "remove", "from-cli")
    assert again.returncode == 1 and "no stored provider named 'from-cli'" in again.stderr


def test_import_stores_the_good_entries_and_names_each_bad_one(
        router: RouterProcess, fake: FakeProviderServer) -> None:
    text = (f'[[providers]]\nname = "imported"\nkind = "openai"\n'
            f'base_url = "{fake.openai_base_url}"\napi_keys = ["{KEY}"]\n\n'
            '[[providers]]\nname = "typo"\nkind = "openai"\nbase_url = "http://x/v1"\n'
            'strategey = "priority"\napi_keys = ["sk-x"]\n')
    done = cli(router, "import", "-", "--format", "toml", "--json", stdin=text)
    assert done.returncode == 1  # one entry was refused
    result = json.loads(done.stdout)
    assert result["created"] == ["imported"]
    assert len(result["errors"]) == 1 and "'strategey'" in result["errors"][0] \
        and "did you mean 'strategy'" in result["errors"][0]
    assert "not imported:" in done.stderr and KEY not in done.stdout + done.stderr

    _, key = router.new_account(1_000_000)
    served(oai(router, key), "imported/gpt-4o-mini")
    assert cli(router, "remove", "imported").returncode == 0


def test_keys_without_router_secret_key_are_refused_in_one_line(router: RouterProcess) -> None:
    done = cli(router, "add", "nokey", "--kind", "openai", "--base-url", "http://x/v1",
               "--api-key", "sk-never-stored", ROUTER_SECRET_KEY="")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and "ROUTER_SECRET_KEY" in lines[0]
    assert "Traceback" not in done.stderr and "sk-never-stored" not in done.stderr
    assert cli(router, "show", "nokey").returncode == 1
