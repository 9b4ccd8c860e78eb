"""Bedrock Converse translation properties (hypothesis): an Anthropic conversation keeps
its texts, tool calls and tool results on its way to Converse, and a ConverseStream,
however its text and tool input are cut, adds up to the whole Converse answer read as
one Anthropic message."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from router.protocols.chat_over_messages import to_messages_request
from router.protocols.translate import UpstreamTarget
from router.providers.bedrock_converse import ConverseEvents, anthropic_answer, converse_body
from tests.property.test_translation_roundtrip import (_split, arguments, call_ids, names,
                                                       openai_conversations, text)


@given(openai_conversations())
def test_an_anthropic_conversation_reaches_converse_whole(chat: dict[str, Any]) -> None:
    body = to_messages_request(chat, UpstreamTarget("m", "anthropic"))
    sent = orjson.loads(converse_body(orjson.dumps(body)))

    def meaning(blocks: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for b in blocks:
            if b.get("type") == "text" or "text" in b and "type" not in b:
                out.append(("text", b["text"]))
            elif b.get("type") == "tool_use" or "toolUse" in b:
                use = b.get("toolUse", b)
                out.append(("call", use.get("toolUseId", use.get("id")), use["name"],
                            use["input"]))
            elif b.get("type") == "tool_result" or "toolResult" in b:
                result = b.get("toolResult", b)
                out.append(("result", result.get("toolUseId", result.get("tool_use_id"))))
        return out

    wanted = [(m["role"], meaning(m["content"] if isinstance(m["content"], list)
                                  else [{"type": "text", "text": m["content"]}]))
              for m in body["messages"]]
    assert [(m["role"], meaning(m["content"])) for m in sent["messages"]] == \
        [w for w in wanted if w[1]]
    if body.get("system"):
        system = body["system"] if isinstance(body["system"], str) else "".join(
            b["text"] for b in body["system"])
        assert "".join(s["text"] for s in sent["system"]) == system
    assert "model" not in sent and "stream" not in sent


@st.composite
def converse_answers(draw: st.DrawFn) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": draw(text)} for _ in range(draw(st.integers(0, 2)))]
    content += [{"toolUse": {"toolUseId": draw(call_ids), "name": draw(names),
                             "input": draw(arguments)}} for _ in range(draw(st.integers(0, 2)))]
    if not content:
        content = [{"text": draw(text)}]
    stop = "tool_use" if any("toolUse" in b for b in content) else draw(
        st.sampled_from(["end_turn", "max_tokens", "stop_sequence"]))
    return {"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": draw(st.integers(0, 10**5)),
                      "outputTokens": draw(st.integers(0, 10**5)),
                      "totalTokens": 0}}


def _converse_stream(answer: dict[str, Any], cuts: list[int]) -> list[tuple[str, bytes]]:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for i, block in enumerate(answer["output"]["message"]["content"]):
        if "text" in block:
            events += [("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": p}})
                       for p in _split(block["text"], cuts)]
        else:
            use = block["toolUse"]
            events.append(("contentBlockStart", {"contentBlockIndex": i, "start": {
                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            events += [("contentBlockDelta", {"contentBlockIndex": i,
                                              "delta": {"toolUse": {"input": p}}})
                       for p in _split(orjson.dumps(use["input"]).decode(), cuts)]
        events.append(("contentBlockStop", {"contentBlockIndex": i}))
    events += [("messageStop", {"stopReason": answer["stopReason"]}),
               ("metadata", {"usage": answer["usage"], "metrics": {"latencyMs": 1}})]
    return [(name, orjson.dumps(payload)) for name, payload in events]


@given(converse_answers(), st.lists(st.integers(0, 200), max_size=4))
def test_a_converse_stream_adds_up_to_the_whole_answer(
        answer: dict[str, Any], cuts: list[int]) -> None:
    translator = ConverseEvents()
    content: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    stop, usage = None, {}
    for name, payload in _converse_stream(answer, cuts):
        for event in translator.feed(name, payload):
            data = orjson.loads(event.data)
            if data["type"] == "content_block_start":
                content.append(dict(data["content_block"]))
            elif data["type"] == "content_block_delta":
                delta = data["delta"]
                if delta["type"] == "text_delta":
                    content[-1]["text"] += delta["text"]
                else:
                    partial[len(content) - 1] = partial.get(len(content) - 1, "") + \
                        delta["partial_json"]
            elif data["type"] == "message_delta":
                stop, usage = data["delta"]["stop_reason"], data["usage"]
    for index, raw in partial.items():
        content[index]["input"] = orjson.loads(raw)
    whole = orjson.loads(anthropic_answer(orjson.dumps(answer), "m"))
    assert [(b["type"], b.get("text"), b.get("id"), b.get("name"), b.get("input"))
            for b in content] == \
        [(b["type"], b.get("text"), b.get("id"), b.get("name"), b.get("input"))
         for b in whole["content"]]
    assert stop == whole["stop_reason"] and usage == whole["usage"]
