"""Inbound routes shaped like Bedrock's InvokeModel, for clients set to talk to Bedrock
(Claude Code with `CLAUDE_CODE_USE_BEDROCK=1` and `ANTHROPIC_BEDROCK_BASE_URL`, the
Anthropic SDK's `AnthropicBedrock`): docs/api.md#bedrock-shaped-routes.

`POST /model/{model}/invoke` (and `/invoke-with-response-stream`) carries an Anthropic
Messages body without `model` or `stream` and with `anthropic_version:
"bedrock-2023-05-31"`; the model is in the path, URL-encoded, as Bedrock spells it
(`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, or an inference profile's ARN). The
router turns it into the `/v1/messages` call it is, authenticated by a router key as the
bearer token (`AWS_BEARER_TOKEN_BEDROCK`; a SigV4 signature is refused as no router
credential), and answers as `/v1/messages` does, except that a streamed answer is
re-framed as Bedrock's event stream: each Anthropic event a `chunk` whose `bytes` is the
event's JSON, an `error` event an exception frame.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from router.protocols.eventstream import CONTENT_TYPE, SseToEventStream
from router.providers.bedrock import native_id
from router.transports.cloud_surfaces import messages_body

Send = Callable[[dict[str, Any]], Awaitable[None]]

_BEDROCK = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream)")


def bedrock_target(scope: dict[str, Any]) -> tuple[str, bool] | None:
    """(the model as the catalog may know it, streamed?) for a Bedrock-shaped path. The
    raw path is read, so that an ARN's encoded `/` stays inside the id."""
    raw = scope.get("raw_path") or scope["path"].encode()
    if not raw.startswith(b"/model/"):
        return None
    match = _BEDROCK.fullmatch(raw.decode("latin-1").split("?", 1)[0])
    if match is None:
        return None
    model = unquote(match[1])
    if model.startswith("arn:") and "/" in model:  # an inference profile's ARN
        model = model.rsplit("/", 1)[1]
    return native_id(model), match[2] == "invoke-with-response-stream"


def bedrock_body(body: bytes, model: str, stream: bool) -> bytes:
    """The `/v1/messages` body; a body that is not a JSON object is left as it is (the
    pipeline answers it with a 400 that names the problem). `anthropic_beta` is dropped:
    the SDKs send the same betas as the `anthropic-beta` header, which passes through."""
    return messages_body(body, model, stream, drop=("anthropic_beta",),
                         stream_from_path=True)


def event_stream_send(send: Send) -> Send:
    """`send`, re-framing a streamed (SSE) answer as Bedrock's event stream; any other
    answer (JSON, errors before the stream) goes as it is."""
    encoder: SseToEventStream | None = None

    async def sending(message: dict[str, Any]) -> None:
        nonlocal encoder
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if message.get("status") == 200 and any(
                    k == b"content-type" and v.startswith(b"text/event-stream")
                    for k, v in headers):
                encoder = SseToEventStream()
                headers = [(k, v) for k, v in headers if k != b"content-type"] + [
                    (b"content-type", CONTENT_TYPE.encode()),
                    (b"x-amzn-bedrock-content-type", b"application/json")]
                message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and encoder is not None:
            message = {**message, "body": encoder.feed(message.get("body", b""))}
        await send(message)

    return sending
