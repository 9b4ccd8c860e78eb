"""OpenAI background mode on HTTP (docs/websocket.md, "Background responses").

`POST /v1/responses` with `"background": true` runs in the stream hub, apart from its
client: with `stream: true` the answer streams as usual but the client going away only
detaches it; without, the answer is the response object as soon as the upstream named
it (status `in_progress`, or the refusal, with its status, if it was refused before it
began). Either way the call to the provider streams, so that every event is kept and
numbered (`router.protocols.responses_state`).

`GET /v1/responses/{id}` returns the response object as it stands (`in_progress`,
`completed`, `incomplete`, `failed`, `cancelled`); with `?stream=true` it streams the
events after `starting_after` (a sequence number; none: from the start), then live;
`POST /v1/responses/{id}/cancel` stops it (billed for what was produced) and returns the
object. Only the account that created a response finds it; it is kept for
`RESUME_WINDOW_S` after its end. Besides background responses, those of the Responses
websocket mode are found the same way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
import trio

from router.errors import BadRequest, NotFound, RouterError
from router.gateway import Gateway, ModelCall, ResumableStream
from router.protocols.responses_state import log_after
from router.redact import quote_input

RESPONSES_PREFIX = "/v1/responses/"
CANCEL_SUFFIX = "/cancel"
MAX_RESPONSE_ID = 256
# How long a cancel waits for the stream to settle before answering (it answers anyway).
CANCEL_SETTLE_S = 5.0


def wants_background(body: bytes) -> bool:
    """A cheap look first: only bodies that mention it are parsed for it."""
    if b'"background"' not in body:
        return False
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False  # the pipeline says what is wrong with it
    return isinstance(parsed, dict) and parsed.get("background") is True


def background_call(call: ModelCall) -> tuple[ModelCall, bool]:
    """The call as the hub runs it (streamed from the provider, `background` removed:
    it is the router's to honour, not the provider's), and whether the client asked for
    a stream."""
    body: dict[str, Any] = orjson.loads(call.body)
    body.pop("background", None)
    body.pop("background_options", None)
    client_stream = body.get("stream") is True
    body["stream"] = True
    return ModelCall(api=call.api, body=orjson.dumps(body), credential=call.credential,
                     request_id=call.request_id, query=call.query,
                     passthrough_headers=call.passthrough_headers,
                     account_header=call.account_header,
                     idempotency_key=call.idempotency_key,
                     cache_hint="false"), client_stream


def response_target(path: str, method: str) -> tuple[str, str] | None:
    """(response id, "retrieve" | "cancel") for a background-mode route, else None."""
    rest = path[len(RESPONSES_PREFIX):]
    if method == "POST" and rest.endswith(CANCEL_SUFFIX):
        response_id, action = rest[:-len(CANCEL_SUFFIX)], "cancel"
    elif method == "GET":
        response_id, action = rest, "retrieve"
    else:
        return None
    if not response_id or "/" in response_id:
        return None
    return response_id, action


def retrieve_query(query_string: bytes) -> tuple[bool, int]:
    """(stream?, the log position to read after) from `?stream=true&starting_after=N`."""
    query = parse_qs(query_string.decode("latin-1"))
    stream = query.get("stream", ["false"])[0].lower() == "true"
    raw = query.get("starting_after", [None])[0]
    if raw is None:
        return stream, log_after(None)
    if not raw.isdigit():
        raise BadRequest("'starting_after' must be a non-negative integer",
                         param="starting_after")
    return stream, log_after(int(raw))


async def find_response(gw: Gateway, account: str, response_id: str) -> ResumableStream:
    stream = None
    if len(response_id) <= MAX_RESPONSE_ID:
        stream = await gw.streams.locate(account, response_id=response_id)
    if stream is None:
        raise NotFound(f"no response {quote_input(response_id[:MAX_RESPONSE_ID])!s} (background "
                       "and websocket-mode responses are kept for "
                       f"{gw.config.resume_window_s} s after they end)", param="response_id")
    return stream


async def cancel_response(gw: Gateway, stream: ResumableStream) -> None:
    """Stop it and give its settlement a moment, so the object shows the end."""
    if not stream.log.done:
        gw.streams.cancel(stream)
        with trio.move_on_after(CANCEL_SETTLE_S):
            await stream.wait_ended()


def response_json(stream: ResumableStream) -> bytes:
    """The object as it stands; a stream refused before it began is its refusal."""
    body = stream.response_object()
    if body is None:
        error, _ = stream.refusal("openai")
        raise error
    return orjson.dumps(body)


def refusal_of(stream: ResumableStream) -> RouterError:
    return stream.refusal("openai")[0]
