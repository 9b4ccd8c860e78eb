"""Google AI (Gemini) `generateContent`: the upstream format, its metering, and the pieces
the bridges to it share.

Gemini is only ever spoken *to*: clients reach it through a bridge (Chat Completions,
Messages, or Responses via Messages), so `parse` refuses a client body. The model id is
in the URL, never in the body; the output limit goes in `generationConfig.maxOutputTokens` (a dotted limit field
is a nested one). A stream (`:streamGenerateContent?alt=sse`) is one
`data: <GenerateContentResponse>` event per chunk and has no `[DONE]`: the answer is
whole at the chunk that carries a `finishReason` (or a `promptFeedback.blockReason`).

Usage (`usageMetadata`): `promptTokenCount` includes `cachedContentTokenCount`, so the
uncached input is their difference (plus `toolUsePromptTokenCount`), cache read is the
cached count, and output is `candidatesTokenCount + thoughtsTokenCount` (Google bills
thinking as output); reasoning is the thoughts count. A stream or answer without
`usageMetadata` gets the router's count, marked `"estimated": true`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from router.errors import BadRequest
from router.protocols.api import (ClientRequest, Meter, UpstreamOptions, json_object,
                                  new_event, render_json_event, upstream_json)
from router.protocols.sse import SseEvent
from router.protocols.translate import TokenCounts
from router.usage import Usage

NAME = "google.gemini"
LIMIT_FIELD = "generationConfig.maxOutputTokens"
# The documented placeholder for a function call whose thought signature is unknown
# (history from another model or client): Gemini 3 refuses unsigned calls otherwise.
SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5
_UNSIGNED_MODELS = re.compile(r"(models/)?gemini-[12]\.")

# Google's statuses as the router's error types (`_EVENT_ERROR_STATUS` in the stream stage).
_ERROR_TYPES = {"RESOURCE_EXHAUSTED": "rate_limit_error", "INVALID_ARGUMENT":
                "invalid_request_error", "FAILED_PRECONDITION": "invalid_request_error",
                "DEADLINE_EXCEEDED": "timeout", "UNAVAILABLE": "overloaded_error",
                "INTERNAL": "api_error"}

# finishReason -> the clients' stop reasons.
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
             "IMAGE_SAFETY", "LANGUAGE")


def openai_finish(reason: str | None, called: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"


def anthropic_finish(reason: str | None, called: bool) -> str:
    if reason == "MAX_TOKENS":
        return "max_tokens"
    if reason in _FILTERED:
        return "refusal"
    return "tool_use" if called else "end_turn"


# --- usage -----------------------------------------------------------------------------

def take_gemini(counts: TokenCounts, usage: dict[str, Any]) -> None:
    """`usageMetadata` into neutral counts (input excludes the cached part)."""
    prompt = int(usage.get("promptTokenCount") or 0) + int(
        usage.get("toolUsePromptTokenCount") or 0)
    cached = int(usage.get("cachedContentTokenCount") or 0)
    thoughts = int(usage.get("thoughtsTokenCount") or 0)
    counts.input, counts.cache_read = max(prompt - cached, 0), cached
    counts.output = int(usage.get("candidatesTokenCount") or 0) + thoughts
    counts.reasoning = thoughts
    counts.estimated = counts.estimated or usage.get("estimated") is True


def usage_metadata(counts: TokenCounts) -> dict[str, Any]:
    """Neutral counts as `usageMetadata` (the router's `estimated` mark carried along)."""
    prompt = counts.input + counts.cache_read + counts.cache_write
    out: dict[str, Any] = {"promptTokenCount": prompt,
                           "candidatesTokenCount": max(counts.output - counts.reasoning, 0),
                           "totalTokenCount": prompt + counts.output}
    if counts.cache_read:
        out["cachedContentTokenCount"] = counts.cache_read
    if counts.reasoning:
        out["thoughtsTokenCount"] = counts.reasoning
    if counts.estimated:
        out["estimated"] = True
    return out


def _record_usage(meter: Meter, usage: dict[str, Any]) -> None:
    counts = TokenCounts()
    take_gemini(counts, usage)
    meter.cache_read_tokens = counts.cache_read
    if usage.get("promptTokenCount") is not None:
        meter.reported_input(counts.input, counts.cache_read)
    if usage.get("candidatesTokenCount") is not None or usage.get(
            "thoughtsTokenCount") is not None:
        meter.output_tokens = counts.output
        meter.reasoning_tokens = counts.reasoning


# --- answers ---------------------------------------------------------------------------

def candidate(body: dict[str, Any]) -> dict[str, Any]:
    """The first candidate of an answer or chunk ({} when there is none)."""
    candidates = body.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    return first if isinstance(first, dict) else {}


def parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate(body).get("content")
    found = content.get("parts") if isinstance(content, dict) else None
    return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []


def finish_reason(body: dict[str, Any]) -> str | None:
    """The answer's end: the candidate's finishReason, or a blocked prompt's reason."""
    reason = candidate(body).get("finishReason")
    if isinstance(reason, str) and reason:
        return reason
    feedback = body.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        return "SAFETY"
    return None


def error_of(body: dict[str, Any]) -> dict[str, Any] | None:
    error = body.get("error")
    return error if isinstance(error, dict) else None


def _meter_parts(meter: Meter, found: list[dict[str, Any]]) -> None:
    for part in found:
        if isinstance(part.get("text"), str):
            meter.add_text(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            meter.add_text(str(call.get("name") or "") + orjson.dumps(
                call.get("args") or {}).decode())


def set_field(body: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted field (`generationConfig.maxOutputTokens`), creating the objects."""
    *outer, last = path.split(".")
    target = body
    for name in outer:
        inner = target.get(name)
        inner = dict(inner) if isinstance(inner, dict) else {}
        target[name] = inner
        target = inner
    target[last] = value


class GeminiGenerate:
    name = NAME
    shape = "openai"  # unused: errors go out in the client's shape

    def parse(self, body: dict[str, Any]) -> ClientRequest:
        raise BadRequest("the Gemini format is spoken to providers only; call "
                         "/v1/chat/completions or /v1/messages", param="api")

    def upstream_body(self, request: ClientRequest, options: UpstreamOptions) -> bytes:
        body = dict(request.body)
        body.pop("model", None)  # the model goes in the URL
        body.pop("stream", None)  # and so does streaming
        set_field(body, options.limit_field, options.max_output)
        return upstream_json(body)

    def on_event(self, request: ClientRequest, meter: Meter, event: SseEvent) -> bool:
        try:
            chunk = orjson.loads(event.data) if event.data else None
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        error = error_of(chunk)
        if error is not None:
            meter.upstream_error = str(error.get("message", "error"))[:200]
            meter.upstream_error_type = _ERROR_TYPES.get(str(error.get("status")), "api_error")
            return True
        if meter.identity is None:
            meter.identity = {"responseId": chunk.get("responseId"),
                              "modelVersion": chunk.get("modelVersion")}
        _meter_parts(meter, parts(chunk))
        if isinstance(chunk.get("usageMetadata"), dict):
            _record_usage(meter, chunk["usageMetadata"])
        if finish_reason(chunk) is not None:
            meter.finished_choices.add(0)
            meter.completed = True
            meter.needs_usage = meter.input_tokens is None or meter.output_tokens is None \
                or (not meter.output_tokens and meter.output_deltas > 0)
        return True

    def usage_events(self, request: ClientRequest, meter: Meter, event: SseEvent,
                     usage: Usage) -> list[tuple[SseEvent, bool]]:
        chunk = orjson.loads(event.data)
        chunk["usageMetadata"] = usage_metadata(TokenCounts.of(usage))
        return [(render_json_event(event, chunk), True)]

    def end_events(self, request: ClientRequest, meter: Meter,
                   usage: Usage) -> list[tuple[SseEvent, bool]]:
        chunk = {"candidates": [{"content": {"role": "model", "parts": []},
                                 "finishReason": "MAX_TOKENS", "index": 0}],
                 "usageMetadata": usage_metadata(TokenCounts.of(usage)),
                 **{k: v for k, v in (meter.identity or {}).items() if v is not None}}
        return [(new_event(None, chunk), True)]

    def on_body(self, meter: Meter, body: bytes) -> None:
        parsed = json_object(body)
        if parsed is None:
            return
        _meter_parts(meter, parts(parsed))
        meter.output_deltas = -(-meter.output_bytes // 4)
        meter.completed = True
        if isinstance(parsed.get("usageMetadata"), dict):
            _record_usage(meter, parsed["usageMetadata"])

    def body_with_usage(self, body: bytes, usage: Usage) -> bytes:
        parsed = orjson.loads(body)
        parsed["usageMetadata"] = usage_metadata(TokenCounts.of(usage))
        return orjson.dumps(parsed)


# --- request pieces both bridges use ---------------------------------------------------------

def append_content(contents: list[dict[str, Any]], role: str,
                   new_parts: list[dict[str, Any]]) -> None:
    """Add parts as a turn; consecutive turns of one role merge, empty ones are left out."""
    if not new_parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(new_parts)
    else:
        contents.append({"role": role, "parts": list(new_parts)})


def sign_calls(contents: list[dict[str, Any]], model_id: str) -> None:
    """The first function call of each model turn carries a thought signature (Gemini 3
    refuses unsigned calls in history); clients of other formats never saw one, so the
    documented placeholder stands in. Gemini 1.x and 2.x models, which take unsigned
    calls, get none."""
    if _UNSIGNED_MODELS.match(model_id):
        return
    for content in contents:
        if content["role"] != "model":
            continue
        for part in content["parts"]:
            if "functionCall" in part:
                part.setdefault("thoughtSignature", SKIP_SIGNATURE)
                break


def function_declaration(name: Any, description: Any, schema: dict[str, Any]
                         ) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "parametersJsonSchema": schema}
    if isinstance(description, str):
        out["description"] = description
    return out


def stop_sequences(stops: Any, param: str) -> list[str]:
    stops = [stops] if isinstance(stops, str) else stops
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest(f"'{param}' must be a string or a list of strings", param=param)
    if len(stops) > MAX_STOP_SEQUENCES:
        raise BadRequest(f"'{param}' may hold at most {MAX_STOP_SEQUENCES} sequences for a "
                         "Gemini model", param=param)
    return stops


def inline_image(media_type: str, data: str) -> dict[str, Any]:
    return {"inlineData": {"mimeType": media_type, "data": data}}


def function_response(name: str, text: str, is_error: bool = False) -> dict[str, Any]:
    return {"functionResponse": {"name": name, "response": {
        "error" if is_error else "result": text}}}


def check_temperature(value: Any, param: str = "temperature") -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise BadRequest(f"'{param}' must be a number from 0 to 2", param=param)
    return value


def stream_error(chunk: dict[str, Any]) -> tuple[str, str]:
    """(message, the router's error type) of a Gemini error chunk."""
    error = error_of(chunk) or {}
    return (str(error.get("message", "provider error")),
            _ERROR_TYPES.get(str(error.get("status")), "api_error"))
