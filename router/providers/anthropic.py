"""Anthropic's Messages API (and its token counter): `x-api-key`, `anthropic-version`.

An OAuth access token (a Claude Code login, `router.providers.claude_oauth`; or any
`sk-ant-oat…` key) is no API key: it goes as `Authorization: Bearer`, with no
`x-api-key`, and `anthropic-beta` gains `oauth-2025-04-20` (kept after the client's own
betas), without which the API answers 401 "OAuth authentication is currently not
supported".

The client's `anthropic-beta` and `anthropic-version` headers are passed on when its own
API goes through untranslated, and of its query string only `beta` (Claude Code sends
`?beta=true`).

Probe: `GET /v1/models?limit=1` with the key (free; 401 `authentication_error` for a key
Anthropic does not know). An OAuth login is probed by a connect and its expiry.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from router.providers.base import HttpCall, UpstreamRequest
from router.providers.credentials import OAuthToken
from router.providers.http import HttpAdapter, get_call

ANTHROPIC_VERSION = "2023-06-01"
PATHS = {"anthropic.messages": "/v1/messages",
         "anthropic.count_tokens": "/v1/messages/count_tokens"}
FORWARDED_QUERY = frozenset({"beta"})
OAUTH_BETA = "oauth-2025-04-20"
OAUTH_TOKEN_PREFIX = "sk-ant-oat"  # what Anthropic's OAuth access tokens start with


def is_oauth(credential: str) -> bool:
    return isinstance(credential, OAuthToken) or credential.startswith(OAUTH_TOKEN_PREFIX)


def with_oauth_beta(betas: str | None) -> str:
    """The client's `anthropic-beta` list with the OAuth beta in it (once)."""
    names = [b.strip() for b in (betas or "").split(",") if b.strip()]
    return ",".join(names if OAUTH_BETA in names else [*names, OAUTH_BETA])


def forwarded_query(query: str) -> str:
    """The parameters of the client's query string the Messages API reads."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
            if k in FORWARDED_QUERY]
    return "?" + urlencode(kept) if kept else ""


class AnthropicAdapter(HttpAdapter):
    kind = "anthropic"
    apis = ("anthropic.messages",)
    counts_tokens = True
    default_base_url = "https://api.anthropic.com"

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        headers = [(b"content-type", b"application/json"), (b"user-agent", b"aura-router")]
        if request.stream:
            headers.append((b"accept", b"text/event-stream"))
        passthrough = dict(request.passthrough_headers)
        passthrough.setdefault("anthropic-version", ANTHROPIC_VERSION)
        oauth = credential is not None and is_oauth(credential)
        if oauth:
            given = [k for k in passthrough if k.lower() == "anthropic-beta"]
            betas = ",".join(passthrough.pop(k) for k in given) or None
            passthrough["anthropic-beta"] = with_oauth_beta(betas)
        headers += [(k.encode(), v.encode("latin-1")) for k, v in passthrough.items()]
        if credential and oauth:
            headers.append((b"authorization", b"Bearer " + credential.encode()))
        elif credential:
            headers.append((b"x-api-key", credential.encode()))
        return HttpCall(PATHS[request.api] + forwarded_query(request.query), tuple(headers),
                        request.body)

    def probe_call(self, credential: str | None) -> HttpCall | None:
        if credential is not None and is_oauth(credential):
            return None  # a login is checked by its expiry (and a connect), not a call
        headers = [(b"anthropic-version", ANTHROPIC_VERSION.encode())]
        if credential:
            headers.append((b"x-api-key", credential.encode()))
        return get_call("/v1/models?limit=1", headers)


ADAPTER = AnthropicAdapter()
