"""Token bounds and estimates from a request body, without a tokenizer.

Byte-level BPE never yields more tokens than UTF-8 bytes, so the bytes of the text
parts plus a per-message framing allowance bound the input tokens from above (the hold
must cover the worst case, SPEC §4.3). Images count the model's per-image maximum.
The estimate (≈4 bytes per token) is what a request is billed for input when the
provider never reported usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FRAMING_TOKENS_PER_MESSAGE = 8
FRAMING_TOKENS_PER_REQUEST = 16
_TEXT_FIELDS = ("messages", "system", "tools", "functions", "tool_choice", "response_format",
                "input", "instructions")
_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})


@dataclass(frozen=True, slots=True)
class TextSize:
    text_bytes: int
    messages: int
    images: int

    def input_bound(self, per_image_tokens: int) -> int:
        return (self.text_bytes + FRAMING_TOKENS_PER_MESSAGE * self.messages
                + FRAMING_TOKENS_PER_REQUEST + per_image_tokens * self.images)

    def input_estimate(self, per_image_tokens: int) -> int:
        return (-(-self.text_bytes // 4) + 4 * self.messages + per_image_tokens * self.images)


def _walk(value: Any, counts: list[int]) -> None:
    if isinstance(value, str):
        counts[0] += len(value.encode("utf-8")) if not value.isascii() else len(value)
    elif isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and kind in _IMAGE_TYPES:  # a schema may name a field "type"
            counts[1] += 1
            return
        for key, item in value.items():
            counts[0] += len(key) if key.isascii() else len(key.encode("utf-8"))
            _walk(item, counts)
    elif isinstance(value, list):
        for item in value:
            _walk(item, counts)
    elif value is not None:
        counts[0] += 8  # numbers and booleans inside tool schemas


def measure(body: dict[str, Any]) -> TextSize:
    counts = [0, 0]
    for name in _TEXT_FIELDS:
        if name in body:
            _walk(body[name], counts)
    messages = body.get("messages", body.get("input"))  # Responses API: input items
    n_messages = len(messages) if isinstance(messages, list) else 1
    return TextSize(counts[0], n_messages, counts[1])


def count_output_tokens(text_bytes: int, deltas: int) -> int:
    """Output tokens of a stream whose provider never said: one per content delta
    (providers send about one token per delta), never more than the bytes streamed."""
    return min(deltas, text_bytes) if text_bytes else deltas
