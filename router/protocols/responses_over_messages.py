"""An OpenAI Responses API client served by an Anthropic Messages provider.

Request: `instructions` and system/developer items become `system`; message items
become turns (input_text, input_image, output_text parts); `function_call` items become
`tool_use` blocks and `function_call_output` items `tool_result` blocks; function tools
and tool_choice map one to one. Answer: text blocks become one `message` item with
`output_text` parts, each `tool_use` a `function_call` item; the stream is the event
sequence the SDK's accumulator expects (`response.created` ... `response.completed`, or
`response.incomplete` when the output limit cut the answer), numbered by
`sequence_number`.

Documented drops: `reasoning` (effort and summaries), thinking blocks in the answer,
`reasoning` input items, `store`, `metadata`, `include`, `truncation`, `text.verbosity`,
`service_tier`, a tool's `strict`. Refused with a 400: `text.format` other than text,
custom (free-form) tools, `item_reference` items, `temperature` above 1.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.chat_over_messages import _document as pdf_document
from router.protocols.sse import SseEvent
from router.protocols.translate import (FunctionBridge, TokenCounts, UpstreamTarget,
                                        content_blocks,
                                        anthropic_tool_choice, append_turn, event_json,
                                        image_from_url, loads_arguments, new_id,
                                        object_schema, openai_stream_error, sse,
                                        temperature_for_anthropic, text_of)


def _input_block(part: dict[str, Any], kind: Any, param: str) -> dict[str, Any]:
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        if not part.get("image_url"):
            raise BadRequest(f"'{param}' needs an image_url (file ids cannot be "
                             "translated)", param=f"{param}.image_url")
        return {"type": "image", "source": image_from_url(part["image_url"],
                                                          f"{param}.image_url")}
    if kind == "input_file":
        return pdf_document(part, param)
    raise BadRequest(f"'{param}' of type {kind!r} cannot be sent to an Anthropic model",
                     param=param)


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return content_blocks(content, where, _input_block)


def _input(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages) from `instructions` and `input`."""
    system: list[dict[str, Any]] = []
    if body.get("instructions"):
        system.append({"type": "text", "text": body["instructions"]})
    items = body["input"]
    if isinstance(items, str):
        return system, [{"role": "user", "content": [{"type": "text", "text": items}]}]
    messages: list[dict[str, Any]] = []
    known_calls: set[str] = set()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                text = text_of([b["text"] for b in _content_blocks(item.get("content"), where)
                                if b["type"] == "text"], f"{where}.content")
                if text:
                    system.append({"type": "text", "text": text})
            elif role in ("user", "assistant"):
                append_turn(messages, role, _content_blocks(item.get("content"), where))
            else:
                raise BadRequest(f"'{where}.role' must be user, assistant, system or "
                                 "developer", param=f"{where}.role")
        elif kind == "function_call":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not isinstance(item.get("name"), str):
                raise BadRequest(f"'{where}' needs a 'call_id' and a 'name'", param=where)
            known_calls.add(call_id)
            append_turn(messages, "assistant", [{
                "type": "tool_use", "id": call_id, "name": item["name"],
                "input": loads_arguments(item.get("arguments"), f"{where}.arguments")}])
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in known_calls:
                raise BadRequest(f"'{where}.call_id' {call_id!r} answers no function_call "
                                 "item before it", param=f"{where}.call_id")
            output = item.get("output")
            append_turn(messages, "user", [{
                "type": "tool_result", "tool_use_id": call_id,
                "content": output if isinstance(output, str)
                else _content_blocks(output, where)}])
        elif kind == "reasoning":
            continue
        else:
            raise BadRequest(f"'{where}.type' {kind!r} cannot be sent to an Anthropic model",
                             param=f"{where}.type")
    return system, messages


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            raise BadRequest(f"'{param}' must be a function tool with a name to reach an "
                             "Anthropic model", param=f"{param}.type")
        entry: dict[str, Any] = {"name": tool["name"], "input_schema": object_schema(
            tool.get("parameters"), f"{param}.parameters")}
        if isinstance(tool.get("description"), str):
            entry["description"] = tool["description"]
        out.append(entry)
    return out


def to_messages_request(body: dict[str, Any], target: UpstreamTarget) -> dict[str, Any]:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    text_format = (fmt.get("type", "text") if isinstance(fmt, dict) else
                   "text" if fmt is None else repr(fmt))
    if text_format != "text":
        raise BadRequest(f"'text.format' {text_format!r} cannot be used with model "
                         f"{target.model_id!r}", param="text.format")
    system, messages = _input(body)
    if not messages:
        raise BadRequest("'input' needs at least one user or assistant item", param="input")
    out: dict[str, Any] = {"model": target.model_id, "messages": messages}
    if system:
        out["system"] = system
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        choice = anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    temperature = temperature_for_anthropic(body.get("temperature"))
    if temperature is not None:
        out["temperature"] = temperature
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str):
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out


_CUT_SHORT = ("max_tokens", "model_context_window_exceeded")  # -> status "incomplete"


# --- the answer ---------------------------------------------------------------------------

def _response_id(message_id: Any) -> str:
    return "resp_" + (str(message_id) if message_id else new_id(""))


def response_object(request: dict[str, Any], response_id: str, model: Any, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    created_at: int) -> dict[str, Any]:
    """A `response` object with the fields the API always returns."""
    return {"id": response_id, "object": "response", "created_at": created_at,
            "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"), "model": model,
            "output": output, "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": False, "temperature": request.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools") or [], "top_p": request.get("top_p", 1.0),
            "truncation": "disabled", "usage": usage, "user": None,
            "metadata": request.get("metadata") or {}}


def _message_item(item_id: str, texts: list[str], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": [], "logprobs": []}
                        for t in texts]}


def _call_item(item_id: str, call_id: Any, name: Any, arguments: str,
               status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def to_response(body: dict[str, Any], client_body: dict[str, Any]) -> dict[str, Any]:
    """A whole Anthropic message as a `response`."""
    output: list[dict[str, Any]] = []
    texts: list[str] = []
    status = "incomplete" if body.get("stop_reason") in _CUT_SHORT else "completed"
    for block in body.get("content") or ():
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            if texts:
                output.append(_message_item(new_id("msg_"), texts, "completed"))
                texts = []
            output.append(_call_item(new_id("fc_"), block.get("id"), block.get("name"),
                                     orjson.dumps(block.get("input") or {}).decode(),
                                     "completed"))
    if texts:
        output.append(_message_item(new_id("msg_"), texts, status))
    counts = TokenCounts()
    counts.take_anthropic(body.get("usage") or {})
    return response_object(client_body, _response_id(body.get("id")), body.get("model"),
                           status, output, counts.responses(), int(time.time()))


class ResponsesFromMessagesStream:
    """Anthropic stream events in, Responses API events out."""

    def __init__(self, client_body: dict[str, Any]) -> None:
        self.request = client_body
        self.seq = 0
        self.id = _response_id(None)
        self.model: Any = None
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []  # finished items
        self.message: dict[str, Any] | None = None  # the open message item
        self.text: str | None = None  # the open text part
        self.call: dict[str, Any] | None = None  # the open function_call item
        self.stop: str | None = None
        self.counts = TokenCounts()

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(data, kind)

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        usage = self.counts.responses() if status != "in_progress" else None
        return response_object(self.request, self.id, self.model, status, output, usage,
                               self.created_at)

    def _index(self) -> int:
        return len(self.output)

    def _open_text(self) -> bytes:
        out = b""
        if self.message is None:
            self.message = _message_item(new_id("msg_"), [], "in_progress")
            out += self._event("response.output_item.added",
                               {"output_index": self._index(), "item": self.message})
            self.message = {**self.message, "content": []}
        self.text = ""
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        out += self._event("response.content_part.added", {
            "item_id": self.message["id"], "output_index": self._index(),
            "content_index": len(self.message["content"]), "part": part})
        return out

    def _close_text(self) -> bytes:
        if self.message is None or self.text is None:
            return b""
        fields = {"item_id": self.message["id"], "output_index": self._index(),
                  "content_index": len(self.message["content"])}
        part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
        self.message["content"].append(part)
        out = self._event("response.output_text.done", {**fields, "text": self.text,
                                                         "logprobs": []})
        out += self._event("response.content_part.done", {**fields, "part": part})
        self.text = None
        return out

    def _close_message(self, status: str = "completed") -> bytes:
        if self.message is None:
            return b""
        out = self._close_text()
        item = {**self.message, "status": status}
        out += self._event("response.output_item.done", {"output_index": self._index(),
                                                         "item": item})
        self.output.append(item)
        self.message = None
        return out

    def _close_call(self) -> bytes:
        if self.call is None:
            return b""
        item = {**self.call, "status": "completed"}
        fields = {"item_id": item["id"], "output_index": self._index()}
        out = self._event("response.function_call_arguments.done",
                          {**fields, "name": item["name"], "arguments": item["arguments"]})
        out += self._event("response.output_item.done", {"output_index": self._index(),
                                                         "item": item})
        self.output.append(item)
        self.call = None
        return out

    def feed(self, event: SseEvent) -> bytes:
        data = event_json(event)
        if data is None:
            return b""
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and self.text is not None \
                    and self.message is not None:
                self.text += delta.get("text", "")
                return self._event("response.output_text.delta", {
                    "item_id": self.message["id"], "output_index": self._index(),
                    "content_index": len(self.message["content"]),
                    "delta": delta.get("text", ""), "logprobs": []})
            if delta.get("type") == "input_json_delta" and self.call is not None \
                    and delta.get("partial_json"):
                self.call["arguments"] += delta["partial_json"]
                return self._event("response.function_call_arguments.delta", {
                    "item_id": self.call["id"], "output_index": self._index(),
                    "delta": delta["partial_json"]})
            return b""
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "text":
                return self._open_text()
            if block.get("type") == "tool_use":
                out = self._close_message()
                self.call = _call_item(new_id("fc_"), block.get("id"), block.get("name"), "",
                                       "in_progress")
                return out + self._event("response.output_item.added", {
                    "output_index": self._index(), "item": dict(self.call)})
            return b""
        if kind == "content_block_stop":
            return self._close_text() + self._close_call()
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = _response_id(message.get("id")), message.get("model")
            self.counts.take_anthropic(message.get("usage") or {})
            created = self._response("in_progress", [])
            return (self._event("response.created", {"response": created})
                    + self._event("response.in_progress", {"response": created}))
        if kind == "message_delta":
            self.counts.take_anthropic(data.get("usage") or {})
            self.stop = (data.get("delta") or {}).get("stop_reason") or self.stop
            return b""
        if kind == "message_stop":
            status = "incomplete" if self.stop in _CUT_SHORT else "completed"
            out = self._close_message(status) + self._close_call()
            final = "response.incomplete" if status == "incomplete" else "response.completed"
            return out + self._event(final, {"response": self._response(status, self.output)})
        if kind == "error":
            return openai_stream_error(data)
        return b""


BRIDGE = FunctionBridge(
    "openai.responses", "anthropic.messages", to_messages_request,
    lambda body, client_body, wants_usage: to_response(body, client_body),
    lambda client_body, wants_usage: ResponsesFromMessagesStream(client_body))
