"""Token bounds and estimates from a request body, without a tokenizer.

Byte-level BPE never yields more tokens than UTF-8 bytes, so the bytes of the text
parts plus a per-message framing allowance bound the input tokens from above (the hold
must cover the worst case, docs/billing.md). Images count the model's per-image maximum.
The estimate (≈4 bytes per token) is what a request is billed for input when the
provider never reported usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.errors import BadRequest

FRAMING_TOKENS_PER_MESSAGE = 8
FRAMING_TOKENS_PER_REQUEST = 16
_TEXT_FIELDS = ("messages", "system", "tools", "functions", "tool_choice", "response_format",
                "input", "instructions", "output_config", "output_format", "text")
# Providers add a hidden system prompt when tools are defined (Anthropic documents
# 159 to 530 tokens, depending on the model and tool_choice); the bound covers it.
TOOL_USE_OVERHEAD_TOKENS = 600
MAX_NESTING = 128  # deeper JSON cannot be re-encoded (orjson stops at 255) or useful
_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
_FILE_TYPES = frozenset({"file", "input_file"})


def _refuse_unseen_file(part: dict[str, Any]) -> None:
    """A file the router cannot see (an id or URL) has a size it cannot bound: refused."""
    inner = part.get("file") if isinstance(part.get("file"), dict) else part
    for name in ("file_id", "file_url"):
        if inner.get(name):
            raise BadRequest(f"a '{part.get('type')}' part with '{name}' cannot be reserved "
                             "for (its size is unknown here); send the file inline as "
                             "file_data", param=name)


@dataclass(frozen=True, slots=True)
class TextSize:
    text_bytes: int
    messages: int
    images: int
    tools: bool = False  # the body defines tools

    def input_bound(self, per_image_tokens: int) -> int:
        return (self.text_bytes + FRAMING_TOKENS_PER_MESSAGE * self.messages
                + FRAMING_TOKENS_PER_REQUEST + per_image_tokens * self.images
                + (TOOL_USE_OVERHEAD_TOKENS if self.tools else 0))

    def at_least(self, other: "TextSize") -> "TextSize":
        """The larger of two measures, field by field (a body and its translations)."""
        return TextSize(max(self.text_bytes, other.text_bytes),
                        max(self.messages, other.messages), max(self.images, other.images),
                        self.tools or other.tools)

    def input_estimate(self, per_image_tokens: int) -> int:
        return (-(-self.text_bytes // 4) + 4 * self.messages + per_image_tokens * self.images)


def _walk(value: Any, counts: list[int], depth: int = 0) -> None:
    if isinstance(value, str):
        counts[0] += len(value.encode("utf-8")) if not value.isascii() else len(value)
    elif isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str):  # (a tool schema may have a property named "type")
            if kind in _IMAGE_TYPES:
                counts[1] += 1
                return
            if kind in _FILE_TYPES:
                _refuse_unseen_file(value)
        if depth > MAX_NESTING:
            raise BadRequest(f"the request body is nested more than {MAX_NESTING} levels deep")
        for key, item in value.items():
            counts[0] += len(key) if key.isascii() else len(key.encode("utf-8"))
            _walk(item, counts, depth + 1)
    elif isinstance(value, list):
        if depth > MAX_NESTING:
            raise BadRequest(f"the request body is nested more than {MAX_NESTING} levels deep")
        for item in value:
            _walk(item, counts, depth + 1)
    elif value is not None:
        counts[0] += 8  # numbers and booleans inside tool schemas


def measure(body: dict[str, Any]) -> TextSize:
    counts = [0, 0]
    for name in _TEXT_FIELDS:
        if name in body:
            _walk(body[name], counts)
    messages = body.get("messages", body.get("input"))  # Responses API: input items
    n_messages = len(messages) if isinstance(messages, list) else 1
    return TextSize(counts[0], n_messages, counts[1], bool(body.get("tools")))


def count_output_tokens(text_bytes: int, deltas: int) -> int:
    """Output tokens of a stream whose provider never said: one per content delta
    (providers send about one token per delta), never more than the bytes streamed."""
    return min(deltas, text_bytes) if text_bytes else deltas
