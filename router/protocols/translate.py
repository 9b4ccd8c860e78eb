"""Translation between client API formats: the pieces every bridge shares, and the registry.

A *bridge* lets a client speaking one format (say OpenAI Chat Completions) reach a
provider that speaks another (Anthropic Messages). It is three pure parts:

- `request(body, target)`: the client's validated body -> the upstream's body (a dict),
  raising `BadRequest` naming the client's own field for what the upstream cannot
  express (a documented drop where dropping is harmless);
- `response(body, request)`: a whole upstream answer -> the client's answer;
- `stream(request)`: a stateful translator fed the upstream's SSE events one by one,
  returning the client's SSE bytes for each.

Metering never happens here: the upstream's own format meters its own events, so the
bill is always what the provider reported, whatever the client sees.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import orjson

from router.errors import BadRequest
from router.protocols.sse import SseEvent
from router.usage import Usage


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """What a bridge may need to know of where the request goes."""

    model_id: str  # the catalog id the client asked for (for messages)
    provider_kind: str
    reasoning: bool = False  # the model accepts reasoning effort / extended thinking


class StreamTranslator(Protocol):
    def feed(self, event: SseEvent) -> bytes:
        """The client's bytes for one upstream event (b"" when it has none)."""
        ...


class Bridge(Protocol):
    client_api: str
    upstream_api: str

    def request(self, body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]: ...

    def response(self, body: dict[str, Any], client_body: dict[str, Any],
                 wants_usage: bool) -> dict[str, Any]: ...

    def stream(self, client_body: dict[str, Any], wants_usage: bool) -> StreamTranslator: ...


@dataclass(frozen=True)
class FunctionBridge:
    """A bridge made of a module's three pure parts."""

    client_api: str
    upstream_api: str
    request: Callable[[dict[str, Any], UpstreamTarget], dict[str, Any]]
    response: Callable[[dict[str, Any], dict[str, Any], bool], dict[str, Any]]
    stream: Callable[[dict[str, Any], bool], StreamTranslator]


# --- SSE -----------------------------------------------------------------------------

def sse(data: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def event_json(event: SseEvent) -> dict[str, Any] | None:
    """An event's data as a JSON object, or None (keep-alives, `[DONE]`, garbage)."""
    if not event.data or event.data == b"[DONE]":
        return None
    try:
        parsed = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")


# --- stop reasons and usage ------------------------------------------------------------

ANTHROPIC_TO_OPENAI_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                            "tool_use": "tool_calls", "pause_turn": "stop",
                            "refusal": "content_filter",
                            "model_context_window_exceeded": "length"}
OPENAI_TO_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens",
                            "tool_calls": "tool_use", "function_call": "tool_use",
                            "content_filter": "refusal"}


def openai_stop(anthropic_reason: str | None) -> str | None:
    return ANTHROPIC_TO_OPENAI_STOP.get(anthropic_reason or "", "stop") \
        if anthropic_reason else None


def anthropic_stop(openai_reason: str | None) -> str | None:
    return OPENAI_TO_ANTHROPIC_STOP.get(openai_reason or "", "end_turn") \
        if openai_reason else None


@dataclass
class TokenCounts:
    """Usage in neutral terms: `input` excludes cached tokens on both sides.

    `estimated` marks figures that are the router's count, not the provider's (the
    router's own `"estimated": true` field, carried across translation)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    estimated: bool = False

    @classmethod
    def of(cls, usage: Usage) -> "TokenCounts":
        return cls(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                   usage.cache_write_tokens, usage.reasoning_tokens, not usage.reported)

    def take_anthropic(self, usage: dict[str, Any]) -> None:
        for field, key in (("input", "input_tokens"), ("output", "output_tokens"),
                           ("cache_read", "cache_read_input_tokens"),
                           ("cache_write", "cache_creation_input_tokens")):
            value = usage.get(key)
            if isinstance(value, int):
                setattr(self, field, value)
        self.estimated = self.estimated or usage.get("estimated") is True

    def take_openai(self, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self.input, self.cache_read = max(prompt - cached, 0), cached
        self.output = int(usage.get("completion_tokens") or 0)
        self.reasoning = int((usage.get("completion_tokens_details") or {})
                             .get("reasoning_tokens") or 0)
        self.estimated = self.estimated or usage.get("estimated") is True

    def _marked(self, usage: dict[str, Any]) -> dict[str, Any]:
        if self.estimated:
            usage["estimated"] = True
        return usage

    def openai(self) -> dict[str, Any]:
        prompt = self.input + self.cache_read + self.cache_write
        return self._marked({"prompt_tokens": prompt, "completion_tokens": self.output,
                             "total_tokens": prompt + self.output,
                             "prompt_tokens_details": {"cached_tokens": self.cache_read},
                             "completion_tokens_details": {"reasoning_tokens": self.reasoning}})

    def anthropic(self) -> dict[str, Any]:
        return self._marked({"input_tokens": self.input, "output_tokens": self.output,
                             "cache_read_input_tokens": self.cache_read,
                             "cache_creation_input_tokens": self.cache_write})

    def responses(self) -> dict[str, Any]:
        prompt = self.input + self.cache_read + self.cache_write
        return self._marked({"input_tokens": prompt,
                             "input_tokens_details": {"cached_tokens": self.cache_read},
                             "output_tokens": self.output,
                             "output_tokens_details": {"reasoning_tokens": self.reasoning},
                             "total_tokens": prompt + self.output})


# --- images ----------------------------------------------------------------------------

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def sniff_image(data_b64: str) -> str | None:
    """The media type the bytes really are, from their first bytes; None if no image."""
    try:
        head = base64.b64decode(data_b64[:24] + "=" * (-len(data_b64[:24]) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        return None
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def checked_base64_image(media_type: Any, data: Any, param: str) -> tuple[str, str]:
    """(media_type, data) of an inline image, or a 400 naming `param`."""
    if not isinstance(data, str) or not data:
        raise BadRequest(f"'{param}' has no image data", param=param)
    real = sniff_image(data)
    if real is None:
        raise BadRequest(f"'{param}' is not an image (expected base64 JPEG, PNG, GIF or WebP)",
                         param=param)
    if media_type not in IMAGE_MEDIA_TYPES:
        media_type = real
    return str(media_type), data


def image_from_url(url: Any, param: str) -> dict[str, Any]:
    """An OpenAI image URL (http(s) or data:) as an Anthropic image source."""
    if not isinstance(url, str) or not url:
        raise BadRequest(f"'{param}' must be an image URL or a data: URL", param=param)
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise BadRequest(f"'{param}' must be a base64 data: URL", param=param)
        media_type, data = checked_base64_image(header[5:-7], data, param)
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise BadRequest(f"'{param}' must be an http(s) URL or a data: URL", param=param)


def url_from_image(source: Any, param: str) -> str:
    """An Anthropic image source as an OpenAI image URL."""
    if not isinstance(source, dict):
        raise BadRequest(f"'{param}' must be an object", param=param)
    if source.get("type") == "base64":
        media_type, data = checked_base64_image(source.get("media_type"), source.get("data"),
                                                param)
        return f"data:{media_type};base64,{data}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise BadRequest(f"'{param}' must be a base64 or url image source", param=param)


# --- small shared checks ------------------------------------------------------------------

def object_schema(schema: Any, param: str) -> dict[str, Any]:
    """A tool's parameter schema, which both sides require to be a JSON Schema object."""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise BadRequest(f"'{param}' must be a JSON Schema of type \"object\"", param=param)
    return schema if "type" in schema else {"type": "object", **schema}


def temperature_for_anthropic(value: Any, param: str = "temperature") -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise BadRequest(f"'{param}' must be a number from 0 to 2", param=param)
    if value > 1:
        raise BadRequest(f"'{param}' is {value}, but Anthropic models accept 0 to 1",
                         param=param)
    return value


def content_blocks(content: Any, where: str,
                   convert: Callable[[dict[str, Any], Any, str], dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """A message's content (a string, or a list of parts) as Anthropic blocks; `convert`
    maps one part, given its type and its path for errors, and refuses what it cannot."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"'{where}.content' must be a string or a list of parts",
                         param=f"{where}.content")
    return [convert(part if isinstance(part, dict) else {},
                    part.get("type") if isinstance(part, dict) else None,
                    f"{where}.content[{j}]") for j, part in enumerate(content)]


def text_of(content: Any, param: str) -> str:
    """The text of a string or a list of text parts (system prompts, tool results)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise BadRequest(f"'{param}[{j}]' must be a text part", param=f"{param}[{j}]")
        return "\n\n".join(texts)
    if content is None:
        return ""
    raise BadRequest(f"'{param}' must be a string or a list of text parts", param=param)


def loads_arguments(arguments: Any, param: str) -> dict[str, Any]:
    """A tool call's JSON `arguments` string as the object Anthropic wants as `input`."""
    if arguments in (None, ""):
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise BadRequest(f"'{param}' must be a JSON object encoded as a string",
                         param=param) from None
    if not isinstance(value, dict):
        raise BadRequest(f"'{param}' must encode a JSON object", param=param)
    return value


def reject_unknown(body: dict[str, Any], refused: dict[str, str], model: str) -> None:
    """400 for a field the upstream cannot express (the message says why)."""
    for name, why in refused.items():
        if body.get(name) not in (None, False):
            raise BadRequest(f"'{name}' cannot be used with model {model!r}: {why}",
                             param=name)


def append_turn(messages: list[dict[str, Any]], role: str,
                blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a turn; consecutive turns of one role merge, as Anthropic expects,
    and an empty turn is left out (Anthropic refuses empty content)."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """OpenAI's `tool_choice` (Chat's `{"function": {"name"}}` or Responses' `{"name"}`)
    and `parallel_tool_calls` as Anthropic's `tool_choice`."""
    function = choice.get("function") if isinstance(choice, dict) else None
    named = (choice.get("name") or (function.get("name") if isinstance(function, dict) else None)
             if isinstance(choice, dict) and choice.get("type") == "function" else None)
    if choice is None:
        mapped: dict[str, Any] | None = None
    elif choice in ("auto", "none"):
        mapped = {"type": choice}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(named, str):
        mapped = {"type": "tool", "name": named}
    else:
        raise BadRequest("'tool_choice' must be 'auto', 'none', 'required' or a function",
                         param="tool_choice")
    if parallel is False and (mapped or {}).get("type") != "none":
        mapped = {**(mapped or {"type": "auto"}), "disable_parallel_tool_use": True}
    return mapped


def openai_stream_error(data: dict[str, Any]) -> bytes:
    """An Anthropic `error` event as the `data: {"error": ...}` OpenAI SDKs raise on."""
    error = data.get("error") or {}
    return sse({"error": {"message": error.get("message", "provider error"),
                          "type": error.get("type", "api_error"), "param": None, "code": None}})
