"""Fake AWS Bedrock runtime: raw ASGI app for ``POST /model/{modelId}/invoke`` and
``/model/{modelId}/invoke-with-response-stream`` (InvokeModel with Anthropic's body).

What the real service checks, this fake checks: the ``Authorization`` header is a SigV4
signature (``AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/bedrock/aws4_request,
SignedHeaders=..., Signature=<64 hex>``) with ``X-Amz-Date``; for an access key it
knows (``KNOWN_KEYS``) it recomputes the signature with botocore over the request as it
arrived (method, raw path, signed headers, body) and answers 403
``InvalidSignatureException`` when it differs, 403 ``UnrecognizedClientException`` for
an unknown key. A Bedrock API key (``Authorization: Bearer``) is accepted too
(``expected_api_key`` applies). The body must be a JSON object with ``anthropic_version:
"bedrock-2023-05-31"`` and no ``model`` or ``stream`` (400 ``ValidationException``, as
Bedrock's "extraneous key [model] is not permitted"). The model id is the path's,
URL-decoded (``us.anthropic.claude-sonnet-4-5-20250929-v1:0``).

The answer is the fake Anthropic app's (same token model and switches, state.py): the
whole message for ``invoke``; for the stream, each Anthropic event re-framed as an
``application/vnd.amazon.eventstream`` message (``:event-type: chunk``, payload
``{"bytes": base64(event JSON)}``), ``message_stop`` carrying
``amazon-bedrock-invocationMetrics`` as Bedrock adds it, and an Anthropic ``error``
event as an exception frame. Errors are Bedrock's: ``{"message": ...}`` with an
``x-amzn-errortype`` header (429 ThrottlingException, 400 ValidationException, 500
InternalServerException, 503 ServiceUnavailableException, ...).

Converse (``/model/{id}/converse``, ``/converse-stream``), for models that are not
Claude: the body's unknown fields are a 400; a text answer of ``reply_words`` words
capped by ``inferenceConfig.maxTokens`` (``stopReason`` ``max_tokens``), with
``inputTokens`` P over the ``text`` blocks of ``messages`` and ``system`` (state.py's
formula) and ``cacheReadInputTokens`` = ``cache_read_tokens`` when set. The stream is
``messageStart``, one ``contentBlockDelta`` per word (no ``contentBlockStart`` for text,
as Bedrock sends), ``contentBlockStop``, ``messageStop``, then ``metadata`` with the
usage; ``chunk_delay_s`` and ``exception_after`` apply. No tool calls.

Bedrock-only switch: ``state.bedrock_fault`` (a dynamic attribute, absent by default;
tests delete it when done): ``("exception_after", n, "throttlingException")`` ends the
stream with that exception frame after ``n`` content deltas; ``("corrupt_after", n)``
sends the frame after ``n`` content deltas with its payload damaged (its message CRC no
longer matches) and the rest of the stream as usual.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from typing import Any
from urllib.parse import unquote

import orjson

from ._asgi import ASGIApp, Receive, Scope, Send, read_request, send_json, sleep_if
from .anthropic_app import make_anthropic_app
from .state import FakeState, capped_words, count_input_tokens, word

KNOWN_KEYS = {"AKIAFAKEBEDROCK00001": "fakeBedrockSecret/0001+xyz"}
_PATH = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream|converse|"
                   r"converse-stream)$")
_CONVERSE_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                    "additionalModelRequestFields", "additionalModelResponseFieldPaths",
                    "promptVariables", "requestMetadata", "performanceConfig"}
_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/(\d{8})/([a-z0-9-]+)/bedrock/"
                    r"aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")
_ERRORS = {400: "ValidationException", 403: "AccessDeniedException",
           404: "ResourceNotFoundException", 408: "ModelTimeoutException",
           424: "ModelErrorException", 429: "ThrottlingException",
           500: "InternalServerException", 503: "ServiceUnavailableException"}
_STREAM_EXCEPTIONS = {"overloaded_error": "serviceUnavailableException",
                      "rate_limit_error": "throttlingException",
                      "invalid_request_error": "validationException"}


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message (string headers), written from the format's definition."""
    encoded = b""
    for name, value in headers:
        encoded += bytes((len(name),)) + name.encode() + b"\x07" + struct.pack(
            ">H", len(value.encode())) + value.encode()
    prelude = struct.pack(">II", 16 + len(encoded) + len(payload), len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk_frame(event: bytes) -> bytes:
    return frame([(":event-type", "chunk"), (":content-type", "application/json"),
                  (":message-type", "event")],
                 orjson.dumps({"bytes": base64.b64encode(event).decode(), "p": "abcdefgh"}))


def exception_frame(kind: str, message: str) -> bytes:
    return frame([(":exception-type", kind), (":content-type", "application/json"),
                  (":message-type", "exception")], orjson.dumps({"message": message}))


async def _error(send: Send, status: int, message: str, kind: str | None = None) -> None:
    kind = kind or _ERRORS.get(status, "InternalServerException")
    await send_json(send, status, orjson.dumps({"message": message}),
                    [(b"x-amzn-errortype", f"{kind}:http://internal.amazon.com/coral/"
                                           "com.amazon.bedrock/".encode()),
                     (b"x-amzn-requestid", b"8a2f6c1e-0000-4000-8000-000000000000")])


def _signature_problem(scope: Scope, headers: dict[str, str], raw: bytes) -> str | None:
    """None if the SigV4 signature is right; else Bedrock's complaint."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _SIGV4.match(headers.get("authorization", ""))
    if match is None or "x-amz-date" not in headers:
        return "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'."
    akid, day, region, signed, signature = match.groups()
    if not headers["x-amz-date"].startswith(day):
        return "Date in Credential scope does not match the X-Amz-Date header."
    secret = KNOWN_KEYS.get(akid)
    if secret is None:
        return "UNRECOGNIZED: The security token included in the request is invalid."
    names = signed.split(";")
    if "host" not in names or any(n not in headers for n in names):
        return "The request signature we calculated does not match the signature you provided."
    host = headers["host"]
    url = f"http://{host}{scope.get('raw_path', scope['path'].encode()).decode()}"
    request = AWSRequest(method=scope["method"], url=url, data=raw,
                         headers={n: headers[n] for n in names if n != "host"})
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(akid, secret, headers.get("x-amz-security-token")),
                     "bedrock", region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    if expected != signature:
        return "The request signature we calculated does not match the signature you provided."
    return None


class _Quiet:
    """The shared state, minus recording: the inner Anthropic call is not a request the
    fake received."""

    def __init__(self, state: FakeState) -> None:
        object.__setattr__(self, "_state", state)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    def record(self, request: Any) -> None:
        pass


def make_bedrock_app(state: FakeState) -> ASGIApp:
    inner = make_anthropic_app(_Quiet(state))  # type: ignore[arg-type]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_request(scope, receive, state)
        if state.fail_status is not None:
            await _error(send, state.fail_status, "Too many requests, please wait before "
                         "trying again." if state.fail_status == 429 else "Service error.")
            return
        match = _PATH.match(scope["path"])
        if scope.get("method") != "POST" or match is None:
            await _error(send, 404, "Not Found", "UnknownOperationException")
            return
        headers = request.headers
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            if state.expected_api_key is not None and auth[7:] != state.expected_api_key:
                await _error(send, 403, "Authentication failed: invalid API key",
                             "AccessDeniedException")
                return
        else:
            problem = _signature_problem(scope, headers, request.raw_body)
            if problem is not None:
                kind = ("UnrecognizedClientException" if problem.startswith("UNRECOGNIZED")
                        else "InvalidSignatureException")
                await _error(send, 403, problem.removeprefix("UNRECOGNIZED: "), kind)
                return
        body = request.body
        if not isinstance(body, dict):
            await _error(send, 400, "Malformed input request, please reformat your input "
                         "and try again.")
            return
        if match.group(2).startswith("converse"):
            await _converse(body, unquote(match.group(1)),
                            match.group(2) == "converse-stream", send)
            return
        for key in ("model", "stream"):
            if key in body:
                await _error(send, 400, f"Malformed input request: #: extraneous key [{key}] "
                             "is not permitted, please reformat your input and try again.")
                return
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            await _error(send, 400, "Malformed input request: #: required key "
                         "[anthropic_version] not found, please reformat your input and "
                         "try again.")
            return
        model = unquote(match.group(1))
        if "anthropic.claude" not in model:
            await _error(send, 400, "The provided model identifier is invalid.")
            return
        streamed = match.group(2) == "invoke-with-response-stream"
        await _answer(body, model, streamed, receive, send)

    async def _converse(body: dict[str, Any], model: str, streamed: bool, send: Send) -> None:
        """Converse / ConverseStream, text answers, with the other fakes' token model."""
        unknown = sorted(set(body) - _CONVERSE_FIELDS)
        messages = body.get("messages")
        if unknown or not isinstance(messages, list) or not messages:
            await _error(send, 400, f"1 validation error detected: extraneous key {unknown}"
                         if unknown else "A conversation must start with a user message.")
            return
        prompt = count_input_tokens(messages, body.get("system"))
        config = body.get("inferenceConfig") or {}
        n_words, truncated = capped_words(state, config.get("maxTokens"))
        stop = "max_tokens" if truncated else "end_turn"
        usage: dict[str, int] = {"inputTokens": prompt, "outputTokens": n_words,
                                 "totalTokens": prompt + n_words}
        if state.cache_read_tokens:
            usage["cacheReadInputTokens"] = state.cache_read_tokens
        if not streamed:
            await send_json(send, 200, orjson.dumps({
                "output": {"message": {"role": "assistant", "content": [
                    {"text": "".join(word(i) for i in range(n_words))}]}},
                "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 120}}), [])
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/vnd.amazon.eventstream")]})
        fault = getattr(state, "bedrock_fault", None)

        def event(kind: str, payload: dict[str, Any]) -> bytes:
            return frame([(":event-type", kind), (":content-type", "application/json"),
                          (":message-type", "event")], orjson.dumps({**payload, "p": "abc"}))

        await send({"type": "http.response.body", "more_body": True,
                    "body": event("messageStart", {"role": "assistant"})})
        for i in range(n_words):
            await sleep_if(state.chunk_delay_s)
            if fault and fault[0] == "exception_after" and i >= fault[1]:
                await send({"type": "http.response.body", "more_body": False,
                            "body": exception_frame(fault[2], "The stream was interrupted.")})
                return
            await send({"type": "http.response.body", "more_body": True, "body": event(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word(i)}})})
        tail = (event("contentBlockStop", {"contentBlockIndex": 0})
                + event("messageStop", {"stopReason": stop})
                + event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}}))
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _answer(body: dict[str, Any], model: str, streamed: bool, receive: Receive,
                      send: Send) -> None:
        body = dict(body)  # the recorded request stays as it came
        betas = body.pop("anthropic_beta", None)
        body.pop("anthropic_version")
        body["model"] = model
        if streamed:
            body["stream"] = True
        payload = orjson.dumps(body)
        inner_headers = [(b"content-type", b"application/json"),
                         (b"x-api-key", b"bedrock-internal"),
                         (b"anthropic-version", b"2023-06-01"),
                         (b"content-length", str(len(payload)).encode())]
        if betas:
            inner_headers.append((b"anthropic-beta", ",".join(betas).encode()))
        sent = False

        async def inner_receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()

        reframe = _Reframe(state) if streamed else None
        status = 200

        async def inner_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if reframe is not None and status == 200:
                    message = {**message, "headers": [
                        (b"content-type", b"application/vnd.amazon.eventstream"),
                        (b"x-amzn-bedrock-content-type", b"application/json"),
                        (b"x-amzn-requestid", b"8a2f6c1e-0000-4000-8000-000000000001")]}
                await send(message)
            elif reframe is not None and status == 200:
                # after an exception frame nothing more is sent (the body still ends)
                data = b"" if reframe.ended else reframe.feed(message.get("body", b""))
                await send({**message, "body": data})
            else:
                await send(message)

        await inner({"type": "http", "method": "POST", "path": "/v1/messages",
                     "raw_path": b"/v1/messages", "query_string": b"",
                     "headers": inner_headers}, inner_receive, inner_send)

    return app


class _Reframe:
    """The Anthropic SSE answer, as Bedrock's event stream (with the faults asked for)."""

    def __init__(self, state: FakeState) -> None:
        self.fault = getattr(state, "bedrock_fault", None)
        self.pending = b""
        self.deltas = 0
        self.ended = False
        self.usage: dict[str, int] = {}

    def feed(self, data: bytes) -> bytes:
        buffer = (self.pending + data).replace(b"\r\n", b"\n")
        out = b""
        while not self.ended and (end := buffer.find(b"\n\n")) >= 0:
            block, buffer = buffer[:end], buffer[end + 2:]
            event = b"\n".join(line[6:] if line[5:6] == b" " else line[5:]
                               for line in block.split(b"\n") if line.startswith(b"data:"))
            if not event:
                continue
            out += self._event(orjson.loads(event))
        self.pending = buffer
        return out

    def _event(self, event: dict[str, Any]) -> bytes:
        kind = event.get("type")
        if kind == "error":
            error = event.get("error") or {}
            self.ended = True
            return exception_frame(_STREAM_EXCEPTIONS.get(error.get("type"),
                                                          "internalServerException"),
                                   str(error.get("message", "error")))
        if kind == "message_start":
            self.usage.update((event.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            self.usage.update(event.get("usage") or {})
        elif kind == "message_stop":
            event["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": self.usage.get("input_tokens", 0),
                "outputTokenCount": self.usage.get("output_tokens", 0),
                "invocationLatency": 120, "firstByteLatency": 40}
        encoded = chunk_frame(orjson.dumps(event))
        if kind == "content_block_delta":
            self.deltas += 1
            fault = self.fault
            if fault and fault[0] == "exception_after" and self.deltas > fault[1]:
                self.ended = True
                return exception_frame(fault[2], "The model stream was interrupted.")
            if fault and fault[0] == "corrupt_after" and self.deltas == fault[1] + 1:
                damaged = bytearray(encoded)
                damaged[-10] ^= 0xFF  # inside the payload: the message CRC fails
                return bytes(damaged)
        return encoded
