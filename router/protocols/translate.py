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
from typing import Any, Callable, Container, Iterator, Protocol, TypeVar

import orjson

from router.errors import BadRequest
from router.protocols.sse import SseEvent, SseParser
from router.usage import Usage

T = TypeVar("T")


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


@dataclass(frozen=True)
class ComposedBridge:
    """Two bridges end to end: `outer` takes the client's format to an intermediate one
    that `inner` takes to the provider's; the answer and the stream come back through
    both. The intermediate form is never sent anywhere, so what either bridge drops or
    refuses applies (e.g. Responses -> Messages -> Chat Completions)."""

    outer: Bridge
    inner: Bridge

    @property
    def client_api(self) -> str:
        return self.outer.client_api

    @property
    def upstream_api(self) -> str:
        return self.inner.upstream_api

    def request(self, body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
        return self.inner.request(self.outer.request(body, target), target)

    def response(self, body: dict[str, Any], client_body: dict[str, Any],
                 wants_usage: bool) -> dict[str, Any]:
        return self.outer.response(self.inner.response(body, client_body, wants_usage),
                                   client_body, wants_usage)

    def stream(self, client_body: dict[str, Any], wants_usage: bool) -> StreamTranslator:
        return ComposedStream(self.inner.stream(client_body, wants_usage),
                              self.outer.stream(client_body, wants_usage))


class ComposedStream:
    """The inner translator's events, parsed again, fed to the outer one."""

    def __init__(self, inner: StreamTranslator, outer: StreamTranslator) -> None:
        self.inner = inner
        self.outer = outer
        self.parser = SseParser()

    def feed(self, event: SseEvent) -> bytes:
        return b"".join(self.outer.feed(e) for e in self.parser.feed(self.inner.feed(event)))


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
                             "input_tokens_details": {"cached_tokens": self.cache_read,
                                                      "cache_write_tokens": self.cache_write},
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


ANTHROPIC_PLATFORM_ONLY = {"mcp_servers": "MCP servers run only on Anthropic's platform",
                           "container": "containers run only on Anthropic's platform"}


def reject_unknown(body: dict[str, Any], refused: dict[str, str], model: str, *,
                   empty_ok: bool = False) -> None:
    """400 for a field the upstream cannot express (the message says why). A field that
    is null or false passes; with `empty_ok`, so does any other empty value ("", [], {}
    or 0)."""
    for name, why in refused.items():
        value = body.get(name)
        if (bool(value) if empty_ok else value not in (None, False)):
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


# --- OpenAI Chat Completions pieces (bridges from Chat) -----------------------------------

def chat_function_tools(tools: Any, upstream: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Chat's `tools`, one by one, as (its `function`, its path for errors), refusing what
    is not a named function tool; `upstream` names the model in the message ("a Gemini
    model"). Lazily, so that the caller's own checks of a tool come before the next's."""
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list", param="tools")
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise BadRequest(f"'{param}' must be a function tool; other tool types cannot "
                             f"be sent to {upstream}", param=f"{param}.type")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"'{param}.function.name' is required",
                             param=f"{param}.function.name")
        yield function, param


def chat_assistant_turn(message: dict[str, Any], where: str
                        ) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    """A Chat assistant message as (its text, its tool calls as (id, name, arguments
    object)); a refusal part counts as text."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or p.get("refusal") or ""
                          for p in content if isinstance(p, dict))
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise BadRequest(f"'{where}.tool_calls' must be a list", param=f"{where}.tool_calls")
    out = []
    for k, call in enumerate(calls):
        param = f"{where}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not isinstance(call.get("id"), str) or not call["id"]:
            raise BadRequest(f"'{param}' needs an 'id' and a 'function' with a 'name'",
                             param=param)
        out.append((call["id"], function["name"],
                    loads_arguments(function.get("arguments"), f"{param}.function.arguments")))
    return text, out


def answered_call_id(message: dict[str, Any], where: str, known: Container[str]) -> str:
    """A Chat `tool` message's `tool_call_id`, which must answer a call made earlier."""
    call_id = message.get("tool_call_id")
    if call_id not in known:
        raise BadRequest(f"'{where}.tool_call_id' {call_id!r} answers no tool call "
                         "of an earlier assistant message", param=f"{where}.tool_call_id")
    return str(call_id)


# --- Anthropic Messages pieces (bridges from Messages) ------------------------------------

def anthropic_custom_tools(tools: Any, upstream: str
                           ) -> Iterator[tuple[dict[str, Any], str]]:
    """Messages' `tools`, one by one, as (the tool, its path for errors), refusing
    Anthropic's server tools, which `upstream` ("a Gemini model") cannot run. Lazily, as
    `chat_function_tools`."""
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list", param="tools")
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise BadRequest(f"'{param}' must be an object", param=param)
        if tool.get("type") not in (None, "custom"):
            raise BadRequest(f"'{param}.type' is {tool.get('type')!r}, an Anthropic server "
                             f"tool, which {upstream} cannot run", param=f"{param}.type")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BadRequest(f"'{param}.name' is required", param=f"{param}.name")
        yield tool, param


def tool_result_content(block: dict[str, Any], param: str, known: Container[str],
                        image: Callable[[Any, str], T]) -> tuple[str, str, list[T]]:
    """A `tool_result` block as (the call it answers, its text, its images): the call
    must be one made earlier; text parts join with blank lines, and each image part's
    source (with its path for errors) becomes what `image` makes of it, for upstreams
    whose tool answers take text only to carry beside them."""
    call_id = block.get("tool_use_id")
    if call_id not in known:
        raise BadRequest(f"'{param}.tool_use_id' {call_id!r} answers no tool_use block of an "
                         "earlier assistant message", param=f"{param}.tool_use_id")
    content = block.get("content")
    images: list[T] = []
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image":
                images.append(image(part.get("source"), f"{param}.content[{k}].source"))
            else:
                texts.append(text_of([part], f"{param}.content[{k}]"))
        text = "\n\n".join(texts)
    else:
        text = text_of(content, f"{param}.content")
    return str(call_id), text, images


class AnthropicBlockWriter:
    """The content-block bookkeeping of a bridge that writes an Anthropic event stream:
    at most one block is open; opening one closes the one before, and blocks are
    numbered in the order they open."""

    def __init__(self) -> None:
        self.open: tuple[str, int] | None = None  # (kind, block index) of the open block
        self.blocks = 0

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        index, self.open = self.open[1], None
        return sse({"type": "content_block_stop", "index": index}, "content_block_stop")

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.open = (kind, self.blocks)
        self.blocks += 1
        return out + sse({"type": "content_block_start", "index": self.open[1],
                          "content_block": block}, "content_block_start")

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        """A delta for the open block (or for block `index`, while one is open)."""
        assert self.open is not None
        return sse({"type": "content_block_delta",
                    "index": self.open[1] if index is None else index, "delta": delta},
                   "content_block_delta")

    def _text(self, kind: str, text: str) -> bytes:
        """Text of `kind` "text" or "thinking", in the open block if it is of that kind,
        else in a new one."""
        out = b""
        if self.open is None or self.open[0] != kind:
            block = {"type": "text", "text": ""} if kind == "text" else {
                "type": "thinking", "thinking": "", "signature": ""}
            out = self._open(kind, block)
        delta = {"type": "text_delta", "text": text} if kind == "text" else {
            "type": "thinking_delta", "thinking": text}
        return out + self._delta(delta)
