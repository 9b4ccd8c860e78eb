"""The tool round trip the provider tests share: a `get_weather` tool, a question with an
inline 1x1 PNG, and the first Chat Completions call, whose answer must be one
`get_weather` call for Paris (the fakes answer so when `state.tool_call` is set to
`("get_weather", {"city": "Paris"})`). Each test then checks what reached its provider
and sends the result back itself.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageToolCall
from openai.types.chat.chat_completion import Choice

PNG_1X1 = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()
DATA_URL = f"data:image/png;base64,{PNG_1X1}"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}}]
PARIS = ("get_weather", {"city": "Paris"})


def weather_question() -> list[Any]:
    """A fresh one-message conversation: the question, then the image."""
    return [{"role": "user", "content": [
        {"type": "text", "text": "What is the weather where this was taken?"},
        {"type": "image_url", "image_url": {"url": DATA_URL}}]}]


def the_tool_call(answer: ChatCompletion) -> tuple[Choice, ChatCompletionMessageToolCall]:
    """The answer's choice, which must end in exactly one `get_weather` call for Paris."""
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls or []
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    return choice, tool_call


def ask_for_a_tool_call(client: openai.OpenAI, model: str, **request: Any
                        ) -> tuple[ChatCompletion, Choice, ChatCompletionMessageToolCall]:
    """Make the first request (messages, tools and the rest as given) and check its
    answer: the completion, its choice and the one tool call."""
    answer = client.chat.completions.create(model=model, **request)
    return (answer, *the_tool_call(answer))
