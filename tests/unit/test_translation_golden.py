"""Golden translation tests: the vendors' own examples (tests/golden) through the translators.

Every file of tests/golden is a real request, answer or stream from OpenAI's or Anthropic's
docs, SDK fixtures or recordings. Each is run through the bridge a client of the other
format would hit, and the tests assert what that client would notice: the conversation
the provider receives (roles, system prompt, tool calls and results, images), the answer
the client assembles (text, reasoning, tool calls, stop reason, usage), the 400s naming
the field for what the other side cannot express, and the usage the router bills.

Expectations are written per file from the example itself (read from the file, or hand
copied from it), never from the translators' output. Generic checks run over every
request of a format: what the upstream API itself would refuse (Anthropic: no system
role in `messages`, no empty content, tool results only answering the tool uses of the
turn before; OpenAI: every role "tool" message answering a call of the assistant message
right before it).
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from router.errors import BadRequest
from router.protocols.anthropic import AnthropicMessages
from router.protocols.api import ClientRequest, Meter
from router.protocols.chat_over_messages import ChatFromMessagesStream, to_chat_response
from router.protocols.chat_over_messages import to_messages_request as chat_to_messages
from router.protocols.messages_over_chat import (MessagesFromChatStream, to_chat_request,
                                                 to_messages_response)
from router.protocols.openai_chat import OpenAIChat
from router.protocols.openai_responses import OpenAIResponses
from router.protocols.responses_over_messages import ResponsesFromMessagesStream, to_response
from router.protocols.responses_over_messages import \
    to_messages_request as responses_to_messages
from router.protocols.sse import SseEvent, SseParser
from router.protocols.translate import UpstreamTarget

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FILES = sorted(p.name for p in GOLDEN.glob("*.json"))

TO_ANTHROPIC = UpstreamTarget("claude-sonnet-4-5", "anthropic")
TO_OPENAI = UpstreamTarget("gpt-4o", "openai")
TO_OPENAI_REASONING = UpstreamTarget("o3", "openai", reasoning=True)


def golden(name: str) -> Any:
    """A fresh copy of a golden file's payload."""
    return json.loads((GOLDEN / name).read_text())["payload"]


def group(prefix: str) -> list[str]:
    return [name for name in FILES if name.startswith(prefix)]


def cases(names: list[str]) -> list[Any]:
    return [pytest.param(name, id=name.removesuffix(".json")) for name in names]


CHAT_REQUESTS = group("openai_chat_request_")
CHAT_RESPONSES = group("openai_chat_response_")
CHAT_STREAMS = group("openai_chat_stream_")
ANTHROPIC_REQUESTS = group("anthropic_request_") + group("claude_code_request")
ANTHROPIC_RESPONSES = group("anthropic_response_")
ANTHROPIC_STREAMS = group("anthropic_stream_")
RESPONSES_REQUESTS = group("responses_request_")
RESPONSES_RESPONSES = group("responses_response_")
RESPONSES_STREAMS = group("responses_stream_")
GROUPS = [CHAT_REQUESTS, CHAT_RESPONSES, CHAT_STREAMS, ANTHROPIC_REQUESTS, ANTHROPIC_RESPONSES,
          ANTHROPIC_STREAMS, RESPONSES_REQUESTS, RESPONSES_RESPONSES, RESPONSES_STREAMS]

# Requests that, verbatim, hold something the other side cannot express (own tests below).
CHAT_ALL_PARAMS = "openai_chat_request_all_params.json"
ANTHROPIC_ALL_PARAMS = "anthropic_request_all_params.json"
ERROR_STREAM = "anthropic_stream_error_midstream.json"

# The stop reasons as each API names them (Anthropic -> OpenAI and back).
FINISH_FOR_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "tool_use": "tool_calls"}
STOP_FOR_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

# Top-level fields of the two upstream APIs (from their API references).
ANTHROPIC_BODY_FIELDS = {"model", "messages", "max_tokens", "system", "metadata",
                         "stop_sequences", "stream", "temperature", "top_p", "top_k", "tools",
                         "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
                         "context_management", "output_config", "inference_geo",
                         "cache_control"}
OPENAI_BODY_FIELDS = {"model", "messages", "stream", "stream_options", "max_tokens",
                      "max_completion_tokens", "temperature", "top_p", "stop", "n", "seed",
                      "user", "safety_identifier", "prompt_cache_key", "metadata", "store",
                      "service_tier", "tools", "tool_choice", "parallel_tool_calls",
                      "response_format", "reasoning_effort", "verbosity", "logprobs",
                      "top_logprobs", "logit_bias", "frequency_penalty", "presence_penalty",
                      "modalities", "audio", "prediction", "web_search_options"}


# --- helpers: SSE in and out --------------------------------------------------------------

def sse_bytes(item: dict[str, Any]) -> bytes:
    data = b"[DONE]" if item["data"] == "[DONE]" else orjson.dumps(item["data"])
    head = b"event: " + item["event"].encode() + b"\n" if item["event"] else b""
    return head + b"data: " + data + b"\n\n"


def upstream_events(payload: list[dict[str, Any]]) -> list[SseEvent]:
    """The golden stream as the router's SSE parser hands it over, one event at a time."""
    parser = SseParser()
    events: list[SseEvent] = []
    for item in payload:
        got = parser.feed(sse_bytes(item))
        assert len(got) == 1
        events += got
    return events


def translate_stream(translator: Any, payload: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """Feed the golden stream event by event; the client's events as (name, data)."""
    out = b"".join(translator.feed(event) for event in upstream_events(payload))
    parser = SseParser()
    events = parser.feed(out)
    assert parser.pending == b"", "the translated stream ends mid-event"
    return [(e.name.decode() if e.name else None,
             "[DONE]" if e.data == b"[DONE]" else orjson.loads(e.data)) for e in events]


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(keys_anywhere(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_anywhere(v) for v in value))
    return set()


def peel(translate: Callable[[dict[str, Any]], Any], body: dict[str, Any],
         keep: tuple[str, ...] = ("messages",)) -> tuple[list[str], Any]:
    """Translate, removing each top-level field the translator refuses, until it goes
    through: (the refused fields in order, the result or the 400 that named a kept field)."""
    body = copy.deepcopy(body)
    refused: list[str] = []
    while True:
        try:
            return refused, translate(body)
        except BadRequest as error:
            assert error.param in body, f"the 400 names {error.param!r}, not a request field"
            if error.param in keep:
                return refused, error
            refused.append(error.param)
            del body[error.param]


def refusal(translate: Callable[[], Any]) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        translate()
    return info.value


# --- helpers: what each side means -----------------------------------------------------------

def anthropic_text(content: Any) -> str:
    """The text of an Anthropic string content or list of blocks."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def openai_text(content: Any) -> str | None:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content


def system_texts(system: Any) -> list[str]:
    if system is None:
        return []
    if isinstance(system, str):
        return [system]
    return [b["text"] for b in system]


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def anthropic_parse(body: dict[str, Any]) -> dict[str, Any]:
    return AnthropicMessages().parse(body).body


def anthropic_stream_facts(payload: list[dict[str, Any]]) -> dict[str, Any]:
    """What an Anthropic stream says: text, thinking, tool uses (id, name, input from the
    concatenated input_json_delta), stop reason and the last-reported usage."""
    text, thinking = [], []
    tools: dict[int, list[str]] = {}
    stop = None
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
             "cache_creation_input_tokens": 0}

    def take(fields: dict[str, Any] | None) -> None:
        usage.update({k: v for k, v in (fields or {}).items() if k in usage})

    for item in payload:
        data = item["data"]
        kind = data.get("type")
        if kind == "message_start":
            take(data["message"].get("usage"))
        elif kind == "content_block_start" and data["content_block"]["type"] == "tool_use":
            block = data["content_block"]
            tools[data["index"]] = [block["id"], block["name"], ""]
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                text.append(delta["text"])
            elif delta["type"] == "thinking_delta":
                thinking.append(delta["thinking"])
            elif delta["type"] == "input_json_delta":
                tools[data["index"]][2] += delta["partial_json"]
        elif kind == "message_delta":
            stop = data["delta"].get("stop_reason")
            take(data.get("usage"))
    return {"text": "".join(text), "thinking": "".join(thinking),
            "tools": [(i, n, json.loads(args or "{}"))
                      for _, (i, n, args) in sorted(tools.items())],
            "stop": stop, "usage": usage,
            "complete": any(item["data"].get("type") == "message_stop" for item in payload)}


def chat_stream_facts(payload: list[dict[str, Any]]) -> dict[str, Any]:
    """What an OpenAI chat stream says: text, tool calls by index, finish reason, usage."""
    text = []
    calls: dict[int, dict[str, Any]] = {}
    finish = usage = None
    for item in payload:
        chunk = item["data"]
        if chunk == "[DONE]":
            continue
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or ():
                entry = calls.setdefault(call["index"], {"id": None, "name": None, "args": ""})
                entry["id"] = call.get("id") or entry["id"]
                function = call.get("function") or {}
                entry["name"] = function.get("name") or entry["name"]
                entry["args"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
        usage = chunk.get("usage") or usage
    return {"text": "".join(text),
            "tools": [(c["id"], c["name"], json.loads(c["args"]))
                      for _, c in sorted(calls.items())],
            "finish": finish, "usage": usage}


# --- helpers: reading what the client gets, checking the wire shape on the way --------------

def read_chat_chunks(events: list[tuple[Any, Any]]) -> dict[str, Any]:
    """An OpenAI client's view of translated `chat.completion.chunk` events."""
    view: dict[str, Any] = {"roles": [], "content": "", "reasoning": "", "calls": {},
                            "finish": [], "usage": [], "ids": set(), "models": set(),
                            "errors": [], "done_at": None}
    for position, (name, data) in enumerate(events):
        assert name is None, "OpenAI chunks carry no event name"
        assert view["done_at"] is None, "nothing may follow [DONE]"
        if data == "[DONE]":
            view["done_at"] = position
            continue
        if "error" in data:
            view["errors"].append(data["error"])
            continue
        assert data["object"] == "chat.completion.chunk"
        view["ids"].add(data["id"])
        view["models"].add(data["model"])
        if data.get("usage"):
            assert data["choices"] == [], "the usage chunk has no choices"
            view["usage"].append(data["usage"])
        for choice in data["choices"]:
            assert choice["index"] == 0
            delta = choice["delta"]
            if delta.get("role"):
                view["roles"].append(delta["role"])
            view["content"] += delta.get("content") or ""
            view["reasoning"] += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                if call["index"] not in view["calls"]:
                    assert call.get("id") and call.get("type") == "function" \
                        and call["function"].get("name"), "a tool call starts with id and name"
                    view["calls"][call["index"]] = {"id": call["id"],
                                                    "name": call["function"]["name"],
                                                    "args": ""}
                view["calls"][call["index"]]["args"] += call["function"].get("arguments") or ""
            if choice.get("finish_reason"):
                view["finish"].append(choice["finish_reason"])
    view["tools"] = [(c["id"], c["name"], json.loads(c["args"] or "{}"))
                     for _, c in sorted(view["calls"].items())]
    return view


def sdk_chat_completion(events: list[tuple[Any, Any]]) -> Any:
    """The completion the openai SDK's stream accumulator builds from the chunks."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for _, data in events:
        if data != "[DONE]":
            state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=data))
    return state.get_final_completion()


def read_messages_events(events: list[tuple[Any, Any]]) -> dict[str, Any]:
    """An Anthropic client's view of translated stream events, checking their order."""
    assert events, "no events"
    for name, data in events:
        assert name == data["type"], "the SSE event name is the event's type"
    assert events[0][1]["type"] == "message_start"
    message = events[0][1]["message"]
    blocks: dict[int, dict[str, Any]] = {}
    open_blocks: set[int] = set()
    stop = None
    usage = dict(message.get("usage") or {})
    ended = False
    for _, data in events[1:]:
        assert not ended, "nothing may follow message_stop"
        kind = data["type"]
        if kind == "content_block_start":
            index = data["index"]
            assert index == len(blocks), "blocks are numbered 0, 1, 2 ... in order"
            blocks[index] = {**data["content_block"], "_json": ""}
            open_blocks.add(index)
        elif kind == "content_block_delta":
            index, delta = data["index"], data["delta"]
            assert index in open_blocks, "a delta for a block that is not open"
            block = blocks[index]
            if delta["type"] == "text_delta":
                assert block["type"] == "text"
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                assert block["type"] == "thinking"
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                assert block["type"] == "tool_use"
                block["_json"] += delta["partial_json"]
            else:
                raise AssertionError(f"unexpected delta {delta['type']}")
        elif kind == "content_block_stop":
            assert data["index"] in open_blocks
            open_blocks.remove(data["index"])
        elif kind == "message_delta":
            assert not open_blocks, "message_delta while a block is open"
            stop = data["delta"]["stop_reason"]
            usage.update(data.get("usage") or {})
        elif kind == "message_stop":
            ended = True
        else:
            assert kind == "ping", f"unexpected event {kind}"
    assert ended, "the stream has no message_stop"
    content = []
    for index in sorted(blocks):
        block = dict(blocks[index])
        partial = block.pop("_json")
        if block["type"] == "tool_use":
            block["input"] = json.loads(partial or "{}")
        content.append(block)
    return {"message": message, "content": content, "stop_reason": stop, "usage": usage}


def sdk_message(events: list[tuple[Any, Any]]) -> Any:
    """The message the anthropic SDK's stream accumulator builds from the events."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def read_responses_events(events: list[tuple[Any, Any]]) -> dict[str, Any]:
    """A Responses client's view of translated events, checking numbering and pairing."""
    for seq, (name, data) in enumerate(events):
        assert name == data["type"], "the SSE event name is the event's type"
        assert data["sequence_number"] == seq, "sequence numbers count from 0 without gaps"
    kinds = [data["type"] for _, data in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    terminal = ("response.completed", "response.incomplete", "response.failed")
    assert kinds[-1] in terminal and not set(kinds[:-1]) & set(terminal)
    added: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    texts: dict[tuple[int, int], str] = defaultdict(str)
    arguments: dict[int, str] = defaultdict(str)
    ids = {data["response"]["id"] for _, data in events if "response" in data}
    assert len(ids) == 1, "one response id throughout"
    for _, data in events:
        kind = data["type"]
        index = data.get("output_index")
        if kind == "response.output_item.added":
            assert index == len(added) and index not in done
            added[index] = data["item"]
        elif kind == "response.output_item.done":
            assert index in added and index not in done
            assert data["item"]["id"] == added[index]["id"]
            done[index] = data["item"]
        elif kind in ("response.output_text.delta", "response.output_text.done",
                      "response.content_part.added", "response.content_part.done",
                      "response.function_call_arguments.delta",
                      "response.function_call_arguments.done"):
            assert index in added and index not in done, f"{kind} for an item that is not open"
            assert data["item_id"] == added[index]["id"]
            if kind == "response.output_text.delta":
                texts[(index, data["content_index"])] += data["delta"]
            elif kind == "response.output_text.done":
                assert data["text"] == texts[(index, data["content_index"])]
            elif kind == "response.function_call_arguments.delta":
                arguments[index] += data["delta"]
            elif kind == "response.function_call_arguments.done":
                assert data["arguments"] == arguments[index]
    assert set(done) == set(added), "every item added is done"
    response = events[-1][1]["response"]
    assert response["output"] == [done[i] for i in sorted(done)]
    for index, item in done.items():
        if item["type"] == "function_call":
            assert item["arguments"] == arguments[index]
        if item["type"] == "message":
            assert [p["text"] for p in item["content"]] == \
                [texts[(index, j)] for j in range(len(item["content"]))]
    return response


def responses_output(response: dict[str, Any]) -> tuple[str, list[tuple[Any, Any, Any]]]:
    """(all output text, function calls as (call_id, name, parsed arguments))."""
    text = "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"])
    calls = [(item["call_id"], item["name"], json.loads(item["arguments"]))
             for item in response["output"] if item["type"] == "function_call"]
    return text, calls


def sdk_response(events: list[tuple[Any, Any]]) -> Any:
    """The response the openai SDK's Responses stream state builds from the events."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for _, data in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=data))
    return state._completed_response


# --- helpers: what the upstream API itself would refuse --------------------------------------

def check_anthropic_body(out: dict[str, Any], target: UpstreamTarget) -> None:
    """An Anthropic Messages body that the Messages API would accept."""
    assert set(out) <= ANTHROPIC_BODY_FIELDS, set(out) - ANTHROPIC_BODY_FIELDS
    assert out["model"] == target.model_id
    messages = out["messages"]
    assert messages, "Anthropic needs at least one message"
    tool_use_ids: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        assert message["role"] in ("user", "assistant"), f"{where} role {message['role']!r}"
        if i:
            assert message["role"] != messages[i - 1]["role"], f"{where} repeats a role"
        assert message["content"], f"{where} has empty content"
        blocks = blocks_of(message)
        for block in blocks:
            if block["type"] == "text":
                assert block["text"], f"{where} has an empty text block"
        results = [b for b in blocks if b["type"] == "tool_result"]
        if results:
            assert message["role"] == "user"
            assert blocks[:len(results)] == results, f"{where}: tool results come first"
            previous = messages[i - 1] if i else None
            asked = {b["id"] for b in blocks_of(previous) if b["type"] == "tool_use"} \
                if previous and previous["role"] == "assistant" else set()
            for result in results:
                assert result["tool_use_id"] in asked, \
                    f"{where} answers {result['tool_use_id']!r}, no tool_use of the turn before"
        uses = [b for b in blocks if b["type"] == "tool_use"]
        for use in uses:
            assert message["role"] == "assistant"
            assert use["id"] not in tool_use_ids, "tool_use ids are unique"
            tool_use_ids.add(use["id"])
            assert isinstance(use["input"], dict)
        if uses and i + 1 < len(messages):
            answered = {b["tool_use_id"] for b in blocks_of(messages[i + 1])
                        if b["type"] == "tool_result"}
            assert answered == {u["id"] for u in uses}, f"{where}: tool uses left unanswered"
    if "system" in out:
        assert system_texts(out["system"]) and all(system_texts(out["system"]))
        if isinstance(out["system"], list):
            assert all(b["type"] == "text" for b in out["system"])
    for tool in out.get("tools", []):
        assert set(tool) <= {"name", "description", "input_schema", "cache_control"}
        assert tool["input_schema"]["type"] == "object"
    if "tool_choice" in out:
        assert out.get("tools"), "tool_choice without tools"
    if "temperature" in out:
        assert 0 <= out["temperature"] <= 1


def check_openai_body(out: dict[str, Any], target: UpstreamTarget) -> None:
    """An OpenAI Chat Completions body that the API would accept."""
    assert set(out) <= OPENAI_BODY_FIELDS, set(out) - OPENAI_BODY_FIELDS
    assert out["model"] == target.model_id
    messages = out["messages"]
    assert messages
    pending: set[str] = set()  # calls of the last assistant message not answered yet
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message["role"]
        if role == "system":
            assert i == 0, f"{where}: the system prompt comes first, once"
            assert isinstance(message["content"], str) and message["content"]
        elif role == "tool":
            assert message["tool_call_id"] in pending, \
                f"{where} answers {message['tool_call_id']!r}, no call of the assistant before"
            pending.discard(message["tool_call_id"])
            assert isinstance(message["content"], str)
        else:
            assert not pending, f"{where}: tool calls {pending} were never answered"
            if role == "assistant":
                calls = message.get("tool_calls") or []
                assert message.get("content") or calls, f"{where} is empty"
                for call in calls:
                    assert call["type"] == "function" and call["function"]["name"]
                    assert call["id"] not in call_ids, "tool call ids are unique"
                    call_ids.add(call["id"])
                    assert isinstance(json.loads(call["function"]["arguments"]), dict)
                pending = {c["id"] for c in calls}
            else:
                assert role == "user", f"{where} role {role!r}"
                assert message["content"], f"{where} is empty"
                if isinstance(message["content"], list):
                    assert all(p["type"] in ("text", "image_url", "file")
                               for p in message["content"])
    for tool in out.get("tools", []):
        assert set(tool) == {"type", "function"} and tool["type"] == "function"
        assert set(tool["function"]) <= {"name", "description", "parameters", "strict"}
        assert tool["function"]["parameters"]["type"] == "object"
    if "tool_choice" in out:
        assert out.get("tools"), "tool_choice without tools"
    assert not {"cache_control", "defer_loading"} & keys_anywhere(out)


# --- the golden set -------------------------------------------------------------------------

def test_every_golden_file_is_exercised() -> None:
    assert all(GROUPS), "a format has no golden example"
    assert sorted(sum(GROUPS, [])) == FILES, "a golden file no test group picks up"
    for name in FILES:
        raw = json.loads((GOLDEN / name).read_text())
        assert set(raw) == {"source", "note", "payload"} and raw["source"]


# === OpenAI Chat client -> Anthropic provider: requests ===========================================

@pytest.mark.parametrize("name", cases([n for n in CHAT_REQUESTS if n != CHAT_ALL_PARAMS]))
def test_chat_request_becomes_a_valid_anthropic_body(name: str) -> None:
    body = golden(name)
    out = chat_to_messages(body, TO_ANTHROPIC)
    check_anthropic_body(out, TO_ANTHROPIC)
    systems = [m["content"] for m in body["messages"] if m["role"] in ("system", "developer")]
    assert system_texts(out.get("system")) == systems
    assert bool(out.get("stream")) == bool(body.get("stream"))


def test_chat_multiturn_keeps_the_turns_and_moves_the_system_prompt() -> None:
    body = golden("openai_chat_request_multiturn.json")
    out = chat_to_messages(body, TO_ANTHROPIC)
    assert system_texts(out["system"]) == ["You are a helpful assistant."]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert [anthropic_text(m["content"]) for m in out["messages"]] == [
        m["content"] for m in body["messages"] if m["role"] != "system"]


def test_chat_system_and_hello() -> None:
    body = golden("openai_chat_request_system_simple.json")
    out = chat_to_messages(body, TO_ANTHROPIC)
    assert system_texts(out["system"]) == [body["messages"][0]["content"]]
    assert [(m["role"], anthropic_text(m["content"])) for m in out["messages"]] == \
        [("user", "Hello!")]


def test_chat_sampling_params_map_to_anthropic_names() -> None:
    body = golden("openai_chat_request_sampling_params.json")
    out = chat_to_messages(body, TO_ANTHROPIC)
    assert out["stop_sequences"] == body["stop"] == ["\n\n", "END"]
    assert out["temperature"] == body["temperature"]
    assert out["top_p"] == body["top_p"]
    assert out["stream"] is True
    # the pipeline sets the output limit; stream_options means nothing to Anthropic
    assert not {"stop", "stream_options", "max_completion_tokens", "max_tokens"} & set(out)


def test_chat_parallel_tool_calls_and_their_results_become_one_turn_each() -> None:
    body = golden("openai_chat_request_tool_result.json")
    calls = body["messages"][1]["tool_calls"]
    results = [m for m in body["messages"] if m["role"] == "tool"]
    assert len(calls) == len(results) == 3
    out = chat_to_messages(body, TO_ANTHROPIC)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assistant, answers = out["messages"][1]["content"], out["messages"][2]["content"]
    assert [b["type"] for b in assistant] == ["tool_use"] * 3
    assert [(b["id"], b["name"], b["input"]) for b in assistant] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
    assert [b["type"] for b in answers] == ["tool_result"] * 3
    assert [(b["tool_use_id"], anthropic_text(b["content"])) for b in answers] == [
        (m["tool_call_id"], m["content"]) for m in results]
    assert "seed" not in out  # documented drop


def test_chat_tool_history_without_tools_still_defines_the_tools_anthropic_needs() -> None:
    body = golden("openai_chat_request_tool_result.json")
    assert "tools" not in body
    try:
        out = chat_to_messages(body, TO_ANTHROPIC)
    except BadRequest as error:  # an honest 400 would do too
        assert error.param == "tools"
        return
    used = {b["name"] for m in out["messages"] for b in blocks_of(m) if b["type"] == "tool_use"}
    assert used == {"get_current_weather"}
    assert used <= {t["name"] for t in out.get("tools", [])}


def test_chat_function_tool_with_auto_choice() -> None:
    body = golden("openai_chat_request_tools.json")
    out = chat_to_messages(body, TO_ANTHROPIC)
    function = body["tools"][0]["function"]
    assert out["tools"] == [{"name": function["name"], "description": function["description"],
                             "input_schema": function["parameters"]}]
    assert out["tool_choice"] == {"type": "auto"}


def test_chat_strict_tool_and_named_choice() -> None:
    body = golden("openai_chat_request_tools_strict_named_choice.json")
    out = chat_to_messages(body, TO_ANTHROPIC)
    function = body["tools"][0]["function"]
    assert [t["name"] for t in out["tools"]] == ["get_weather"]
    assert out["tools"][0]["input_schema"] == function["parameters"]
    assert "strict" not in keys_anywhere(out["tools"])  # documented drop
    assert out["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_chat_image_url_becomes_an_url_image_block_after_the_text() -> None:
    body = golden("openai_chat_request_image_url.json")
    parts = body["messages"][0]["content"]
    out = chat_to_messages(body, TO_ANTHROPIC)
    (message,) = out["messages"]
    assert [b["type"] for b in message["content"]] == ["text", "image"]
    assert message["content"][0]["text"] == parts[0]["text"]
    assert message["content"][1]["source"] == {"type": "url",
                                               "url": parts[1]["image_url"]["url"]}


def test_chat_data_url_image_becomes_a_base64_image_block() -> None:
    body = golden("openai_chat_request_image_base64.json")
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    header, data = url.split(",", 1)
    assert header == "data:image/png;base64"
    out = chat_to_messages(body, TO_ANTHROPIC)
    (message,) = out["messages"]
    assert [b["type"] for b in message["content"]] == ["text", "image"]
    assert message["content"][1]["source"] == {"type": "base64", "media_type": "image/png",
                                               "data": data}


CHAT_ALL_PARAMS_REFUSED = {"logprobs", "audio", "functions", "function_call", "modalities"}
CHAT_DOCUMENTED_DROPS = ("frequency_penalty", "presence_penalty", "logit_bias", "seed", "store",
                         "service_tier", "prediction", "stream_options", "parallel_tool_calls",
                         "response_format", "n", "top_logprobs", "max_completion_tokens",
                         "max_tokens", "user")


def test_chat_all_params_refuses_what_anthropic_cannot_do_and_drops_the_documented_rest() -> None:
    body = golden(CHAT_ALL_PARAMS)
    refused, result = peel(lambda b: chat_to_messages(b, TO_ANTHROPIC), body)
    assert len(refused) == len(set(refused))
    assert set(refused) == CHAT_ALL_PARAMS_REFUSED
    # the SDK fixture's conversation is a lone system message: Anthropic needs a user turn
    assert isinstance(result, BadRequest) and result.param == "messages"

    rest = {k: v for k, v in body.items() if k not in CHAT_ALL_PARAMS_REFUSED}
    rest["messages"] = body["messages"] + [{"role": "user", "content": "Hello"}]
    out = chat_to_messages(rest, TO_ANTHROPIC)
    check_anthropic_body(out, TO_ANTHROPIC)
    assert not set(CHAT_DOCUMENTED_DROPS) & set(out)
    assert "strict" not in keys_anywhere(out["tools"])
    assert out["metadata"] == {"user_id": body["user"]}  # OpenAI's own metadata is dropped
    assert system_texts(out["system"]) == [body["messages"][0]["content"]]
    assert out["stop_sequences"] == [body["stop"]]
    assert (out["temperature"], out["top_p"]) == (body["temperature"], body["top_p"])
    assert [t["name"] for t in out["tools"]] == [t["function"]["name"] for t in body["tools"]]
    assert [t["description"] for t in out["tools"]] == \
        [t["function"]["description"] for t in body["tools"]]
    assert out["tool_choice"] == {"type": "none"}
    assert not out.get("stream")


@pytest.mark.parametrize("name,change,param", [
    pytest.param("openai_chat_request_multiturn.json", {"n": 2}, "n", id="n-2"),
    pytest.param("openai_chat_request_multiturn.json", {"logprobs": True, "top_logprobs": 3},
                 "logprobs", id="logprobs"),
    pytest.param("openai_chat_request_multiturn.json", {"response_format": {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": {
            "type": "object", "properties": {"venue": {"type": "string"}}}}}},
        "response_format", id="json-schema"),
    pytest.param("openai_chat_request_multiturn.json", {"response_format": {
        "type": "json_object"}}, "response_format", id="json-object"),
    pytest.param("openai_chat_request_sampling_params.json", {"temperature": 1.5},
                 "temperature", id="temperature-1.5"),
    pytest.param("openai_chat_request_tools.json", {"functions": [{"name": "f"}]},
                 "functions", id="legacy-functions"),
])
def test_chat_request_anthropic_cannot_express_is_a_400_naming_the_field(
        name: str, change: dict[str, Any], param: str) -> None:
    body = {**golden(name), **change}
    assert refusal(lambda: chat_to_messages(body, TO_ANTHROPIC)).param == param


# === OpenAI Responses client -> Anthropic provider: requests =====================================

@pytest.mark.parametrize("name", cases(RESPONSES_REQUESTS))
def test_responses_request_becomes_a_valid_anthropic_body(name: str) -> None:
    body = golden(name)
    OpenAIResponses().parse(body)  # the router takes it
    out = responses_to_messages(body, TO_ANTHROPIC)
    check_anthropic_body(out, TO_ANTHROPIC)
    expected_system = [body["instructions"]] if body.get("instructions") else []
    assert [b["text"] for b in out.get("system", [])] == expected_system
    assert [t["name"] for t in out.get("tools", [])] == [t["name"] for t in body.get("tools", [])]
    for tool, original in zip(out.get("tools", []), body.get("tools", [])):
        assert tool["input_schema"] == original["parameters"]
        assert tool["description"] == original["description"]


def test_responses_function_call_round_trip_becomes_tool_use_and_tool_result() -> None:
    body = golden("responses_request_function_tool.json")
    question, call, result = body["input"]
    out = responses_to_messages(body, TO_ANTHROPIC)
    assert system_texts(out["system"]) == ["You are a helpful assistant."]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert anthropic_text(out["messages"][0]["content"]) == question["content"]
    assert out["messages"][1]["content"] == [{
        "type": "tool_use", "id": call["call_id"], "name": call["name"],
        "input": json.loads(call["arguments"])}]
    (answer,) = out["messages"][2]["content"]
    assert answer["type"] == "tool_result" and answer["tool_use_id"] == result["call_id"]
    assert anthropic_text(answer["content"]) == result["output"] == "14"
    assert out["tool_choice"] == {"type": "auto"}
    assert "strict" not in keys_anywhere(out["tools"])  # documented drop
    assert "store" not in out


def test_responses_string_input_becomes_one_user_turn() -> None:
    body = golden("responses_request_tools_reference.json")
    out = responses_to_messages(body, TO_ANTHROPIC)
    assert [(m["role"], anthropic_text(m["content"])) for m in out["messages"]] == \
        [("user", body["input"])]
    assert "system" not in out
    assert out["tool_choice"] == {"type": "auto"}
    assert out["tools"][0]["input_schema"]["required"] == ["location", "unit"]


@pytest.mark.parametrize("change,param", [
    pytest.param({"text": {"format": {"type": "json_schema", "name": "weather", "schema": {
        "type": "object", "properties": {"temp": {"type": "number"}}}}}}, "text.format",
        id="text-format-json-schema"),
    pytest.param({"temperature": 1.5}, "temperature", id="temperature-1.5"),
])
def test_responses_request_anthropic_cannot_express_is_a_400_naming_the_field(
        change: dict[str, Any], param: str) -> None:
    body = {**golden("responses_request_function_tool.json"), **change}
    assert refusal(lambda: responses_to_messages(body, TO_ANTHROPIC)).param == param


def test_responses_free_form_custom_tool_is_a_400_naming_the_tool() -> None:
    body = golden("responses_request_function_tool.json")
    body["tools"].append({"type": "custom", "name": "code_exec",
                          "description": "Executes arbitrary Python code."})
    OpenAIResponses().parse(body)  # a client tool the router accepts ...
    error = refusal(lambda: responses_to_messages(body, TO_ANTHROPIC))
    assert error.param == "tools[1].type"  # ... but cannot hand to an Anthropic model


def test_responses_hosted_tool_is_refused_before_anything_is_held() -> None:
    body = golden("responses_request_tools_reference.json")
    body["tools"].append({"type": "web_search_preview"})
    assert refusal(lambda: OpenAIResponses().parse(body)).param == "tools[1].type"


# === Anthropic client -> OpenAI Chat provider: requests ==========================================

@pytest.mark.parametrize("name", cases([n for n in ANTHROPIC_REQUESTS
                                        if n != ANTHROPIC_ALL_PARAMS]))
def test_anthropic_request_becomes_a_valid_openai_body(name: str) -> None:
    body = golden(name)
    parsed = anthropic_parse(body)
    out = to_chat_request(parsed, TO_OPENAI)
    check_openai_body(out, TO_OPENAI)
    system = system_texts(parsed.get("system"))
    if system:
        first = out["messages"][0]
        assert first["role"] == "system"
        positions = [first["content"].index(text) for text in system]
        assert positions == sorted(positions), "system blocks keep their order"
    else:
        assert out["messages"][0]["role"] != "system"
    assert [t["function"]["name"] for t in out.get("tools", [])] == \
        [t["name"] for t in body.get("tools", [])]
    for tool, original in zip(out.get("tools", []), body.get("tools", [])):
        assert tool["function"]["parameters"] == original["input_schema"]
        assert tool["function"].get("description") == original.get("description")
    assert bool(out.get("stream")) == bool(body.get("stream"))
    assert out.get("user") == (body.get("metadata") or {}).get("user_id")
    assert "reasoning_effort" not in out  # not a reasoning model


def test_anthropic_multiturn_keeps_the_turns() -> None:
    body = golden("anthropic_request_multiturn.json")
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert [(m["role"], openai_text(m["content"])) for m in out["messages"]] == \
        [(m["role"], m["content"]) for m in body["messages"]]


def test_anthropic_prefill_stays_the_last_assistant_turn() -> None:
    body = golden("anthropic_request_prefill.json")
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert [(m["role"], openai_text(m["content"])) for m in out["messages"]] == \
        [("user", body["messages"][0]["content"]), ("assistant", "The answer is (")]


def test_anthropic_string_system_becomes_the_first_message() -> None:
    body = golden("anthropic_request_system_string.json")
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert out["messages"][0] == {"role": "system", "content": body["system"]}
    assert [m["role"] for m in out["messages"]] == ["system", "user"]


def test_anthropic_system_blocks_with_cache_control_become_one_system_message() -> None:
    body = golden("anthropic_request_system_blocks_cache_control.json")
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    system = out["messages"][0]
    assert system["role"] == "system"
    first, second = (b["text"] for b in body["system"])
    assert first.strip() in system["content"] and second in system["content"]
    assert system["content"].index(first.strip()) < system["content"].index(second)
    assert "cache_control" not in keys_anywhere(out)  # documented drop


@pytest.mark.parametrize("name", cases(["anthropic_request_image_base64.json",
                                        "anthropic_request_image_url.json"]))
def test_anthropic_image_block_becomes_an_image_url_part_in_place(name: str) -> None:
    body = golden(name)
    image, question = body["messages"][0]["content"]
    source = image["source"]
    expected_url = (f"data:{source['media_type']};base64,{source['data']}"
                    if source["type"] == "base64" else source["url"])
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    (message,) = out["messages"]
    assert message["role"] == "user"
    assert message["content"] == [{"type": "image_url", "image_url": {"url": expected_url}},
                                  {"type": "text", "text": question["text"]}]


@pytest.mark.parametrize("name", cases(["anthropic_request_tool_result.json",
                                        "anthropic_request_tool_result_is_error.json"]))
def test_anthropic_tool_use_and_result_become_tool_call_and_tool_message(name: str) -> None:
    body = golden(name)
    text, use = body["messages"][1]["content"]
    (result,) = body["messages"][2]["content"]
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool"]
    assistant, tool = out["messages"][1], out["messages"][2]
    assert assistant["content"] == text["text"]
    (call,) = assistant["tool_calls"]
    assert (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"])) \
        == (use["id"], use["name"], use["input"])
    assert tool["tool_call_id"] == result["tool_use_id"] == use["id"]
    if result.get("is_error"):  # documented: the error shows as an "Error: " prefix
        assert tool["content"] == "Error: " + result["content"]
    else:
        assert tool["content"] == result["content"] == "15 degrees"


def test_anthropic_thinking_history_with_list_tool_result() -> None:
    body = golden("anthropic_request_thinking_tool_result.json")
    thinking, use = body["messages"][1]["content"]
    (result,) = body["messages"][2]["content"]
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool"]
    assert out["messages"][0]["content"] == body["system"][0]["text"]
    assert openai_text(out["messages"][1]["content"]) == body["messages"][0]["content"][0]["text"]
    assistant = out["messages"][2]
    assert not assistant.get("content")  # the signed thinking block is a documented drop
    assert thinking["thinking"] not in json.dumps(out)
    (call,) = assistant["tool_calls"]
    assert (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"])) \
        == (use["id"], use["name"], {"location": "Florence, Italy"})
    assert out["messages"][3] == {"role": "tool", "tool_call_id": result["tool_use_id"],
                                  "content": "40 C"}
    assert out["tool_choice"] == "auto"
    assert out.get("parallel_tool_calls", True) is True  # disable_parallel_tool_use false


@pytest.mark.parametrize("name,choice", [
    pytest.param("anthropic_request_tools_auto.json", "auto", id="auto"),
    pytest.param("anthropic_request_tools_any.json", "required", id="any"),
    pytest.param("anthropic_request_tools_tool_choice_tool.json",
                 {"type": "function", "function": {"name": "get_weather"}}, id="tool"),
])
def test_anthropic_tool_choice_maps_to_openai(name: str, choice: Any) -> None:
    body = golden(name)
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert out["tool_choice"] == choice
    assert "parallel_tool_calls" not in out


def test_anthropic_thinking_stop_and_metadata() -> None:
    body = golden("anthropic_request_thinking_stop_metadata.json")
    out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    assert out["stop"] == body["stop_sequences"] == ["\n\nHuman:", "</answer>"]
    assert out["user"] == body["metadata"]["user_id"]
    assert out["temperature"] == 1
    assert "thinking" not in out and "reasoning_effort" not in out


THINKING_REQUESTS = ["anthropic_request_thinking_tool_result.json",
                     "anthropic_request_thinking.json",
                     "anthropic_request_thinking_stop_metadata.json", "claude_code_request.json"]
EFFORTS = ["minimal", "low", "medium", "high"]


def test_thinking_budget_becomes_reasoning_effort_for_reasoning_models_only() -> None:
    ranks = []
    for name in THINKING_REQUESTS:
        body = anthropic_parse(golden(name))
        assert body["thinking"]["type"] == "enabled"
        plain = to_chat_request(body, TO_OPENAI)
        assert "reasoning_effort" not in plain and "thinking" not in plain
        out = to_chat_request(body, TO_OPENAI_REASONING)
        check_openai_body(out, TO_OPENAI_REASONING)
        ranks.append((body["thinking"]["budget_tokens"], EFFORTS.index(out["reasoning_effort"])))
    ranks.sort()
    assert [r for _, r in ranks] == sorted(r for _, r in ranks), "more budget, more effort"
    assert ranks[0][1] < ranks[-1][1], "4000 and 31999 thinking tokens are not the same effort"


def test_claude_code_request_hoists_its_system_entry_and_reaches_an_openai_model() -> None:
    body = golden("claude_code_request.json")
    entries = [m for m in body["messages"] if m["role"] == "system"]
    assert len(entries) == 1
    hoisted = system_texts(entries[0]["content"])
    parsed = anthropic_parse(body)
    assert parsed["messages"] == [m for m in body["messages"] if m["role"] != "system"]
    assert system_texts(parsed["system"]) == system_texts(body["system"]) + hoisted
    assert parsed["system"][:len(body["system"])] == body["system"]  # cache_control kept

    out = to_chat_request(parsed, TO_OPENAI)
    check_openai_body(out, TO_OPENAI)
    assert len(body["tools"]) == 16 and len(out["tools"]) == 16
    assert all(t["type"] == "function" for t in out["tools"])
    assert [t["function"]["name"] for t in out["tools"]] == [t["name"] for t in body["tools"]]
    assert {"defer_loading", "cache_control"} <= keys_anywhere(body)
    assert not {"defer_loading", "cache_control"} & keys_anywhere(out)
    assert [m["role"] for m in out["messages"]] == ["system", "user"]
    system = out["messages"][0]["content"]
    assert system.startswith(body["system"][0]["text"])
    assert hoisted[0] in system and body["system"][1]["text"] in system
    assert [p["text"] for p in out["messages"][1]["content"]] == \
        [b["text"] for b in body["messages"][0]["content"]]
    assert out["user"] == body["metadata"]["user_id"]
    assert out["stream"] is True


ANTHROPIC_ALL_PARAMS_REFUSED = {"container"}  # documented: runs only on Anthropic's platform
ANTHROPIC_DOCUMENTED_DROPS = {"top_k", "cache_control", "service_tier", "thinking",
                              "defer_loading", "input_examples", "eager_input_streaming",
                              "allowed_callers", "strict", "citations", "container"}


def test_anthropic_all_params_refuses_the_container_and_drops_the_documented_rest() -> None:
    body = golden(ANTHROPIC_ALL_PARAMS)
    refused, out = peel(lambda b: to_chat_request(anthropic_parse(b), TO_OPENAI), body)
    assert set(refused) == ANTHROPIC_ALL_PARAMS_REFUSED
    assert isinstance(out, dict)
    check_openai_body(out, TO_OPENAI)
    assert not ANTHROPIC_DOCUMENTED_DROPS & keys_anywhere(out)
    assert out["messages"] == [{"role": "system", "content": body["system"][0]["text"]},
                               {"role": "user", "content": "Hello, world"}]
    (tool,) = out["tools"]
    assert tool["function"] == {"name": "name", "description": body["tools"][0]["description"],
                                "parameters": body["tools"][0]["input_schema"]}
    assert out["tool_choice"] == "auto"
    assert out["parallel_tool_calls"] is False  # disable_parallel_tool_use: true
    assert out["stop"] == body["stop_sequences"]
    assert (out["temperature"], out["top_p"]) == (body["temperature"], body["top_p"])
    assert out["user"] == body["metadata"]["user_id"]
    assert not out.get("stream")


def test_anthropic_structured_output_is_translated_or_refused() -> None:
    body = golden(ANTHROPIC_ALL_PARAMS)
    del body["container"]
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    try:
        out = to_chat_request(anthropic_parse(body), TO_OPENAI)
    except BadRequest as error:
        assert (error.param or "").startswith("output_config")
        return
    assert out.get("response_format", {}).get("type") == "json_schema"
    assert out["response_format"]["json_schema"]["schema"] == fmt["schema"]


def test_anthropic_adaptive_thinking_effort_reaches_a_reasoning_model() -> None:
    body = golden(ANTHROPIC_ALL_PARAMS)
    del body["container"]
    assert body["thinking"]["type"] == "adaptive"
    out = to_chat_request(anthropic_parse(body), TO_OPENAI_REASONING)
    assert out.get("reasoning_effort") == body["output_config"]["effort"] == "low"


@pytest.mark.parametrize("name,change,param", [
    pytest.param("anthropic_request_multiturn.json", {"mcp_servers": [{
        "type": "url", "url": "https://example-server.modelcontextprotocol.io/sse",
        "name": "example-mcp"}]}, "mcp_servers", id="mcp-servers"),
    pytest.param("anthropic_request_thinking_stop_metadata.json", {"stop_sequences": [
        "\n\nHuman:", "</answer>", "A", "B", "C"]}, "stop_sequences", id="five-stops"),
])
def test_anthropic_request_openai_cannot_express_is_a_400_naming_the_field(
        name: str, change: dict[str, Any], param: str) -> None:
    body = {**golden(name), **change}
    assert refusal(lambda: to_chat_request(anthropic_parse(body), TO_OPENAI)).param == param


@pytest.mark.parametrize("server_tool", [
    pytest.param({"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
                 id="web-search"),
    pytest.param({"type": "bash_20250124", "name": "bash"}, id="bash"),
    pytest.param({"type": "text_editor_20250124", "name": "str_replace_editor"},
                 id="text-editor"),
])
def test_anthropic_server_tool_is_a_400_naming_the_tool(server_tool: dict[str, Any]) -> None:
    body = golden("anthropic_request_tools_auto.json")
    body["tools"].append(server_tool)
    error = refusal(lambda: to_chat_request(anthropic_parse(body), TO_OPENAI))
    assert error.param == "tools[1].type"


# === Anthropic provider -> OpenAI Chat / Responses clients: whole answers =========================

@pytest.mark.parametrize("name", cases(ANTHROPIC_RESPONSES))
def test_anthropic_answer_as_a_chat_completion(name: str) -> None:
    body = golden(name)
    out = to_chat_response(body)
    assert out["object"] == "chat.completion" and out["model"] == body["model"]
    (choice,) = out["choices"]
    message = choice["message"]
    assert message["role"] == "assistant"
    text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
    uses = [b for b in body["content"] if b["type"] == "tool_use"]
    assert (message["content"] or "") == text
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in message.get("tool_calls") or []] == \
        [(u["id"], u["name"], u["input"]) for u in uses]
    thinking = "".join(b["thinking"] for b in body["content"] if b["type"] == "thinking")
    assert (message.get("reasoning_content") or "") == thinking
    assert "signature" not in keys_anywhere(out)
    assert choice["finish_reason"] == FINISH_FOR_STOP[body["stop_reason"]]
    usage = body["usage"]
    prompt = usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) \
        + usage.get("cache_creation_input_tokens", 0)
    assert out["usage"]["prompt_tokens"] == prompt
    assert out["usage"]["completion_tokens"] == usage["output_tokens"]
    assert out["usage"]["total_tokens"] == prompt + usage["output_tokens"]


@pytest.mark.parametrize("name", cases(ANTHROPIC_RESPONSES))
def test_anthropic_answer_as_a_response(name: str) -> None:
    body = golden(name)
    client = {"model": "claude", "input": "hi", "instructions": "Be brief."}
    out = to_response(body, client)
    assert out["object"] == "response" and out["model"] == body["model"]
    assert out["instructions"] == "Be brief."
    text, calls = responses_output(out)
    assert text == "".join(b["text"] for b in body["content"] if b["type"] == "text")
    assert calls == [(b["id"], b["name"], b["input"]) for b in body["content"]
                     if b["type"] == "tool_use"]
    assert "reasoning" not in [item["type"] for item in out["output"]]  # documented drop
    cut = body["stop_reason"] == "max_tokens"
    assert out["status"] == ("incomplete" if cut else "completed")
    assert out["incomplete_details"] == ({"reason": "max_output_tokens"} if cut else None)
    usage = body["usage"]
    prompt = usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) \
        + usage.get("cache_creation_input_tokens", 0)
    assert out["usage"]["input_tokens"] == prompt  # Responses counts cached input in it
    assert out["usage"]["input_tokens_details"]["cached_tokens"] == \
        usage.get("cache_read_input_tokens", 0)
    assert out["usage"]["output_tokens"] == usage["output_tokens"]
    assert out["usage"]["total_tokens"] == prompt + usage["output_tokens"]


def test_anthropic_text_then_tool_use_keeps_their_order_as_response_items() -> None:
    body = golden("anthropic_response_tool_use.json")
    out = to_response(body, {"model": "claude", "input": "hi"})
    assert [item["type"] for item in out["output"]] == ["message", "function_call"]
    assert out["output"][1]["call_id"] == "toolu_01A09q90qw90lq917835lq9"
    assert json.loads(out["output"][1]["arguments"]) == \
        {"location": "San Francisco, CA", "unit": "celsius"}


def test_anthropic_max_tokens_answer_is_cut_short_for_chat_clients() -> None:
    out = to_chat_response(golden("anthropic_response_max_tokens.json"))
    assert out["choices"][0]["message"]["content"] == "C"
    assert out["choices"][0]["finish_reason"] == "length"
    assert (out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"]) == (42, 1)


# === OpenAI Chat provider -> Anthropic client: whole answers ====================================

@pytest.mark.parametrize("name", cases(CHAT_RESPONSES))
def test_chat_completion_as_an_anthropic_message(name: str) -> None:
    body = golden(name)
    (choice,) = body["choices"]
    out = to_messages_response(body)
    assert (out["type"], out["role"], out["model"]) == ("message", "assistant", body["model"])
    text = choice["message"]["content"]
    expected: list[Any] = [("text", text)] if text else []
    expected += [("tool_use", (c["id"], c["function"]["name"],
                               json.loads(c["function"]["arguments"])))
                 for c in choice["message"].get("tool_calls") or ()]
    assert [(b["type"], b["text"] if b["type"] == "text" else (b["id"], b["name"], b["input"]))
            for b in out["content"]] == expected
    assert out["stop_reason"] == STOP_FOR_FINISH[choice["finish_reason"]]
    usage = body["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert out["usage"]["input_tokens"] == usage["prompt_tokens"] - cached
    assert out["usage"].get("cache_read_input_tokens", 0) == cached
    assert out["usage"]["output_tokens"] == usage["completion_tokens"]


def test_parallel_tool_calls_become_two_tool_use_blocks() -> None:
    out = to_messages_response(golden("openai_chat_response_parallel_tool_calls.json"))
    assert [(b["type"], b["name"], b["input"]) for b in out["content"]] == [
        ("tool_use", "GetWeatherArgs", {"city": "Edinburgh", "country": "GB", "units": "c"}),
        ("tool_use", "get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"})]
    assert out["stop_reason"] == "tool_use"


def test_pretty_printed_arguments_parse_to_the_same_input() -> None:
    out = to_messages_response(golden("openai_chat_response_tool_calls_docs.json"))
    (block,) = out["content"]
    assert (block["id"], block["input"]) == ("call_abc123", {"location": "Boston, MA"})


def test_leading_newlines_of_an_answer_are_kept() -> None:
    out = to_messages_response(golden("openai_chat_response_text_docs.json"))
    assert out["content"] == [{"type": "text",
                               "text": "\n\nHello there, how may I assist you today?"}]


# === Anthropic provider -> OpenAI Chat client: streams ==========================================

# Read by hand from each golden stream (its deltas, stop reason and usage).
ANTHROPIC_STREAM_EXPECT: dict[str, dict[str, Any]] = {
    "anthropic_stream_text.json": {
        "text": "Hello!", "finish": "stop", "tools": [], "usage": (25, 15)},
    "anthropic_stream_text_recorded.json": {
        "text": "The current weather in Florence, Italy is 40°C (104°F). That's quite hot! "
                "It appears to be a very warm day there.",
        "finish": "stop", "tools": [], "usage": (557, 35)},
    "anthropic_stream_thinking.json": {
        "text": "27 * 453 = 12,231", "finish": "stop", "tools": [], "usage": (0, 0),
        "thinking_ends": "10,800 + 1,350 + 81 = 12,231"},
    "anthropic_stream_thinking_tool_use_recorded.json": {
        "text": "", "finish": "tool_calls", "usage": (423, 119),
        "tools": [("toolu_0171KFcBwn1Z64XzvQfz3sZS", "weather", {"location": "Florence, Italy"})],
        "thinking_ends": "all the required parameters to make this function call."},
    "anthropic_stream_tool_use.json": {
        "text": "Okay, let's check the weather for San Francisco, CA:", "finish": "tool_calls",
        "usage": (472, 89),
        "tools": [("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather",
                   {"location": "San Francisco, CA", "unit": "fahrenheit"})]},
    "anthropic_stream_tool_use_sdk_fixture.json": {
        "text": "I'll check the current weather in Paris for you.", "finish": "tool_calls",
        "usage": (377, 65),
        "tools": [("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"})]},
}
COMPLETE_ANTHROPIC_STREAMS = [n for n in ANTHROPIC_STREAMS if n != ERROR_STREAM]


def test_every_complete_anthropic_stream_has_hand_written_expectations() -> None:
    assert sorted(ANTHROPIC_STREAM_EXPECT) == COMPLETE_ANTHROPIC_STREAMS


@pytest.mark.parametrize("name", cases(COMPLETE_ANTHROPIC_STREAMS))
def test_anthropic_stream_as_chat_chunks(name: str) -> None:
    payload = golden(name)
    facts, expect = anthropic_stream_facts(payload), ANTHROPIC_STREAM_EXPECT[name]
    assert (facts["text"], facts["tools"]) == (expect["text"], expect["tools"])

    events = translate_stream(ChatFromMessagesStream(wants_usage=True), payload)
    view = read_chat_chunks(events)
    assert view["done_at"] == len(events) - 1, "the stream ends with [DONE]"
    assert not view["errors"]
    assert len(view["ids"]) == 1, "every chunk carries the same id"
    assert view["models"] == {payload[0]["data"]["message"]["model"]}
    assert view["roles"] == ["assistant"]
    assert view["content"] == facts["text"]
    assert view["reasoning"] == facts["thinking"]
    assert view["reasoning"].endswith(expect.get("thinking_ends", ""))
    assert view["tools"] == facts["tools"]
    assert view["finish"] == [FINISH_FOR_STOP[facts["stop"]]] == [expect["finish"]]
    # the usage chunk: OpenAI counts cached and cache-written tokens as part of the prompt
    (usage,) = view["usage"]
    assert isinstance(events[-2][1], dict) and events[-2][1].get("usage") == usage
    u = facts["usage"]
    prompt = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == \
        (prompt, u["output_tokens"]) == expect["usage"]
    assert usage["total_tokens"] == prompt + u["output_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == u["cache_read_input_tokens"]

    completion = sdk_chat_completion(events)  # what the openai SDK assembles
    message = completion.choices[0].message
    assert (message.content or "") == expect["text"]
    assert [(c.id, c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls or []] == expect["tools"]
    assert completion.choices[0].finish_reason == expect["finish"]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == \
        expect["usage"]


@pytest.mark.parametrize("name", cases(COMPLETE_ANTHROPIC_STREAMS))
def test_anthropic_stream_hides_usage_from_chat_clients_that_did_not_ask(name: str) -> None:
    events = translate_stream(ChatFromMessagesStream(wants_usage=False), golden(name))
    view = read_chat_chunks(events)
    assert view["usage"] == []
    assert view["done_at"] == len(events) - 1
    assert view["content"] == ANTHROPIC_STREAM_EXPECT[name]["text"]


def with_second_tool_use(payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The SDK fixture's stream with its tool_use block repeated for another city, as Claude
    streams parallel tool use (one block after the other)."""
    blocks = [item for item in payload if item["data"].get("index") == 1]
    assert blocks[0]["data"]["content_block"]["type"] == "tool_use"
    second = copy.deepcopy(blocks)
    for item in second:
        item["data"]["index"] = 2
        if item["data"]["type"] == "content_block_start":
            item["data"]["content_block"]["id"] = "toolu_01SecondCallForLondon"
        delta = item["data"].get("delta") or {}
        if delta.get("partial_json"):
            delta["partial_json"] = delta["partial_json"].replace("P", "Lond").replace(
                "ar", "").replace("is", "on")
    end = next(i for i, item in enumerate(payload) if item["data"]["type"] == "message_delta")
    return payload[:end] + second + payload[end:]


def test_parallel_tool_use_stream_becomes_two_chat_tool_calls() -> None:
    payload = with_second_tool_use(golden("anthropic_stream_tool_use_sdk_fixture.json"))
    expected = [("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"}),
                ("toolu_01SecondCallForLondon", "get_weather", {"location": "London"})]
    assert anthropic_stream_facts(payload)["tools"] == expected
    events = translate_stream(ChatFromMessagesStream(wants_usage=True), payload)
    view = read_chat_chunks(events)
    assert sorted(view["calls"]) == [0, 1]
    assert view["tools"] == expected
    assert view["finish"] == ["tool_calls"]
    response = read_responses_events(translate_stream(
        ResponsesFromMessagesStream({"model": "m", "input": "x"}), payload))
    assert responses_output(response)[1] == expected


def cached_replay() -> list[dict[str, Any]]:
    """The recorded stream replayed as a cache hit: 57 fresh, 400 read, 100 written."""
    payload = golden("anthropic_stream_text_recorded.json")
    for item in payload:
        usage = item["data"].get("usage") or (item["data"].get("message") or {}).get("usage")
        if usage and "input_tokens" in usage:
            usage.update(input_tokens=57, cache_read_input_tokens=400,
                         cache_creation_input_tokens=100)
    return payload


def test_cached_prompt_tokens_count_in_the_chat_usage_chunk() -> None:
    payload = cached_replay()
    view = read_chat_chunks(translate_stream(ChatFromMessagesStream(True), payload))
    (usage,) = view["usage"]
    assert usage["prompt_tokens"] == 557
    assert usage["prompt_tokens_details"]["cached_tokens"] == 400
    assert usage["total_tokens"] == 557 + 35


def test_anthropic_error_mid_stream_reaches_chat_clients_as_an_error() -> None:
    payload = golden(ERROR_STREAM)
    events = translate_stream(ChatFromMessagesStream(wants_usage=True), payload)
    view = read_chat_chunks(events)
    assert view["content"] == "Hello"
    (error,) = view["errors"]
    assert error["message"] == "Overloaded" and error["type"] == "overloaded_error"
    assert events[-1][1] == {"error": error}, "the error is the last thing sent"
    assert view["finish"] == [] and view["usage"] == [] and view["done_at"] is None


# === Anthropic provider -> Responses client: streams ============================================

@pytest.mark.parametrize("name", cases(COMPLETE_ANTHROPIC_STREAMS))
def test_anthropic_stream_as_responses_events(name: str) -> None:
    payload = golden(name)
    facts, expect = anthropic_stream_facts(payload), ANTHROPIC_STREAM_EXPECT[name]
    client = {"model": "claude", "input": [{"role": "user", "content": "hi"}], "stream": True}
    events = translate_stream(ResponsesFromMessagesStream(client), payload)
    response = read_responses_events(events)
    assert events[-1][0] == "response.completed" and response["status"] == "completed"
    assert response["model"] == payload[0]["data"]["message"]["model"]
    text, calls = responses_output(response)
    assert text == facts["text"] == expect["text"]
    assert calls == facts["tools"] == expect["tools"]
    kinds = [item["type"] for item in response["output"]]
    if expect["text"] and expect["tools"]:  # the text came first in each of these streams
        assert kinds == ["message", "function_call"]
    u = facts["usage"]
    prompt = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert response["usage"]["input_tokens"] == prompt
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == \
        u["cache_read_input_tokens"]
    assert response["usage"]["output_tokens"] == u["output_tokens"]
    assert response["usage"]["total_tokens"] == prompt + u["output_tokens"]

    final = sdk_response(events)  # what the openai SDK assembles
    assert final.output_text == expect["text"]
    assert [(i.call_id, i.name, json.loads(i.arguments)) for i in final.output
            if i.type == "function_call"] == expect["tools"]


def test_anthropic_max_tokens_stream_is_an_incomplete_response() -> None:
    payload = golden("anthropic_stream_text.json")
    payload[-2]["data"]["delta"]["stop_reason"] = "max_tokens"  # the same stream, cut short
    events = translate_stream(ResponsesFromMessagesStream({"model": "m", "input": "x"}), payload)
    response = read_responses_events(events)
    assert events[-1][0] == "response.incomplete"
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert responses_output(response)[0] == "Hello!"


def test_anthropic_error_mid_stream_reaches_responses_clients_as_an_error() -> None:
    payload = golden(ERROR_STREAM)
    events = translate_stream(ResponsesFromMessagesStream({"model": "m", "input": "x"}), payload)
    kinds = [data.get("type") for _, data in events]
    assert "response.completed" not in kinds and "response.incomplete" not in kinds
    deltas = "".join(d["delta"] for _, d in events if d.get("type") == "response.output_text.delta")
    assert deltas == "Hello"
    last = events[-1][1]
    message = last.get("message") or (last.get("error") or {}).get("message")
    assert message == "Overloaded", "the stream ends with the provider's error"


# === OpenAI Chat provider -> Anthropic client: streams ==========================================

# Read by hand from each golden stream (its deltas, finish reason and usage chunk).
CHAT_STREAM_EXPECT: dict[str, dict[str, Any]] = {
    "openai_chat_stream_parallel_tool_calls.json": {
        "text": "", "stop": "tool_use", "usage": (149, 60),
        "tools": [("call_lQnnsesjFMWMQ5IeWPHzR4th", "GetWeatherArgs",
                   {"city": "Edinburgh", "country": "UK", "units": "c"}),
                  ("call_2xjOUgaCdiwAcl9ZBL9LyMUU", "get_stock_price",
                   {"ticker": "AAPL", "exchange": "NASDAQ"})]},
    "openai_chat_stream_text_include_usage.json": {
        "text": "I'm unable to provide real-time updates, including current weather "
                "information. For the latest weather in San Francisco, I recommend checking a "
                "reliable weather website or app such as the Weather Channel, BBC Weather, or "
                "a local San Francisco news station.",
        "stop": "end_turn", "usage": (14, 47), "tools": []},
    "openai_chat_stream_tool_call.json": {
        "text": "", "stop": "tool_use", "usage": (44, 16),
        "tools": [("call_5uxEBMFySqqQGu02I5QHA8k6", "get_weather", {"city": "New York City"})]},
}


def test_every_chat_stream_has_hand_written_expectations() -> None:
    assert sorted(CHAT_STREAM_EXPECT) == CHAT_STREAMS


@pytest.mark.parametrize("name", cases(CHAT_STREAMS))
def test_chat_stream_as_anthropic_events(name: str) -> None:
    payload = golden(name)
    facts, expect = chat_stream_facts(payload), CHAT_STREAM_EXPECT[name]
    assert (facts["text"], facts["tools"]) == (expect["text"], expect["tools"])

    events = translate_stream(MessagesFromChatStream(), payload)
    view = read_messages_events(events)
    assert view["message"]["model"] == payload[0]["data"]["model"]
    assert view["message"]["role"] == "assistant"
    expected_blocks: list[Any] = [("text", expect["text"])] if expect["text"] else []
    expected_blocks += [("tool_use", call) for call in expect["tools"]]
    assert [(b["type"], b["text"] if b["type"] == "text" else (b["id"], b["name"], b["input"]))
            for b in view["content"]] == expected_blocks
    # every tool_use starts empty and its input arrives as input_json_delta
    for block in view["content"]:
        if block["type"] == "tool_use":
            starts = [d for _, d in events if d["type"] == "content_block_start"
                      and d["content_block"].get("id") == block["id"]]
            assert len(starts) == 1 and starts[0]["content_block"]["input"] == {}
    assert view["stop_reason"] == STOP_FOR_FINISH[facts["finish"]] == expect["stop"]
    usage = facts["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert (view["usage"]["input_tokens"], view["usage"]["output_tokens"]) == \
        (usage["prompt_tokens"] - cached, usage["completion_tokens"]) == expect["usage"]

    message = sdk_message(events)  # what the anthropic SDK assembles
    assert [(b.type, b.text if b.type == "text" else (b.id, b.name, b.input))
            for b in message.content] == expected_blocks
    assert message.stop_reason == expect["stop"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == expect["usage"]


def test_chat_stream_tool_call_arguments_arrive_as_input_json_delta_fragments() -> None:
    payload = golden("openai_chat_stream_tool_call.json")
    fragments = [c["function"]["arguments"] for item in payload if item["data"] != "[DONE]"
                 for choice in item["data"]["choices"]
                 for c in choice["delta"].get("tool_calls") or () if c["function"]["arguments"]]
    events = translate_stream(MessagesFromChatStream(), payload)
    partials = [d["delta"]["partial_json"] for _, d in events
                if d["type"] == "content_block_delta"
                and d["delta"]["type"] == "input_json_delta"]
    assert "".join(partials) == "".join(fragments) == '{"city":"New York City"}'


# === metering: the bill is what the provider reported ===========================================

def responses_request() -> ClientRequest:
    """The request of the recorded Responses stream (see its note)."""
    return OpenAIResponses().parse({"model": "gpt-3.5-turbo-0125", "stream": True,
                                    "input": [{"role": "user", "content": "Say some greetings"}]})


def test_responses_stream_meters_the_reported_usage() -> None:
    payload = golden("responses_stream_text.json")
    fmt, meter = OpenAIResponses(), Meter()
    shown = [fmt.on_event(responses_request(), meter, e) for e in upstream_events(payload)]
    assert all(shown), "a pass-through Responses stream shows the client every event"
    usage = payload[-1]["data"]["response"]["usage"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    assert meter.completed
    assert (meter.input_tokens, meter.cache_read_tokens, meter.output_tokens) == \
        (usage["input_tokens"] - cached, cached, usage["output_tokens"]) == (13, 0, 12)
    text = "".join(i["data"]["delta"] for i in payload
                   if i["event"] == "response.output_text.delta")
    assert text == "Greetings, hello, hi, hey, salutations!"
    assert meter.output_bytes == len(text)
    billed = meter.usage(estimated_input=999)
    assert (billed.input_tokens, billed.output_tokens, billed.reported) == (13, 12, True)


def test_responses_stream_with_cached_input_bills_cached_tokens_apart() -> None:
    payload = golden("responses_stream_text.json")
    payload[-1]["data"]["response"]["usage"]["input_tokens_details"]["cached_tokens"] = 8
    meter = Meter()
    for event in upstream_events(payload):
        OpenAIResponses().on_event(responses_request(), meter, event)
    assert (meter.input_tokens, meter.cache_read_tokens) == (13 - 8, 8)


@pytest.mark.parametrize("name", cases(RESPONSES_RESPONSES))
def test_responses_answer_meters_the_reported_usage(name: str) -> None:
    body = golden(name)
    meter = Meter()
    OpenAIResponses().on_body(meter, orjson.dumps(body))
    usage = body["usage"]
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
    assert meter.completed
    assert (meter.input_tokens, meter.cache_read_tokens, meter.output_tokens) == \
        (usage["input_tokens"] - cached, cached, usage["output_tokens"])
    produced = "".join(part["text"] for item in body["output"] if item["type"] == "message"
                       for part in item["content"]) + \
        "".join(item["name"] + item["arguments"] for item in body["output"]
                if item["type"] == "function_call")
    assert meter.output_bytes == len(produced.encode())


def test_responses_answer_with_cached_input_bills_cached_tokens_apart() -> None:
    body = golden("responses_response_text.json")
    body["usage"]["input_tokens_details"]["cached_tokens"] = 10
    meter = Meter()
    OpenAIResponses().on_body(meter, orjson.dumps(body))
    assert (meter.input_tokens, meter.cache_read_tokens, meter.output_tokens) == (4, 10, 50)


@pytest.mark.parametrize("name", cases(ANTHROPIC_STREAMS))
def test_anthropic_stream_meters_the_reported_usage(name: str) -> None:
    payload = golden(name)
    facts = anthropic_stream_facts(payload)
    fmt, meter = AnthropicMessages(), Meter()
    request = fmt.parse(golden("anthropic_request_tools_any.json"))
    for event in upstream_events(payload):
        assert fmt.on_event(request, meter, event)
    assert meter.completed == facts["complete"]
    reported = [item["data"] for item in payload if item["data"].get("type") in
                ("message_start", "message_delta")]
    if any((d.get("usage") or (d.get("message") or {}).get("usage")) for d in reported):
        u = facts["usage"]
        assert (meter.input_tokens, meter.output_tokens) == \
            (u["input_tokens"], u["output_tokens"])
        assert (meter.cache_read_tokens, meter.cache_write_tokens) == \
            (u["cache_read_input_tokens"], u["cache_creation_input_tokens"])
    produced = facts["text"] + facts["thinking"] + "".join(
        item["data"]["delta"].get("partial_json", "") for item in payload
        if item["data"].get("type") == "content_block_delta")
    assert meter.output_bytes == len(produced.encode())
    if name == ERROR_STREAM:
        assert meter.upstream_error == "Overloaded"


def test_anthropic_stream_with_cache_meters_cache_reads_and_writes_apart() -> None:
    fmt, meter = AnthropicMessages(), Meter()
    request = fmt.parse(golden("anthropic_request_tools_any.json"))
    for event in upstream_events(cached_replay()):
        fmt.on_event(request, meter, event)
    assert (meter.input_tokens, meter.cache_read_tokens, meter.cache_write_tokens,
            meter.output_tokens) == (57, 400, 100, 35)


@pytest.mark.parametrize("wants_usage", [True, False], ids=["include-usage", "no-usage"])
@pytest.mark.parametrize("name", cases(CHAT_STREAMS))
def test_chat_stream_meters_the_reported_usage(name: str, wants_usage: bool) -> None:
    payload = golden(name)
    facts = chat_stream_facts(payload)
    body = golden("openai_chat_request_sampling_params.json")
    if not wants_usage:
        del body["stream_options"]
    fmt, meter = OpenAIChat(), Meter()
    request = fmt.parse(body)
    events = upstream_events(payload)
    shown = [fmt.on_event(request, meter, e) for e in events]
    usage_only = [i for i, item in enumerate(payload)
                  if item["data"] != "[DONE]" and item["data"].get("usage")
                  and not item["data"]["choices"]]
    assert usage_only, "the recorded stream carries OpenAI's usage chunk"
    hidden = [i for i, ok in enumerate(shown) if not ok]
    assert hidden == ([] if wants_usage else usage_only)
    assert meter.completed
    usage = facts["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert (meter.input_tokens, meter.cache_read_tokens, meter.output_tokens) == \
        (usage["prompt_tokens"] - cached, cached, usage["completion_tokens"])
