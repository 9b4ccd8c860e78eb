"""The `aura-router` command line: every command, subcommand and option, with its help.

Global flags (`--config`, `--data-dir`, `--create`) are accepted before the command and
after any subcommand (`aura-router credits balance alice --data-dir /srv/aura`): each leaf
parser repeats them with a suppressed default, so a flag given late overrides one given
early and none is lost.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Aura Router: an LLM gateway that bills in micro-USD.

`aura-router serve` runs the router; the other commands work on the same ledger as the
server (running or not) and on the configured providers."""

EPILOG = """\
examples:
  aura-router serve --port 8080            run the router
  aura-router keys issue alice             a new API key for account alice
  aura-router credits grant alice 5000000  grant alice $5 (5,000,000 micro-USD)
  aura-router doctor                       which config file, DATA_DIR and ledger are used

Commands other than `serve` refuse to create a new, empty ledger: run them from the
directory you serve from, pass --data-dir or --config, or --create to start a new one.
AURA_DEBUG=1 prints the traceback of a failure. Docs: docs/configuration.md."""

_FORMATTER = argparse.RawDescriptionHelpFormatter


def _global_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--config", metavar="FILE", **default,
                        help="the config file (else AURA_CONFIG, else ./aura-router.toml)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", **default,
                        help="where the SQLite ledger lives (else DATA_DIR, else ./data)")
    parser.add_argument("--create", action="store_true", **({"default": argparse.SUPPRESS}
                                                            if suppress else {}),
                        help="allow this command to create a new, empty ledger")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print JSON (for scripts) instead of a table")


class _Groups:
    """Adds subcommands that all carry the global flags."""

    def __init__(self, sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
        self.sub = sub

    def add(self, name: str, help: str, *, epilog: str | None = None,  # noqa: A002
            description: str | None = None) -> argparse.ArgumentParser:
        parser = self.sub.add_parser(name, help=help, description=description or help,
                                     epilog=epilog, formatter_class=_FORMATTER)
        _global_flags(parser, suppress=True)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aura-router", description=DESCRIPTION,
                                     epilog=EPILOG, formatter_class=_FORMATTER)
    _global_flags(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     title="commands")
    _serve(commands)
    _keys(commands)
    _credits(commands)
    _usage(commands)
    providers(commands)
    doctor = commands.add_parser(
        "doctor", help="which config file, DATA_DIR and ledger are used; reachability",
        description="Resolved settings (secrets only as set/not set), the config file and "
        "DATA_DIR used, the ledger (path, whether it exists and opens) and whether each "
        "provider's host accepts a connection. Exits 1 when something is broken.",
        epilog="example:\n  aura-router doctor --json | jq .ledger",
        formatter_class=_FORMATTER)
    _global_flags(doctor, suppress=True)
    _json_flag(doctor)
    return parser


def _serve(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    serve = commands.add_parser(
        "serve", help="run the router", formatter_class=_FORMATTER,
        description="Run the router: it prints `listening on URL` once it serves. It creates "
        "the ledger under DATA_DIR if there is none.",
        epilog="examples:\n  aura-router serve\n  aura-router serve --port 8080 --workers 4\n"
        "  PORT=8080 aura-router serve")
    _global_flags(serve, suppress=True)
    serve.add_argument("--host", help="address to listen on (else HOST, else 0.0.0.0)")
    serve.add_argument("--port", type=int,
                       help="port to listen on, 0 for any free one (else PORT, else 3000)")
    serve.add_argument("--workers", type=int,
                       help="router processes sharing the port (else WORKERS, else 1)")
    # Set by the supervisor of WORKERS > 1 on the workers it starts (actors.workers): the
    # file descriptor of its status socket.
    serve.add_argument("--worker-fd", dest="worker_fd", type=int, help=argparse.SUPPRESS)


def _keys(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    keys = commands.add_parser(
        "keys", help="issue, list and revoke router API keys", formatter_class=_FORMATTER,
        description="Issue, list and revoke the router's API keys (ar_sk_...).",
        epilog="examples:\n  aura-router keys issue alice --label laptop --rpm 60\n"
        "  aura-router keys list --account alice\n  aura-router keys revoke key_0123")
    actions = _Groups(keys.add_subparsers(dest="action", required=True, metavar="ACTION",
                                          title="actions"))
    issue = actions.add("issue", "issue a new key (shown once)")
    issue.add_argument("account", help="the account the key bills")
    issue.add_argument("--label", help="a name to recognise the key by")
    issue.add_argument("--ttl-hours", type=int, help="the key expires after this many hours")
    issue.add_argument("--models", help="comma-separated model ids this key may use")
    issue.add_argument("--rpm", type=int, help="requests per minute for this key")
    issue.add_argument("--spend-cap-micros", type=int,
                       help="most this key may spend in total, micro-USD")
    _json_flag(issue)
    listing = actions.add("list", "list keys (never the secret)")
    listing.add_argument("--account", help="only this account's keys")
    _json_flag(listing)
    revoke = actions.add("revoke", "revoke a key at once")
    revoke.add_argument("key_id", help="the key's id (from `keys list`)")
    _json_flag(revoke)


def _credits(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    credits = commands.add_parser(
        "credits", help="grant credits, read balances and the ledger",
        formatter_class=_FORMATTER,
        description="Grant credits and read balances and ledger entries (micro-USD: "
        "1,000,000 = $1).",
        epilog="examples:\n  aura-router credits grant alice 5000000 --reason top-up\n"
        "  aura-router credits balance alice --json\n  aura-router credits ledger alice")
    actions = _Groups(credits.add_subparsers(dest="action", required=True, metavar="ACTION",
                                             title="actions"))
    grant = actions.add("grant", "add (or, negative, remove) credits")
    grant.add_argument("account", help="the account to credit")
    grant.add_argument("amount_micros", type=int, help="micro-USD; negative adjusts down")
    grant.add_argument("--reason", help="kept with the ledger entry")
    _json_flag(grant)
    balance = actions.add("balance", "an account's balance, held and available amounts")
    balance.add_argument("account", help="the account to read")
    _json_flag(balance)
    ledger = actions.add("ledger", "an account's ledger entries, oldest first")
    ledger.add_argument("account", help="the account to read")
    ledger.add_argument("--after", type=int, default=0,
                        help="only entries after this sequence number (paging)")
    ledger.add_argument("--limit", type=int, default=100, help="at most this many entries")
    _json_flag(ledger)


def _usage(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    usage = commands.add_parser(
        "usage", help="export recorded usage (JSON or CSV)", formatter_class=_FORMATTER,
        description="Export the recorded usage: one row per request, with tokens and cost.",
        epilog="example:\n  aura-router usage export --account alice --since 2026-12-01 "
        "--format csv > alice.csv")
    actions = _Groups(usage.add_subparsers(dest="action", required=True, metavar="ACTION",
                                           title="actions"))
    export = actions.add("export", "usage rows oldest first, to stdout")
    export.add_argument("--account", help="only this account")
    export.add_argument("--since", help="from this time, inclusive (ISO-8601 or unix seconds)")
    export.add_argument("--until", help="before this time, exclusive (ISO-8601 or unix seconds)")
    export.add_argument("--format", choices=["json", "csv"], default="json",
                        help="output format (default json)")
    export.add_argument("--limit", type=int, default=None, help="at most this many rows "
                        "(default 10000, at most 100000)")


def providers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]"
              ) -> "argparse._SubParsersAction[argparse.ArgumentParser]":
    """The `providers` group. Its actions are a subparser set of their own, returned so
    that more (the provider store's `add|show|remove|import`) are added beside these."""
    group = commands.add_parser(
        "providers", help="the providers: list, check, and manage the stored ones",
        formatter_class=_FORMATTER,
        description="The providers the router would use, from the config file, the "
        "environment, the shipped catalog and the provider store (managed here and at "
        "/admin/providers/{name}). Keys are never shown, only their count.",
        epilog="examples:\n  aura-router providers list\n  aura-router providers check --json"
        "\n  aura-router providers import providers.toml")
    actions = _Groups(group.add_subparsers(dest="action", metavar="ACTION", title="actions"))
    group.set_defaults(action="list")
    listing = actions.add("list", "name, kind, URL (without credentials) and key count "
                          "(the default)")
    _json_flag(listing)
    check = actions.add("check", "connect to each provider's upstream (3 s timeout); "
                        "exits 1 if one cannot be reached")
    _json_flag(check)
    _provider_store_actions(actions)
    return actions.sub


def _provider_store_actions(actions: _Groups) -> None:
    """`providers add|show|remove|import`: the provider store, in the ledger, its keys
    sealed under ROUTER_SECRET_KEY (docs/configuration.md, "Provider store"). A running
    router picks a change up within seconds, without a restart."""
    add = actions.add(
        "add", "store a provider (or replace the stored one of that name)",
        epilog="examples:\n"
        "  OPENAI_KEYS=sk-a,sk-b aura-router providers add primary --kind openai \\\n"
        "      --base-url https://api.openai.com/v1 --api-key-env OPENAI_KEYS\n"
        "  aura-router providers add local --kind ollama --base-url http://127.0.0.1:11434/v1\n"
        "Keys need ROUTER_SECRET_KEY (they are stored encrypted under it).")
    add.add_argument("name", help="the provider's name: what routes and `name/model` call it")
    add.add_argument("--kind", required=True,
                     help="openai, anthropic, gemini, azure, openrouter, ollama, "
                     "openai_compatible, bedrock_gateway, ...")
    add.add_argument("--base-url", dest="base_url", required=True,
                     help="the upstream's base URL")
    add.add_argument("--api-key-env", dest="api_key_env", metavar="VAR",
                     help="read the key pool from this environment variable "
                     "(comma-separated); keeps keys out of your shell history")
    add.add_argument("--api-key", dest="api_key", action="append", metavar="KEY",
                     help="a key (repeat for a pool); prefer --api-key-env: a key on the "
                     "command line stays in the shell's history")
    add.add_argument("--strategy", choices=["round_robin", "priority", "least_used"],
                     help="how the key pool is used (default round_robin)")
    add.add_argument("--max-concurrent", dest="max_concurrent", type=int, metavar="N",
                     help="concurrent upstream calls (default 256)")
    add.add_argument("--timeout-connect-s", dest="timeout_connect_s", type=float,
                     metavar="S", help="connect timeout in seconds (default 10)")
    add.add_argument("--timeout-idle-s", dest="timeout_idle_s", type=float, metavar="S",
                     help="longest silence between two chunks (default 300)")
    _json_flag(add)
    show = actions.add("show", "one provider, stored or configured: settings and whether "
                       "it has keys (never a key)")
    show.add_argument("name", help="the provider's name")
    _json_flag(show)
    remove = actions.add("remove", "delete a stored provider (a configured one of the same "
                         "name, if any, serves again)")
    remove.add_argument("name", help="the stored provider's name")
    _json_flag(remove)
    imported = actions.add(
        "import", "store every provider of a TOML ([[providers]] tables) or JSON (a list, "
        "or {\"providers\": [...]}) file",
        epilog="example:\n  aura-router providers import providers.toml")
    imported.add_argument("file", help="the file to import, or - for standard input")
    imported.add_argument("--format", choices=["toml", "json"],
                          help="the file's format (default: from its name or content)")
    _json_flag(imported)
