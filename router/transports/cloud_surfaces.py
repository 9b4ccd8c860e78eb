"""Inbound surfaces shaped like the clouds' Claude endpoints, for clients set to talk to
Vertex AI (Claude Code with `CLAUDE_CODE_USE_VERTEX`, the Anthropic SDK's
`AnthropicVertex`): docs/api.md#vertex-shaped-routes.

`POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{model}:rawPredict` (and
`:streamRawPredict`) carries an Anthropic Messages body without its `model` (it is in the
path, as Vertex spells it: `claude-sonnet-4-5@20250929`) and with `anthropic_version`.
The router turns it into the `/v1/messages` call it is, and answers as `/v1/messages`
does; the project and location in the path are the client's business, not ours.

`messages_body` is the rewrite both cloud-shaped surfaces share (Bedrock's too).
"""

from __future__ import annotations

import re

import orjson

_VERTEX = re.compile(r"/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/"
                     r"([^/:]+):(rawPredict|streamRawPredict)")


def vertex_target(path: str) -> tuple[str, bool] | None:
    """(the model as the catalog may know it, streamed?) for a Vertex-shaped path."""
    match = _VERTEX.fullmatch(path)
    if match is None or match[1] == "count-tokens":
        return None
    # Vertex's `name@date` is Anthropic's dated id `name-date`.
    return match[1].replace("@", "-"), match[2] == "streamRawPredict"


def messages_body(body: bytes, model: str, stream: bool, *, drop: tuple[str, ...] = (),
                  stream_from_path: bool = False) -> bytes:
    """A cloud-shaped body as the `/v1/messages` body: `anthropic_version` and the fields
    in `drop` go, `model` (from the path) comes in, and `stream` is set when the path
    streams (and removed otherwise when `stream_from_path`, the path alone deciding). A
    body that is not a JSON object is left as it is (the pipeline answers it with a 400
    that names the problem)."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(request, dict):
        return body
    for field in ("anthropic_version", *drop):
        request.pop(field, None)
    request["model"] = model
    if stream:
        request["stream"] = True
    elif stream_from_path:
        request.pop("stream", None)
    return orjson.dumps(request)


def vertex_body(body: bytes, model: str, stream: bool) -> bytes:
    """The `/v1/messages` body of a Vertex-shaped call (a `stream` field in the body of a
    `:rawPredict` call is left as the client sent it)."""
    return messages_body(body, model, stream)
