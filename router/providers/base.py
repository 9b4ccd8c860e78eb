"""The provider interface: send a prepared body upstream, get status and bytes back.

Everything above this line (pipeline, metering, billing) is the same for every provider;
everything below it (URLs, auth headers, connection pools) is the provider's own. Keeping
the interface this small is what lets the HTTP client be tuned or replaced in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncContextManager, AsyncIterator, Protocol

from router.catalog import ProviderSpec
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import CredentialPool


class UpstreamUnavailable(Exception):
    """The provider could not be reached or timed out before answering (retryable)."""

    def __init__(self, message: str, *, timeout: bool = False,
                 retry_after: float | None = None, ours: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.retry_after = retry_after  # set when only rate limits stand in the way
        self.ours = ours  # our own limit (pool full, whole-answer deadline), not sickness


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    api: str  # a key of router.providers.http.PATHS
    body: bytes
    stream: bool
    query: str = ""  # the client's query string, e.g. "beta=true"
    passthrough_headers: tuple[tuple[str, str], ...] = ()  # anthropic-beta, anthropic-version


class UpstreamResponse(Protocol):
    status: int
    content_type: str
    retry_after: str | None

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body (None at its end); cancel-safe."""
        ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def read(self, limit: int) -> bytes: ...


class Provider(Protocol):
    spec: ProviderSpec
    credentials: "CredentialPool"
    breaker: "CircuitBreaker"

    def open(self, request: UpstreamRequest) -> AsyncContextManager[UpstreamResponse]:
        """Send the request; the context closes the upstream stream on exit."""
        ...
