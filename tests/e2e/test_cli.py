"""The `aura-router` command as an operator meets it: help everywhere, the same ledger as
the server wherever it is run from, no invented empty ledger, and every start-up failure
as one line naming what is wrong (never a traceback)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import trio

from actors.cli import _parser, main
from actors.cli.failures import explain
from router.config import load_config
from tests.fakes import FakeProviderServer
from tests.harness import ROOT, RouterProcess

LEDGER = "ledger.sqlite3"


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`aura-router ARGS` in `cwd`, with a scrubbed environment (no DATA_DIR unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args], cwd=str(cwd),
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(ROOT),
             **(env or {})},
        capture_output=True, text=True, timeout=60)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's stderr, asserted to be exactly one line and no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


# --- help ---------------------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_command_subcommand_and_option_has_help() -> None:
    walked = list(_parsers(_parser()))
    assert {p for p, _ in walked} >= {
        ("serve",), ("keys", "issue"), ("keys", "list"), ("keys", "revoke"),
        ("credits", "grant"), ("credits", "balance"), ("credits", "ledger"),
        ("usage", "export"), ("providers", "list"), ("providers", "check"), ("doctor",)}
    missing = []
    for path, parser in walked:
        if not parser.description:
            missing.append(f"{' '.join(path) or 'aura-router'}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{' '.join((*path, c.dest))}: no help"
                            for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{' '.join(path)} {action.dest}: no help")
    assert missing == []


@pytest.mark.parametrize("path", [p for p, _ in _parsers(_parser())],
                         ids=lambda p: " ".join(p) or "top")
def test_help_of_every_command_prints_its_options(
        path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    parser = dict(_parsers(_parser()))[path]
    for action in parser._actions:
        if action.help != argparse.SUPPRESS:
            for option in action.option_strings:
                assert option in shown, f"{option} missing from {' '.join(path)} --help"


def test_bare_command_prints_the_help_and_starts_nothing(tmp_path: Path) -> None:
    done = cli(tmp_path)
    assert done.returncode == 2, done.stderr  # a usage error: see actors/cli/__init__.py
    assert done.stdout.startswith("usage: aura-router")
    for command in ("serve", "keys", "credits", "usage", "providers", "doctor"):
        assert command in done.stdout
    assert "listening on" not in done.stdout + done.stderr
    assert files_under(tmp_path) == []


# --- the ledger a command uses ---------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["credits", "balance", "alice"], ["credits", "grant", "alice", "100"],
    ["credits", "ledger", "alice"], ["keys", "list"], ["keys", "issue", "alice"],
    ["keys", "revoke", "key_x"], ["usage", "export"]], ids=" ".join)
def test_a_command_run_where_there_is_no_ledger_refuses_and_creates_nothing(
        tmp_path: Path, command: list[str]) -> None:
    done = cli(tmp_path, *command)
    expected = (f"no ledger at {tmp_path / 'data' / LEDGER} — run from the directory you "
                "serve from, pass --data-dir, or --create to start a new one")
    assert one_line(done) == expected
    assert done.returncode == 1 and done.stdout == ""
    assert files_under(tmp_path) == []


def test_create_starts_a_new_ledger_where_asked(tmp_path: Path) -> None:
    granted = cli(tmp_path, "--create", "credits", "grant", "alice", "2500", "--json")
    assert granted.returncode == 0, granted.stderr
    assert (tmp_path / "data" / LEDGER).is_file()
    # --create also after the subcommand; then the ledger exists and no flag is needed
    again = cli(tmp_path, "credits", "grant", "alice", "500", "--create", "--json")
    assert again.returncode == 0, again.stderr
    balance = json.loads(cli(tmp_path, "credits", "balance", "alice", "--json").stdout)
    assert balance["balance_micros"] == 3000


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[RouterProcess, str]]:
    """A router serving from `tmp_path/site` (its config file says `data_dir = "."`) with
    an account holding 1234567 micro-USD."""
    router = RouterProcess(tmp_path / "site", config_text='[settings]\ndata_dir = "."\n')
    with router:
        account, _ = router.new_account(1_234_567)
        yield router, account


def test_commands_find_the_servers_ledger_from_another_directory(
        tmp_path: Path, site: tuple[RouterProcess, str]) -> None:
    router, account = site
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = str(router.data_dir / "aura-router.toml")
    ways = {
        # a relative data_dir in the config file is relative to the file's directory
        "--config": (elsewhere, ["--config", config], {}),
        "AURA_CONFIG": (elsewhere, [], {"AURA_CONFIG": config}),
        "DATA_DIR": (elsewhere, [], {"DATA_DIR": str(router.data_dir)}),
        "--data-dir relative to the working directory": (tmp_path, ["--data-dir", "site"], {}),
    }
    for way, (cwd, flags, env) in ways.items():
        done = cli(cwd, *flags, "credits", "balance", account, "--json", env=env)
        assert done.returncode == 0, f"{way}: {done.stderr}"
        assert json.loads(done.stdout)["balance_micros"] == 1_234_567, way
    assert files_under(elsewhere) == []
    doctor = cli(elsewhere, "doctor", "--json", "--config", config)
    report = json.loads(doctor.stdout)
    assert report["config_file"] == config and report["config_file_from"] == "--config"
    assert report["data_dir"] == str(router.data_dir)
    assert report["ledger"]["file"] == str(router.data_dir / LEDGER)
    assert report["ledger"]["exists"] and report["ledger"]["usable"]


# --- doctor ----------------------------------------------------------------------------------

def test_doctor_names_a_missing_ledger_and_does_not_create_it(tmp_path: Path) -> None:
    done = cli(tmp_path, "doctor", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    path = tmp_path / "data" / LEDGER
    assert report["data_dir"] == str(tmp_path / "data") and report["data_dir_from"] == "default"
    assert report["ledger"]["file"] == str(path) and report["ledger"]["exists"] is False
    assert any(f"no ledger at {path}" in p for p in report["problems"])
    assert files_under(tmp_path) == []


def test_doctor_with_a_broken_ledger_exits_1_naming_the_path_and_the_cause(
        tmp_path: Path) -> None:
    (tmp_path / LEDGER).write_bytes(b"not a database, a text file " * 100)
    done = cli(tmp_path, "doctor", env={"DATA_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert f"ledger: cannot open {tmp_path / LEDGER}: file is not a database" in done.stdout
    as_json = json.loads(cli(tmp_path, "doctor", "--json",
                             env={"DATA_DIR": str(tmp_path)}).stdout)
    assert as_json["ledger"]["usable"] is False
    assert as_json["problems"] == [
        f"ledger: cannot open {tmp_path / LEDGER}: file is not a database"]


def test_doctor_shows_secrets_only_as_set_and_checks_each_provider(
        tmp_path: Path, fake: FakeProviderServer) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    (tmp_path / "aura-router.toml").write_text(f"""
[[providers]]
name = "up"
kind = "openai"
base_url = "{fake.openai_base_url}"
api_keys = ["sk-doctor-secret-1"]

[[providers]]
name = "down"
kind = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
api_keys = ["sk-doctor-secret-2"]
""")
    env = {"ADMIN_API_KEY": "adm-doctor-" + "z" * 30}
    assert cli(tmp_path, "--create", "keys", "list", env=env).returncode == 0
    done = cli(tmp_path, "doctor", "--json", env=env)
    assert done.returncode == 1, done.stderr  # a provider is down
    for secret in ("sk-doctor-secret", env["ADMIN_API_KEY"]):
        assert secret not in done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["settings"]["admin_api_key"] == "set"
    by_name = {p["name"]: p for p in report["providers"]}
    assert by_name["up"]["reachable"] is True
    assert by_name["down"]["reachable"] is False
    assert f"127.0.0.1:{dead_port}" in by_name["down"]["error"]
    assert report["problems"] == [f"provider down: {by_name['down']['error']}"]
    check = cli(tmp_path, "providers", "check", "--json", env=env)
    assert check.returncode == 1
    assert {p["name"]: p["reachable"] for p in json.loads(check.stdout)} == {
        "up": True, "down": False}


def test_tables_off_a_terminal_are_not_wrapped(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/" + "a-very-long-path/" * 12 + "v1"
    (tmp_path / "aura-router.toml").write_text(
        f'[[providers]]\nname = "long"\nkind = "openai"\nbase_url = "{url}"\n'
        'api_keys = ["sk-table-1"]\n')
    done = cli(tmp_path, "providers", "list")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("long"))
    assert url in row and "\x1b[" not in done.stdout


# --- start-up failures: one line ---------------------------------------------------------------

@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_is_one_line_naming_it(tmp_path: Path, workers: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port),
                   env={"WORKERS": workers})
    line = one_line(done)
    assert f"127.0.0.1:{port}" in line and "in use" in line and "PORT=" in line
    assert done.returncode == 1


def test_aura_debug_shows_the_traceback_then_the_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port),
                   env={"AURA_DEBUG": "1"})
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_a_data_dir_that_is_a_file_is_one_line_naming_it(
        tmp_path: Path, where: str, workers: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / where
    done = cli(tmp_path, "serve", "--port", "0",
               env={"DATA_DIR": str(data_dir), "WORKERS": workers})
    line = one_line(done)
    assert str(data_dir) in line and "is a file, not a directory" in line
    assert str(tmp_path / "a-file") in line


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, list[str]]]:
    """A world-traversable directory, and the command prefix that runs as a user who may
    not write what root made there (as root, `setpriv` to nobody: root may write anywhere)."""
    if os.geteuid() != 0:
        prefix: list[str] = []
    elif shutil.which("setpriv"):
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        pytest.skip("running as root without setpriv: every directory is writable")
    base = Path(tempfile.mkdtemp(prefix="aura-cli-"))
    base.chmod(0o755)
    try:
        yield base, prefix
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_as(prefix: list[str], cwd: Path, *args: str, env: dict[str, str]
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "actors.cli", *args], cwd=str(cwd),
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env},
                          capture_output=True, text=True, timeout=60)


def test_a_data_dir_without_write_permission_is_one_line(
        unprivileged: tuple[Path, list[str]]) -> None:
    base, prefix = unprivileged
    locked = base / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    line = one_line(run_as(prefix, base, "serve", "--port", "0",
                           env={"DATA_DIR": str(locked)}))
    assert line == f"DATA_DIR {locked} is not writable: permission denied"


def test_doctor_names_a_ledger_it_may_not_open(unprivileged: tuple[Path, list[str]]) -> None:
    base, prefix = unprivileged
    data = base / "data"
    data.mkdir()
    data.chmod(0o777)
    ledger = data / LEDGER
    ledger.write_bytes(b"")
    ledger.chmod(0o000)
    done = run_as(prefix, base, "doctor", "--json", env={"DATA_DIR": str(data)})
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["problems"] == [
        f"ledger: cannot open {ledger}: permission denied"]
    line = one_line(run_as(prefix, base, "keys", "list", env={"DATA_DIR": str(data)}))
    assert line == f"ledger: cannot open {ledger}: permission denied"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreachable_database_is_one_line_without_the_password(
        tmp_path: Path, workers: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        done = cli(tmp_path, "serve", "--port", "0", env={
            "BILLING_BACKEND": "postgres", "WORKERS": workers,
            "DATABASE_URL": f"postgresql://aura:pa55word-xyz@127.0.0.1:{port}/aura"})
    line = one_line(done)
    assert "DATABASE_URL" in line and f"127.0.0.1:{port}" in line
    assert "pa55word-xyz" not in done.stderr + done.stdout


def test_a_command_on_an_unreadable_ledger_is_one_line(tmp_path: Path) -> None:
    (tmp_path / LEDGER).write_bytes(b"garbage " * 500)
    line = one_line(cli(tmp_path, "credits", "balance", "alice",
                        env={"DATA_DIR": str(tmp_path)}))
    assert str(tmp_path) in line and "not a database" in line



def test_an_unknown_failure_deep_in_nurseries_is_one_line_with_its_type_and_no_secret(
        tmp_path: Path) -> None:
    """What `serve` raises through three nurseries, cancelled siblings beside the cause:
    the line names the cause, not the groups, and hides a URL's password."""
    config = load_config({}, env={"DATA_DIR": str(tmp_path), "ADMIN_API_KEY": "adm-" + "q" * 30},
                         cwd=tmp_path)

    async def fails() -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(trio.sleep_forever)
            async with trio.open_nursery() as inner:
                inner.start_soon(trio.sleep_forever)
                raise RuntimeError("lost http://user:hunter2-pw@10.0.0.1/x with adm-" + "q" * 30)

    with pytest.raises(BaseExceptionGroup) as raised:
        trio.run(fails)
    line, status = explain(raised.value, config)
    assert status == 1
    assert line.startswith("error: RuntimeError: lost http://10.0.0.1/x")
    assert line.endswith("(run with AURA_DEBUG=1 for the traceback)")
    assert "hunter2" not in line and "q" * 30 not in line and "\n" not in line
