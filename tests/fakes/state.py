"""Shared, mutable state of the fake LLM providers.

One `FakeState` is shared between the test thread (which flips fault switches and
reads what was received) and the server thread (which records every request and
reads the switches on each request).  Plain attribute writes are atomic in CPython,
so only the list of received requests is guarded by a lock.

This module also holds the deterministic content / token model both fakes use:

* reply: words ``w0 w1 ... w{n-1}``; streamed one word per delta chunk
  (``"w0"``, ``" w1"``, ``" w2"`` ...), so output tokens == words sent;
* input tokens ("prompt size" P) ==
  ``ceil(B / 4) + 3 * M`` where B is the total UTF-8 byte length of all text in the
  request's messages (string content, ``text`` of content parts, nested
  ``tool_result`` content) plus the Anthropic top-level ``system`` text, and M is
  the number of entries in ``messages`` (OpenAI system messages are messages).
  Hence P <= B + 3 * M always.

Cache / reasoning knobs: OpenAI reports ``prompt_tokens = max(P, cache_read_tokens)``
with ``cached_tokens = cache_read_tokens`` and ``completion_tokens = words +
reasoning_tokens``; Anthropic reports ``input_tokens = max(P - cache_read - cache_write,
0)`` plus the two cache fields (keep cache_read + cache_write <= P to stay within P).
``cut_after_chunks`` and ``chunk_delay_s`` only affect streaming responses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

PER_MESSAGE_OVERHEAD_TOKENS = 3


@dataclass
class ReceivedRequest:
    """One request as it reached the fake upstream."""

    method: str
    path: str  # includes "?query" when present
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Any  # parsed JSON, or None (no body / invalid JSON)
    raw_body: bytes = b""
    json_error: bool = False  # True when a body was sent but was not valid JSON


@dataclass
class FakeState:
    """Fault switches, content knobs and the record of received requests."""

    received: list[ReceivedRequest] = field(default_factory=list)
    # --- fault switches -------------------------------------------------------
    fail_status: int | None = None  # answer everything with this status + real error body
    first_byte_delay_s: float = 0.0  # sleep before sending anything
    chunk_delay_s: float = 0.0  # sleep before each streamed content chunk
    cut_after_chunks: int | None = None  # streaming: drop connection after N content chunks
    ignore_include_usage: bool = False  # OpenAI: never send the usage chunk (llama.cpp)
    expected_api_key: str | None = None  # when set, other keys get the provider's 401
    # --- content / usage ------------------------------------------------------
    reply_words: int = 12
    cache_read_tokens: int = 0  # OpenAI cached_tokens / Anthropic cache_read_input_tokens
    cache_write_tokens: int = 0  # Anthropic cache_creation_input_tokens (OpenAI: none)
    reasoning_tokens: int = 0  # OpenAI completion_tokens_details.reasoning_tokens
    keep_requests: bool = True  # False: don't grow `received` (long benchmark runs)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, request: ReceivedRequest) -> None:
        if not self.keep_requests:
            return
        with self._lock:
            self.received.append(request)

    def snapshot(self) -> list[ReceivedRequest]:
        """A copy of the received requests, safe to iterate while the server runs."""
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        """Forget received requests (switches are kept)."""
        with self._lock:
            self.received.clear()

    def reset(self) -> None:
        """Forget received requests and restore every switch to its default."""
        defaults = FakeState()
        for name in self.__dataclass_fields__:
            if name not in ("received", "_lock"):
                setattr(self, name, getattr(defaults, name))
        self.clear()

    @property
    def last(self) -> ReceivedRequest | None:
        with self._lock:
            return self.received[-1] if self.received else None


def _text_bytes(content: Any) -> int:
    """UTF-8 byte length of the text inside a message ``content`` / ``system`` value."""
    if isinstance(content, str):
        return len(content.encode())
    total = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                total += len(part.encode())
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text.encode())
                if part.get("type") == "tool_result":
                    total += _text_bytes(part.get("content"))
    return total


def count_input_tokens(messages: Any, system: Any = None) -> int:
    """Deterministic prompt size: ceil(text_bytes / 4) + 3 per message."""
    msgs = messages if isinstance(messages, list) else []
    n_bytes = _text_bytes(system)
    for msg in msgs:
        if isinstance(msg, dict):
            n_bytes += _text_bytes(msg.get("content"))
    return (n_bytes + 3) // 4 + PER_MESSAGE_OVERHEAD_TOKENS * len(msgs)


_WORD_JSON: list[bytes] = []


def word(i: int) -> str:
    """The i-th streamed content piece: "w0", " w1", " w2", ..."""
    return f"w{i}" if i == 0 else f" w{i}"


def word_json(i: int) -> bytes:
    """JSON-encoded `word(i)`, cached (the fake is also the benchmark upstream)."""
    while len(_WORD_JSON) <= i:
        _WORD_JSON.append(orjson.dumps(word(len(_WORD_JSON))))
    return _WORD_JSON[i]


def reply_text(n_words: int) -> str:
    return " ".join(f"w{i}" for i in range(n_words))


def capped_words(state: FakeState, cap: Any) -> tuple[int, bool]:
    """(words to send, truncated?) given the request's max-token cap."""
    n = max(state.reply_words, 0)
    if isinstance(cap, int) and not isinstance(cap, bool) and cap < n:
        return max(cap, 0), True
    return n, False
