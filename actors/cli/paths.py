"""Which DATA_DIR and ledger file a command uses, and what is wrong with them.

A relative DATA_DIR is resolved once, here, to an absolute path: against the config
file's directory when the value came from that file's `[settings]` (the file and its data
travel together, whichever directory the command is run from), else against the working
directory (a flag or a variable is typed, or exported, where it is meant).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

from router.config import Config
from router.ledger.stores import ledger_file

__all__ = ["Resolved", "data_dir_problem", "ledger_file", "ledger_problem",
           "no_ledger_message", "resolve"]


@dataclass(frozen=True)
class Resolved:
    config: Config  # with `data_dir` absolute
    config_source: str | None  # "--config", "AURA_CONFIG", "./aura-router.toml"
    data_dir_source: str  # "--data-dir", "DATA_DIR", "<file> [settings]", "default"


def resolve(config: Config, flags: Mapping[str, object], env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> Resolved:
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    dotenv_path = cwd / ".env"
    dotenv = ({k: v for k, v in dotenv_values(dotenv_path).items() if v}
              if dotenv_path.is_file() else {})

    def named(name: str) -> bool:
        return bool(env.get(name) or dotenv.get(name))

    config_source = None
    if config.config_path:
        config_source = ("--config" if flags.get("config") else
                         "AURA_CONFIG" if named("AURA_CONFIG") else "./aura-router.toml")
    base = cwd
    if flags.get("data_dir"):
        source = "--data-dir"
    elif named("DATA_DIR"):
        source = "DATA_DIR"
    elif config.config_path and _file_sets_data_dir(Path(config.config_path)):
        source = f"{config.config_path} [settings]"
        base = Path(config.config_path).parent
    else:
        source = "default"
    data_dir = Path(config.data_dir).expanduser()
    data_dir = Path(os.path.abspath(base / data_dir))
    return Resolved(dataclasses.replace(config, data_dir=str(data_dir)), config_source, source)


def _file_sets_data_dir(path: Path) -> bool:
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8")).get("settings", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False  # load_config has read it already: this does not happen
    return isinstance(settings, dict) and "data_dir" in settings


def no_ledger_message(path: Path) -> str:
    return (f"no ledger at {path} — run from the directory you serve from, pass --data-dir, "
            "or --create to start a new one")


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the router could not keep its ledger in `data_dir`, or None. (As root every
    directory is writable: only what is not a directory is found then.)"""
    if data_dir.exists():
        if not data_dir.is_dir():
            return f"DATA_DIR {data_dir} is a file, not a directory"
        if not os.access(data_dir, os.W_OK | os.X_OK):
            return f"DATA_DIR {data_dir} is not writable: permission denied"
        return None
    parent = data_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"DATA_DIR {data_dir} cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"DATA_DIR {data_dir} cannot be created: {parent} is not writable: " \
               "permission denied"
    return None


def ledger_problem(path: Path) -> str | None:
    """Why the existing ledger file at `path` cannot be opened, or None. Opens it read-only:
    nothing is created or migrated."""
    if path.is_dir():
        return f"ledger: cannot open {path}: it is a directory"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"ledger: cannot open {path}: permission denied"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"ledger: cannot open {path}: {exc}"
    return None
