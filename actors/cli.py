"""The `aura-router` command: serve, keys, credits, providers, usage, doctor
(docs/configuration.md, "Command line").

Commands that change state open the same ledger as the server (`BILLING_BACKEND`, through
`router.ledger.stores`), so they work whether or not it is running.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Awaitable, Callable, TypeVar

import orjson
import trio

from router.config import Config, load_config
from router.errors import BillingUnavailable, ConfigError, LedgerError
from router.ledger.stores import Stores, open_stores
from router.redact import display_url

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aura-router", description=__doc__)
    parser.add_argument("--config", help="aura-router.toml to use (default: ./aura-router.toml)")
    parser.add_argument("--data-dir", dest="data_dir", help="where the ledger lives")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the router (the default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int,
                       help="router processes sharing the port (env WORKERS, default 1)")
    # Set by the supervisor of WORKERS > 1 on the workers it starts (actors.workers): the
    # file descriptor of its status socket.
    serve.add_argument("--worker-fd", dest="worker_fd", type=int, help=argparse.SUPPRESS)

    keys = sub.add_parser("keys", help="issue, list and revoke router API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    issue = keys_sub.add_parser("issue")
    issue.add_argument("account")
    issue.add_argument("--label")
    issue.add_argument("--ttl-hours", type=int)
    issue.add_argument("--models", help="comma-separated model ids this key may use")
    issue.add_argument("--rpm", type=int)
    issue.add_argument("--spend-cap-micros", type=int)
    listing = keys_sub.add_parser("list")
    listing.add_argument("--account")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("key_id")

    credits = sub.add_parser("credits", help="grant credits, read balances and the ledger")
    credits_sub = credits.add_subparsers(dest="action", required=True)
    grant = credits_sub.add_parser("grant")
    grant.add_argument("account")
    grant.add_argument("amount_micros", type=int, help="micro-USD; negative adjusts down")
    grant.add_argument("--reason")
    balance = credits_sub.add_parser("balance")
    balance.add_argument("account")
    ledger = credits_sub.add_parser("ledger")
    ledger.add_argument("account")
    ledger.add_argument("--after", type=int, default=0)
    ledger.add_argument("--limit", type=int, default=100)

    usage = sub.add_parser("usage", help="export recorded usage (JSON or CSV)")
    usage_sub = usage.add_subparsers(dest="action", required=True)
    export = usage_sub.add_parser("export", help="usage rows oldest first, to stdout")
    export.add_argument("--account", help="only this account")
    export.add_argument("--since", help="from this time, inclusive (ISO-8601 or unix seconds)")
    export.add_argument("--until", help="before this time, exclusive (ISO-8601 or unix seconds)")
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("--limit", type=int, default=None, help="at most this many rows "
                        "(default 10000, at most 100000)")

    providers = sub.add_parser("providers", help="the configured providers")
    providers.add_argument("action", choices=["list"], nargs="?", default="list")
    sub.add_parser("doctor", help="resolved settings and reachability; secrets never shown")
    return parser


def _print(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _serve(config: Config, args: argparse.Namespace) -> int:
    """One router process (WORKERS=1), or the supervisor of WORKERS of them, or (with the
    hidden `--worker-fd`) one of those workers, which does not print `listening on`."""
    def listening(binds: list[str]) -> None:
        if "demo" in config.catalog.providers:
            print("no provider key set: serving the built-in 'demo' model", flush=True)
        for bind in binds:  # last: whoever waits for this line has seen the rest
            print(f"listening on {bind}", flush=True)

    worker_fd = getattr(args, "worker_fd", None)
    if worker_fd is not None:
        from actors.workers import run_worker
        return run_worker(config, worker_fd)
    if config.workers > 1:
        from actors.workers import run_supervisor

        def worker_command(port: int, status_fd: int) -> list[str]:
            global_flags = [*(["--config", args.config] if args.config else []),
                            *(["--data-dir", args.data_dir] if args.data_dir else [])]
            return [sys.executable, "-m", "actors.cli", *global_flags, "serve",
                    "--host", config.host, "--port", str(port),
                    "--workers", str(config.workers), "--worker-fd", str(status_fd)]
        return run_supervisor(config, worker_command, listening)

    from actors.root import serve
    try:
        trio.run(lambda: serve(config, on_listening=listening))
    except KeyboardInterrupt:
        pass
    return 0


def _with_stores(config: Config, use: Callable[[Stores], Awaitable[T]]) -> T:
    """Open the configured ledger, run `use` on it, close it."""
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


def _keys(config: Config, args: argparse.Namespace) -> int:
    now = time.time()
    if args.action == "issue":
        key, record = _with_stores(config, lambda s: s.keys.issue(
            args.account, label=args.label,
            models=[m.strip() for m in args.models.split(",")] if args.models else None,
            rpm=args.rpm, spend_cap_micros=args.spend_cap_micros,
            expires_at=now + args.ttl_hours * 3600 if args.ttl_hours else None, at=now))
        _print({**record.public(), "key": key})
        print("store this key now: it is not shown again", file=sys.stderr)
    elif args.action == "list":
        _print([k.public() for k in _with_stores(config, lambda s: s.keys.list(args.account))])
    else:
        record = _with_stores(config, lambda s: s.keys.revoke(args.key_id, now))
        if record is None:
            print(f"no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        _print(record.public())
    return 0


def _credits(config: Config, args: argparse.Namespace) -> int:
    if args.action == "grant":
        try:
            _print(_state_json(_with_stores(config, lambda s: s.accounts.grant(
                args.account, args.amount_micros, args.reason, time.time()))))
        except LedgerError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
    elif args.action == "balance":
        _print(_state_json(_with_stores(config, lambda s: s.accounts.account(args.account))))
    else:
        entries = _with_stores(config, lambda s: s.accounts.entries(args.account, args.after,
                                                                     args.limit))
        _print([{"seq": e.seq, "kind": e.kind, "amount_micros": e.amount,
                 "held_delta_micros": e.held_delta, "request_id": e.request_id,
                 "balance_after_micros": e.balance_after, "reason": e.reason, "at": e.at}
                for e in entries])
    return 0


def _usage_export(config: Config, args: argparse.Namespace) -> int:
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
    rows = _with_stores(config, lambda s: s.reports.usage_rows(args.account, since, until,
                                                                limit + 1))
    if len(rows) > limit:
        rows = rows[:limit]
        print(f"stopped at {limit} rows: narrow --since/--until or raise --limit",
              file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(to_csv(rows))
    else:
        _print(rows)
    return 0


def _providers(config: Config) -> list[dict[str, Any]]:
    return [{"name": p.name, "kind": p.kind,
             "base_url": display_url(p.base_url) if p.base_url else "(built in)",
             "credentials": len(p.api_keys), "strategy": p.strategy,
             "max_concurrent": p.max_concurrent} for p in config.catalog.providers.values()]


async def _check_ledger(stores: Stores) -> str | None:
    """Ping the ledger; a warning about its durability, if it has one to give."""
    async with stores.session():
        await stores.ping()
        durability = stores.details.get("persistence_warning_check")
        return await durability() if durability is not None else None


def _doctor(config: Config) -> int:
    import socket
    from urllib.parse import urlsplit

    report: dict[str, Any] = {"settings": config.describe(), "providers": []}
    report["ledger"] = {"backend": config.billing_backend}
    try:
        stores = open_stores(config)
        try:
            report["ledger"]["where"] = stores.where
            warning = trio.run(_check_ledger, stores)
            if warning:
                report["ledger"]["warning"] = warning
        finally:
            stores.close()
        report["ledger"]["usable"] = True
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure, never stops
        report["ledger"].update(usable=False, error=f"{type(exc).__name__}: {exc}"[:300])
    for provider in _providers(config):
        spec = config.catalog.providers[provider["name"]]
        reachable: bool | str = True
        if spec.base_url:
            parts = urlsplit(spec.base_url)
            try:
                with socket.create_connection(
                        (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                        timeout=3):
                    pass
            except OSError as exc:
                reachable = f"unreachable ({type(exc).__name__})"
        report["providers"].append({**provider, "reachable": reachable})
    report["models"] = sorted(m.id for m in config.catalog.routable())
    _print(report)
    return 0 if report["ledger"]["usable"] else 1


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (they win over env, .env and the file)."""
    return {"config": args.config, "data_dir": args.data_dir,
            "host": getattr(args, "host", None), "port": getattr(args, "port", None),
            "workers": getattr(args, "workers", None)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(_flags(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(config, args)
    except ConfigError as exc:  # e.g. a DATABASE_URL or REDIS_URL that cannot be used
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except BillingUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def _run(config: Config, args: argparse.Namespace) -> int:
    command = args.command or "serve"
    if command == "serve":
        return _serve(config, args)
    if command == "keys":
        return _keys(config, args)
    if command == "credits":
        return _credits(config, args)
    if command == "providers":
        _print(_providers(config))
        return 0
    if command == "usage":
        return _usage_export(config, args)
    return _doctor(config)


if __name__ == "__main__":
    raise SystemExit(main())
