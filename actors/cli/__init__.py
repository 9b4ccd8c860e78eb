"""The `aura-router` command: serve, keys, credits, providers, usage, doctor
(docs/configuration.md, "Command line").

`main` parses the command line, loads the one `Config` (with DATA_DIR made absolute,
`actors.cli.paths`) and runs the command. Whatever fails, the operator gets one line on
stderr and a non-zero exit, never a traceback (`actors.cli.failures`; `AURA_DEBUG=1`
shows it). Bare `aura-router` prints the help and exits 2, like any other usage error:
a container or unit that lost its `serve` argument fails loudly instead of "completing".

Modules: `parser` (every command and its help), `paths` (DATA_DIR and the ledger file),
`commands` (keys, credits, usage, providers), `doctor`, `probe` (provider reachability),
`output` (tables and `--json`), `failures` (one line per failure).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import trio

from actors.cli.failures import leaves, report
from actors.cli.parser import build_parser
from actors.cli.paths import Resolved, data_dir_problem, ledger_file, resolve
from router.config import Config, load_config

# Kept under the names the tests and the worker supervisor import.
_parser = build_parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (they win over env, .env and the file)."""
    return {"config": getattr(args, "config", None), "data_dir": getattr(args, "data_dir", None),
            "host": getattr(args, "host", None), "port": getattr(args, "port", None),
            "workers": getattr(args, "workers", None)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    config: Config | None = None
    try:
        flags = _flags(args)
        resolved = resolve(load_config(flags), flags)
        config = resolved.config
        return _run(resolved, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aura-router ... | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        return report(exc, config)
    except BaseExceptionGroup as group:  # a KeyboardInterrupt, perhaps beside an error
        if all(isinstance(leaf, (KeyboardInterrupt, trio.Cancelled)) for leaf in leaves(group)):
            return 130
        return report(group, config)


def _run(resolved: Resolved, args: argparse.Namespace) -> int:
    from actors.cli import commands
    from actors.cli.doctor import doctor

    config = resolved.config
    try:
        if args.command == "serve":
            return _serve(config, args)
        if args.command == "keys":
            return commands.keys(config, args)
        if args.command == "credits":
            return commands.credits(config, args)
        if args.command == "usage":
            return commands.usage_export(config, args)
        if args.command == "providers":
            return commands.providers(config, args)
        return doctor(resolved, args)
    except commands.NoLedger as exc:
        print(exc, file=sys.stderr)
        return 1


def _serve(config: Config, args: argparse.Namespace) -> int:
    """One router process (WORKERS=1), or the supervisor of WORKERS of them, or (with the
    hidden `--worker-fd`) one of those workers, which does not print `listening on`."""
    def listening(binds: list[str]) -> None:
        if "demo" in config.catalog.providers:
            print("no provider key set: serving the built-in 'demo' model", flush=True)
        for bind in binds:  # last: whoever waits for this line has seen the rest
            print(f"listening on {bind}", flush=True)

    # Checked before anything starts: one clear line, once (not once per worker).
    ledger = ledger_file(config)
    if ledger is not None and (problem := data_dir_problem(ledger.parent)):
        print(problem, file=sys.stderr)
        return 1
    worker_fd = getattr(args, "worker_fd", None)
    if worker_fd is not None:
        from actors.workers import run_worker
        return run_worker(config, worker_fd)
    if config.workers > 1:
        from actors.workers import run_supervisor

        _preflight(config)  # a ledger that cannot be opened: one line, not one per worker

        def worker_command(port: int, status_fd: int) -> list[str]:
            config_flag = ["--config", config.config_path] if config.config_path else []
            return [sys.executable, "-m", "actors.cli", *config_flag,
                    "--data-dir", config.data_dir, "serve", "--host", config.host,
                    "--port", str(port), "--workers", str(config.workers),
                    "--worker-fd", str(status_fd)]
        return run_supervisor(config, worker_command, listening)

    from actors.root import serve
    try:
        trio.run(lambda: serve(config, on_listening=listening))
    except KeyboardInterrupt:
        pass
    return 0


def _preflight(config: Config) -> None:
    """Open the ledger (and its session: REDIS_URL, DATABASE_URL), ping it, close it;
    raises what a worker would."""
    from router.ledger.stores import open_stores

    stores = open_stores(config)

    async def ping() -> None:
        async with stores.session():
            await stores.ping()
    try:
        trio.run(ping)
    finally:
        stores.close()
