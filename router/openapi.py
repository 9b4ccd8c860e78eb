"""The router's OpenAPI 3.1 description (`GET /openapi.json`, docs/api.md).

Plain data, built once: every HTTP route the router serves (the hot model calls of
`router.transports.http`, the Quart routes of `router.transports.app` and the admin
blueprint of `router.transports.admin`), what each takes, what each answers and the
error shape of each. It says only what the router does: the schemathesis run in
tests/e2e/test_schemathesis.py checks every answer of the real server against it.

Error shapes: the OpenAI-shaped model routes answer in OpenAI's error object, the
Anthropic-shaped ones (`/v1/messages`, count_tokens, the Vertex- and Bedrock-shaped
routes) in Anthropic's; the other routes answer in OpenAI's unless the request carries
`anthropic-version`, and admin refusals made before routing (a missing or wrong admin
key) always in OpenAI's. The websocket transports (`/v1/ws`) are described in
docs/websocket.md, not here: OpenAPI has no words for them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str | list[str]) -> Schema:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"]}


def _obj(properties: dict[str, Schema], required: tuple[str, ...] = (),
         *, extra: bool = True, **more: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if not extra:
        schema["additionalProperties"] = False
    schema.update(more)
    return schema


_INT = {"type": "integer"}
_MAX_INT = 2**53 - 1  # integer fields of admin bodies (router.transports.common.int_field)
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}
# A server-sent event as `text/event-stream` carries it (schema per event): `data` is what
# the API's own stream carries, `id` the event's sequence number.
_SSE_EVENT = {"type": "object", "properties": {"event": _STR, "data": _STR, "id": _STR,
                                               "retry": _INT}}
_SSE = {"text/event-stream": {"schema": _SSE_EVENT}}

# --- schemas ------------------------------------------------------------------------------

SCHEMAS: dict[str, Schema] = {
    "OpenAIError": _obj({"error": _obj({
        "message": _STR, "type": _STR, "param": _nullable("string"),
        "code": _nullable("string")}, ("message", "type", "param", "code"))}, ("error",),
        description="OpenAI's error object: each OpenAI SDK raises its typed exception"),
    "AnthropicError": _obj({"type": {"const": "error"}, "error": _obj({
        "type": _STR, "message": _STR}, ("type", "message"))}, ("type", "error"),
        description="Anthropic's error object: the Anthropic SDK raises its typed exception"),
    "AnyError": {"anyOf": [_ref("OpenAIError"), _ref("AnthropicError")],
                 "description": "OpenAI's error object, or Anthropic's when the request "
                                "carries `anthropic-version`"},
    "ChatCompletionRequest": _obj({
        "model": {**_STR, "description": "a model id or alias of the catalog (GET /v1/models)"},
        "messages": {"type": "array", "items": _obj({"role": _STR}, ("role",))},
        "stream": _BOOL, "max_tokens": _INT, "max_completion_tokens": _INT,
        "temperature": _NUM, "tools": {"type": "array", "items": {"type": "object"}},
        "stream_options": {"type": "object"}},
        ("model", "messages"), description="OpenAI Chat Completions; other fields pass on"),
    "ChatCompletion": _obj({"id": _STR, "object": {"const": "chat.completion"},
                            "model": _STR, "choices": {"type": "array"},
                            "usage": {"type": "object"}}, ("id", "object", "choices")),
    "ResponsesRequest": _obj({
        "model": _STR, "input": {"type": ["string", "array"]}, "instructions": _STR,
        "stream": _BOOL, "max_output_tokens": _INT, "tools": {"type": "array"},
        "background": _BOOL},
        ("model",), description="OpenAI Responses API; other fields pass on. `background: "
                                "true` runs it apart from its client (GET "
                                "/v1/responses/{response_id}); the same body, as a "
                                "`response.create` event, runs on the websocket upgrade of "
                                "GET /v1/responses (docs/websocket.md)"),
    "Response": _obj({"id": _STR, "object": {"const": "response"}, "output": {"type": "array"},
                      "usage": {"type": ["object", "null"]}}, ("id", "object")),
    "MessagesRequest": _obj({
        "model": _STR, "max_tokens": _INT,
        "messages": {"type": "array", "items": _obj({"role": _STR}, ("role",))},
        "system": {"type": ["string", "array"]}, "stream": _BOOL,
        "tools": {"type": "array"}, "thinking": {"type": "object"},
        "metadata": {"type": "object"}},
        ("model", "max_tokens", "messages"),
        description="Anthropic Messages; other fields pass on"),
    "CloudMessagesRequest": _obj({
        "anthropic_version": _STR, "max_tokens": _INT,
        "messages": {"type": "array", "items": _obj({"role": _STR}, ("role",))},
        "system": {"type": ["string", "array"]}, "tools": {"type": "array"}},
        ("max_tokens", "messages"),
        description="an Anthropic Messages body without `model` (it is in the path)"),
    "Message": _obj({"id": _STR, "type": {"const": "message"}, "role": _STR,
                     "model": _STR, "content": {"type": "array"},
                     "stop_reason": _nullable("string"), "usage": {"type": "object"}},
                    ("id", "type", "content")),
    "CountTokensRequest": _obj({
        "model": _STR, "messages": {"type": "array"}, "system": {"type": ["string", "array"]},
        "tools": {"type": "array"}}, ("model", "messages")),
    "TokenCount": _obj({"input_tokens": _INT}, ("input_tokens",)),
    "Pricing": {"type": "object", "additionalProperties": _STR,
                "description": "USD per million tokens, as decimal strings"},
    "OpenAIModel": _obj({"id": _STR, "object": {"const": "model"}, "created": _INT,
                         "owned_by": _STR, "display_name": _STR,
                         "max_output_tokens": _nullable("integer"),
                         "pricing": _ref("Pricing")}, ("id", "object", "created", "owned_by")),
    "AnthropicModel": _obj({"type": {"const": "model"}, "id": _STR, "display_name": _STR,
                            "created_at": _STR, "max_output_tokens": _nullable("integer"),
                            "pricing": _ref("Pricing")}, ("type", "id", "created_at")),
    "ModelList": {"anyOf": [
        _obj({"object": {"const": "list"},
              "data": {"type": "array", "items": _ref("OpenAIModel")}}, ("object", "data")),
        _obj({"data": {"type": "array", "items": _ref("AnthropicModel")}, "has_more": _BOOL,
              "first_id": _nullable("string"), "last_id": _nullable("string")},
             ("data", "has_more"))],
        "description": "OpenAI's list, or Anthropic's when the request carries "
                       "`anthropic-version`"},
    "Usage": _obj({
        "account": _STR, "balance_micros": _INT, "held_micros": _INT,
        "available_micros": _INT, "balance_usd": _STR, "limit_dollars": _NUM,
        "usage_dollars": _NUM, "remaining_dollars": _NUM,
        "recent": {"type": "array", "items": _obj({
            "request_id": _STR, "model": _STR, "provider": _nullable("string"),
            "input_tokens": _INT, "output_tokens": _INT, "cache_read_tokens": _INT,
            "cache_write_tokens": _INT, "cost_micros": _INT, "at": _STR},
            ("request_id", "cost_micros", "at"))}},
        ("account", "balance_micros", "held_micros", "available_micros", "recent"),
        description="money in integer micro-USD; `*_dollars` are for display only"),
    "OAuthAccounts": _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _obj({
        "provider": _STR, "account": _STR, "state": _STR, "reason": _nullable("string"),
        "cooldown_s": _nullable(["number"]), "expires_at": _nullable("string"),
        "expires_in_s": _nullable(["number"])}, ("provider", "account", "state"))}},
        ("object", "data")),
    "Ready": _obj({"status": {"enum": ["ready"]}, "providers": _INT}, ("status",)),
    "Unready": _obj({"status": {"enum": ["unavailable"]}, "reasons": {"type": "array"}},
                    ("status", "reasons")),
    "AccountState": _obj({"account": _STR, "balance_micros": _INT, "held_micros": _INT,
                          "available_micros": _INT},
                         ("account", "balance_micros", "held_micros", "available_micros")),
    "Credit": _obj({"amount_micros": {**_INT, "not": {"const": 0}, "minimum": -_MAX_INT,
                                      "maximum": _MAX_INT,
                                      "description": "micro-USD; negative adjusts down"},
                    "reason": _nullable("string")}, ("amount_micros",)),
    "Key": _obj({"id": _STR, "account": _STR, "prefix": _STR, "label": _nullable("string"),
                 "models": {"type": ["array", "null"], "items": _STR},
                 "rpm": _nullable("integer"), "spend_cap_micros": _nullable("integer"),
                 "expires_at": _nullable("number"), "revoked_at": _nullable("number"),
                 "created_at": _NUM}, ("id", "account", "prefix", "created_at"),
                description="a router key as stored: never the key itself"),
    "RevokedKey": {"allOf": [_ref("Key"), _obj({"already_revoked": {
        **_BOOL, "description": "the key was revoked before this call: nothing changed"}},
        ("already_revoked",))]},
    "ActivityBucket": _obj({
        "start": _STR, "calls": _INT, "client_errors": _INT, "server_errors": _INT,
        "billed": _INT, "cost_micros": _INT, "input_tokens": _INT, "output_tokens": _INT},
        ("start", "calls", "client_errors", "server_errors", "billed", "cost_micros",
         "input_tokens", "output_tokens")),
    "Activity": _obj({
        "window": {"enum": ["hour", "day"]}, "bucket_s": _INT, "since": _STR, "until": _STR,
        "buckets": {"type": "array", "items": _ref("ActivityBucket")},
        "totals": _obj({}), "by_model": {"type": "array", "items": _obj(
            {"model": _STR, "billed": _INT, "cost_micros": _INT})},
        "calls_scope": {"enum": ["all", "process"], "description": "`process`: calls and "
                        "errors are the answering worker's own (WORKERS > 1)"}},
        ("window", "bucket_s", "buckets", "totals", "by_model", "calls_scope"),
        description="the console overview's figures per bucket (calls and errors: this "
                    "process's count; billed calls, spend, tokens: the ledger's)"),
    "ConsoleSignIn": _obj({"admin_key": {**_STR, "minLength": 1}}, ("admin_key",)),
    "ConsoleSession": _obj({"csrf": {**_STR, "description": "send it as `X-Aura-CSRF` "
                                                           "with each admin call"},
                            "expires_at": _INT, "expires_in_s": _INT, "lifetime_s": _INT},
                           ("csrf", "expires_at", "expires_in_s", "lifetime_s")),
    "IssuedKey": {"allOf": [_ref("Key"), _obj({"key": {
        **_STR, "description": "the key: shown this once only"}}, ("key",))]},
    "KeyRequest": _obj({
        "account": {**_STR, "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "label": _nullable("string"), "models": {"type": ["array", "null"], "items": _STR},
        "ttl_hours": {"type": ["integer", "null"], "minimum": 1, "maximum": _MAX_INT},
        "rpm": {"type": ["integer", "null"], "minimum": 1, "maximum": _MAX_INT},
        "spend_cap_micros": {"type": ["integer", "null"], "minimum": 1, "maximum": _MAX_INT}},
        ("account",)),
    "AccountPage": _obj({
        "data": {"type": "array", "items": _ref("AccountState")},
        "has_more": {**_BOOL, "description": "more accounts follow: ask again with "
                                             "`after` = `next_after`"},
        "next_after": {**_nullable("string"),
                       "description": "the last account of `data` (null when empty)"}},
        ("data", "has_more", "next_after")),
    "AccountDetail": {"allOf": [_ref("AccountState"), _obj(
        {"keys": {"type": "array", "items": _ref("Key")}}, ("keys",))]},
    "LedgerPage": _obj({"data": {"type": "array", "items": _obj({
        "seq": _INT, "kind": {"enum": ["grant", "adjust", "hold", "capture", "release",
                                       "refund"]},
        "amount_micros": _INT, "held_delta_micros": _INT, "request_id": _nullable("string"),
        "balance_after_micros": _INT, "reason": _nullable("string"), "at": _NUM},
        ("seq", "kind", "amount_micros", "held_delta_micros", "balance_after_micros"))},
        "next_after": _INT}, ("data", "next_after")),
    "UsageRow": _obj({
        "request_id": _STR, "account": _STR, "model": _STR, "provider": _nullable("string"),
        "input_tokens": _INT, "output_tokens": _INT, "cache_read_tokens": _INT,
        "cache_write_tokens": _INT, "reasoning_tokens": _INT, "reported": _BOOL,
        "cost_micros": _INT, "at": _STR, "overrun_micros": _INT, "recovered": _BOOL},
        ("request_id", "account", "cost_micros", "at")),
    "UsageExport": _obj({"data": {"type": "array", "items": _ref("UsageRow")},
                         "count": _INT, "has_more": _BOOL}, ("data", "count", "has_more")),
    "OutboxEvent": _obj({
        "event_id": _STR, "sink": _STR, "request_id": _nullable("string"),
        "account": _nullable("string"), "state": _STR, "attempts": _INT, "created_at": _STR,
        "next_at": _STR, "last_error": _nullable("string")}, ("event_id", "sink", "state")),
    "Outbox": _obj({"pending": {"type": "object", "additionalProperties": _INT},
                    "count": _INT, "data": {"type": "array", "items": _ref("OutboxEvent")}},
                   ("pending", "count", "data")),
    "ProviderHealth": _obj({"name": _STR}, ("name",),
                           description="breaker, credentials (index and prefix, never the "
                                       "key), cooldowns, pool and in-flight figures"),
    "ProviderRequest": _obj({
        "name": {**_STR, "description": "if given, the name in the path"},
        "kind": _STR, "base_url": _STR, "api_keys": {"type": "array", "items": _STR},
        "strategy": {"enum": ["round_robin", "priority", "least_used"]},
        "max_concurrent": {**_INT, "minimum": 1},
        "timeout_connect_s": {**_NUM, "exclusiveMinimum": 0},
        "timeout_idle_s": {**_NUM, "exclusiveMinimum": 0}}, ("kind",)),
    "StoredProvider": _obj({
        "name": _STR, "kind": _STR, "base_url": _nullable("string"),
        "keys_present": _BOOL, "key_count": _INT,
        "strategy": {"enum": ["round_robin", "priority", "least_used"]},
        "max_concurrent": _nullable("integer"), "timeout_connect_s": _nullable("number"),
        "timeout_idle_s": _nullable("number"), "source": {"enum": ["store", "config"]}},
        ("kind", "keys_present", "key_count", "source"),
        description="a provider as managed at run time: whether keys are present and how "
                    "many, never a key"),
    "Streams": _obj({"data": {"type": "array", "items": _obj({
        "request_id": _STR, "account": _STR, "id": _nullable("string"), "readers": _INT,
        "done": _BOOL, "cancelled": _BOOL, "last_seq": _INT, "first_kept": _INT,
        "kept_bytes": _INT}, ("request_id", "account"))}, "count": _INT,
        "buffer_bytes": _INT}, ("data", "count", "buffer_bytes")),
}

# --- responses ----------------------------------------------------------------------------

_STATUS_TEXT = {400: "a malformed request (the message names the field)",
                401: "a missing or wrong credential",
                402: "the account cannot cover the request's hold",
                403: "a revoked key, or a model the key may not use",
                404: "no such model, route or object",
                405: "method not allowed on this path",
                408: "the request body did not arrive in time",
                409: "a conflict with the ledger's state",
                410: "the events asked for are no longer kept",
                413: "the body is over MAX_BODY_BYTES",
                429: "rate limited (see `retry-after`)",
                499: "the stream was cancelled",
                502: "the provider failed",
                503: "no provider available, or the ledger cannot be reached",
                504: "the provider timed out"}


def _json(schema: Schema) -> dict[str, Schema]:
    return {"application/json": {"schema": schema}}


def _errors(shape: str, statuses: tuple[int, ...]) -> dict[str, Schema]:
    out: dict[str, Schema] = {str(s): {"description": _STATUS_TEXT[s],
                                       "content": _json(_ref(shape))} for s in statuses}
    out["default"] = {"description": "any other refusal, in the same shape",
                      "content": _json(_ref(shape))}
    return out


_MODEL_STATUSES = (400, 401, 402, 403, 404, 408, 409, 413, 429, 499, 502, 503, 504)
_USER_STATUSES = (401, 403, 404, 429, 503)
_ADMIN_STATUSES = (400, 401, 404, 405)

_USER_SECURITY: list[dict[str, list[str]]] = [{"routerKey": []}, {"apiKeyHeader": []}]
_ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}]

_ACCOUNT_HEADER = {"name": "x-aura-account", "in": "header", "required": False,
                   "schema": _STR, "description": "with a service token: the account "
                                                  "to bill"}
_MODEL_HEADERS = {name: {"schema": _STR, "description": text} for name, text in (
    ("x-request-id", "the router's id for this request"),
    ("x-aura-model", "the model that answered"),
    ("x-aura-provider", "the provider that answered"))}


def _model_call(summary: str, request: str, answer: str, shape: str, *,
                example: Schema | None = None, extra_params: list[Schema] | None = None,
                streamed: dict[str, Schema] | None = None, cloud: bool = False) -> Schema:
    body: Schema = {"schema": _ref(request)}
    if example is not None:
        body["example"] = example
    content = {**_json(_ref(answer)), **(streamed if streamed is not None else _SSE)}
    errors = _errors(shape, _MODEL_STATUSES)
    if cloud:  # a path the route's pattern refuses is no route at all: OpenAI's 404
        errors["404"] = {"description": "no such model, or no such route",
                         "content": _json({"anyOf": [_ref(shape), _ref("OpenAIError")]})}
    return {
        "summary": summary, "tags": ["model calls"], "security": _USER_SECURITY,
        "parameters": [_ACCOUNT_HEADER, *(extra_params or []), {
            "name": "idempotency-key", "in": "header", "required": False, "schema": _STR,
            "description": "a retry with the same key is answered once, billed once"}, {
            "name": "x-aura-resumable", "in": "header", "required": False,
            "schema": {"enum": ["true", "false"]},
            "description": "`true`: the stream outlives its client (GET /v1/streams/{id})"}],
        "requestBody": {"required": True, "content": {"application/json": body}},
        "responses": {"200": {"description": "the answer: JSON, or SSE when streamed",
                              "headers": _MODEL_HEADERS, "content": content}, **errors}}


def _admin(summary: str, ok: Schema | None, *, status: str = "200",
           statuses: tuple[int, ...] = _ADMIN_STATUSES, body: str | None = None,
           params: list[Schema] | None = None, content: dict[str, Schema] | None = None,
           links: dict[str, Schema] | None = None, op_id: str | None = None,
           also_200: bool = False) -> Schema:
    answer = {"description": "done", "content": content or _json(ok or {})}
    op: Schema = {"summary": summary, "tags": ["admin"], "security": _ADMIN_SECURITY,
                  "parameters": params or [],
                  "responses": {status: answer, **({"200": dict(answer)} if also_200 else {}),
                                **_errors("AnyError", statuses)}}
    if op_id:
        op["operationId"] = op_id
    if links:
        op["responses"][status]["links"] = links
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return op


def _path_param(name: str, description: str, **schema: Any) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {**_STR, **schema}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_ACCOUNT = _path_param("account", "the account id (at most 200 characters)",
                       pattern=r"^[A-Za-z0-9_-]{1,64}$")
_CHAT_EXAMPLE = {"model": "gpt-4o-mini", "max_tokens": 16,
                 "messages": [{"role": "user", "content": "hi"}]}
_MESSAGES_EXAMPLE = {"model": "claude-haiku-4-5", "max_tokens": 16,
                     "messages": [{"role": "user", "content": "hi"}]}
_CLOUD_EXAMPLE = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
_EVENT_STREAM = {"application/vnd.amazon.eventstream": {"schema": {"type": "string"}}}
_NO_SLASH = r"^[^/:?#%]+$"


def _paths() -> dict[str, Schema]:
    messages = _model_call("Anthropic Messages, streamed or not", "MessagesRequest",
                           "Message", "AnthropicError", example=_MESSAGES_EXAMPLE,
                           extra_params=[{"name": "anthropic-version", "in": "header",
                                          "required": False, "schema": _STR}])
    vertex_params = [_path_param("project", "the client's; not used", pattern=_NO_SLASH),
                     _path_param("location", "the client's; not used", pattern=_NO_SLASH),
                     _path_param("model", "Vertex's id (`name@date`)", pattern=_NO_SLASH)]
    bedrock_model = _path_param("model", "Bedrock's model id or inference profile ARN, "
                                         "URL-encoded", pattern=r"^[^/?#%]+$")
    key_id = _path_param("key_id", "the key's id", pattern=_NO_SLASH)
    provider = _path_param("name", "the provider's name", pattern=_NO_SLASH)
    paths: dict[str, Schema] = {
        "/v1/chat/completions": {"post": _model_call(
            "OpenAI Chat Completions, streamed or not", "ChatCompletionRequest",
            "ChatCompletion", "OpenAIError", example=_CHAT_EXAMPLE)},
        "/v1/responses": {"post": _model_call(
            "OpenAI Responses API, streamed or not", "ResponsesRequest", "Response",
            "OpenAIError", example={"model": "gpt-4o-mini", "input": "hi",
                                    "max_output_tokens": 16})},
        "/v1/messages": {"post": messages},
        "/api/latest/anthropic/v1/messages": {"post": {
            **messages, "summary": "legacy prefix: any route under `/api/latest/anthropic` "
                                   "is served as the route without it"}},
        "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/"
        "{model}:rawPredict": {"post": {**_model_call(
            "Vertex-shaped Claude call (served as /v1/messages)", "CloudMessagesRequest",
            "Message", "AnthropicError", example=_CLOUD_EXAMPLE, cloud=True), "parameters": [
                *vertex_params, _ACCOUNT_HEADER]}},
        "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/"
        "{model}:streamRawPredict": {"post": {**_model_call(
            "Vertex-shaped streamed Claude call", "CloudMessagesRequest", "Message",
            "AnthropicError", example=_CLOUD_EXAMPLE, cloud=True), "parameters": [
                *vertex_params, _ACCOUNT_HEADER]}},
        "/model/{model}/invoke": {"post": {**_model_call(
            "Bedrock-shaped Claude call (InvokeModel; served as /v1/messages)",
            "CloudMessagesRequest", "Message", "AnthropicError", example=_CLOUD_EXAMPLE,
            streamed={}, cloud=True), "parameters": [bedrock_model, _ACCOUNT_HEADER]}},
        "/model/{model}/invoke-with-response-stream": {"post": {**_model_call(
            "Bedrock-shaped streamed Claude call, answered as Bedrock's event stream",
            "CloudMessagesRequest", "Message", "AnthropicError", example=_CLOUD_EXAMPLE,
            streamed=_EVENT_STREAM, cloud=True),
            "parameters": [bedrock_model, _ACCOUNT_HEADER]}},
        "/v1/streams/{request_id}": {"get": {
            "summary": "resume a resumable stream after an event (Last-Event-ID or ?after)",
            "tags": ["model calls"], "security": _USER_SECURITY,
            "parameters": [
                _path_param("request_id", "the stream's x-request-id", pattern=_NO_SLASH),
                _query("after", {"type": "integer", "minimum": 0},
                       "resume after this event id"),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,15}$"}},
                _ACCOUNT_HEADER],
            "responses": {"200": {"description": "the events after the one named, then "
                                                 "live", "content": {
                **_SSE, **_json({"type": "object"})}},
                **_errors("AnyError", (400, 401, 404, 410, 503))}}},
        "/v1/responses/{response_id}": {"get": {
            "summary": "a background (or websocket-mode) response as it stands; with "
                       "`stream=true`, its events after `starting_after`, then live",
            "tags": ["model calls"], "security": _USER_SECURITY,
            "parameters": [
                _path_param("response_id", "the response's id", pattern=_NO_SLASH),
                _query("stream", {"enum": ["true", "false"]}, "stream the events"),
                _query("starting_after", {"type": "integer", "minimum": 0},
                       "with stream=true: the events after this sequence number"),
                _ACCOUNT_HEADER],
            "responses": {"200": {"description": "the response object, or its events",
                                  "content": {**_json(_ref("Response")), **_SSE}},
                          **_errors("OpenAIError", (400, 401, 402, 404, 410, 503))}}},
        "/v1/responses/{response_id}/cancel": {"post": {
            "summary": "stop a background (or websocket-mode) response; it is billed for "
                       "what was produced",
            "tags": ["model calls"], "security": _USER_SECURITY,
            "parameters": [
                _path_param("response_id", "the response's id", pattern=_NO_SLASH),
                _ACCOUNT_HEADER],
            "responses": {"200": {"description": "the response object",
                                  "content": _json(_ref("Response"))},
                          **_errors("OpenAIError", (400, 401, 402, 404, 503))}}},
        "/v1/messages/count_tokens": {"post": {
            "summary": "count a Messages request's input tokens", "tags": ["models"],
            "security": _USER_SECURITY, "parameters": [_ACCOUNT_HEADER],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("CountTokensRequest"),
                "example": {"model": "claude-haiku-4-5",
                            "messages": [{"role": "user", "content": "hi"}]}}}},
            "responses": {"200": {"description": "the count (`x-aura-estimate: true` when "
                                                 "the router estimated it)",
                                  "content": _json(_ref("TokenCount"))},
                          **_errors("AnthropicError", (400, 401, 403, 404, 405, 413, 429,
                                                       502, 503, 504))}}},
        "/v1/models": {"get": {
            "summary": "the models this key may call, with prices", "tags": ["models"],
            "security": _USER_SECURITY, "parameters": [_ACCOUNT_HEADER],
            "responses": {"200": {"description": "the list",
                                  "content": _json(_ref("ModelList"))},
                          **_errors("AnyError", _USER_STATUSES)}}},
        "/v1/models/{model_id}": {"get": {
            "summary": "one model", "tags": ["models"], "security": _USER_SECURITY,
            "parameters": [_path_param("model_id", "a model id or alias"), _ACCOUNT_HEADER],
            "responses": {"200": {"description": "the model", "content": _json(
                {"anyOf": [_ref("OpenAIModel"), _ref("AnthropicModel")]})},
                          **_errors("AnyError", _USER_STATUSES)}}},
        "/v1/usage": {"get": {
            "summary": "the caller's balance, holds and recent usage", "tags": ["usage"],
            "security": _USER_SECURITY, "parameters": [_ACCOUNT_HEADER],
            "responses": {"200": {"description": "the account",
                                  "content": _json(_ref("Usage"))},
                          **_errors("AnyError", _USER_STATUSES)}}},
        "/v1/accounts": {"get": {
            "summary": "the OAuth logins the providers call with, and whether each is "
                       "usable now (never a token)", "tags": ["usage"],
            "security": _USER_SECURITY, "parameters": [_ACCOUNT_HEADER],
            "responses": {"200": {"description": "the logins",
                                  "content": _json(_ref("OAuthAccounts"))},
                          **_errors("AnyError", _USER_STATUSES)}}},
        "/health": {"get": {
            "summary": "`ok` while the process serves", "tags": ["operations"],
            "security": [], "responses": {"200": {
                "description": "ok", "content": {"text/plain": {"schema": {"const": "ok"}}}}}}},
        "/ready": {"get": {
            "summary": "ready when the ledger and a provider are usable", "tags": ["operations"],
            "security": [], "responses": {
                "200": {"description": "ready", "content": _json(_ref("Ready"))},
                "503": {"description": "not ready, and why", "content": _json(_ref("Unready"))}}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (admin key needed unless METRICS_PUBLIC)",
            "tags": ["operations"], "security": [{}, *_ADMIN_SECURITY], "responses": {
                "200": {"description": "Prometheus text format",
                        "content": {"text/plain": {"schema": _STR}}},
                **_errors("AnyError", (401, 404))}}},
        "/openapi.json": {"get": {
            "summary": "this document", "tags": ["operations"], "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": _json({"type": "object"})}}}},
        "/docs": {"get": {
            "summary": "this document, rendered (works offline)", "tags": ["operations"],
            "security": [], "responses": {"200": {
                "description": "an HTML page", "content": {"text/html": {"schema": _STR}}}}}},
        "/console/": {"get": {
            "summary": "the operator console (docs/console.md; `/console` too): a page, "
                       "works offline",
            "tags": ["operations"], "security": [], "responses": {"200": {
                "description": "an HTML page", "content": {"text/html": {"schema": _STR}}}}}},
        "/console/session": {
            "post": {"summary": "sign in to the console with the admin key: a session "
                                "cookie (http-only, SameSite=Strict) and its CSRF token",
                     "tags": ["operations"], "security": [],
                     "requestBody": {"required": True,
                                     "content": _json(_ref("ConsoleSignIn"))},
                     "responses": {"200": {"description": "signed in",
                                           "content": _json(_ref("ConsoleSession"))},
                                   **_errors("AnyError", (400, 401, 403, 404))}},
            "get": {"summary": "the console session's CSRF token and expiry",
                    "tags": ["operations"], "security": [],
                    "responses": {"200": {"description": "signed in",
                                          "content": _json(_ref("ConsoleSession"))},
                                  **_errors("AnyError", (401, 403, 404))}},
            "delete": {"summary": "sign out of the console (the cookie is cleared)",
                       "tags": ["operations"], "security": [],
                       "responses": {"200": {"description": "signed out", "content": _json(
                           _obj({"signed_out": {"const": True}}, ("signed_out",)))},
                                     **_errors("AnyError", (403,))}}},
        "/admin/accounts": {"get": _admin(
            "accounts in id order (code point order), with their balances, a page at a "
            "time", _ref("AccountPage"), params=[
                _query("prefix", {**_STR, "maxLength": 200},
                       "only ids that start with this (literal, case-sensitive)"),
                _query("after", {**_STR, "maxLength": 200},
                       "the ids after this one: the previous page's `next_after`"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                       "page size (default 50)")])},
        "/admin/accounts/{account}/credits": {"post": _admin(
            "grant credits (a negative amount adjusts down)", _ref("AccountState"),
            body="Credit", params=[_ACCOUNT], statuses=(*_ADMIN_STATUSES, 409))},
        "/admin/accounts/{account}": {"get": _admin(
            "an account's balance, holds and keys", _ref("AccountDetail"), params=[_ACCOUNT])},
        "/admin/accounts/{account}/usage": {"get": _admin(
            "an account's latest settled calls, newest first", _obj(
                {"data": {"type": "array", "items": _ref("UsageRow")}}, ("data",)), params=[
                _ACCOUNT, _query("limit", {"type": "integer", "minimum": 1, "maximum": 200},
                                 "how many (default 50)")])},
        "/admin/accounts/{account}/ledger": {"get": _admin(
            "an account's ledger entries, a page at a time", _ref("LedgerPage"), params=[
                _ACCOUNT, _query("after", {"type": "integer", "minimum": 0,
                                           "maximum": 2**63 - 1}, "entries after this seq"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                       "page size (at most 1000 are given)")])},
        "/admin/keys": {
            "post": _admin("issue a router key (shown once)", _ref("IssuedKey"),
                           status="201", body="KeyRequest", op_id="issueKey", links={
                               "RevokeKey": {"operationId": "revokeKey",
                                             "parameters": {"key_id": "$response.body#/id"}},
                               "AccountOfKey": {"operationId": "getAccount", "parameters": {
                                   "account": "$response.body#/account"}}}),
            "get": _admin("list keys", _obj({"data": {"type": "array", "items": _ref("Key")}},
                                            ("data",)),
                          params=[_query("account", _STR, "only this account's")])},
        "/admin/keys/{key_id}": {"delete": _admin(
            "revoke a key", _ref("RevokedKey"), params=[key_id], op_id="revokeKey")},
        "/admin/activity": {"get": _admin(
            "calls, errors and spend over the last hour or day, in buckets (the console's "
            "overview)", _ref("Activity"), params=[
                _query("window", {"enum": ["hour", "day"]}, "hour (5-minute buckets, the "
                       "default) or day (hourly buckets)")])},
        "/admin/usage": {"get": _admin(
            "usage export, oldest first", None, params=[
                _query("account", _STR, "only this account's"),
                _query("since", _STR, "ISO 8601 or unix seconds, inclusive"),
                _query("until", _STR, "ISO 8601 or unix seconds, exclusive"),
                _query("limit", {"type": "integer", "minimum": 1}, "at most this many rows"),
                _query("format", {"enum": ["json", "csv"]}, "json (default) or csv")],
            content={**_json(_ref("UsageExport")),
                     "text/csv": {"schema": _STR}})},
        "/admin/outbox": {"get": _admin(
            "events waiting for their sink", _ref("Outbox"), params=[
                _query("state", {"enum": ["pending", "dead"]}, "pending, dead, or both"),
                _query("limit", {"type": "integer", "minimum": 1}, "at most this many")])},
        "/admin/outbox/{event_id}/retry": {"post": _admin(
            "retry a dead event", _obj({"event_id": _STR, "state": {"const": "pending"}},
                                       ("event_id", "state")),
            params=[_path_param("event_id", "the event's id", pattern=_NO_SLASH)])},
        "/admin/providers": {"get": _admin(
            "each provider's health", _obj({"data": {"type": "array",
                                                     "items": _ref("ProviderHealth")}},
                                           ("data",)))},
        "/admin/providers/{name}": {
            "post": _admin("add (201) or replace (200) a provider at run time; keys are "
                           "encrypted at rest", _ref("StoredProvider"), status="201",
                           body="ProviderRequest", params=[provider],
                           statuses=(*_ADMIN_STATUSES, 409), also_200=True),
            "get": _admin("one provider, without its keys", _ref("StoredProvider"),
                          params=[provider]),
            "delete": _admin("remove a provider", _obj(
                {"name": _STR, "deleted": {"const": True}}, ("name", "deleted")),
                params=[provider], statuses=(*_ADMIN_STATUSES, 409))},
        "/admin/streams": {"get": _admin("the resumable streams the hub holds",
                                         _ref("Streams"))},
    }
    paths["/admin/accounts/{account}"]["get"]["operationId"] = "getAccount"
    return paths


def build() -> Schema:
    """The document, as Python data."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Aura Router", "version": API_VERSION,
                 "description": "An LLM gateway that bills in integer micro-USD. Model calls "
                                "take OpenAI's and Anthropic's wire formats (and the "
                                "Vertex- and Bedrock-shaped Claude routes); the websocket "
                                "transport (`/v1/ws`) is described in docs/websocket.md. "
                                "Money is always integer micro-USD."},
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("model calls", "models", "usage", "operations",
                                       "admin")],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "routerKey": {"type": "http", "scheme": "bearer",
                              "description": "a router key (`ar_sk_...`) or a JWT"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                 "description": "the same credential as Anthropic's "
                                                "SDK sends it"},
                "adminKey": {"type": "http", "scheme": "bearer",
                             "description": "ADMIN_API_KEY"}}},
    }


@cache
def document() -> bytes:
    """`/openapi.json`'s body, built once."""
    return orjson.dumps(build())
