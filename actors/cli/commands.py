"""The commands that read or change the ledger (`keys`, `credits`, `usage export`) and
`providers check` (`providers list|add|show|remove|import`: actors/cli/stored_providers.py).

A ledger command opens the same ledger as the server (`router.ledger.stores`), and with
the SQLite backend refuses to create one that does not exist (`NoLedger`) unless given
`--create`: a command run from the wrong directory must not answer from a new, empty
ledger.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Awaitable, Callable, TypeVar

import trio

from actors.cli import output
from actors.cli.paths import ledger_file, no_ledger_message
from actors.cli.probe import describe, reachability
from router.config import Config
from router.errors import LedgerError
from router.ledger.stores import Stores, open_stores

T = TypeVar("T")


class NoLedger(Exception):
    """The SQLite ledger file does not exist and `--create` was not given."""


def with_stores(config: Config, args: argparse.Namespace,
                use: Callable[[Stores], Awaitable[T]]) -> T:
    """Open the configured ledger, run `use` on it, close it."""
    path = ledger_file(config)
    if path is not None and not path.exists() and not getattr(args, "create", False):
        raise NoLedger(no_ledger_message(path))
    stores = open_stores(config)

    async def in_session() -> T:
        async with stores.session():
            return await use(stores)
    try:
        return trio.run(in_session)
    finally:
        stores.close()


def _state_json(state: Any) -> dict[str, Any]:
    return {"account": state.account, "balance_micros": state.balance,
            "held_micros": state.held, "available_micros": state.available}


def _show(data: Any, args: argparse.Namespace, *, columns: list[str] | None = None,
          title: str | None = None) -> None:
    if getattr(args, "json", False):
        output.print_json(data)
    elif isinstance(data, list):
        output.table(data, columns or (list(data[0]) if data else []), title=title)
    else:
        output.fields(data, title=title)


def keys(config: Config, args: argparse.Namespace) -> int:
    now = time.time()
    if args.action == "issue":
        key, record = with_stores(config, args, lambda s: s.keys.issue(
            args.account, label=args.label,
            models=[m.strip() for m in args.models.split(",")] if args.models else None,
            rpm=args.rpm, spend_cap_micros=args.spend_cap_micros,
            expires_at=now + args.ttl_hours * 3600 if args.ttl_hours else None, at=now))
        _show({**record.public(), "key": key}, args, title="new key")
        print("store this key now: it is not shown again", file=sys.stderr)
    elif args.action == "list":
        listed = [k.public() for k in with_stores(config, args,
                                                  lambda s: s.keys.list(args.account))]
        _show(listed, args, columns=["id", "account", "prefix", "label", "models", "rpm",
                                     "spend_cap_micros", "expires_at", "revoked_at"])
    else:
        record = with_stores(config, args, lambda s: s.keys.revoke(args.key_id, now))
        if record is None:
            print(f"no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        _show(record.public(), args, title="revoked")
    return 0


def credits(config: Config, args: argparse.Namespace) -> int:
    if args.action == "grant":
        try:
            state = with_stores(config, args, lambda s: s.accounts.grant(
                args.account, args.amount_micros, args.reason, time.time()))
        except LedgerError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        _show(_state_json(state), args)
    elif args.action == "balance":
        _show(_state_json(with_stores(config, args,
                                      lambda s: s.accounts.account(args.account))), args)
    else:
        entries = with_stores(config, args, lambda s: s.accounts.entries(
            args.account, args.after, args.limit))
        _show([{"seq": e.seq, "kind": e.kind, "amount_micros": e.amount,
                "held_delta_micros": e.held_delta, "request_id": e.request_id,
                "balance_after_micros": e.balance_after, "reason": e.reason, "at": e.at}
               for e in entries], args,
              columns=["seq", "kind", "amount_micros", "held_delta_micros",
                       "balance_after_micros", "request_id", "reason", "at"])
    return 0


def usage_export(config: Config, args: argparse.Namespace) -> int:
    from router.ledger.export import DEFAULT_LIMIT, MAX_LIMIT, parse_time, to_csv

    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if not 1 <= limit <= MAX_LIMIT:
        print(f"--limit must be from 1 to {MAX_LIMIT}", file=sys.stderr)
        return 2
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        print(f"bad time: {exc}", file=sys.stderr)
        return 2
    rows = with_stores(config, args, lambda s: s.reports.usage_rows(args.account, since,
                                                                    until, limit + 1))
    if len(rows) > limit:
        rows = rows[:limit]
        print(f"stopped at {limit} rows: narrow --since/--until or raise --limit",
              file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(to_csv(rows))
    else:
        output.print_json(rows)
    return 0


PROVIDER_COLUMNS = ["name", "kind", "base_url", "credentials", "strategy", "max_concurrent"]


def providers_check(config: Config, args: argparse.Namespace) -> int:
    specs = list(config.catalog.providers.values())
    found = trio.run(reachability, specs)
    rows = [{**describe(s), "reachable": found[s.name] is None, "error": found[s.name]}
            for s in specs]
    _show(rows, args, columns=["name", "kind", "base_url", "reachable", "error"])
    return 1 if any(row["error"] for row in rows) else 0


# `providers ACTION` -> its handler. An action added to the parser's providers group
# (actors/cli/parser.py `providers`) is added here too.
PROVIDER_ACTIONS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "check": providers_check}


def providers(config: Config, args: argparse.Namespace) -> int:
    # The store's actions (list included: it shows stored providers too) build on this
    # module's helpers, hence the late import.
    from actors.cli.stored_providers import ACTIONS
    return {**PROVIDER_ACTIONS, **ACTIONS}[args.action](config, args)
