"""Servers that speak OpenAI's Chat Completions: llama.cpp, vLLM, LiteLLM, Groq (kind
`openai_compatible`), Ollama and OpenRouter.

They honour `max_tokens` (llama.cpp ignores `max_completion_tokens`), and the local
servers' chat templates render text-only content arrays as nothing, so those arrays go
as plain strings (OpenRouter passes arrays on to providers that read them, with their
`cache_control`, so it gets them as sent). Only Chat Completions: a Responses client
reaches them through no bridge today.

Every one of them sends a provider's `headers` table with each call. OpenRouter's own
defaults: the attribution header `X-Title: Aura Router` (`HTTP-Referer`, the app's URL,
only when configured), and `usage: {"include": true}` in the body (OpenRouter's usage
accounting; recent OpenRouter always reports usage, older deployments only when asked).
Its `usage.cost` is OpenRouter's price, never the bill: the router bills by its catalog.
Ollama is spoken to through its OpenAI-compatible `/v1` (it honours `max_tokens` and
`stream_options.include_usage`), so no native `/api/chat` is needed.

Probes: `GET {base}/models` (OpenAI's list, which vLLM, llama.cpp, LiteLLM and Ollama's
`/v1` all serve; a key only where one is configured); OpenRouter's `/models` is public,
so its probe is `GET {base}/key` (the key's own limits), which needs a valid key.
"""

from __future__ import annotations

import copy

import orjson

from router.providers.base import HttpCall, Provider, UpstreamRequest
from router.providers.http import HttpAdapter, HttpProvider, get_call
from router.providers.openai import bearer, bearer_headers
from router.providers.spec import ProviderSpec


class OpenAICompatibleAdapter(HttpAdapter):
    apis = ("openai.chat",)
    provider_fields = frozenset({"headers"})

    def __init__(self, kind: str, *, flattens_text: bool = True, default_base_url: str = "",
                 default_headers: tuple[tuple[str, str], ...] = (),
                 body_defaults: dict[str, object] | None = None, needs_key: bool = False,
                 probe_path: str = "/models") -> None:
        self.kind = kind
        self.needs_key = needs_key
        self.probe_path = probe_path
        self.flattens_text = flattens_text
        self.default_base_url = default_base_url
        self.default_headers = default_headers
        self.body_defaults = body_defaults or {}
        self.headers = self._encoded(default_headers)

    @staticmethod
    def _encoded(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
        return tuple((k.lower().encode(), v.encode("latin-1")) for k, v in headers if v)

    def bound(self, spec: ProviderSpec) -> "OpenAICompatibleAdapter":
        """This kind for one configured provider: its `headers` over the kind's defaults
        (an empty value drops a default)."""
        merged = {k.lower(): (k, v) for k, v in self.default_headers}
        merged.update({k.lower(): (k, v) for k, v in spec.headers})
        bound = copy.copy(self)
        bound.headers = self._encoded(tuple(merged.values()))
        return bound

    def connect(self, spec: ProviderSpec) -> Provider:
        return HttpProvider(spec, self.bound(spec))

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        body = request.body
        if self.body_defaults:
            parsed = orjson.loads(body)
            missing = {k: v for k, v in self.body_defaults.items() if k not in parsed}
            if missing:
                body = orjson.dumps({**parsed, **missing})
        return HttpCall("/chat/completions", bearer_headers(request, credential) + self.headers,
                        body)

    def probe_call(self, credential: str | None) -> HttpCall | None:
        return get_call(self.probe_path, bearer(credential) + list(self.headers))


ADAPTER = OpenAICompatibleAdapter("openai_compatible")
OLLAMA = OpenAICompatibleAdapter("ollama", default_base_url="http://127.0.0.1:11434/v1")
OPENROUTER = OpenAICompatibleAdapter("openrouter", flattens_text=False,
                                     default_base_url="https://openrouter.ai/api/v1",
                                     default_headers=(("X-Title", "Aura Router"),),
                                     body_defaults={"usage": {"include": True}},
                                     needs_key=True, probe_path="/key")
