"""The client API formats by name, as the transports and websocket frames call them, and
the bridges that let a client of one format reach a provider of another."""

from __future__ import annotations

from router.protocols import (chat_over_gemini, chat_over_messages, messages_over_chat,
                              messages_over_gemini, responses_over_chat,
                              responses_over_gemini, responses_over_messages)
from router.protocols.anthropic import AnthropicMessages
from router.protocols.api import ApiFormat
from router.protocols.gemini import GeminiGenerate
from router.protocols.openai_chat import OpenAIChat
from router.protocols.openai_responses import OpenAIResponses
from router.protocols.translate import Bridge

FORMATS: dict[str, ApiFormat] = {"openai.chat": OpenAIChat(),
                                 "openai.responses": OpenAIResponses(),
                                 "anthropic.messages": AnthropicMessages(),
                                 # spoken to providers only: its parse() refuses clients
                                 "google.gemini": GeminiGenerate()}

# What a client may speak (the others are upstream formats only, reached by bridges).
CLIENT_APIS = ("openai.chat", "openai.responses", "anthropic.messages")

BRIDGES: dict[tuple[str, str], Bridge] = {
    (b.client_api, b.upstream_api): b for b in (chat_over_messages.BRIDGE,
                                               messages_over_chat.BRIDGE,
                                               responses_over_messages.BRIDGE,
                                               responses_over_chat.BRIDGE,
                                               chat_over_gemini.BRIDGE,
                                               messages_over_gemini.BRIDGE,
                                               responses_over_gemini.BRIDGE)}


def upstream_api(client_api: str, provider_apis: tuple[str, ...]) -> str | None:
    """The format to speak to a provider: the client's own if the provider speaks it,
    else the first one a bridge reaches; None if there is none."""
    if client_api in provider_apis:
        return client_api
    return next((api for api in provider_apis if (client_api, api) in BRIDGES), None)
