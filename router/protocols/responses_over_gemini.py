"""An OpenAI Responses API client served by a Google AI (Gemini) provider: the two
bridges through Messages, composed (Responses -> Messages -> Gemini for the request,
Gemini -> Messages -> Responses for the answer and the stream).

So it translates, drops and refuses what both of them do (responses_over_messages.py,
messages_over_gemini.py): among others `temperature` above 1 and `text.format` other
than text are refused, image URLs too (send `input_image` as a base64 data: URL).
"""

from __future__ import annotations

from typing import Any

from router.protocols import gemini, messages_over_gemini, responses_over_messages
from router.protocols.sse import SseEvent, SseParser
from router.protocols.translate import FunctionBridge, UpstreamTarget


def to_gemini_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    return messages_over_gemini.to_gemini_request(
        responses_over_messages.to_messages_request(body, target), target)


def to_response(body: dict[str, Any], client_body: dict[str, Any]) -> dict[str, Any]:
    return responses_over_messages.to_response(
        messages_over_gemini.to_messages_response(body), client_body)


class ResponsesFromGeminiStream:
    """Gemini chunks -> Anthropic events -> Responses events."""

    def __init__(self, client_body: dict[str, Any]) -> None:
        self.messages = messages_over_gemini.MessagesFromGeminiStream()
        self.responses = responses_over_messages.ResponsesFromMessagesStream(client_body)
        self.parser = SseParser()

    def feed(self, event: SseEvent) -> bytes:
        return b"".join(self.responses.feed(e)
                        for e in self.parser.feed(self.messages.feed(event)))


BRIDGE = FunctionBridge(
    "openai.responses", gemini.NAME, to_gemini_request,
    lambda body, client_body, wants_usage: to_response(body, client_body),
    lambda client_body, wants_usage: ResponsesFromGeminiStream(client_body))
