"""Account listings (`AccountBook.listing`): the range of account ids a prefix and a
cursor cover, the same in every backend.

Ids are ordered by code point, which is the byte order of their UTF-8 (SQLite's BINARY
collation, PostgreSQL's "C" collation, Redis's lexicographic ranges and Python's `str`
comparison all agree on it). The ids that start with a prefix are then one contiguous
range, `prefix <= id < prefix_end(prefix)`, which every store reads from its ordered index
of ids: no LIKE (case-insensitive in SQLite, and `%`, `_` and `\\` would need escaping),
no scan. A prefix is matched literally and case-sensitively.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)  # not characters: UTF-8 cannot carry them


def prefix_end(prefix: str) -> str | None:
    """The least string greater than every string starting with `prefix`, or None if no
    string is (an empty prefix, or one of U+10FFFF only): the prefix with its last
    character that can grow, grown by one code point, and what followed it dropped."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < MAX_CODE_POINT:
            following = last + 1
            if following in _SURROGATES:
                following = _SURROGATES.stop
            return "".join(chars) + chr(following)
    return None


@dataclass(frozen=True, slots=True)
class IdRange:
    """The ids a page may hold: from `low` (None: the first; `inclusive` or not) to
    `high` (None: the last; always exclusive)."""

    low: str | None
    inclusive: bool
    high: str | None


def id_range(prefix: str | None, after: str | None) -> IdRange:
    """The ids starting with `prefix` (None or "": all) that come after `after` (None:
    from the first)."""
    prefix = prefix or None
    high = prefix_end(prefix) if prefix is not None else None
    if after is not None and (prefix is None or after >= prefix):
        return IdRange(after, False, high)
    return IdRange(prefix, True, high)


def sql_where(span: IdRange, column: str, mark: str) -> tuple[str, list[str]]:
    """The WHERE clause (" WHERE ...", or "" for every id) that selects `span` on
    `column` (an expression in code point order), with `mark` as the placeholder, and
    its parameters."""
    clauses, params = [], []
    if span.low is not None:
        clauses.append(f"{column} {'>=' if span.inclusive else '>'} {mark}")
        params.append(span.low)
    if span.high is not None:
        clauses.append(f"{column} < {mark}")
        params.append(span.high)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
