"""Helpers the Quart routes share: JSON responses, errors in the caller's shape, auth."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response, request

from router.errors import BadRequest, RouterError
from router.transports.guard import admin_credential_refusal


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json")


def error_response(error: RouterError, shape: str = "openai") -> Response:
    response = Response(error.body(shape), status=error.status)  # type: ignore[arg-type]
    for name, value in error.headers():
        response.headers[name.decode()] = value.decode()
    return response


def caller_shape() -> str:
    return "anthropic" if ("anthropic-version" in request.headers
                           or request.path.startswith("/v1/messages")) else "openai"


async def json_body() -> dict[str, Any]:
    raw = await request.get_data(cache=False)
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def require_admin(admin_key: str | None) -> None:
    """The admin's credential (router/transports/guard.py), or the refusal raised."""
    refusal = admin_credential_refusal(lambda name: request.headers.get(name), admin_key)
    if refusal is not None:
        raise refusal


MAX_INT = 2**53 - 1  # the largest integer every JSON client reads exactly


def int_field(body: dict[str, Any], name: str, *, required: bool = False,
              positive: bool = False) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required", param=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer", param=name)
    if abs(value) > MAX_INT:  # past it a store overflows (a 64-bit column, or a float)
        raise BadRequest(f"'{name}' must be at most {MAX_INT} in size", param=name)
    if positive and value <= 0:
        raise BadRequest(f"'{name}' must be positive", param=name)
    return value
