"""What `/ready` answers: can this router serve, and if only in part, what is missing.

Not ready (503) when no provider is usable (a provider whose last probe could not
connect, or whose every credential was refused, counts as not usable; so does an open
circuit), when the ledger or a configured shared service cannot be reached (the ledger's
own ping covers DATABASE_URL for `postgres` and the credit service for `http`; REDIS_URL
is pinged here), when a provider that needs a key has none (started only because
ALLOW_PROVIDERS_WITHOUT_KEYS=true), or when RS256 keys are configured and none could be
fetched. Ready but `degraded` when some providers are down and at least one is usable.
The outbox backlog is information only: a sink that is down loses nothing.

A service check that succeeded is trusted for `SERVICE_OK_S` (so a busy readiness probe
stays cheap); a failing one is checked again on every call, so recovery shows at once.
Every reason is the router's own words: URLs without userinfo, never a credential.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import trio

from router.errors import BillingUnavailable

if TYPE_CHECKING:
    from actors.runtime import Runtime

SERVICE_OK_S = 2.0
SERVICE_CHECK_S = 3.0  # a service that takes longer than this to answer a ping is down
OUTBOX_NOTE = ("information only: a sink that is down loses nothing (its events wait in "
               "the outbox), so a backlog never makes the router unready")


@dataclass
class ServiceChecks:
    """Remembers the last good answer of each shared service (per process)."""

    ok_until: dict[str, float] = field(default_factory=dict)

    async def check(self, name: str, ping: Callable[[], Awaitable[Any]],
                    describe: Callable[[BaseException], str]) -> str | None:
        """None if `ping` answered (now or within `SERVICE_OK_S`), else why not."""
        now = time.monotonic()
        if self.ok_until.get(name, 0.0) > now:
            return None
        try:
            with trio.fail_after(SERVICE_CHECK_S):
                await ping()
        except trio.TooSlowError as exc:
            self.ok_until.pop(name, None)
            return describe(exc)
        except Exception as exc:  # noqa: BLE001 - the point is to report it, whatever it is
            self.ok_until.pop(name, None)
            return describe(exc)
        self.ok_until[name] = now + SERVICE_OK_S
        return None


def provider_problems(stats: dict[str, Any]) -> tuple[str, str] | None:
    """(closed-set reason, words) for a provider that is down or unwell, else None."""
    probe = stats.get("probe") or {}
    probe_reason = probe.get("reason") if probe.get("state") == "failed" else None
    if not stats["running"]:
        return "not_running", "not running"
    if stats["breaker"]["state"] == "open":
        return "circuit_open", "circuit open" + (f" (probe: {probe_reason})"
                                                 if probe_reason else "")
    if probe_reason:
        return probe_reason, f"probe: {probe_reason}"
    credentials = stats["credentials"]
    if credentials and all(c["state"] in ("bad", "expired") for c in credentials):
        return "credentials_refused", "every credential refused"
    if not stats["usable"]:
        return "unusable", "not usable"
    return None


async def readiness(rt: "Runtime", checks: ServiceChecks) -> dict[str, object]:
    reasons: list[str] = []
    services: dict[str, str] = {}

    def ledger_down(exc: BaseException) -> str:
        if isinstance(exc, BillingUnavailable):
            return f"ledger unreachable ({rt.stores.backend} at {rt.stores.where}): {exc}"
        if isinstance(exc, trio.TooSlowError):
            return f"ledger unreachable ({rt.stores.backend} at {rt.stores.where}): " \
                   f"no answer within {SERVICE_CHECK_S:g} s"
        return f"ledger unusable: {type(exc).__name__}"

    why = await checks.check("ledger", rt.stores.ping, ledger_down)
    services["ledger"] = "ok" if why is None else "down"
    if why:
        reasons.append(why)
    if (redis := rt.shared_redis) is not None:
        def redis_down(exc: BaseException) -> str:
            return f"Redis unreachable at {redis.where} (REDIS_URL): " + (
                f"no answer within {SERVICE_CHECK_S:g} s" if isinstance(exc, trio.TooSlowError)
                else type(exc).__name__ if not isinstance(exc, BillingUnavailable)
                else "connection failed")

        why = await checks.check("redis", lambda: redis.command(b"PING"), redis_down)
        services["redis"] = "ok" if why is None else "down"
        if why:
            reasons.append(why)

    stats = await rt.provider_stats()
    degraded = []
    for s in stats:
        problem = provider_problems(s)
        if problem is not None:
            degraded.append({"provider": s["name"], "reason": problem[0]})
    if not any(s["usable"] for s in stats):
        reasons.append("no provider is usable: " + "; ".join(
            f"{s['name']}: {(provider_problems(s) or ('', 'not usable'))[1]}" for s in stats))
    if rt.config.allow_providers_without_keys:
        for s in stats:
            if s.get("missing_credential"):
                reasons.append(f"provider {s['name']} has no credential (started because "
                               "ALLOW_PROVIDERS_WITHOUT_KEYS=true)")
    if rt.jwks is not None and (why := rt.jwks.unready_reason()):
        reasons.append(why)

    body: dict[str, object] = {"status": "unavailable" if reasons else "ready",
                               "providers": len(stats)}
    if reasons:
        body["reasons"] = reasons
    body["degraded"] = degraded
    body["services"] = services
    if services["ledger"] == "ok":
        body["outbox"] = await outbox_backlog(rt)
    return body


async def outbox_backlog(rt: "Runtime") -> dict[str, object]:
    try:
        pending = await rt.outbox.pending()
        oldest = await rt.outbox.listing("pending", 1) if pending else []
    except Exception as exc:  # noqa: BLE001 - information only
        return {"error": type(exc).__name__, "note": OUTBOX_NOTE}
    age = round(max(rt.clock() - oldest[0].created_at, 0.0), 1) if oldest else None
    return {"pending": pending, "oldest_pending_age_s": age, "note": OUTBOX_NOTE}
