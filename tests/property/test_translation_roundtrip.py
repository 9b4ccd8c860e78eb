"""Translation properties (hypothesis): nothing a conversation carries is lost on the way.

- OpenAI -> Anthropic -> OpenAI keeps every message's text, the tool definitions, every
  tool call (id, name, arguments) and every tool result; the reverse trip likewise.
- A streamed answer translated event by event adds up to the same answer as the whole
  answer translated at once, in both directions, whatever the chunking.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from router.protocols.chat_over_messages import (ChatFromMessagesStream, to_chat_response,
                                                 to_messages_request)
from router.protocols.messages_over_chat import (MessagesFromChatStream, to_chat_request,
                                                 to_messages_response)
from router.protocols.sse import SseParser
from router.protocols.translate import UpstreamTarget

TARGET = UpstreamTarget("some-model", "anthropic")
text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
call_ids = st.from_regex(r"call_[A-Za-z0-9]{6,12}", fullmatch=True)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | text,
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(names, inner, max_size=3), max_leaves=8)
arguments = st.dictionaries(names, json_values, max_size=4)
schemas = st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
    names, st.sampled_from([{"type": "string"}, {"type": "integer"}]), max_size=3)})


@st.composite
def openai_conversations(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    used_ids: set[str] = set()
    for _ in range(draw(st.integers(1, 4))):
        messages.append({"role": "user", "content": draw(text)})
        calls = []
        for _ in range(draw(st.integers(0, 2))):
            call_id = draw(call_ids.filter(lambda c: c not in used_ids))
            used_ids.add(call_id)
            calls.append({"id": call_id, "type": "function", "function": {
                "name": draw(names), "arguments": orjson.dumps(draw(arguments)).decode()}})
        assistant: dict[str, Any] = {"role": "assistant",
                                     "content": draw(st.none() | text) if calls else draw(text)}
        if calls:
            assistant["tool_calls"] = calls
        messages.append(assistant)
        messages += [{"role": "tool", "tool_call_id": c["id"], "content": draw(text)}
                     for c in calls]
    body: dict[str, Any] = {"model": "m", "messages": messages}
    tools = draw(st.lists(st.builds(lambda n, d, p: {"type": "function", "function": {
        "name": n, "description": d, "parameters": p}}, names, text, schemas), max_size=3))
    if tools:
        body["tools"] = tools
    return body


def _text(content: Any) -> str | None:
    if isinstance(content, list):
        return "".join(p["text"] for p in content)
    return content


def _normal(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a conversation means: roles, texts, tool calls and results, in order."""
    out = []
    for m in messages:
        calls = tuple((c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
                      for c in m.get("tool_calls") or ())
        out.append((m["role"], _text(m.get("content")) or None, calls, m.get("tool_call_id")))
    return out


@given(openai_conversations())
def test_openai_to_anthropic_to_openai_keeps_messages_tools_and_calls(body: dict[str, Any]) -> None:
    anthropic_body = to_messages_request(body, TARGET)
    back = to_chat_request(anthropic_body, UpstreamTarget("m", "openai"))
    assert _normal(back["messages"]) == _normal(body["messages"])
    if body.get("tools"):
        assert back["tools"] == body["tools"]
    else:  # a tool history alone: its tools are defined (Anthropic needs them), never called
        used = {c["function"]["name"] for m in body["messages"] for c in m.get("tool_calls", ())}
        assert {t["function"]["name"] for t in back.get("tools", [])} == used
        assert back.get("tool_choice") == ("none" if used else None)


@given(openai_conversations())
def test_anthropic_to_openai_to_anthropic_is_stable(body: dict[str, Any]) -> None:
    anthropic_body = to_messages_request(body, TARGET)
    again = to_messages_request(to_chat_request(anthropic_body, UpstreamTarget("m", "openai")),
                                TARGET)
    assert again == anthropic_body


# --- streams add up to the whole answer ------------------------------------------------------

@st.composite
def anthropic_answers(draw: st.DrawFn) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        content.append({"type": "text", "text": draw(text)})
    for _ in range(draw(st.integers(0, 2))):
        content.append({"type": "tool_use", "id": draw(call_ids), "name": draw(names),
                        "input": draw(arguments)})
    stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else draw(
        st.sampled_from(["end_turn", "max_tokens", "stop_sequence"]))
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": draw(st.integers(0, 10**5)),
                      "output_tokens": draw(st.integers(0, 10**5)),
                      "cache_read_input_tokens": draw(st.integers(0, 1000)),
                      "cache_creation_input_tokens": draw(st.integers(0, 1000))}}


def _sse(data: Any, event: str | None = None) -> bytes:
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + \
        orjson.dumps(data) + b"\n\n"


def _anthropic_stream(message: dict[str, Any], cuts: list[int]) -> list[bytes]:
    events = [_sse({"type": "message_start", "message": {**message, "content": [],
                                                        "stop_reason": None, "usage": {
            k: v for k, v in message["usage"].items() if k != "output_tokens"} | {
            "output_tokens": 1}}}, "message_start")]
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(_sse({"type": "content_block_start", "index": i,
                                "content_block": {"type": "text", "text": ""}}))
            pieces = _split(block["text"], cuts)
            events += [_sse({"type": "content_block_delta", "index": i,
                             "delta": {"type": "text_delta", "text": p}}) for p in pieces]
        else:
            events.append(_sse({"type": "content_block_start", "index": i, "content_block": {
                **block, "input": {}}}))
            pieces = _split(orjson.dumps(block["input"]).decode(), cuts)
            events += [_sse({"type": "content_block_delta", "index": i, "delta": {
                "type": "input_json_delta", "partial_json": p}}) for p in pieces]
        events.append(_sse({"type": "content_block_stop", "index": i}))
    events += [_sse({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                        "stop_sequence": None},
                     "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
               _sse({"type": "message_stop"})]
    return events


def _split(value: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(value) + 1) for c in cuts} | {0, len(value)})
    return [value[a:b] for a, b in zip(points, points[1:]) if value[a:b]] or [value]


def _feed(translator: Any, raw: list[bytes], split_at: int) -> bytes:
    joined = b"".join(raw)
    parser = SseParser()
    out = b""
    for chunk in (joined[:split_at], joined[split_at:]):  # one network split anywhere
        for event in parser.feed(chunk):
            out += translator.feed(event)
    return out


def _accumulate_chat(stream: bytes) -> dict[str, Any]:
    """What the OpenAI SDK makes of the chunks: one message, finish reason, usage."""
    content, calls, finish, usage = "", {}, None, None
    for event in SseParser().feed(stream):
        if event.data == b"[DONE]":
            break
        chunk = orjson.loads(event.data)
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                entry = calls.setdefault(call["index"], {"id": call.get("id"), "type": "function",
                                                         "function": {"name": "",
                                                                      "arguments": ""}})
                entry["function"]["name"] += call.get("function", {}).get("name") or ""
                entry["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {"content": content or None, "tool_calls": [calls[i] for i in sorted(calls)],
            "finish_reason": finish, "usage": usage}


@given(anthropic_answers(), st.lists(st.integers(0, 200), max_size=4), st.integers(0, 10**4))
def test_anthropic_stream_translated_adds_up_to_the_whole_answer(
        message: dict[str, Any], cuts: list[int], split: int) -> None:
    raw = _anthropic_stream(message, cuts)
    streamed = _accumulate_chat(_feed(ChatFromMessagesStream(wants_usage=True), raw,
                                      split % (len(b"".join(raw)) + 1)))
    whole = to_chat_response(message)
    choice = whole["choices"][0]
    assert streamed["content"] == (choice["message"]["content"] or None)
    assert streamed["tool_calls"] == choice["message"].get("tool_calls", [])
    assert streamed["finish_reason"] == choice["finish_reason"]
    assert streamed["usage"] == whole["usage"]


def _chat_stream(message: dict[str, Any], cuts: list[int]) -> list[bytes]:
    """The OpenAI chunks a provider would stream for the chat form of `message`."""
    whole = to_chat_response(message)
    m = whole["choices"][0]["message"]
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    for piece in _split(m["content"], cuts) if m["content"] else []:
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                            "finish_reason": None}]})
    for i, call in enumerate(m.get("tool_calls") or ()):
        chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
            "index": i, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""}}]},
            "finish_reason": None}]})
        for piece in _split(call["function"]["arguments"], cuts):
            chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
                "index": i, "function": {"arguments": piece}}]}, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {},
                                        "finish_reason": whole["choices"][0]["finish_reason"]}]})
    chunks.append({**base, "choices": [], "usage": whole["usage"]})
    return [_sse(c) for c in chunks] + [b"data: [DONE]\n\n"]


def _accumulate_anthropic(stream: bytes) -> dict[str, Any]:
    """What the Anthropic SDK makes of the events: content blocks, stop reason, usage."""
    content: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    stop, usage = None, {}
    names = [e.name for e in SseParser().feed(stream)]
    assert names[0] == b"message_start" and names[-1] == b"message_stop"
    for event in SseParser().feed(stream):
        data = orjson.loads(event.data)
        kind = data["type"]
        if kind == "message_start":
            usage = dict(data["message"]["usage"])
        elif kind == "content_block_start":
            assert data["index"] == len(content)
            content.append(dict(data["content_block"]))
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                content[data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop" and data["index"] in partial:
            content[data["index"]]["input"] = orjson.loads(partial[data["index"]])
        elif kind == "message_delta":
            stop = data["delta"]["stop_reason"]
            usage.update(data["usage"])
    return {"content": content, "stop_reason": stop, "usage": usage}


@given(anthropic_answers(), st.lists(st.integers(0, 200), max_size=4), st.integers(0, 10**4))
def test_openai_stream_translated_adds_up_to_the_whole_answer(
        message: dict[str, Any], cuts: list[int], split: int) -> None:
    raw = _chat_stream(message, cuts)
    streamed = _accumulate_anthropic(_feed(MessagesFromChatStream(), raw,
                                           split % (len(b"".join(raw)) + 1)))
    chat_whole = to_chat_response(message)
    whole = to_messages_response(chat_whole)
    assert streamed["content"] == whole["content"]
    assert streamed["stop_reason"] == whole["stop_reason"]
    assert streamed["usage"] == whole["usage"]
    # and the texts and calls are the original Anthropic answer's
    texts = "".join(b["text"] for b in message["content"] if b["type"] == "text")
    assert "".join(b.get("text", "") for b in streamed["content"]) == texts
    assert [(b["id"], b["name"], b["input"]) for b in streamed["content"]
            if b["type"] == "tool_use"] == [(b["id"], b["name"], b["input"])
                                            for b in message["content"]
                                            if b["type"] == "tool_use"]
