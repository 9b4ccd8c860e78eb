"""`aura-router doctor`: what the router would use and whether it works.

It names the config file and where it came from, DATA_DIR as an absolute path and where
it came from, the ledger (its file and whether it exists and opens, or the service it is
on), each provider's reachability and the routable models; every problem as one line
naming the path or service and the cause. Secrets appear only as set / not set. It never
creates a ledger; it exits 1 when anything is broken.
"""

from __future__ import annotations

import argparse
from typing import Any

import trio

from actors.cli import output
from actors.cli.failures import explain
from actors.cli.paths import (Resolved, data_dir_problem, ledger_file, ledger_problem,
                              no_ledger_message)
from actors.cli.probe import describe, reachability
from router.ledger.stores import Stores, open_stores


async def _check_ledger(stores: Stores) -> str | None:
    """Ping the ledger; a warning about its durability, if it has one to give."""
    async with stores.session():
        await stores.ping()
        durability = stores.details.get("persistence_warning_check")
        return await durability() if durability is not None else None


def _ledger(resolved: Resolved) -> tuple[dict[str, Any], list[str]]:
    config = resolved.config
    ledger: dict[str, Any] = {"backend": config.billing_backend}
    problems: list[str] = []
    path = ledger_file(config)
    if path is not None:
        ledger.update(file=str(path), exists=path.exists())
        problem = (ledger_problem(path) if path.exists() else
                   data_dir_problem(path.parent) or no_ledger_message(path))
        if problem:
            ledger.update(usable=False, error=problem)
            return ledger, [problem]
    try:
        stores = open_stores(config)
        try:
            ledger["where"] = stores.where
            warning = trio.run(_check_ledger, stores)
            if warning:
                ledger["warning"] = warning
        finally:
            stores.close()
        ledger["usable"] = True
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure, never stops
        line = explain(exc, config)[0]
        problem = line if line.startswith("ledger") else f"ledger: {line}"
        ledger.update(usable=False, error=problem)
        problems.append(problem)
    return ledger, problems


def doctor(resolved: Resolved, args: argparse.Namespace) -> int:
    config = resolved.config
    ledger, problems = _ledger(resolved)
    specs = list(config.catalog.providers.values())
    found = trio.run(reachability, specs)
    providers = [{**describe(s), "reachable": found[s.name] is None, "error": found[s.name]}
                 for s in specs]
    problems += [f"provider {p['name']}: {p['error']}" for p in providers if p["error"]]
    report: dict[str, Any] = {
        "config_file": config.config_path, "config_file_from": resolved.config_source,
        "data_dir": config.data_dir, "data_dir_from": resolved.data_dir_source,
        "ledger": ledger, "providers": providers,
        "models": sorted(m.id for m in config.catalog.routable()),
        "settings": config.describe(), "problems": problems}
    if getattr(args, "json", False):
        output.print_json(report)
    else:
        _print_human(report)
    return 1 if problems else 0


def _print_human(report: dict[str, Any]) -> None:
    output.fields({
        "config file": report["config_file"] or "(none)",
        "config file from": report["config_file_from"] or "-",
        "DATA_DIR": report["data_dir"], "DATA_DIR from": report["data_dir_from"],
        **{f"ledger {k}": v for k, v in report["ledger"].items()},
        "models": report["models"]}, title="where")
    output.table(report["providers"], ["name", "kind", "base_url", "credentials",
                                       "reachable", "error"], title="providers")
    output.fields(report["settings"], title="settings (secrets: set / not set)")
    console = output.console()
    if report["problems"]:
        console.print("problems:")
        for problem in report["problems"]:
            console.print(f"  {problem}", markup=False)
    else:
        console.print("no problems found")
