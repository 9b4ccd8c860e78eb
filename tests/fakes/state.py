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

Tool calls (``tool_call = (name, arguments)``, off by default).  They apply when the
request carries a non-empty ``tools`` list, ``tool_choice`` is not "none" and the
conversation does not end with a tool result (OpenAI chat: last message role
``tool``; Anthropic: last user message holds a ``tool_result`` block; Responses: last
``input`` item is a ``function_call_output``).  The fake then answers with exactly
one call (optionally preceded by ``tool_call_text``) instead of the ``w0 w1 ...``
reply.  The arguments are the compact JSON ``orjson.dumps(arguments)`` split into
``F = min(3, len(json))`` near-equal fragments (``tool_call_fragments``), each
streamed as one delta (Anthropic sends an extra empty ``partial_json`` first, as
the real API does).  Output tokens of a tool-call answer = ``F + T`` where T is the
number of whitespace-separated words of ``tool_call_text`` (0 without it); OpenAI
adds ``reasoning_tokens`` as for text.  The request's max-token cap does not
truncate a tool call.  Text pieces (``tool_call_text``, ``thinking_text``) are
streamed one word per delta (``text_pieces``).  For ``cut_after_chunks`` every delta
event counts as one content chunk (text / thinking / signature / argument deltas,
including Anthropic's empty first ``partial_json``).

Thinking (Anthropic only, ``thinking_text``, off by default): when the request has
``thinking.type`` "enabled" (or "adaptive"), the answer starts with a thinking block
(text + random base64 signature); its tokens = words of ``thinking_text``, counted
in ``output_tokens`` and taken from ``max_tokens`` before the reply words are capped.

OpenAI Responses (``POST /v1/responses``): input tokens use the same formula with
``instructions`` as the system text and, as "messages", a string ``input`` (one
message) or the list items that are messages (their ``content`` text) or
``function_call_output`` (their ``output`` text) -- see `count_response_input_tokens`.
``input_tokens = max(P, cache_read_tokens)``, ``cached_tokens = cache_read_tokens``,
``output_tokens = words + reasoning_tokens`` (``reasoning_tokens`` in
``output_tokens_details``); ``max_output_tokens`` caps the words like
``max_tokens`` (status "incomplete", reason "max_output_tokens").
"""

from __future__ import annotations

import re
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
    # tool calls / thinking (see the module docstring); all off by default
    tool_call: tuple[str, dict[str, Any]] | None = None  # (tool name, arguments)
    tool_call_text: str | None = None  # short text sent before the tool call
    thinking_text: str | None = None  # Anthropic: thinking block when `thinking` is enabled
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


_PIECE = re.compile(r"\s*\S+")


def text_pieces(text: str) -> list[str]:
    """Split `text` into per-word deltas that concatenate back to it ("a b" -> ["a", " b"])."""
    pieces = _PIECE.findall(text)
    rest = len(text) - sum(map(len, pieces))
    if rest and pieces:
        pieces[-1] += text[-rest:]  # trailing whitespace rides on the last piece
    elif rest:
        pieces = [text]
    return pieces


def text_tokens(text: str | None) -> int:
    """Tokens of a tool-call / thinking text: its number of whitespace-separated words."""
    return len(text.split()) if text else 0


def tool_call_fragments(arguments: Any, n: int = 3) -> tuple[str, list[str]]:
    """(compact JSON of `arguments`, that JSON split into min(n, len) near-equal fragments)."""
    js = orjson.dumps(arguments).decode()
    k = min(n, len(js))
    if k == 0:
        return js, []
    bounds = [len(js) * i // k for i in range(k + 1)]
    return js, [js[bounds[i]:bounds[i + 1]] for i in range(k)]


def count_response_input_tokens(input_: Any, instructions: Any = None) -> int:
    """`count_input_tokens` for a Responses API ``input`` (+ ``instructions`` as system)."""
    if isinstance(input_, str):
        return count_input_tokens([{"content": input_}], instructions)
    messages: list[Any] = []
    if isinstance(input_, list):
        for item in input_:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "function_call_output":
                messages.append({"content": item.get("output")})
            elif kind in (None, "message") and "role" in item:
                messages.append({"content": item.get("content")})
    return count_input_tokens(messages, instructions)
