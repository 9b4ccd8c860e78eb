"""`aura-router providers list|add|show|remove|import`: the provider store from the command
line (router/provider_store.py; docs/configuration.md, "Provider store").

The store lives in the ledger backend, so these commands open the same ledger as the
server (and refuse to invent an empty one, `commands.with_stores`); a running router
picks a change up within seconds through its watcher. Output shows whether a provider
has keys and how many, never a key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from actors.cli.commands import NoLedger, _show, with_stores
from actors.cli.paths import ledger_file
from router.config import Config
from router.errors import BadRequest, ConfigError
from router.ledger.stores import Stores
from router.provider_store import (ProviderStore, StoredProvider, import_providers,
                                   provider_listing, spec_view)
from router.redact import display_url

COLUMNS = ["name", "kind", "base_url", "key_count", "strategy", "max_concurrent", "source"]


def _store(stores: Stores) -> ProviderStore:
    if stores.provider_store is None:
        raise ConfigError(f"the {stores.backend} backend keeps no provider store")
    return stores.provider_store


def _shown(view: dict[str, Any]) -> dict[str, Any]:
    base_url = view.get("base_url")
    return {**view, "base_url": display_url(base_url) if base_url else "(built in)"}


def providers_list(config: Config, args: argparse.Namespace) -> int:
    """Every provider the router would run: configured ones, and the stored ones when
    there is a ledger to read them from (a stored one hides a configured one)."""
    path = ledger_file(config)
    if path is not None and not path.exists():
        views = [_shown(spec_view(spec, "config"))
                 for _, spec in sorted(config.catalog.providers.items())]
    else:
        views = [_shown(v) for v in with_stores(config, args, lambda s: provider_listing(
            s.provider_store, config.catalog.providers))]
    _show(views, args, columns=COLUMNS)
    return 0


def _keys_from(args: argparse.Namespace) -> list[str]:
    keys = list(args.api_key or [])
    if args.api_key_env:
        value = os.environ.get(args.api_key_env, "")
        if not value.strip():
            raise BadRequest(f"--api-key-env {args.api_key_env}: that variable is not set")
        keys += [k.strip() for k in value.split(",") if k.strip()]
    return keys


def add(config: Config, args: argparse.Namespace) -> int:
    entry: dict[str, Any] = {"name": args.name, "kind": args.kind, "base_url": args.base_url}
    if keys := _keys_from(args):
        entry["api_keys"] = keys
    for name in ("strategy", "max_concurrent", "timeout_connect_s", "timeout_idle_s"):
        if (value := getattr(args, name)) is not None:
            entry[name] = value
    provider = StoredProvider.from_entry(entry)
    created = with_stores(config, args, lambda s: _store(s).put(provider))
    view = next(v for v in with_stores(config, args, lambda s: _store(s).public(args.name)))
    _show(_shown(view), args, title="stored" if created else "replaced")
    return 0


def show(config: Config, args: argparse.Namespace) -> int:
    path = ledger_file(config)
    stored: list[dict[str, Any]] = []
    if path is None or path.exists():
        stored = with_stores(config, args, lambda s: _store(s).public(args.name))
    if stored:
        view = stored[0]
    elif args.name in config.catalog.providers:
        view = spec_view(config.catalog.providers[args.name], "config")
    else:
        print(f"no provider named {args.name!r}", file=sys.stderr)
        return 1
    _show(_shown(view), args)
    return 0


def remove(config: Config, args: argparse.Namespace) -> int:
    removed = with_stores(config, args, lambda s: _store(s).remove(args.name))
    if not removed:
        where = ("it comes from the config file or the environment, not the store"
                 if args.name in config.catalog.providers else "no such provider")
        print(f"no stored provider named {args.name!r}: {where}", file=sys.stderr)
        return 1
    configured = args.name in config.catalog.providers
    _show({"name": args.name, "deleted": True,
           "now_serving": "the configured provider" if configured else "nothing"}, args)
    return 0


def import_file(config: Config, args: argparse.Namespace) -> int:
    if args.file == "-":
        text, fmt = sys.stdin.read(), args.format
    else:
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"cannot read {path.resolve()}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        fmt = args.format or {".toml": "toml", ".json": "json"}.get(path.suffix.lower())
    result = with_stores(config, args, lambda s: import_providers(_store(s), text, fmt))
    _show({"created": list(result.created), "replaced": list(result.replaced),
           "errors": list(result.errors)}, args, title="import")
    for error in result.errors:
        print(f"not imported: {error}", file=sys.stderr)
    return 1 if result.errors else 0


ACTIONS = {"list": providers_list, "add": add, "show": show, "remove": remove,
           "import": import_file}
__all__ = ["ACTIONS", "NoLedger"]
