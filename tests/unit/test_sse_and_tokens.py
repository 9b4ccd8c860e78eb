"""The SSE parser (pass-through keeps raw bytes) and the token bound that sizes holds
(docs/billing.md)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from router.protocols.sse import SseEvent, SseParser
from router.tokens import measure


def feed_all(chunks: list[bytes]) -> tuple[list[SseEvent], SseParser]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events, parser


# --- SSE: fixed examples -------------------------------------------------------------------

ANTHROPIC_STREAM = (
    b'event: message_start\n'
    b'data: {"type":"message_start","message":{"usage":{"input_tokens":12}}}\n\n'
    b'event: ping\n'
    b'data: {"type": "ping"}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"H\xc3\xa9"}}\n\n'
    b'event: message_stop\n'
    b'data: {"type":"message_stop"}\n\n'
)


def test_named_events_and_data() -> None:
    events, parser = feed_all([ANTHROPIC_STREAM])
    assert [e.name for e in events] == [b"message_start", b"ping", b"content_block_delta",
                                        b"message_stop"]
    assert events[1].data == b'{"type": "ping"}'
    assert events[2].data.endswith(b'"text":"H\xc3\xa9"}}')
    assert b"".join(e.raw for e in events) == ANTHROPIC_STREAM
    assert parser.pending == b""


def test_event_is_emitted_only_when_its_blank_line_arrives() -> None:
    parser = SseParser()
    assert parser.feed(b"data: {\"a\":1}\n") == []
    assert parser.feed(b"\n") == [SseEvent(None, b'{"a":1}', b'data: {"a":1}\n\n')]


def test_multi_line_data_is_joined_with_newlines() -> None:
    events, _ = feed_all([b"data: first\ndata: second\ndata:third\n\n"])
    assert len(events) == 1
    assert events[0].data == b"first\nsecond\nthird"
    assert events[0].name is None


def test_only_one_leading_space_is_stripped_from_data() -> None:
    events, _ = feed_all([b"data:  two spaces\n\n", b"data:none\n\n"])
    assert [e.data for e in events] == [b" two spaces", b"none"]


def test_openai_done_and_comments() -> None:
    stream = b': keep-alive\n\ndata: {"choices":[]}\n\ndata: [DONE]\n\n'
    events, parser = feed_all([stream])
    datas = [e.data for e in events if e.data]
    assert datas == [b'{"choices":[]}', b"[DONE]"]
    # a comment heartbeat is passed through, never mistaken for data
    assert b"".join(e.raw for e in events) == stream
    assert parser.pending == b""


def test_crlf_line_endings() -> None:
    stream = (b"event: message_start\r\ndata: {\"x\":1}\r\n\r\n"
              b"data: a\r\ndata: b\r\n\r\n")
    for chunks in ([stream], [stream[:10], stream[10:30], stream[30:]]):
        events, parser = feed_all(chunks)
        assert [(e.name, e.data) for e in events] == [(b"message_start", b'{"x":1}'),
                                                      (None, b"a\nb")]
        assert parser.pending == b""


def test_crlf_split_at_every_position() -> None:
    stream = b"event: a\r\ndata: one\r\n\r\nevent: b\r\ndata: two\r\ndata: three\r\n\r\n"
    for cut in range(1, len(stream)):
        if stream[cut - 1:cut + 1] == b"\r\n":
            continue  # the CR|LF split is covered by the test below
        events, _ = feed_all([stream[:cut], stream[cut:]])
        assert [(e.name, e.data) for e in events] == [(b"a", b"one"), (b"b", b"two\nthree")], cut


def test_crlf_split_between_cr_and_lf() -> None:
    stream = b"event: a\r\ndata: one\r\n\r\n"
    results = []
    for cut in range(1, len(stream)):
        if stream[cut - 1:cut + 1] == b"\r\n":
            events, _ = feed_all([stream[:cut], stream[cut:]])
            results.append([(e.name, e.data) for e in events])
    assert results and all(r == [(b"a", b"one")] for r in results), results


# --- SSE: property -------------------------------------------------------------------------

line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                    max_size=30)
event_st = st.tuples(
    st.one_of(st.none(), st.sampled_from(["message_start", "content_block_delta", "ping",
                                          "message_delta", "message_stop", "error"])),
    st.lists(line_text, min_size=1, max_size=4),
)


def encode_event(name: str | None, lines: list[str]) -> bytes:
    out = f"event: {name}\n" if name else ""
    out += "".join(f"data: {line}\n" for line in lines)
    return (out + "\n").encode("utf-8")


@given(events=st.lists(event_st, min_size=1, max_size=8), data=st.data())
def test_events_survive_arbitrary_chunk_boundaries(events: list[tuple[str | None, list[str]]],
                                                   data: st.DataObject) -> None:
    stream = b"".join(encode_event(n, lines) for n, lines in events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts"))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    parsed, parser = feed_all(chunks)
    assert b"".join(e.raw for e in parsed) == stream
    assert [e.name for e in parsed] == [n.encode() if n else None for n, _ in events]
    assert [e.data for e in parsed] == ["\n".join(lines).encode("utf-8") for _, lines in events]
    assert parser.pending == b""


# --- token bound ---------------------------------------------------------------------------

text_st = st.text(max_size=200)  # any unicode: accents, CJK, emoji (4-byte UTF-8)


@st.composite
def chat_body(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """An OpenAI/Anthropic-like body and the UTF-8 byte count of every text in it."""
    total = 0
    messages = []
    for _ in range(draw(st.integers(1, 6))):
        role = draw(st.sampled_from(["user", "assistant", "system"]))
        if draw(st.booleans()):
            text = draw(text_st)
            total += len(text.encode("utf-8"))
            messages.append({"role": role, "content": text})
        else:
            parts = draw(st.lists(text_st, min_size=1, max_size=3))
            total += sum(len(p.encode("utf-8")) for p in parts)
            messages.append({"role": role,
                             "content": [{"type": "text", "text": p} for p in parts]})
    body: dict[str, Any] = {"model": "m", "messages": messages}
    if draw(st.booleans()):
        system = draw(text_st)
        total += len(system.encode("utf-8"))
        body["system"] = system
    return body, total


@given(chat_body(), st.integers(0, 5000))
def test_input_bound_is_at_least_the_utf8_bytes_of_all_text(case: tuple[dict[str, Any], int],
                                                            per_image: int) -> None:
    body, text_bytes = case
    size = measure(body)
    assert size.input_bound(per_image) >= text_bytes
    assert size.input_estimate(per_image) <= size.input_bound(per_image)


def test_input_bound_counts_bytes_not_characters() -> None:
    text = "日本語のテキスト" * 100 + "🙂" * 100  # 800 chars * 3 bytes + 100 * 4 bytes
    size = measure({"messages": [{"role": "user", "content": text}]})
    assert size.input_bound(0) >= 800 * 3 + 100 * 4


def test_images_count_the_per_image_maximum() -> None:
    big_b64 = "A" * 200_000
    body = {"messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "what is in these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + big_b64}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": big_b64}},
        ]},
    ]}
    size = measure(body)
    # each of the two images adds exactly the per-image maximum to the bound
    assert size.input_bound(1600) - size.input_bound(0) == 2 * 1600
    assert size.input_bound(1600) >= len("what is in these?") + 2 * 1600
    # the base64 payload is not billed as text (a photo would otherwise need a huge hold)
    assert size.input_bound(0) < len(big_b64)
    assert size.input_estimate(1600) <= size.input_bound(1600)


def test_tools_and_instructions_are_in_the_bound() -> None:
    description = "Look up the weather for a city. " * 50
    body = {"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "weather",
                                                        "description": description}}]}
    assert measure(body).input_bound(0) >= len(description) + 2


def utf8_bytes_of_everything(value: Any) -> int:
    """UTF-8 bytes of every string and object key in `value` (numbers etc. ignored)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, dict):
        return sum(len(k.encode("utf-8")) + utf8_bytes_of_everything(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(utf8_bytes_of_everything(v) for v in value)
    return 0


def test_non_ascii_keys_in_tool_schemas_count_their_bytes() -> None:
    props = {f"名前の長いプロパティ{i}": {"type": "string"} for i in range(20)}
    body = {"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {
                "name": "f", "parameters": {"type": "object", "properties": props}}}]}
    assert measure(body).input_bound(0) >= utf8_bytes_of_everything(body["tools"])


def test_a_tool_schema_property_named_type_is_text_not_an_image() -> None:
    # Claude Code's tools have properties called "type" whose value is a schema object
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [{
        "name": "Grep", "input_schema": {"type": "object", "properties": {
            "type": {"type": "string", "description": "File type"}}}}]}
    size = measure(body)
    assert size.images == 0
    assert size.text_bytes > len("File type")


def test_responses_input_items_count_as_messages() -> None:
    body = {"input": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]}
    assert measure(body).messages == 3


def test_event_ids_number_each_complete_event_and_skip_comments() -> None:
    from router.transports.sse import HEARTBEAT, number_events

    data = b"data: a\n\nevent: x\ndata: b\n\n" + HEARTBEAT + b"data: c\n\n"
    numbered, next_seq = number_events(data, 5)
    assert numbered == (b"id: 5\ndata: a\n\nid: 6\nevent: x\ndata: b\n\n" + HEARTBEAT
                        + b"id: 7\ndata: c\n\n")
    assert next_seq == 8
    events = SseParser().feed(numbered)
    assert [e.data for e in events if e.data] == [b"a", b"b", b"c"]


def test_resume_position_prefers_after_and_refuses_garbage() -> None:
    from router.transports.sse import parse_after

    assert parse_after(None, None) == 0
    assert parse_after("7", None) == 7
    assert parse_after("7", "3") == 3
    assert parse_after("seven", None) is None
    assert parse_after(None, "-1") is None
    assert parse_after(None, "\u00b2") is None  # a digit to str.isdigit, not to int()
    assert parse_after(None, "9" * 5000) is None
