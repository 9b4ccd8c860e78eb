"""Provider kinds by name: the one place that lists them.

Adding a provider kind is one module (an adapter, see `router.providers.base` and
docs/providers.md) and one line below. Config validation, routing, translation,
metering and the supervisors ask the registry; nothing else knows the kinds by name.
"""

from __future__ import annotations

from router.providers import (anthropic, azure, demo, gemini, openai, openai_compatible,
                              vertex)
from router.providers import bedrock
from router.providers.base import ProviderAdapter

_ADAPTERS: dict[str, ProviderAdapter] = {}


def register(adapter: ProviderAdapter) -> ProviderAdapter:
    """Make a kind known (the shipped kinds below; tests may add their own)."""
    if not adapter.kind:
        raise ValueError("an adapter needs a kind")
    _ADAPTERS[adapter.kind] = adapter
    return adapter


def unregister(kind: str) -> None:
    """Forget a kind (for tests that registered their own)."""
    _ADAPTERS.pop(kind, None)


def adapter(kind: str) -> ProviderAdapter:
    """The adapter of a known kind (config validation makes every kind known)."""
    return _ADAPTERS[kind]


def kinds() -> tuple[str, ...]:
    return tuple(_ADAPTERS)


register(openai.ADAPTER)
register(anthropic.ADAPTER)
register(openai_compatible.ADAPTER)
register(openai_compatible.OLLAMA)
register(openai_compatible.OPENROUTER)
register(azure.ADAPTER)
register(gemini.ADAPTER)
register(vertex.ADAPTER)
register(vertex.GEMINI)
register(bedrock.ADAPTER)
register(bedrock.GATEWAY)
register(demo.ADAPTER)
