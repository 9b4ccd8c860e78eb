"""Every failure the router names, in one tree.

```
AuraError                         anything the router raises on purpose
├── RouterError                   a refusal the client sees: a status, both API shapes
│   ├── BadRequest              400  (names the field)
│   ├── Unauthenticated         401
│   ├── InsufficientCredits     402
│   ├── Forbidden               403
│   ├── NotFound                404
│   │   └── AdminDisabled       404  (no ADMIN_API_KEY)
│   ├── RequestTimeout          408  (the client was too slow sending its body)
│   ├── Conflict                409
│   ├── Gone                    410
│   ├── BodyTooLarge            413
│   ├── RateLimited             429
│   ├── StreamCancelled         499
│   ├── ProviderFailed          502
│   ├── NoProvider              503
│   ├── BillingUnavailable      503  (the ledger's service cannot be reached: fail closed)
│   └── ProviderTimeout         504
├── UpstreamError                 a provider call gave no answer (the pipeline turns it
│   │                             into a RouterError, or fails over)
│   ├── UpstreamUnreachable       connect refused, connection broke, malformed answer
│   ├── UpstreamTimeout           connect or idle timeout
│   ├── PoolExhausted             every connection slot busy (our limit)
│   ├── AnswerDeadline            the whole answer took too long (our limit)
│   ├── ProviderStopped           the provider's supervisor is not running it
│   └── CredentialsResting        every key rests after rate limits (retry_after)
├── LedgerError                   a ledger rule refused; nothing was changed
│   ├── InsufficientFunds
│   ├── SpendCapReached
│   ├── DuplicateRequest
│   └── UnknownRequest
├── ConfigError (ValueError)      a setting or config entry that cannot be used
│   └── PriceError                a price that is not a decimal string
├── JwtRejected (ValueError)      a token that does not verify
└── EventsGone                    a resume asked for events the stream log dropped
```

Refusals know their status and how to say themselves in each client API's shape, so
transports never build error bodies by hand and each official SDK raises its own typed
exception (httpx's `_exceptions.py` is the model). Upstream errors say what happened,
one class each; whether it is the provider's sickness (counts against its circuit
breaker) or one of our own limits is a class attribute, not a flag. Messages never
carry credentials or upstream URLs, and quote at most 100 characters of client input
(`router.redact.quote_input`).
"""

from __future__ import annotations

from typing import Literal

import orjson

ApiShape = Literal["openai", "anthropic"]


class AuraError(Exception):
    """The root: anything the router raises on purpose."""


# --- refusals the client sees ------------------------------------------------------------

class RouterError(AuraError):
    """A refusal with an HTTP status and a message safe to show the client."""

    status: int = 500
    openai_type: str = "api_error"
    anthropic_type: str = "api_error"
    code: str | None = None
    # Refusals that retrying cannot fix tell SDKs to stop at once (docs/api.md).
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
        out.extend((k.encode(), v.encode("latin-1", "replace"))
                   for k, v in self.extra_headers.items())
        return out

    def body(self, shape: ApiShape) -> bytes:
        if shape == "anthropic":
            return orjson.dumps({"type": "error",
                                 "error": {"type": self.anthropic_type, "message": self.message}})
        return orjson.dumps({"error": {"message": self.message, "type": self.openai_type,
                                       "param": self.param, "code": self.code}})

    def sse_event(self, shape: ApiShape) -> bytes:
        """The error as the last event of a stream that already started."""
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


class CsrfMismatch(Forbidden):
    """A console session's call without that session's CSRF token (docs/console.md)."""

    code = "csrf_mismatch"


class AdminDisabled(NotFound):
    code = "admin_disabled"


class RequestTimeout(RouterError):
    status = 408
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "request_timeout"


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


class StreamCancelled(RouterError):
    status = 499
    openai_type = "cancelled"
    anthropic_type = "cancelled"
    code = "cancelled"


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


class BillingUnavailable(RouterError):
    """The ledger's (or shared state's) service cannot be reached: the request is refused
    before anything reaches a provider, so nothing is spent that cannot be billed."""

    status = 503
    openai_type = "api_error"
    anthropic_type = "overloaded_error"
    code = "billing_unavailable"


class ProviderTimeout(RouterError):
    status = 504
    openai_type = "api_error"
    anthropic_type = "api_error"
    code = "provider_timeout"


_BY_STATUS: dict[int, type[RouterError]] = {
    400: BadRequest, 401: ProviderFailed, 403: ProviderFailed, 404: NotFound,
    408: ProviderTimeout, 413: BodyTooLarge, 422: BadRequest, 429: RateLimited,
    504: ProviderTimeout, 529: NoProvider,
}


def from_provider_status(status: int, message: str) -> RouterError:
    """A provider's error status as ours. A provider's 401/403 is about the platform's
    key, not the user's: the user sees a 502, never a hint about that credential."""
    return _BY_STATUS.get(status, ProviderFailed)(message)


# --- provider calls that gave no answer ---------------------------------------------------

class UpstreamError(AuraError):
    """A provider call that gave no answer. `sick`: the provider's own failure, which
    counts against its circuit breaker; otherwise one of our limits or a key's rest."""

    sick: bool = True
    refusal: type[RouterError] = ProviderFailed

    def as_refusal(self) -> RouterError:
        return self.refusal(str(self))


class UpstreamUnreachable(UpstreamError):
    """Connection refused or broken, or an answer that is not HTTP."""


class UpstreamTimeout(UpstreamError):
    """The provider did not connect, or went silent, within its timeout."""

    refusal = ProviderTimeout


class PoolExhausted(UpstreamError):
    """Every connection slot of the provider stayed busy: our limit, not its sickness."""

    sick = False
    refusal = ProviderTimeout


class AnswerDeadline(UpstreamError):
    """The whole answer outlasted `timeout_total_s` (a slow client can cause it too)."""

    sick = False
    refusal = ProviderTimeout


class ProviderStopped(UpstreamError):
    """The provider's supervisor is not running it (starting, or given up)."""

    sick = False


class CredentialsResting(UpstreamError):
    """Every credential of the provider rests after rate limits: the provider is fine."""

    sick = False
    refusal = RateLimited

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def as_refusal(self) -> RouterError:
        import math
        return RateLimited(str(self), headers={"retry-after": str(math.ceil(self.retry_after_s))})


# --- the ledger's rules ------------------------------------------------------------------

class LedgerError(AuraError):
    """A ledger rule refused the operation; nothing was changed."""


class InsufficientFunds(LedgerError):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {needed} micro-USD, {available} available")
        self.needed, self.available = needed, available


class SpendCapReached(LedgerError):
    """The key's spend cap cannot cover this hold."""

    def __init__(self, needed: int, remaining: int) -> None:
        super().__init__(f"needs {needed} micro-USD, {remaining} left under the key's cap")
        self.needed, self.remaining = needed, remaining


class DuplicateRequest(LedgerError):
    """A hold for this request id exists already."""


class UnknownRequest(LedgerError):
    """No hold for this request id."""


# --- the rest ------------------------------------------------------------------------------

class ConfigError(AuraError, ValueError):
    """A setting or config-file entry that cannot be used; the message names where."""


class PriceError(ConfigError):
    """A price that is not a non-negative decimal string."""


class JwtRejected(AuraError, ValueError):
    """A token that does not verify; the message says why, never the token."""


class EventsGone(AuraError):
    """A resume asked for events the stream log no longer keeps."""
