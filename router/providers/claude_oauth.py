"""Claude Code's OAuth logins, read from their files: an Anthropic credential pool.

Where: `CLAUDE_CODE_HOME` (default `~/.claude`) and each directory of
`ADDITIONAL_ACCOUNT_DIRS` (comma-separated), one account per directory. In each, the
first of `FILE_NAMES` that holds a token that has not expired (else the first that holds
one at all, shown as expired). A file holds a token

* at its top level, under one of `TOKEN_KEYS` (`accessToken`, `access_token`,
  `oauthToken`, `oauth_token`), with an optional `expiresAt` / `expires_at`; or
* nested the way Claude Code writes `~/.claude/.credentials.json` today:
  `{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt" (ms since the epoch),
  "scopes", "subscriptionType"}}`.

An expiry above 10**11 is read as milliseconds (Claude Code's), below as seconds, or an
ISO-8601 string. The router never refreshes a login: `refreshToken` is not read, and a
refresh would rotate it under the Claude Code that owns it (which refreshes, and
rewrites the file, when it next runs; `actors.services.credential_files` then picks the
new token up).

`scan` reads the files (small, blocking: call it from a thread); everything else is pure.
A file that cannot be read or parsed is skipped with a `problems` line that names the
file and why, never its content.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from router.providers.credentials import OAuthToken

PROVIDER_NAME = "claude-code"
# `.credentials.json` is what Claude Code writes; the others are what other tools and
# older versions leave.
FILE_NAMES = ("credentials.json", ".credentials.json", "auth.json", "oauth.json",
              "config.json")
TOKEN_KEYS = ("accessToken", "access_token", "oauthToken", "oauth_token")
EXPIRY_KEYS = ("expiresAt", "expires_at")
NESTED_KEY = "claudeAiOauth"
# A token this close to its expiry is treated as expired: a call must not outlive it.
EXPIRY_MARGIN_S = 60.0
MAX_FILE_BYTES = 1024 * 1024
MAX_TOKEN_CHARS = 4096
_MS_THRESHOLD = 10**11  # seconds would be the year 5138


class CredentialFileError(ValueError):
    """Why a file holds no usable token (never quoting it)."""


@dataclass(frozen=True)
class Account:
    """One Claude Code login."""

    label: str  # its directory, `~` for the home directory
    path: str  # the file it came from
    token: OAuthToken = field(repr=False)
    expires_at: float | None = None  # unix seconds; None: not said
    subscription: str | None = None  # "pro", "max", ... when the file says
    scopes: tuple[str, ...] = ()

    def expired(self, now: float, margin_s: float = EXPIRY_MARGIN_S) -> bool:
        return self.expires_at is not None and now >= self.expires_at - margin_s


def account_dirs(claude_code_home: str | None, additional: str | None,
                 home: str | None = None) -> list[Path]:
    """The directories to read, first `CLAUDE_CODE_HOME` (or `~/.claude`), without repeats."""
    home = home if home is not None else os.path.expanduser("~")
    named = [claude_code_home or os.path.join(home, ".claude")]
    named += [d.strip() for d in (additional or "").split(",") if d.strip()]
    out: list[Path] = []
    for name in named:
        path = Path(name.replace("~", home, 1) if name.startswith("~") else name)
        if path not in out:
            out.append(path)
    return out


def label_of(directory: Path, home: str | None = None) -> str:
    home = home if home is not None else os.path.expanduser("~")
    text = str(directory)
    if home and home != "/" and (text == home or text.startswith(home.rstrip("/") + "/")):
        return "~" + text[len(home.rstrip("/")):]
    return text


def candidate_files(dirs: list[Path]) -> list[Path]:
    """Every file that may hold a login (whether it exists or not), in reading order."""
    return [d / name for d in dirs for name in FILE_NAMES]


def parse_expiry(value: Any) -> float | None:
    """Unix seconds from `expiresAt`: ms or s since the epoch, or ISO-8601."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise CredentialFileError("its expiry is neither a number nor a date") from None
            if parsed.tzinfo is None:  # no zone given: read as UTC
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    if not isinstance(value, (int, float)) or value != value or value <= 0:
        raise CredentialFileError("its expiry is not a positive number")
    return value / 1000.0 if value > _MS_THRESHOLD else float(value)


def _token_table(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    nested = doc.get(NESTED_KEY)
    if isinstance(nested, dict) and any(k in nested for k in TOKEN_KEYS):
        return nested
    if any(k in doc for k in TOKEN_KEYS):
        return doc
    return None


def parse_credentials(text: str | bytes) -> tuple[OAuthToken, float | None, str | None,
                                                  tuple[str, ...]] | None:
    """(token, expires_at, subscription, scopes) from one file's text; None when the file
    holds no token (a settings file); `CredentialFileError` when it is broken."""
    try:
        doc = json.loads(text.decode("utf-8-sig") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        raise CredentialFileError("it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:  # the message names a position, never content
        raise CredentialFileError(f"it is not JSON (line {exc.lineno} column {exc.colno})"
                                  ) from None
    if not isinstance(doc, dict):
        raise CredentialFileError("it is not a JSON object")
    table = _token_table(doc)
    if table is None:
        return None
    token = next((table[k] for k in TOKEN_KEYS if table.get(k) is not None), None)
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        raise CredentialFileError("its token is not a non-empty string")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable() \
            or any(c.isspace() for c in token):
        raise CredentialFileError("its token is not a header-safe string")
    expires_at = None
    for key in EXPIRY_KEYS:
        if table.get(key) is not None:
            expires_at = parse_expiry(table[key])
            break
    subscription = table.get("subscriptionType")
    scopes = table.get("scopes")
    return (OAuthToken(token), expires_at,
            subscription if isinstance(subscription, str) else None,
            tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else ())


def choose(found: list[Account], now: float) -> Account | None:
    """A directory's account: its first unexpired login, else its first."""
    return next((a for a in found if not a.expired(now)), found[0] if found else None)


def scan(dirs: list[Path], now: float, home: str | None = None
         ) -> tuple[list[Account], list[str]]:
    """The accounts of `dirs` (one per directory, no token twice) and the problems met,
    one line each, naming the file (never its content)."""
    accounts: list[Account] = []
    problems: list[str] = []
    tokens: set[str] = set()
    for directory in dirs:
        label = label_of(directory, home)
        found: list[Account] = []
        for name in FILE_NAMES:
            path = directory / name
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_FILE_BYTES + 1)
            except FileNotFoundError:
                continue
            except (IsADirectoryError, NotADirectoryError):
                continue
            except OSError as exc:
                problems.append(f"{path}: skipped: cannot be read ({exc.strerror or exc})")
                continue
            if len(data) > MAX_FILE_BYTES:
                problems.append(f"{path}: skipped: larger than {MAX_FILE_BYTES} bytes")
                continue
            try:
                parsed = parse_credentials(data)
            except CredentialFileError as exc:
                problems.append(f"{path}: skipped: {exc}")
                continue
            if parsed is not None:
                token, expires_at, subscription, scopes = parsed
                found.append(Account(label, str(path), token, expires_at, subscription, scopes))
        account = choose(found, now)
        if account is None:
            continue
        if account.token in tokens:
            problems.append(f"{account.path}: skipped: the same login as an earlier directory")
            continue
        tokens.add(account.token)
        accounts.append(account)
    return accounts, problems


def file_signature(paths: list[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when any of `paths` is written, replaced, created or removed."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def describe(account: Account, now: float) -> str:
    """One log phrase for an account (never the token)."""
    if account.expires_at is None:
        when = "no expiry given"
    elif account.expired(now):
        when = "expired: skipped until Claude Code refreshes it"
    else:
        left = int(account.expires_at - now)
        when = f"expires in {left // 3600}h{left % 3600 // 60:02d}m"
    return f"{account.label} ({os.path.basename(account.path)}, {when})"
