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

Misbehaviour switches (all off by default; the defaults are today's faithful behaviour):

* ``ignore_limits: bool = False`` -- ignore every output limit of the request
  (``max_tokens``, ``max_completion_tokens``, Responses ``max_output_tokens``; Anthropic's
  ``max_tokens`` also no longer covers thinking): always ``reply_words`` words, finished
  normally ("stop" / "end_turn" / status "completed"), usage counts the words sent.
* ``honour_only_max_tokens: bool = False`` -- OpenAI chat only, like llama.cpp's server:
  ``max_tokens`` caps the reply, ``max_completion_tokens`` is ignored.
* ``honour_n: bool = False`` -- OpenAI chat: an integer ``n`` > 1 is answered with n
  choices (``index`` 0..n-1), each the same (capped) ``w0 w1 ...`` reply;
  ``completion_tokens = n * words + reasoning_tokens``.  Streaming: every chunk carries
  one choice -- first a role chunk per choice, then per word one delta per choice
  (index 0, 1, ..., n-1), then a finish chunk per choice (then usage / [DONE]); each
  per-choice delta counts as one chunk for ``cut_after_chunks``.  Tool-call answers
  stay single-choice.  Off: ``n`` is ignored (one choice).
* ``usage_mode: str = "normal"`` -- "none": no usage at all (OpenAI chat: no ``usage``
  key in whole answers, no usage chunk and no ``"usage": null`` in chunks even with
  ``stream_options.include_usage``; Responses: ``"usage": null`` in whole answers and
  in the final ``response.completed`` / ``.incomplete``; Anthropic, which always sends
  usage objects: every count 0 -- input, cache and output -- in the whole answer,
  ``message_start`` and ``message_delta``, as some Anthropic-compatible servers do).
  "zero_input": usage as normal except every input count is 0 and no cache tokens
  (OpenAI ``prompt_tokens`` / ``cached_tokens``, Responses ``input_tokens`` /
  ``cached_tokens``, Anthropic ``input_tokens`` and both cache fields); totals follow.
  Any other value raises ``ValueError`` in the app (a 500 and a logged traceback).
  ``ignore_include_usage`` still works on its own.
* ``error_before_content: str | None = None`` -- streaming requests only (non-streaming
  ones are answered normally; use ``fail_status`` for those): HTTP 200, an SSE stream
  whose error event comes before any content, then the body ends normally (no [DONE],
  no message_stop).  The value is the error type.  OpenAI chat (also tool calls): the
  only event is ``data: {"error": {"message", "type": <value>, "param": null, "code":
  null}}``.  Responses: ``response.created`` then ``event: error`` with ``{"type":
  "error", "code": <value>, "message", "param": null, "sequence_number": 1}``.
  Anthropic (also tool use / thinking): ``message_start`` then ``event: error`` with
  ``{"type": "error", "error": {"type": <value>, "message"}}``.  The message is the
  provider's usual one for that type (Anthropic "overloaded_error" -> "Overloaded",
  OpenAI "server_error" -> "The server had an error while processing your request.
  Sorry about that!"), else the generic server-error message.

``cut_after_chunks = 0`` drops the connection right after the head (chat: the role
chunk(s); Responses: ``response.created`` ... ``response.content_part.added``;
Anthropic: ``message_start``, ``content_block_start``, ``ping``), before any content.

Endless streams: the plain text reply of all three APIs is generated lazily, so
``reply_words = 10**9`` (with ``chunk_delay_s > 0``, or without a delay: then it goes out
in large batches) streams in constant memory.  A stream that takes more than one
write stops quietly when the client disconnects.  Non-streaming answers and tool-call /
thinking answers are still built whole (keep ``reply_words`` sane for those).
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


# The providers' free read-only calls a router's health probe makes (model lists, key
# info): recorded in `FakeState.probes`, apart from the model calls in `received`, so a
# probe that lands during a test never counts as a call that reached the provider.
PROBE_PATHS = frozenset({"/v1/models", "/v1beta/models", "/openai/models", "/openai/v1/models",
                         "/v1/key", "/api/v1/key", "/models"})


def is_probe(request: ReceivedRequest) -> bool:
    return request.method == "GET" and request.path.split("?", 1)[0] in PROBE_PATHS


@dataclass
class FakeState:
    """Fault switches, content knobs and the record of received requests."""

    received: list[ReceivedRequest] = field(default_factory=list)
    probes: list[ReceivedRequest] = field(default_factory=list)  # GETs of PROBE_PATHS
    # --- fault switches -------------------------------------------------------
    fail_status: int | None = None  # answer everything with this status + real error body
    first_byte_delay_s: float = 0.0  # sleep before sending anything
    chunk_delay_s: float = 0.0  # sleep before each streamed content chunk
    cut_after_chunks: int | None = None  # streaming: drop connection after N content chunks
    ignore_include_usage: bool = False  # OpenAI: never send the usage chunk (llama.cpp)
    expected_api_key: str | None = None  # when set, other keys get the provider's 401
    ignore_limits: bool = False  # ignore max_tokens / max_completion_tokens / max_output_tokens
    honour_only_max_tokens: bool = False  # OpenAI chat: max_completion_tokens ignored (llama.cpp)
    honour_n: bool = False  # OpenAI chat: answer an integer `n` > 1 with n choices
    usage_mode: str = "normal"  # "normal" | "none" (no usage) | "zero_input" (input counts 0)
    error_before_content: str | None = None  # streaming: SSE error event of this type, no content
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
    hold_streams: bool = False  # OpenAI chat, paced: streams wait after their first chunk
    first_chunk_now: bool = False  # OpenAI chat, paced: the first content chunk at once
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, request: ReceivedRequest) -> None:
        if not self.keep_requests:
            return
        with self._lock:
            (self.probes if is_probe(request) else self.received).append(request)

    def probe_snapshot(self) -> list[ReceivedRequest]:
        """A copy of the probe requests received (model lists, key info)."""
        with self._lock:
            return list(self.probes)

    def snapshot(self) -> list[ReceivedRequest]:
        """A copy of the received requests, safe to iterate while the server runs."""
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        """Forget received requests (switches are kept)."""
        with self._lock:
            self.received.clear()
            self.probes.clear()

    def reset(self) -> None:
        """Forget received requests and restore every switch to its default."""
        defaults = FakeState()
        for name in self.__dataclass_fields__:
            if name not in ("received", "probes", "_lock"):
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


USAGE_MODES = ("normal", "none", "zero_input")

_WORD_JSON: list[bytes] = []
_WORD_JSON_MAX = 1 << 16  # endless streams must not grow the cache without bound


def word(i: int) -> str:
    """The i-th streamed content piece: "w0", " w1", " w2", ..."""
    return f"w{i}" if i == 0 else f" w{i}"


def word_json(i: int) -> bytes:
    """JSON-encoded `word(i)`, cached (the fake is also the benchmark upstream)."""
    if i < len(_WORD_JSON):
        return _WORD_JSON[i]
    if i >= _WORD_JSON_MAX:
        return orjson.dumps(word(i))
    while len(_WORD_JSON) <= i:
        _WORD_JSON.append(orjson.dumps(word(len(_WORD_JSON))))
    return _WORD_JSON[i]


def usage_mode(state: FakeState) -> str:
    """`state.usage_mode`, checked (a typo must not silently mean "normal")."""
    mode = state.usage_mode
    if mode not in USAGE_MODES:
        raise ValueError(f"FakeState.usage_mode must be one of {USAGE_MODES}, not {mode!r}")
    return mode


def reply_text(n_words: int) -> str:
    return " ".join(f"w{i}" for i in range(n_words))


def capped_words(state: FakeState, cap: Any) -> tuple[int, bool]:
    """(words to send, truncated?) given the request's max-token cap (none with ignore_limits)."""
    n = max(state.reply_words, 0)
    if not state.ignore_limits and isinstance(cap, int) and not isinstance(cap, bool) and cap < n:
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
