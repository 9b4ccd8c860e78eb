"""Strict configuration through the real command line (docs/configuration.md#start-up-validation):
a typo or a provider without a key stops `doctor` and `serve` with one `config error:` line
naming the file, the line and what was meant, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TYPO = """\
[settings]
host = "127.0.0.1"

[[providers]]
name = "primary"
kind = "openai"
api_keys = ["sk-one"]
strategey = "priority"
"""

NO_KEY = """\
[[providers]]
name = "primary"
kind = "openai"
api_key_env = "PRIMARY_KEYS"
"""


def _cli(tmp_path: Path, config: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "aura-router.toml").write_text(config, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **env},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [["doctor"], ["serve", "--port", "0"]])
def test_a_misspelt_key_stops_the_cli_with_one_line_naming_file_line_and_fix(
        tmp_path: Path, command: list[str]) -> None:
    done = _cli(tmp_path, TYPO, *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"config error: {tmp_path / 'aura-router.toml'}:8: unknown key 'strategey' in "
        "[[providers]] 'primary'; did you mean 'strategy'?"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_provider_whose_key_is_unset_stops_serve_and_starts_when_allowed(
        tmp_path: Path) -> None:
    done = _cli(tmp_path, NO_KEY, "serve", "--port", "0")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"config error: {tmp_path / 'aura-router.toml'}:4: provider 'primary' (kind openai) "
        "has no credential: PRIMARY_KEYS (its api_key_env) is unset or empty"), done.stderr
    # allowed: the start goes on (doctor gets past the config and reports the provider)
    allowed = _cli(tmp_path, NO_KEY, "doctor", ALLOW_PROVIDERS_WITHOUT_KEYS="true")
    assert "config error" not in allowed.stderr, allowed.stderr
    assert "primary" in allowed.stdout, allowed.stdout + allowed.stderr
    assert "no credential" in allowed.stderr  # the loud warning


def test_a_short_admin_key_stops_serve_saying_how_to_make_one(tmp_path: Path) -> None:
    done = _cli(tmp_path, "", "serve", "--port", "0", ADMIN_API_KEY="x")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "config error: ADMIN_API_KEY is 1 characters long; it must be at least 24 (a short "
        "key can be guessed). Make one with: python -c \"import secrets; "
        "print(secrets.token_urlsafe(32))\""), done.stderr
