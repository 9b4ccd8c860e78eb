"""The error tree: every refusal the router can give, knowing its status and both API shapes.

Transports never build error bodies by hand: they catch a `RouterError` and ask it for
the shape of the client's API (OpenAI or Anthropic), so each official SDK raises its own
typed exception. Messages never carry credentials or upstream URLs.
"""

from __future__ import annotations

from typing import Literal

import orjson

ApiShape = Literal["openai", "anthropic"]


class RouterError(Exception):
    """A refusal with an HTTP status and a message safe to show the client."""

    status: int = 500
    openai_type: str = "api_error"
    anthropic_type: str = "api_error"
    code: str | None = None
    # Refusals that retrying cannot fix tell SDKs to stop at once (SPEC §8).
    retryable: bool = True

    def __init__(self, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.message = message
        self.param = param
        self.extra_headers = dict(headers or {})

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", b"application/json")]
        if not self.retryable:
            out.append((b"x-should-retry", b"false"))
        out.extend((k.encode(), v.encode()) for k, v in self.extra_headers.items())
        return out

    def body(self, shape: ApiShape) -> bytes:
        if shape == "anthropic":
            return orjson.dumps({"type": "error",
                                 "error": {"type": self.anthropic_type, "message": self.message}})
        return orjson.dumps({"error": {"message": self.message, "type": self.openai_type,
                                       "param": self.param, "code": self.code}})


    def sse_event(self, shape: ApiShape) -> bytes:
        """The error as the last event of a stream that already started (SPEC §3)."""
        if shape == "anthropic":
            return b"event: error\ndata: " + self.body(shape) + b"\n\n"
        return b"data: " + self.body(shape) + b"\n\n"


class BadRequest(RouterError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "invalid_request"


class Unauthenticated(RouterError):
    status = 401
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"
    code = "invalid_api_key"
    retryable = False


class InsufficientCredits(RouterError):
    status = 402
    openai_type = "insufficient_quota"
    anthropic_type = "billing_error"
    code = "insufficient_credits"
    retryable = False


class Forbidden(RouterError):
    status = 403
    openai_type = "permission_error"
    anthropic_type = "permission_error"
    code = "forbidden"
    retryable = False


class NotFound(RouterError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    code = "not_found"


class Conflict(RouterError):
    status = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "conflict"


class Gone(RouterError):
    status = 410
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    code = "gone"


class StreamCancelled(RouterError):
    status = 499
    openai_type = "cancelled"
    anthropic_type = "cancelled"
    code = "cancelled"


class BodyTooLarge(RouterError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    code = "request_too_large"


class RateLimited(RouterError):
    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    code = "rate_limited"


class ProviderFailed(RouterError):
    status = 502
    openai_type = "api_error"
    anthropic_type = "api_error"
    code = "provider_error"


class NoProvider(RouterError):
    status = 503
    openai_type = "api_error"
    anthropic_type = "overloaded_error"
    code = "no_provider"


class ProviderTimeout(RouterError):
    status = 504
    openai_type = "api_error"
    anthropic_type = "api_error"
    code = "provider_timeout"


class AdminDisabled(RouterError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    code = "admin_disabled"


_BY_STATUS: dict[int, type[RouterError]] = {
    400: BadRequest, 401: ProviderFailed, 403: ProviderFailed, 404: NotFound,
    408: ProviderTimeout, 413: BodyTooLarge, 422: BadRequest, 429: RateLimited,
    504: ProviderTimeout, 529: NoProvider,
}


def from_provider_status(status: int, message: str) -> RouterError:
    """Normalise a provider's error status to ours.

    A provider's 401/403 is the platform's key being wrong, not the user's: the user
    sees a 502, never a hint about the platform's credential.
    """
    cls = _BY_STATUS.get(status, ProviderFailed)
    return cls(message)
