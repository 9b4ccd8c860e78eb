"""An OpenAI Responses API client served by a provider that speaks only Chat Completions
(llama.cpp, vLLM, Ollama, OpenRouter, any OpenAI-compatible server): the two bridges
through Messages, composed (Responses -> Messages -> Chat for the request, Chat ->
Messages -> Responses for the answer and the stream), as responses_over_gemini.py does
for Gemini.

So it translates, drops and refuses what both of them do (responses_over_messages.py,
messages_over_chat.py): among others `text.format` other than text, custom tools and
`item_reference` items are refused; reasoning settings and summaries are dropped.
"""

from __future__ import annotations

from typing import Any

from router.protocols import messages_over_chat, responses_over_messages
from router.protocols.sse import SseEvent, SseParser
from router.protocols.translate import FunctionBridge, UpstreamTarget


def to_chat_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    return messages_over_chat.to_chat_request(
        responses_over_messages.to_messages_request(body, target), target)


def to_response(body: dict[str, Any], client_body: dict[str, Any]) -> dict[str, Any]:
    return responses_over_messages.to_response(
        messages_over_chat.to_messages_response(body), client_body)


class ResponsesFromChatStream:
    """`chat.completion.chunk` events -> Anthropic events -> Responses events."""

    def __init__(self, client_body: dict[str, Any]) -> None:
        self.messages = messages_over_chat.MessagesFromChatStream()
        self.responses = responses_over_messages.ResponsesFromMessagesStream(client_body)
        self.parser = SseParser()

    def feed(self, event: SseEvent) -> bytes:
        return b"".join(self.responses.feed(e)
                        for e in self.parser.feed(self.messages.feed(event)))


BRIDGE = FunctionBridge(
    "openai.responses", "openai.chat", to_chat_request,
    lambda body, client_body, wants_usage: to_response(body, client_body),
    lambda client_body, wants_usage: ResponsesFromChatStream(client_body))
