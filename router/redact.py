"""What of a provider's or client's text may be shown.

Three pure helpers, no I/O:

* `Redactor` is built once from the platform's secrets (provider keys, signing keys) and
  the providers' base URLs. `Redactor.redact` makes an upstream error message (or any
  other foreign text) safe to show a client or write to a log: every platform credential
  and any 6+ character prefix of one, the upstream URLs and hosts, bearer tokens, common
  API-key shapes and `key=`/`token=`-style parameter values become ``[redacted]``; then
  the result is bounded. Redaction happens before the bound, and the bound itself never
  leaves a 6+ character prefix of a secret at the cut.
* `display_url` shows a URL without its userinfo, query and fragment.
* `quote_input` quotes client input in an error message, bounded whatever its size.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import urlsplit

__all__ = ["MARKER", "ELLIPSIS", "Redactor", "display_url", "quote_input"]

MARKER = "[redacted]"
ELLIPSIS = "\u2026"

# A secret is matched whole when shorter than this; longer, any prefix this long or longer.
MIN_PREFIX = 6
# Text beyond this many characters is dropped before scanning (unless `limit` needs more).
SCAN_CAP = 64 * 1024
# When the scan cap cuts a token (a run of non-space), the token is dropped if at most this long.
_CUT_TOKEN_MAX = 1024

_URL_SAFE = "A-Za-z0-9_\\-"

# Credential shapes that need no configuration. Each match becomes MARKER in full.
_KEY_SHAPES = re.compile(
    "|".join((
        rf"(?<![{_URL_SAFE}])sk-[{_URL_SAFE}]{{4,}}",   # OpenAI, Anthropic (sk-proj-, sk-ant-)
        rf"AIza[{_URL_SAFE}]{{20,}}",                   # Google API keys (AIza + 35, leniently)
        r"(?:AKIA|ASIA)[0-9A-Z]{16,}",                  # AWS access key ids
    ))
)
# `Bearer <token>`: the scheme word is kept, the token (a run of non-space) is not.
_BEARER = re.compile(r"\b(bearer\s+)\S+", re.IGNORECASE)
# `key=...`, `api_key=...`, `access_token=...`, `client_secret=...`: the name is kept.
# The lookbehind makes each run of name characters start at most one attempt (no quadratic
# backtracking on long runs of `a-a-a-...`).
_PARAM = re.compile(
    r"(?<![A-Za-z0-9_.\-])([A-Za-z0-9_.\-]*(?:key|token|secret|password|passwd|signature)=)"
    r"[^\s&#'\"<>]+",
    re.IGNORECASE,
)
_HOST_BEFORE = r"(?<![A-Za-z0-9_\-])"
_HOST_AFTER = r"(?![A-Za-z0-9_\-])"


class Redactor:
    """Built once from the platform's secrets and provider base URLs; `redact` is pure."""

    def __init__(self, secrets: Iterable[str], urls: Iterable[str]) -> None:
        # Secrets: blank values are ignored (they would redact every space).
        kept = {s for s in secrets if isinstance(s, str) and s.strip()}
        # 6-character head -> the secrets starting with it, longest first.
        self._by_head: dict[str, list[str]] = {}
        short: set[str] = set()
        for secret in kept:
            if len(secret) >= MIN_PREFIX:
                self._by_head.setdefault(secret[:MIN_PREFIX], []).append(secret)
            else:
                short.add(secret)
        for group in self._by_head.values():
            group.sort(key=len, reverse=True)
        self._short = frozenset(short)
        literals = sorted(set(self._by_head) | short, key=lambda s: (-len(s), s))
        self._secret_re: re.Pattern[str] | None = (
            re.compile("|".join(map(re.escape, literals))) if literals else None)
        self._longest_secret = max((len(s) for s in kept), default=0)

        forms: set[str] = set()
        for url in urls:
            forms.update(_url_forms(url))
        ordered = sorted(forms, key=lambda s: (-len(s), s))
        self._url_re: re.Pattern[str] | None = (
            re.compile(_HOST_BEFORE + "(?:" + "|".join(map(re.escape, ordered)) + ")"
                       + _HOST_AFTER, re.IGNORECASE)
            if ordered else None)

    # -- secrets -----------------------------------------------------------------------

    def _secret_spans(self, text: str) -> list[tuple[int, int]]:
        """Non-overlapping spans of `text` that are a whole short secret or the longest
        6+ character prefix of a secret starting there, scanning left to right."""
        if self._secret_re is None:
            return []
        spans: list[tuple[int, int]] = []
        pos, n = 0, len(text)
        search = self._secret_re.search
        while (m := search(text, pos)) is not None:
            start, end = m.span()
            group = self._by_head.get(m.group())
            if group is not None:
                best = MIN_PREFIX
                for secret in group:
                    k = MIN_PREFIX
                    top = min(len(secret), n - start)
                    while k < top and text[start + k] == secret[k]:
                        k += 1
                    if k > best:
                        best = k
                        if k == len(secret):
                            break  # longest first: no later secret extends further
                end = start + best
            spans.append((start, end))
            pos = end
        return spans

    def _redact_secrets(self, text: str) -> str:
        spans = self._secret_spans(text)
        if not spans:
            return text
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts.append(text[last:start])
            parts.append(MARKER)
            last = end
        parts.append(text[last:])
        return "".join(parts)

    # -- the whole pass ----------------------------------------------------------------

    def _redact_all(self, text: str) -> str:
        # Whole-token rules first, so that a short secret inside a token cannot split it
        # into unrecognisable pieces; the secret scan last, so nothing after it can
        # leave a prefix behind (every pass only replaces spans by MARKER).
        if self._url_re is not None:
            text = self._url_re.sub(MARKER, text)
        text = _BEARER.sub(lambda m: m.group(1) + MARKER, text)
        text = _KEY_SHAPES.sub(MARKER, text)
        text = _PARAM.sub(lambda m: m.group(1) + MARKER, text)
        return self._redact_secrets(text)

    def redact(self, text: str, limit: int = 500) -> str:
        """`text` with credentials, upstream URLs and key shapes replaced by ``[redacted]``,
        then bounded to `limit` characters (ending in "…" when cut)."""
        if not isinstance(text, str):
            text = str(text)
        limit = max(0, int(limit))
        cap = max(SCAN_CAP, 2 * limit + 1024)
        capped = len(text) > cap
        if capped:
            text = text[:cap]
            # Drop the token the cap cut in two: a key shape or URL cut short would no
            # longer be recognised. (A secret's 6+ prefix is still caught by the scan.)
            text = _drop_cut_token(text)
        text = self._redact_all(text)
        if not capped and len(text) <= limit:
            return text
        return self._bound(text, limit)

    def _bound(self, text: str, limit: int) -> str:
        """`text` cut to at most `limit` characters, the last being "…"."""
        if limit <= 0:
            return ""
        k = min(len(text), limit - 1)
        # Never cut through a marker: "[reda…" shows nothing useful.
        j = text.find(MARKER, max(0, k - len(MARKER) + 1))
        if j != -1 and j < k:
            k = j
        # The appended "…" could complete a prefix of a secret that contains "…" (or the
        # cut could end right where one starts): back off until nothing at the cut matches.
        window = self._longest_secret + len(ELLIPSIS)
        while k > 0:
            candidate = text[:k] + ELLIPSIS
            base = max(0, len(candidate) - window)
            tail_spans = self._secret_spans(candidate[base:])
            touching = [base + s for s, e in tail_spans if base + e > k]
            if not touching:
                return candidate
            k = min(touching)
        return ELLIPSIS


def _drop_cut_token(text: str) -> str:
    """`text` without its last run of non-space if that run is at most _CUT_TOKEN_MAX long
    and something precedes it."""
    stop = max(0, len(text) - _CUT_TOKEN_MAX - 1)
    for i in range(len(text) - 1, stop - 1, -1):
        if text[i].isspace():
            return text[:i + 1]
    return text


def _url_forms(url: str) -> set[str]:
    """The texts that give a provider's base URL away: the URL (scheme://host[:port]/path,
    without a trailing slash), its host[:port] and its host alone."""
    if not isinstance(url, str):
        return set()
    url = url.strip()
    if not url:
        return set()
    forms: set[str] = set()
    try:
        parts = urlsplit(url)
        hostport = parts.netloc.rpartition("@")[2]
        host = parts.hostname or ""
    except ValueError:
        parts, hostport, host = None, "", ""
    if parts is None or not parts.scheme or not hostport:
        forms.add(url.rstrip("/"))  # not a URL with a host: hide it as written
        return {f for f in forms if f}
    forms.add(f"{parts.scheme}://{hostport}{parts.path}".rstrip("/"))
    forms.add(f"{parts.scheme}://{hostport}")
    forms.add(hostport)
    if host:
        forms.add(host)
        if ":" in host:  # IPv6: as written in URLs, too
            forms.add(f"[{host}]")
    return {f for f in forms if f}


_DISPLAY_URL_LIMIT = 512
_INVALID_URL = "(invalid URL)"


def display_url(url: str) -> str:
    """`url` without userinfo, query and fragment: ``scheme://host[:port]/path``.

    For doctor, logs and admin output. Anything that is not an absolute URL with a host
    (or is not a string, or holds spaces or control characters) gives "(invalid URL)".
    Long results are cut to 512 characters with "…"."""
    if not isinstance(url, str):
        return _INVALID_URL
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return _INVALID_URL
    hostport = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not hostport or hostport.startswith(":"):
        return _INVALID_URL
    out = f"{parts.scheme.lower()}://{hostport}{parts.path}"
    if any(ch.isspace() or not ch.isprintable() for ch in out):
        return _INVALID_URL
    if len(out) > _DISPLAY_URL_LIMIT:
        out = out[:_DISPLAY_URL_LIMIT - 1] + ELLIPSIS
    return out


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == "'":
        return "\\'"
    if ch.isprintable():
        return ch
    return repr(ch)[1:-1]  # \n, \t, \x00, \u200b, \U0001f600 ...


def quote_input(value: object, limit: int = 100) -> str:
    """How an error message quotes client input: ``'...'`` with Python-style escapes,
    showing at most `limit` characters of ``str(value)`` (escapes count toward the limit)
    and then "…(N more characters)". Never longer than about `limit` + 40 characters."""
    limit = max(0, int(limit))
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ or an int too long to print
        return f"<unprintable {type(value).__name__}>"[: limit + 40]
    head = text[:limit]
    if head.isprintable() and "'" not in head and "\\" not in head:
        body, taken = head, len(head)
    else:
        pieces: list[str] = []
        used = taken = 0
        for ch in head:
            esc = _escape_char(ch)
            if used + len(esc) > limit:
                break
            pieces.append(esc)
            used += len(esc)
            taken += 1
        body = "".join(pieces)
    rest = len(text) - taken
    quoted = f"'{body}'"
    if rest > 0:
        quoted += f"{ELLIPSIS}({rest} more characters)"
    return quoted
