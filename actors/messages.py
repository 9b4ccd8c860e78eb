"""Typed messages between the transport, the pipeline stages and long-lived actors."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.mailbox import Reply


@dataclass(frozen=True, slots=True)
class ModelCall:
    """A client's model request as the transport received it."""

    api: str  # "openai.chat" | "openai.responses" | "anthropic.messages"
    body: bytes
    credential: str | None
    request_id: str
    query: str = ""
    passthrough_headers: tuple[tuple[str, str], ...] = ()
    account_header: str | None = None  # x-aura-account, for service-to-service calls
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Ask a provider actor for its pool and health figures."""

    reply: Reply[dict[str, object]] = field(compare=False)
