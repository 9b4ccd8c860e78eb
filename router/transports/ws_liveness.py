"""Whether the websocket peer answers our pings: the evidence that it is still there.

hypercorn pings every `websocket_ping_interval` but drops the pongs, and ASGI shows the
app only whole data messages, so an app cannot tell a quiet client from one that vanished
without FIN or RST (a phone out of coverage). `record_peer_liveness` patches hypercorn's
`WSStream` to write, into the connection's ASGI scope (the very dict hypercorn hands the
app), `time.monotonic()` stamps of

- the last bytes from the peer (data frames, pongs, partial frames: anything), and
- the first ping that went out (was handed to the kernel) after them.

`unanswered_s(scope)` is how long that ping has gone unanswered. A ping, not the clock
alone, starts it: a client that does not read (a full socket, a busy app) cannot be
pinged while our own send to it is blocked, and a ping that went out before may wait
behind data it has not read; the writer (router/transports/ws_writer.py) leaves such
silence to its stall rule.

A hypercorn upgrade that renames what we patch is logged at startup and leaves
`unanswered_s` answering None (no verdict); tests/e2e/test_ws_half_open.py fails on it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hypercorn.protocol.events import Body, Data
from hypercorn.protocol.ws_stream import WSStream
from wsproto.events import Ping

from router.transports.hypercorn_patches import replace, replaced

log = logging.getLogger("aura.ws")
RECEIVED_AT = "aura.peer_bytes_at"  # time.monotonic() when the peer last sent bytes
PINGED_AT = "aura.unanswered_ping_at"  # the first ping sent since then, if any


def record_peer_liveness() -> None:
    """Patch `WSStream.handle` and `WSStream._send_wsproto_event` once (idempotent)."""
    if installed():
        return
    handle, send_event = (getattr(WSStream, name, None)
                          for name in ("handle", "_send_wsproto_event"))
    if handle is None or send_event is None:
        log.warning("hypercorn's WSStream changed: half-open websockets are detected only "
                    "when sends stall (router/transports/ws_liveness.py)")
        return

    async def handle_recording(self: WSStream, event: Any) -> None:
        if isinstance(event, (Body, Data)) and hasattr(self, "scope"):
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope[RECEIVED_AT] = time.monotonic()
            scope.pop(PINGED_AT, None)
        await handle(self, event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the upgrade request: the first sign of life
            scope.setdefault(RECEIVED_AT, time.monotonic())

    async def send_event_recording(self: WSStream, event: Any) -> None:
        await send_event(self, event)
        if isinstance(event, Ping) and hasattr(self, "scope"):
            self.scope.setdefault(PINGED_AT, time.monotonic())  # type: ignore[misc]

    replace(WSStream, "records_liveness", handle=handle_recording,
            _send_wsproto_event=send_event_recording)


def installed() -> bool:
    return replaced(WSStream, "records_liveness", "handle", "_send_wsproto_event")


def unanswered_s(scope: dict[str, Any]) -> float | None:
    """How long the peer has left our first ping since its last bytes unanswered (0 if it
    owes none); None if nothing records it (not hypercorn, or the patch is missing)."""
    if RECEIVED_AT not in scope:
        return None
    pinged = scope.get(PINGED_AT)
    return 0.0 if pinged is None else time.monotonic() - pinged
