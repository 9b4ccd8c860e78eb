"""Whether each provider's upstream accepts a TCP connection, all checked at once, each
within `timeout_s` (for `doctor` and `providers check`)."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio

from router.providers.spec import ProviderSpec
from router.redact import display_url

TIMEOUT_S = 3.0


def target(spec: ProviderSpec) -> tuple[str, int] | None:
    """(host, port) of the upstream, or None for a provider with no network upstream."""
    if not spec.base_url or spec.kind == "demo":
        return None
    parts = urlsplit(spec.base_url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def _connect(host: str, port: int, timeout_s: float) -> str | None:
    """None when the connection was made; else why not."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            return f"cannot connect to {host}:{port}: {reason}"
        await stream.aclose()
        return None
    return f"cannot connect to {host}:{port}: no answer within {timeout_s:g} s"


async def reachability(specs: list[ProviderSpec], timeout_s: float = TIMEOUT_S
                       ) -> dict[str, str | None]:
    """provider name -> None (reachable, or nothing to reach) or the reason it is not."""
    results: dict[str, str | None] = {}

    async def check(spec: ProviderSpec) -> None:
        where = target(spec)
        results[spec.name] = None if where is None else await _connect(*where, timeout_s)

    async with trio.open_nursery() as nursery:
        for spec in specs:
            nursery.start_soon(check, spec)
    return results


def describe(spec: ProviderSpec) -> dict[str, object]:
    """A provider as shown by the CLI: never a key, only how many there are."""
    return {"name": spec.name, "kind": spec.kind,
            "base_url": display_url(spec.base_url) if spec.base_url else "(built in)",
            "credentials": len(spec.api_keys), "strategy": spec.strategy,
            "max_concurrent": spec.max_concurrent}
