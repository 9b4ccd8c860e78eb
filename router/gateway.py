"""What the edge may ask of the runtime: the `Gateway` protocol and the values it trades.

The transports (`router.transports`) receive requests and speak HTTP, SSE and websocket;
the runtime (`actors`) authenticates, holds credits, calls providers and settles. The
edge sees the runtime only through this module, so `router` never imports `actors`:
`actors.root` builds the runtime, passes it to `router.transports.http.build_app` as a
`Gateway`, and hands the app to hypercorn (as hypercorn's own `serve(app, config)` takes
its app). Nothing here says how the runtime works, only what it offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from router.activity import ActivityLog
from router.auth.principal import Principal
from router.errors import ApiShape, RouterError
from router.ledger.base import AccountBook, KeyStore, Outbox, Settlement, UsageReports
from router.stream_log import EventLog
from router.usage import Usage

if TYPE_CHECKING:
    from router.config import Config
    from router.provider_store import ProviderAdmin
    from router.metrics import RouterMetrics


@dataclass(frozen=True, slots=True)
class ModelCall:
    """A client's model request as the transport received it."""

    api: str  # "openai.chat" | "openai.responses" | "anthropic.messages"
    body: bytes = field(repr=False)
    credential: str | None = field(repr=False)
    request_id: str
    query: str = ""  # the client's query string, bounded by the transport
    passthrough_headers: tuple[tuple[str, str], ...] = ()  # anthropic-beta, -version
    account_header: str | None = None  # x-aura-account, for service-to-service calls
    idempotency_key: str | None = None
    cache_hint: str | None = None  # x-aura-cache: true/false (docs/configuration.md)


@dataclass(frozen=True, slots=True)
class Settled:
    """What a request was billed, for transports that report it (websocket `done`)."""

    usage: Usage
    cost_micros: int
    settlement: Settlement | None  # None: the ledger missed the deadline (retried later)

    def summary(self) -> dict[str, Any]:
        """The bill as a websocket `done` frame reports it (and a stream kept in Redis
        keeps it for the other instances)."""
        usage = self.usage
        return {"usage": {"input_tokens": usage.input_tokens,
                          "output_tokens": usage.output_tokens,
                          "cache_read_tokens": usage.cache_read_tokens,
                          "cache_write_tokens": usage.cache_write_tokens,
                          "reasoning_tokens": usage.reasoning_tokens,
                          "estimated": not usage.reported},
                "cost_micros": self.cost_micros,
                "available_micros": self.settlement.available
                if self.settlement is not None else None}


class ClientSink(Protocol):
    """The transport's side of one answer; the pipeline writes into it."""

    @property
    def started(self) -> bool:
        """The status line went out (an error now is an event in the stream)."""
        ...

    async def start(self, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None: ...

    async def body(self, data: bytes) -> None: ...

    async def error(self, error: RouterError, shape: ApiShape) -> None: ...

    def settled(self, settled: Settled) -> None:
        """What the request was billed (after settlement, whatever happened)."""
        ...


@dataclass(frozen=True, slots=True)
class TokenCount:
    """`/v1/messages/count_tokens`: the answer body, and whose count it is."""

    body: bytes
    model: str
    provider: str | None  # None: the router's estimate


class ResumableStream(Protocol):
    """A stream the runtime runs apart from its client, read from its log."""

    request_id: str
    account: str
    lane: str | None  # a Responses websocket's `stream_id`
    background: bool

    @property
    def response_id(self) -> str | None:
        """A Responses stream's id, once the upstream named it."""
        ...

    async def wait_identified(self) -> None:
        """Until `response_id` is known, or the stream ended without one."""
        ...

    async def wait_ended(self) -> None:
        """Until the stream ended (and, where it runs, was settled)."""
        ...

    def response_object(self) -> dict[str, Any] | None:
        """A Responses stream's response object as `GET /v1/responses/{id}` shows it."""
        ...

    @property
    def log(self) -> EventLog: ...

    @property
    def started(self) -> bool:
        """The answer began (status and headers are known)."""
        ...

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]: ...

    @property
    def is_sse(self) -> bool: ...

    async def wait_ready(self) -> None:
        """Until the answer started, or was refused before it could."""
        ...

    def refusal(self, shape: ApiShape) -> tuple[RouterError, ApiShape]:
        """Why a stream that never started has no answer."""
        ...

    def describe(self) -> dict[str, Any]: ...


class Streams(Protocol):
    """The runtime's resumable streams (websocket streams, `x-aura-resumable` SSE)."""

    def start(self, call: ModelCall, account: str, client_id: str | None = None, *,
              lane: str | None = None, background: bool = False) -> ResumableStream: ...

    def find(self, account: str, *, request_id: str | None = None,
             client_id: str | None = None, response_id: str | None = None
             ) -> ResumableStream | None:
        """A stream of this account; another account's streams do not exist for it."""
        ...

    def attach(self, stream: ResumableStream) -> None: ...

    def detach(self, stream: ResumableStream) -> None: ...

    def cancel(self, stream: ResumableStream) -> None:
        """Stop the stream now; it is billed for what was produced."""
        ...

    def streams(self) -> list[ResumableStream]: ...

    async def locate(self, account: str, *, request_id: str | None = None,
                     client_id: str | None = None, response_id: str | None = None
                     ) -> ResumableStream | None:
        """`find`, or a stream another instance runs (with REDIS_URL)."""
        ...


class Gateway(Protocol):
    """The runtime, as the transports reach it."""

    @property
    def config(self) -> "Config": ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def accounts(self) -> AccountBook: ...

    @property
    def keys(self) -> KeyStore: ...

    @property
    def reports(self) -> UsageReports: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def streams(self) -> Streams: ...

    @property
    def metrics(self) -> "RouterMetrics": ...

    @property
    def activity(self) -> ActivityLog:
        """This process's answered calls and errors per minute (router/activity.py)."""
        ...

    async def authenticate(self, credential: str | None,
                           account_header: str | None = None) -> Principal: ...

    async def model_call(self, call: ModelCall, sink: ClientSink) -> None:
        """Run one model call to its end, writing the answer (or refusal) into `sink`."""
        ...

    async def count_tokens(self, who: Principal, body: dict[str, Any], query: str,
                           passthrough: tuple[tuple[str, str], ...]) -> TokenCount: ...

    async def provider_stats(self) -> list[dict[str, object]]: ...

    @property
    def provider_admin(self) -> "ProviderAdmin":
        """The provider store's admin side (router/provider_store.py)."""
        ...

    async def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus exposition of this process (body, content type)."""
        ...

    async def unready_reasons(self) -> list[str]:
        """Why the router cannot serve now (empty: ready)."""
        ...

    async def readiness(self) -> dict[str, object]:
        """`/ready`'s body: "status", "reasons" (only when not ready: a 503), the
        providers that are down ("degraded"), the shared services, the outbox backlog."""
        ...
