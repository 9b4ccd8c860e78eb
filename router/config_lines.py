"""Where things are in `aura-router.toml`: line numbers and did-you-mean for config errors.

`tomllib` gives values, not positions, so `TomlLines` scans the file's text once and
remembers the line of every table header and key, by its path: `("settings", "port")`,
`("providers", 1, "strategy")` (the second `[[providers]]`), `("providers", 0,
"headers", "X-Title")`. The scan knows TOML's lexical rules (comments, the four string
forms, multi-line arrays and inline tables, dotted and quoted keys), so a `name =` in a
comment or inside a string is never taken for a key. It only runs on text `tomllib` has
already accepted; a path it does not know falls back to its nearest known parent.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from typing import Iterable

from router.errors import ConfigError

__all__ = ["Path", "TomlLines", "closest", "unknown_key"]

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class TomlLines:
    """The 1-based line of each table header and key of a TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        self._arrays: dict[Path, int] = {}  # array-of-tables path -> its last index
        self._text = text
        self._i = 0
        self._line = 1
        try:
            self._scan()
        except (IndexError, ValueError):  # not valid TOML: tomllib has said so already
            pass

    def line(self, path: Path) -> int | None:
        """The line of `path`, else of its nearest parent that has one."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None

    # --- the scan ---------------------------------------------------------------------

    def _peek(self, k: int = 0) -> str:
        j = self._i + k
        return self._text[j] if j < len(self._text) else ""

    def _advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self._peek() == "\n":
                self._line += 1
            self._i += 1

    def _skip_blank(self, newlines: bool) -> None:
        while self._i < len(self._text):
            c = self._peek()
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance()
            elif c == "#":
                while self._i < len(self._text) and self._peek() != "\n":
                    self._advance()
            else:
                return

    def _remember(self, path: Path, line: int) -> None:
        self._lines.setdefault(path, line)

    def _scan(self) -> None:
        table: Path = ()
        while True:
            self._skip_blank(newlines=True)
            if self._i >= len(self._text):
                return
            line = self._line
            if self._peek() == "[":
                array = self._peek(1) == "["
                self._advance(2 if array else 1)
                keys = self._key()
                self._advance(2 if array else 1)
                table = self._resolve(keys, array)
                for n in range(1, len(table) + 1):
                    self._remember(table[:n], line)
            else:
                keys = self._key()
                self._skip_blank(newlines=False)
                if self._peek() != "=":
                    raise ValueError("expected '='")
                self._advance()
                for n in range(1, len(keys) + 1):
                    self._remember(table + tuple(keys[:n]), line)
                self._value(table + tuple(keys), line)

    def _resolve(self, keys: list[str], array: bool) -> Path:
        """A header's path, each array of tables on the way at its current element."""
        path: Path = ()
        for n, key in enumerate(keys):
            path += (key,)
            if array and n == len(keys) - 1:
                index = self._arrays.get(path, -1) + 1
                self._arrays[path] = index
                path += (index,)
            elif path in self._arrays:
                path += (self._arrays[path],)
        return path

    def _key(self) -> list[str]:
        """A dotted key: bare or quoted parts separated by dots."""
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            if c in "\"'":
                start = self._i
                self._string()
                parts.append(tomllib.loads("k = " + self._text[start:self._i])["k"])
            else:
                match = _BARE.match(self._text, self._i)
                if not match:
                    raise ValueError("expected a key")
                parts.append(match.group())
                self._advance(match.end() - self._i)
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._advance()

    def _string(self) -> None:
        quote = self._peek()
        if self._text.startswith(quote * 3, self._i):
            self._advance(3)
            while not self._text.startswith(quote * 3, self._i):
                if self._i >= len(self._text):
                    raise ValueError("unterminated string")
                self._advance(2 if quote == '"' and self._peek() == "\\" else 1)
            self._advance(3)
            while self._peek() == quote:  # up to two quotes may end the content
                self._advance()
            return
        self._advance()
        while self._peek() != quote:
            if self._peek() in ("", "\n"):
                raise ValueError("unterminated string")
            self._advance(2 if quote == '"' and self._peek() == "\\" else 1)
        self._advance()

    def _value(self, path: Path, line: int) -> None:
        """Skip one value; an inline table's keys are remembered under `path`."""
        self._skip_blank(newlines=False)
        c = self._peek()
        if c in "\"'":
            self._string()
        elif c == "[":
            self._advance()
            while True:
                self._skip_blank(newlines=True)
                if self._peek() == "]":
                    self._advance()
                    return
                self._value(path, line)
                self._skip_blank(newlines=True)
                if self._peek() == ",":
                    self._advance()
        elif c == "{":
            self._advance()
            while True:
                self._skip_blank(newlines=False)
                if self._peek() == "}":
                    self._advance()
                    return
                key_line = self._line
                keys = self._key()
                self._skip_blank(newlines=False)
                self._advance()  # '='
                for n in range(1, len(keys) + 1):
                    self._remember(path + tuple(keys[:n]), key_line)
                self._value(path + tuple(keys), key_line)
                self._skip_blank(newlines=False)
                if self._peek() == ",":
                    self._advance()
        else:  # a number, boolean or date: up to a separator
            while self._peek() not in ("", "\n", ",", "]", "}", "#"):
                self._advance()


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name `name` was most likely meant to be (case aside), if any."""
    by_lower = {v.lower(): v for v in valid}
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[hits[0]] if hits else None


def unknown_key(where: str, name: str, context: str, valid: Iterable[str], *,
                what: str = "key") -> ConfigError:
    """`file:line: unknown key 'x' in [table]; did you mean 'y'?` (else the valid keys,
    or where they are listed when there are many)."""
    valid = sorted(valid)
    guess = closest(name, valid)
    if guess:
        advice = f"did you mean {guess!r}?"
    elif len(valid) <= 20:
        advice = f"valid {what}s: {', '.join(valid)}"
    else:
        advice = f"the valid {what}s are listed in docs/configuration.md"
    context = f" {context}" if context else ""
    return ConfigError(f"{where}: unknown {what} {name!r}{context}; {advice}")
