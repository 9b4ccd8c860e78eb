"""Servers that speak OpenAI's Chat Completions: llama.cpp, vLLM, LiteLLM, Groq (kind
`openai_compatible`), Ollama and OpenRouter.

They honour `max_tokens` (llama.cpp ignores `max_completion_tokens`), and the local
servers' chat templates render text-only content arrays as nothing, so those arrays go
as plain strings (OpenRouter passes arrays on to providers that read them, with their
`cache_control`, so it gets them as sent). Only Chat Completions: a Responses client
reaches them through no bridge today.
"""

from __future__ import annotations

from router.providers.base import HttpCall, UpstreamRequest
from router.providers.http import HttpAdapter
from router.providers.openai import bearer_headers


class OpenAICompatibleAdapter(HttpAdapter):
    apis = ("openai.chat",)

    def __init__(self, kind: str, *, flattens_text: bool = True,
                 default_base_url: str = "") -> None:
        self.kind = kind
        self.flattens_text = flattens_text
        self.default_base_url = default_base_url

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        return HttpCall("/chat/completions", bearer_headers(request, credential), request.body)


ADAPTER = OpenAICompatibleAdapter("openai_compatible")
OLLAMA = OpenAICompatibleAdapter("ollama", default_base_url="http://127.0.0.1:11434/v1")
OPENROUTER = OpenAICompatibleAdapter("openrouter", flattens_text=False,
                                     default_base_url="https://openrouter.ai/api/v1")
