"""Anthropic's Messages API (and its token counter): `x-api-key`, `anthropic-version`.

The client's `anthropic-beta` and `anthropic-version` headers are passed on when its own
API goes through untranslated, and of its query string only `beta` (Claude Code sends
`?beta=true`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from router.providers.base import HttpCall, UpstreamRequest
from router.providers.http import HttpAdapter

ANTHROPIC_VERSION = "2023-06-01"
PATHS = {"anthropic.messages": "/v1/messages",
         "anthropic.count_tokens": "/v1/messages/count_tokens"}
FORWARDED_QUERY = frozenset({"beta"})


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
        headers += [(k.encode(), v.encode("latin-1")) for k, v in passthrough.items()]
        if credential:
            headers.append((b"x-api-key", credential.encode()))
        return HttpCall(PATHS[request.api] + forwarded_query(request.query), tuple(headers),
                        request.body)


ADAPTER = AnthropicAdapter()
