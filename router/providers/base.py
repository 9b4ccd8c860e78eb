"""The provider interface: what a provider kind is (an adapter) and what a running
provider does (send a prepared body upstream, give back status and bytes).

Everything above this line (pipeline, metering, billing, translation) is the same for
every provider; everything below it is the kind's own, in one module per kind
(`router.providers.registry` maps a kind to its adapter). An adapter is pure: which
client APIs the kind speaks natively, where the output limit goes, and how a call is
addressed and signed (`build_request`: path, query, headers, body), and how its stream
is framed (`decoder`: upstream bytes to the SSE events the meter and translators read).
A running `Provider` owns the I/O: its connection pool, credentials and circuit breaker,
started and closed by its supervisor actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AsyncContextManager, AsyncIterator, Protocol

from router.protocols.sse import SseEvent, SseParser

if TYPE_CHECKING:
    from router.providers.breaker import CircuitBreaker
    from router.providers.credentials import CredentialPool
    from router.providers.probe import ProbeResult
    from router.providers.spec import ProviderSpec


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One call to make, in the API the provider is spoken to in."""

    api: str  # e.g. "openai.chat", "anthropic.messages", "anthropic.count_tokens"
    model: str  # the provider's own model id (some kinds put it in the URL)
    body: bytes
    stream: bool
    query: str = ""  # the client's query string, when its own API is passed through
    passthrough_headers: tuple[tuple[str, str], ...] = ()  # anthropic-beta, -version


@dataclass(frozen=True, slots=True)
class HttpCall:
    """What goes on the wire: relative to the provider's base URL."""

    path: str  # path and query string, appended to the base URL's path
    headers: tuple[tuple[bytes, bytes], ...] = field(repr=False)  # credentials among them
    body: bytes = field(repr=False)
    method: bytes = b"POST"


class StreamDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The complete events that `chunk` finishes."""
        ...


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
    """A running provider: what its supervisor starts and the pipeline calls."""

    spec: "ProviderSpec"
    adapter: "ProviderAdapter"
    credentials: "CredentialPool"
    breaker: "CircuitBreaker"

    async def start(self) -> None:
        """Acquire what the provider owns (its pool); called by its supervisor."""
        ...

    async def aclose(self) -> None: ...

    async def watch(self) -> None:
        """What runs beside the provider's calls while it is running (its pool's read
        watchdog), in its supervisor's nursery; returns at once where there is none."""
        ...

    @property
    def running(self) -> bool: ...

    def stats(self) -> dict[str, int] | None:
        """Pool figures (None for providers without one)."""
        ...

    def open(self, request: UpstreamRequest) -> AsyncContextManager[UpstreamResponse]:
        """Send the request; the context closes the upstream stream on exit."""
        ...

    async def probe(self) -> "ProbeResult":
        """Look at the upstream now: connect, and a cheap authenticated call where the
        kind has one (`router.providers.probe`). Never raises for the upstream's faults."""
        ...


# Where each API reads its output limit, unless the kind says otherwise.
_LIMIT_FIELDS = {"openai.chat": "max_tokens", "openai.responses": "max_output_tokens",
                 "anthropic.messages": "max_tokens"}


class ProviderAdapter:
    """A provider kind. Subclass it in the kind's module and add one line to the
    registry; `docs/providers.md` walks through it."""

    kind: str = ""
    # The client API formats the kind speaks natively, preferred first; others reach
    # it through a bridge (router.protocols.formats).
    apis: tuple[str, ...] = ()
    counts_tokens: bool = False  # serves "anthropic.count_tokens"
    # OpenAI-compatible servers get text-only content arrays as plain strings.
    flattens_text: bool = False
    needs_base_url: bool = True
    default_base_url: str = ""

    def limit_field(self, api: str) -> str:
        """The body field the kind reads the output limit from, for `api`."""
        return _LIMIT_FIELDS.get(api, "max_tokens")

    def build_request(self, request: UpstreamRequest, credential: str | None) -> HttpCall:
        """Address and sign one call (pure)."""
        raise NotImplementedError

    def decoder(self) -> StreamDecoder:
        """Turns the upstream's streamed bytes into events (SSE for most kinds)."""
        return SseParser()

    def connect(self, spec: "ProviderSpec") -> Provider:
        """The running provider for one configured instance of this kind."""
        raise NotImplementedError


def limit_field(provider: Provider, api: str) -> str:
    """Where this provider reads the output limit for `api`: its config's override, or
    its kind's field."""
    return provider.spec.max_tokens_field or provider.adapter.limit_field(api)
