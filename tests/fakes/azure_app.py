"""Fake Azure OpenAI upstream: raw ASGI app for a resource endpoint's ``/openai/...`` paths.

Two wire formats, as Azure serves them:

* the deployments API: ``POST /openai/deployments/{deployment}/chat/completions
  ?api-version=YYYY-MM-DD[-preview]``.  Without ``api-version``: 404 ``{"error": {"code":
  "404", "message": "Resource not found"}}``; a malformed one: 400 ``"API version not
  supported"``.  An unknown deployment: 404 ``DeploymentNotFound``.  The body's ``model``
  is ignored (the deployment decides the model).
* the v1 API: ``POST /openai/v1/chat/completions`` and ``/openai/v1/responses``, no
  dated ``api-version`` (only ``preview``/``latest`` accepted), the deployment name in the
  body's ``model`` (unknown: 404 ``DeploymentNotFound``).

Auth: the ``api-key`` header (both APIs); the v1 API also takes ``Authorization: Bearer``.
Missing or wrong key (``FakeState.expected_api_key`` when set, else any non-empty key):
401 ``{"error": {"code": "401", "message": "Access denied due to invalid subscription key
or wrong API endpoint. ..."}}``.  ``FakeState.fail_status`` answers everything after the
auth check with that status and an Azure error body (``code`` the status as a string); a
429 carries ``retry-after: 1`` and ``retry-after-ms: 1000``, as Azure sends them.

Models - List (what routers probe): ``GET /openai/models?api-version=...`` and, for the v1
API, ``GET /openai/v1/models``, behind the same key check: ``{"data": [{"status",
"capabilities", "lifecycle_status", "deprecation", "id", "created_at", "object":
"model"}], "object": "list"}``.

Answers are the fake OpenAI app's (same switches, same token model, see state.py) with
Azure's additions: ``prompt_filter_results`` at the top of a whole answer and
``content_filter_results`` in each choice; a stream starts with Azure's annotation chunk
(``"choices": []``, empty ``id``/``model``/``object``, ``created`` 0,
``prompt_filter_results``).  A prompt containing ``FILTER_ME`` is refused as Azure's
content filter does: 400 with ``code: "content_filter"`` and an ``innererror`` of
``ResponsibleAIPolicyViolation``; one containing ``FILTER_OUTPUT`` is answered, but its
completion is filtered: ``finish_reason: "content_filter"`` (whole or streamed) and a
filtered ``content_filter_results``.  The ``model`` Azure reports is the deployment's model
(``DEPLOYMENTS``).  Requests are recorded with their Azure path and query.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import orjson

from ._asgi import ASGIApp, Headers, Message, Receive, Scope, Send, rand_id, read_request
from ._asgi import send_json
from .openai_app import make_openai_app
from .state import FakeState

# deployment name -> the model deployed under it
DEPLOYMENTS = {"my-4o-mini": "gpt-4o-mini", "gpt-4o-mini": "gpt-4o-mini",
               "my-4o": "gpt-4o", "gpt-4o": "gpt-4o", "reasoner": "o3-mini"}
FILTER_MARKER = "FILTER_ME"
OUTPUT_FILTER_MARKER = "FILTER_OUTPUT"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_DEPLOYMENT_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_V1_PATHS = {"/openai/v1/chat/completions": "/v1/chat/completions",
             "/openai/v1/responses": "/v1/responses"}
_NO_ACCESS = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure "
              "to provide a valid key for an active subscription and use a correct regional "
              "API endpoint for your resource.")
_NO_DEPLOYMENT = ("The API deployment for this resource does not exist. If you created the "
                  "deployment within the last 5 minutes, please wait a moment and try again.")
_FILTERED = ("The response was filtered due to the prompt triggering Azure OpenAI's content "
             "management policy. Please modify your prompt and retry. To learn more about our "
             "content filtering policies please read our documentation: "
             "https://go.microsoft.com/fwlink/?linkid=2198766")
_SAFE = {name: {"filtered": False, "severity": "safe"}
         for name in ("hate", "self_harm", "sexual", "violence")}
_ANNOTATION = orjson.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                            "prompt_filter_results": [{"prompt_index": 0,
                                                       "content_filter_results": _SAFE}]})


def azure_error(code: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, **extra}})


class _Unrecorded:
    """The shared state without `record`: the Azure app records the request itself."""

    def __init__(self, state: FakeState) -> None:
        self._state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    def record(self, request: Any) -> None:
        pass


def _prompt_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    return orjson.dumps(body.get("messages") or body.get("input") or "").decode()


def make_azure_app(state: FakeState) -> ASGIApp:
    openai_app = make_openai_app(_Unrecorded(state))  # type: ignore[arg-type]

    async def _models(v1: bool, version: str | None, headers: dict[str, str], send: Send,
                      extra: Headers) -> None:
        """Models - List: the resource's models (`api-version` required on the
        deployments API; the v1 API answers OpenAI's list shape)."""
        if not v1 and version is None:
            await send_json(send, 404, azure_error("404", "Resource not found"), extra)
            return
        if (not v1 and not _VERSION.match(version or "")) or (
                v1 and version not in (None, "preview", "latest")):
            await send_json(send, 400, azure_error("BadRequest", "API version not supported"),
                            extra)
            return
        key = headers.get("api-key", "")
        auth = headers.get("authorization", "")
        if v1 and not key and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if not key or (state.expected_api_key is not None and key != state.expected_api_key):
            await send_json(send, 401, azure_error("401", _NO_ACCESS), extra)
            return
        if state.fail_status is not None:
            status = state.fail_status
            await send_json(send, status, azure_error(str(status), "The server had an error "
                                                      "while processing your request."), extra)
            return
        models = sorted(set(DEPLOYMENTS.values()))
        data = [{"status": "succeeded", "capabilities": {
                    "fine_tune": False, "inference": True, "completion": False,
                    "chat_completion": True, "embeddings": False},
                 "lifecycle_status": "generally-available",
                 "deprecation": {"inference": 1790000000}, "id": m,
                 "created_at": 1721260800, "object": "model"} for m in models]
        await send_json(send, 200, orjson.dumps({"data": data, "object": "list"}), extra)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_request(scope, receive, state)
        extra: Headers = [(b"apim-request-id", rand_id("", 32).encode()),
                          (b"x-ms-region", b"East US"), (b"x-ms-rai-invoked", b"true")]
        path = scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        version = (query.get("api-version") or [None])[0]
        headers = request.headers
        match = _DEPLOYMENT_PATH.match(path)
        v1 = path in _V1_PATHS
        if scope.get("method") == "GET" and path in ("/openai/models", "/openai/v1/models"):
            await _models(path == "/openai/v1/models", version, request.headers, send, extra)
            return
        if scope.get("method") != "POST" or not (match or v1):
            await send_json(send, 404, azure_error("404", "Resource not found"), extra)
            return
        if match and version is None:
            await send_json(send, 404, azure_error("404", "Resource not found"), extra)
            return
        if (match and not _VERSION.match(version or "")) or (
                v1 and version not in (None, "preview", "latest")):
            await send_json(send, 400, azure_error("BadRequest", "API version not supported"),
                            extra)
            return
        key = headers.get("api-key", "")
        auth = headers.get("authorization", "")
        if v1 and not key and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        if not key or (state.expected_api_key is not None and key != state.expected_api_key):
            await send_json(send, 401, azure_error("401", _NO_ACCESS), extra)
            return
        if state.fail_status is not None:
            status = state.fail_status
            if status == 429:
                # Azure sends the wait twice: seconds and milliseconds
                extra += [(b"retry-after", b"1"), (b"retry-after-ms", b"1000")]
                message = ("Requests to the ChatCompletions_Create Operation under Azure "
                           "OpenAI API version 2024-10-21 have exceeded token rate limit of "
                           "your current OpenAI S0 pricing tier. Please retry after 1 second.")
            else:
                message = "The server had an error while processing your request."
            await send_json(send, status, azure_error(str(status), message), extra)
            return
        body = request.body
        deployment = match.group(1) if match else (
            body.get("model") if isinstance(body, dict) else None)
        if deployment not in DEPLOYMENTS:
            await send_json(send, 404, azure_error("DeploymentNotFound", _NO_DEPLOYMENT), extra)
            return
        if FILTER_MARKER in _prompt_text(body):
            filtered = {**_SAFE, "violence": {"filtered": True, "severity": "high"}}
            await send_json(send, 400, azure_error(
                "content_filter", _FILTERED, param="prompt", status=400,
                innererror={"code": "ResponsibleAIPolicyViolation",
                            "content_filter_result": filtered}), extra)
            return
        if not isinstance(body, dict):
            await send_json(send, 400, azure_error("BadRequest", "Invalid JSON body"), extra)
            return
        model = DEPLOYMENTS[deployment]
        raw = orjson.dumps({**body, "model": model})
        sub_scope = {**scope, "path": "/v1/chat/completions" if match else _V1_PATHS[path],
                     "query_string": b"", "headers": [
                         (b"content-type", b"application/json"),
                         (b"authorization", b"Bearer " + key.encode("latin-1"))]}
        replayed = False

        async def sub_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        chat = sub_scope["path"] == "/v1/chat/completions"
        await openai_app(sub_scope, sub_receive, _azure_send(
            send, extra, chat, OUTPUT_FILTER_MARKER in _prompt_text(body)))

    return app


def _azure_send(send: Send, extra: Headers, chat: bool, filter_output: bool) -> Send:
    """Azure's additions to the OpenAI fake's answer: filter annotations, its headers, and
    (`filter_output`) a completion its content filter stopped."""
    start: Message | None = None
    sse = False
    parts: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start, sse
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", [])
                       if k not in (b"openai-version", b"openai-processing-ms")]
            start = {**message, "headers": headers + extra}
            sse = any(k == b"content-type" and v.startswith(b"text/event-stream")
                      for k, v in headers)
            if sse:
                await send(start)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        if sse:
            body = message.get("body", b"")
            if not parts and chat and start is not None and start["status"] == 200:
                parts.append(b"sent")
                body = b"data: " + _ANNOTATION + b"\n\n" + body
            if filter_output:
                body = body.replace(b'"finish_reason":"stop"',
                                    b'"finish_reason":"content_filter"')
            await send({**message, "body": body})
            return
        parts.append(message.get("body", b""))
        if message.get("more_body"):
            return
        payload = b"".join(parts)
        assert start is not None
        if chat and start["status"] == 200:
            parsed = orjson.loads(payload)
            parsed["prompt_filter_results"] = [{"prompt_index": 0,
                                                "content_filter_results": _SAFE}]
            for choice in parsed.get("choices") or ():
                choice["content_filter_results"] = _SAFE
                if filter_output:
                    choice["finish_reason"] = "content_filter"
                    choice["content_filter_results"] = {
                        **_SAFE, "violence": {"filtered": True, "severity": "medium"}}
            payload = orjson.dumps(parsed)
        headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    return wrapped
