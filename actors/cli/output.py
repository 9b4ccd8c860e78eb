"""What the commands print: JSON for scripts (`--json`), rich tables for people.

Off a terminal (a pipe, a file) rich is given a very wide console and no colour, so a
table is never wrapped or decorated with escape codes: what is copied is what was printed.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _box() -> box.Box | None:
    # Off a terminal: no rules at all, columns separated by spaces (cut/awk friendly).
    return box.SIMPLE_HEAD if sys.stdout.isatty() else None


def console() -> Console:
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=100_000, color_system=None, soft_wrap=True)


def cell(value: Any, key: str = "") -> str:
    if key.endswith("_at") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) or "-"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Iterable[str], *,
          title: str | None = None, empty: str = "(none)") -> None:
    """`rows` as a table of `columns` (keys of each row), or `empty` when there are none."""
    out = console()
    columns = list(columns)
    if not rows:
        out.print(empty)
        return
    grid = Table(*columns, box=_box(), title=title, title_justify="left",
                 show_edge=False, pad_edge=False)
    for row in rows:
        grid.add_row(*(Text(cell(row.get(c), c)) for c in columns))  # never read as markup
    _emit(out, grid)


def fields(data: dict[str, Any], *, title: str | None = None) -> None:
    """One record as `field  value` lines."""
    grid = Table("field", "value", box=_box(), title=title, title_justify="left",
                 show_header=False, show_edge=False, pad_edge=False)
    for key, value in data.items():
        grid.add_row(Text(key), Text(cell(value, key)))
    _emit(console(), grid)


def _emit(out: Console, renderable: Table) -> None:
    if sys.stdout.isatty():
        out.print(renderable)
        return
    with out.capture() as captured:  # off a terminal: no padding after the last column
        out.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
