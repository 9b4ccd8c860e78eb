"""A failure as one line for the operator: the root cause out of trio's ExceptionGroups,
mapped to what to do about it.

The server runs in nurseries, so a failure at start-up arrives wrapped in one
ExceptionGroup per nursery it crossed (three deep for a busy port). `root_cause` finds
the leaf that matters; `explain` turns it into `(line, exit status)`. A cause this module
does not know is still one line, its type and message (redacted), plus how to get the
traceback: `AURA_DEBUG=1`.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sqlite3
import sys
import traceback
from pathlib import Path

import trio

from actors.cli.paths import data_dir_problem, ledger_file, ledger_problem
from actors.supervisor import RestartBudgetExceeded
from router.config import Config
from router.errors import BillingUnavailable, ConfigError, RouterError
from router.redact import Redactor

DEBUG_HINT = "run with AURA_DEBUG=1 for the traceback"
_LISTEN_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def debugging() -> bool:
    return os.environ.get("AURA_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def root_cause(exc: BaseException) -> BaseException:
    """The first leaf that is not a cancellation (the others were cancelled because of
    it); through a supervisor that gave up, the crash that made it give up."""
    found = leaves(exc)
    meaningful = [e for e in found if not isinstance(e, (trio.Cancelled, KeyboardInterrupt))]
    cause = (meaningful or found)[0]
    if isinstance(cause, RestartBudgetExceeded) and cause.__cause__ is not None:
        return root_cause(cause.__cause__)
    return cause


def explain(exc: BaseException, config: Config | None) -> tuple[str, int]:
    cause = root_cause(exc)
    if isinstance(cause, ConfigError):
        return f"config error: {cause}", 2
    if isinstance(cause, (BillingUnavailable, RouterError)):
        # A refusal: its message is written to be shown (a bad field, a missing key).
        return f"error: {cause.message}", 1
    if isinstance(cause, socket.gaierror) and config is not None:
        return f"cannot listen on {config.host}:{config.port}: unknown host " \
               f"({cause.strerror}); set HOST or --host", 1
    if isinstance(cause, OSError) and cause.filename is None and config is not None \
            and cause.errno in _LISTEN_ERRNOS:
        return listen_failure(config.host, config.port, cause), 1
    data_dir = Path(config.data_dir) if config is not None else None
    if isinstance(cause, OSError) and cause.filename is not None:
        if data_dir is not None and _under(Path(str(cause.filename)), data_dir):
            return (data_dir_problem(data_dir) or
                    f"DATA_DIR {data_dir} is unusable: {cause.filename}: "
                    f"{(cause.strerror or str(cause)).lower()}"), 1
        return f"cannot use {cause.filename}: {(cause.strerror or str(cause)).lower()}", 1
    if isinstance(cause, sqlite3.Error) and config is not None and data_dir is not None:
        ledger = ledger_file(config)
        return (data_dir_problem(data_dir) or
                (ledger_problem(ledger) if ledger is not None and ledger.exists() else None)
                or f"ledger under DATA_DIR {data_dir}: {redact(str(cause), config)}"), 1
    text = redact(str(cause), config)
    return f"error: {type(cause).__name__}: {text} ({DEBUG_HINT})" if text else \
        f"error: {type(cause).__name__} ({DEBUG_HINT})", 1


def listen_failure(host: str, port: int, cause: OSError) -> str:
    if cause.errno == errno.EADDRINUSE:
        suggestion = port + 1 if port else 3001
        return (f"cannot listen on {host}:{port}: the port is in use; stop what holds it or "
                f"choose another port (PORT={suggestion} or --port {suggestion})")
    return f"cannot listen on {host}:{port}: {(cause.strerror or str(cause)).lower()}"


def report(exc: BaseException, config: Config | None) -> int:
    """Print the one line (and, with AURA_DEBUG=1, the traceback first); the exit status."""
    line, status = explain(exc, config)
    if debugging():
        traceback.print_exception(exc, file=sys.stderr)
    print(" ".join(line.split()), file=sys.stderr)  # one line, whatever the cause said
    return status


_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)[^/@\s]*@", re.IGNORECASE)


def redact(text: str, config: Config | None) -> str:
    """No secret setting or provider key, and no URL's userinfo, in a foreign message."""
    secrets: list[str] = []
    if config is not None:
        secrets = config.secrets() + [key for spec in config.catalog.providers.values()
                                      for key in spec.api_keys]
    text = _USERINFO.sub(r"\1", text)
    return Redactor(secrets, []).redact(text)


def _under(path: Path, directory: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(directory)
    except ValueError:
        return path == directory
    return True
