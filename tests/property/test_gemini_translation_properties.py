"""Gemini translation properties (hypothesis), like those of tests/property/
test_translation_roundtrip.py: nothing a conversation carries is lost on its way to
`generateContent`, and a streamed Gemini answer, however it is chunked, adds up to the
whole answer translated at once, for both client formats."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from router.protocols.chat_over_gemini import (ChatFromGeminiStream, to_chat_response,
                                               to_gemini_request)
from router.protocols.messages_over_gemini import (MessagesFromGeminiStream,
                                                   to_messages_response)
from router.protocols.messages_over_gemini import to_gemini_request as messages_to_gemini
from router.protocols.translate import UpstreamTarget
from tests.property.test_translation_roundtrip import (_accumulate_anthropic, _accumulate_chat,
                                                       _feed, _sse, _split, arguments, names,
                                                       openai_conversations, text)

TARGET = UpstreamTarget("gemini-2.5-flash", "gemini")


def _texts(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for p in parts if not p.get("thought"))


@given(openai_conversations())
def test_a_chat_conversation_reaches_gemini_whole(body: dict[str, Any]) -> None:
    sent = to_gemini_request(body, TARGET)
    contents = sent["contents"]
    assert all(c["role"] in ("user", "model") for c in contents)
    assert all(a["role"] != b["role"] for a, b in zip(contents, contents[1:])), "merged"
    system = [m["content"] for m in body["messages"] if m["role"] == "system"]
    if system:
        assert all(s in _texts(sent["systemInstruction"]["parts"]) for s in system)
    said = [m["content"] for m in body["messages"] if m["role"] == "user"]
    users = "".join(_texts(c["parts"]) for c in contents if c["role"] == "user")
    assert all(s in users for s in said)
    calls = [(c["function"]["name"], orjson.loads(c["function"]["arguments"]))
             for m in body["messages"] for c in m.get("tool_calls") or ()]
    sent_calls = [(p["functionCall"]["name"], p["functionCall"].get("args", {}))
                  for c in contents for p in c["parts"] if "functionCall" in p]
    assert sent_calls == calls, "every call, its name and arguments, in order"
    by_id = {c["id"]: c["function"]["name"] for m in body["messages"]
             for c in m.get("tool_calls") or ()}
    results = [by_id[m["tool_call_id"]] for m in body["messages"] if m["role"] == "tool"]
    sent_results = [p["functionResponse"]["name"] for c in contents for p in c["parts"]
                    if "functionResponse" in p]
    assert sent_results == results, "every result, named after the call it answers"
    declared = [d["name"] for t in sent.get("tools", []) for d in t["functionDeclarations"]]
    assert declared == [t["function"]["name"] for t in body.get("tools", [])]
    assert "model" not in sent and "stream" not in sent


@given(openai_conversations())
def test_an_anthropic_conversation_reaches_gemini_as_the_same_chat_one_does(
        body: dict[str, Any]) -> None:
    """Messages -> Gemini and Chat -> Gemini say the same calls and results."""
    from router.protocols.chat_over_messages import to_messages_request

    via_messages = messages_to_gemini(to_messages_request(body, UpstreamTarget(
        "m", "anthropic")), TARGET)
    direct = to_gemini_request(body, TARGET)

    def calls(request: dict[str, Any]) -> list[Any]:
        return [(p["functionCall"]["name"], p["functionCall"].get("args", {}))
                if "functionCall" in p else p["functionResponse"]["name"]
                for c in request["contents"] for p in c["parts"]
                if "functionCall" in p or "functionResponse" in p]

    assert calls(via_messages) == calls(direct)


@st.composite
def gemini_answers(draw: st.DrawFn) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": draw(text)} for _ in range(draw(st.integers(0, 2)))]
    parts += [{"functionCall": {"name": draw(names), "args": draw(arguments)}}
              for _ in range(draw(st.integers(0, 2)))]
    if not parts:
        parts = [{"text": draw(text)}]
    prompt, out = draw(st.integers(0, 10**5)), draw(st.integers(0, 10**5))
    cached = draw(st.integers(0, prompt))
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": out,
             "totalTokenCount": prompt + out}
    if cached:
        usage["cachedContentTokenCount"] = cached
    return {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": draw(st.sampled_from(["STOP", "MAX_TOKENS"])),
                            "index": 0}],
            "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}


def _gemini_stream(answer: dict[str, Any], cuts: list[int]) -> list[bytes]:
    """The chunks Gemini streams: text split anywhere, each call whole, the finish reason
    and usage on the last."""
    candidate = answer["candidates"][0]
    chunks: list[list[dict[str, Any]]] = []
    for part in candidate["content"]["parts"]:
        if "text" in part:
            chunks += [[{"text": piece}] for piece in _split(part["text"], cuts)]
        else:
            chunks.append([part])
    events = [{"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
               "modelVersion": answer["modelVersion"], "responseId": answer["responseId"]}
              for parts in chunks]
    events[-1]["candidates"][0]["finishReason"] = candidate["finishReason"]
    events[-1]["usageMetadata"] = answer["usageMetadata"]
    return [_sse(e) for e in events]


@given(gemini_answers(), st.lists(st.integers(0, 200), max_size=4), st.integers(0, 10**4))
def test_a_gemini_stream_adds_up_to_the_whole_answer_for_chat_clients(
        answer: dict[str, Any], cuts: list[int], split: int) -> None:
    raw = _gemini_stream(answer, cuts)
    streamed = _accumulate_chat(_feed(ChatFromGeminiStream(wants_usage=True), raw,
                                      split % (len(b"".join(raw)) + 1)))
    whole = to_chat_response(answer)
    choice = whole["choices"][0]
    assert streamed["content"] == (choice["message"]["content"] or None)
    assert [(c["function"]["name"], orjson.loads(c["function"]["arguments"]))
            for c in streamed["tool_calls"]] == \
        [(c["function"]["name"], orjson.loads(c["function"]["arguments"]))
         for c in choice["message"].get("tool_calls") or ()]
    assert streamed["finish_reason"] == choice["finish_reason"]
    assert streamed["usage"] == whole["usage"]


@given(gemini_answers(), st.lists(st.integers(0, 200), max_size=4), st.integers(0, 10**4))
def test_a_gemini_stream_adds_up_to_the_whole_answer_for_anthropic_clients(
        answer: dict[str, Any], cuts: list[int], split: int) -> None:
    raw = _gemini_stream(answer, cuts)
    streamed = _accumulate_anthropic(_feed(MessagesFromGeminiStream(), raw,
                                           split % (len(b"".join(raw)) + 1)))
    whole = to_messages_response(answer)

    def meaning(blocks: list[dict[str, Any]]) -> list[Any]:
        return [b["text"] if b["type"] == "text" else (b["name"], b["input"])
                for b in blocks if b["type"] in ("text", "tool_use")]

    assert "".join(x for x in meaning(streamed["content"]) if isinstance(x, str)) == \
        "".join(x for x in meaning(whole["content"]) if isinstance(x, str))
    assert [x for x in meaning(streamed["content"]) if not isinstance(x, str)] == \
        [x for x in meaning(whole["content"]) if not isinstance(x, str)]
    assert streamed["stop_reason"] == whole["stop_reason"]
    assert streamed["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    assert streamed["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
