"""OpenAI itself: Chat Completions and the Responses API, `Authorization: Bearer`.

The output limit goes in `max_completion_tokens` (its reasoning models refuse
`max_tokens`). The client's query string is not forwarded: OpenAI's API takes none.
Probe: `GET {base}/models` (free, needs the key: 401 `invalid_api_key` otherwise).
"""

from __future__ import annotations

from router.providers.base import HttpCall, UpstreamRequest
from router.providers.http import HttpAdapter, get_call

PATHS = {"openai.chat": "/chat/completions", "openai.responses": "/responses"}


def bearer_headers(request: UpstreamRequest, credential: str | None
                   ) -> tuple[tuple[bytes, bytes], ...]:
    """JSON in, SSE out when streaming, the key as a bearer token."""
    headers = [(b"content-type", b"application/json"), (b"user-agent", b"aura-router")]
    if request.stream:
        headers.append((b"accept", b"text/event-stream"))
    if credential:
        headers.append((b"authorization", b"Bearer " + credential.encode()))
    return tuple(headers)


class OpenAIAdapter(HttpAdapter):
    kind = "openai"
    apis = ("openai.chat", "openai.responses")
    default_base_url = "https://api.openai.com/v1"

    def limit_field(self, api: str) -> str:
        return "max_completion_tokens" if api == "openai.chat" else super().limit_field(api)

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        return HttpCall(PATHS[request.api], bearer_headers(request, credential), request.body)

    def probe_call(self, credential: str | None) -> HttpCall | None:
        return get_call("/models", bearer(credential))


def bearer(credential: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + credential.encode())] if credential else []


ADAPTER = OpenAIAdapter()
