"""Faithful fake LLM providers (OpenAI Chat Completions + Responses, Anthropic Messages).

For tests and benchmarks: real HTTP servers on loopback; see `FakeProviderServer` and `FakeState`.
"""

from __future__ import annotations

from .server import FakeProviderServer
from .state import FakeState, ReceivedRequest, count_input_tokens, count_response_input_tokens

__all__ = ["FakeProviderServer", "FakeState", "ReceivedRequest", "count_input_tokens",
           "count_response_input_tokens"]
