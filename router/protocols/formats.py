"""The client API formats by name, as the transports and websocket frames call them."""

from __future__ import annotations

from router.protocols.anthropic import AnthropicMessages
from router.protocols.api import ApiFormat
from router.protocols.openai_chat import OpenAIChat

FORMATS: dict[str, ApiFormat] = {"openai.chat": OpenAIChat(),
                                 "anthropic.messages": AnthropicMessages()}
