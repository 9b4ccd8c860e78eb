"""A model call's context and outcome, and who hears of it when it ends.

`RequestContext` is what the stages need to know of one call once its route is planned
and its credits are held: frozen, passed instead of long parameter lists. `Outcome` is
what happened, filled in as the call goes (the provider that answered, the status, the
bill); settlement and the observers read it. Every call, refused or answered, ends with
one `request_finished(outcome)` to each `RequestObserver`: the request log
(`RequestLog`, one line per call) and the metrics (`actors/services/metrics.py`). What
the stages record here is plain data (instants, a list of failed attempts, ledger round
trip times): the observers turn it into log fields and metric updates, once per call,
never inside a stream's loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from router.auth.principal import Principal
from router.catalog import ModelSpec
from router.gateway import ModelCall, Settled
from router.logs import FIELDS
from router.protocols.api import ApiFormat, ClientRequest

if TYPE_CHECKING:
    from actors.pipeline.plan import Leg
    from actors.pipeline.reserve import Reservation

request_log = logging.getLogger("aura.requests")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One planned, reserved model call."""

    call: ModelCall
    fmt: ApiFormat
    principal: Principal
    model: ModelSpec
    request: ClientRequest  # as validated, its size covering every translation
    legs: tuple["Leg", ...]  # the targets to try, in order
    reservation: "Reservation"
    estimated_input: int  # the router's input count, for answers without usage
    base_headers: tuple[tuple[bytes, bytes], ...]  # on every answer of this call
    first_event_grace_s: float = 20.0

    @property
    def request_id(self) -> str:
        return self.call.request_id

    @property
    def max_output(self) -> int:
        """The enforced output limit, per choice."""
        return self.reservation.max_output


@dataclass
class Outcome:
    """What happened to one call; filled in by the stages as it goes."""

    request_id: str
    api: str
    started_at: float = field(default_factory=time.perf_counter)
    account: str | None = None
    model: str | None = None
    provider: str | None = None  # the target that answered (None: none did)
    status: int = 0  # the last status seen: the provider's, or the refusal's
    judged: bool = False  # the provider's breaker got a verdict from this attempt
    settled: Settled | None = None
    tier: str | None = None  # `auto*` models: the classifier's verdict (router/tiers.py)
    overrun_micros: int = 0  # cost past the hold: the platform's loss
    # perf_counter when the first content byte went to the client (None: none did)
    first_content_at: float | None = None
    finished_at: float | None = None  # set once, when the observers hear of the call
    # (provider, reason) per failed upstream attempt (docs/configuration.md#metrics)
    failures: list[tuple[str, str]] = field(default_factory=list)
    # (op, seconds) per ledger round trip the pipeline awaited for this call
    ledger_s: list[tuple[str, float]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return (end - self.started_at) * 1000

    @property
    def ttft_ms(self) -> float | None:
        """Arrival to the first content byte sent (None: no content was sent)."""
        if self.first_content_at is None:
            return None
        return (self.first_content_at - self.started_at) * 1000

    def attempt_failed(self, provider: str, reason: str) -> None:
        self.failures.append((provider, reason))


class RequestObserver(Protocol):
    def request_finished(self, outcome: Outcome) -> None:
        """Called once per call, refused or answered, after settlement. Must not block."""
        ...


class RequestLog:
    """One log line per call (`aura.requests`, INFO): request id, account, model,
    provider, status, tokens, cost, durations; with `LOG_FORMAT=json` its fields are the
    line's top-level keys (router/logs.py). Never a credential or a prompt: only what is
    named here goes out."""

    def request_finished(self, outcome: Outcome) -> None:
        if not request_log.isEnabledFor(logging.INFO):
            return
        ttft = outcome.ttft_ms
        line: dict[str, object] = {
            "request_id": outcome.request_id, "api": outcome.api,
            "account": outcome.account, "model": outcome.model,
            "provider": outcome.provider, "status": outcome.status or 200,
            "duration_ms": round(outcome.duration_ms, 2),
            "ttft_ms": None if ttft is None else round(ttft, 2)}
        if outcome.tier is not None:
            line["tier"] = outcome.tier
        settled = outcome.settled
        if settled is not None:
            usage = settled.usage
            line.update(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                        cache_read_tokens=usage.cache_read_tokens,
                        cache_write_tokens=usage.cache_write_tokens,
                        estimated=not usage.reported, cost_micros=settled.cost_micros)
            if settled.settlement is not None:
                line["released_micros"] = settled.settlement.released
        if outcome.failures:
            line["failed_attempts"] = [f"{provider}:{reason}"
                                       for provider, reason in outcome.failures]
        request_log.info("request finished", extra={FIELDS: line})
