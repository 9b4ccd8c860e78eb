"""Typed messages to long-lived actors (a model call itself is a `router.gateway.ModelCall`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.mailbox import Reply


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Ask a provider actor for its pool and health figures."""

    reply: Reply[dict[str, object]] = field(compare=False)
