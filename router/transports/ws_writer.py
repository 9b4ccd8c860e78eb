"""`SocketWriter`: the one task that writes to a websocket, and the judge of whether the
peer is still there.

Senders hand frames to a small buffer bounded in bytes (`buffer_bytes`, 64 KiB): when it
is full they wait, in arrival order (backpressure; nothing grows without bound, and one
busy sender cannot starve the others). The writer task sends them in order, then the
close frame, if one was asked for.

A peer that vanished without FIN or RST (a phone out of coverage) looks, to the server,
like a quiet one, and the ASGI server's send to it may block until TCP gives up, many
minutes later (hypercorn shields it from cancellation). So a watchdog declares the socket
*gone* when either

- frames wait and no send has completed for `stall_s`, or
- `liveness()` reaches `silent_s`: the seconds of silence the peer owes an explanation
  for (for hypercorn, router/transports/ws_liveness.py: how long a ping has gone
  unanswered; None: unknown, no verdict). A live peer answers pings at once, unless the
  ping waits behind data it has not read yet: so while one of our sends is blocked (in
  flight for a watchdog tick or more: the path is full) and for `silent_s` after, this
  rule waits, and the stall rule judges.

Once gone, `gone` is set and every waiting and future `send_text` raises `SocketGone`, so
the tasks feeding the socket end. The send in flight, if any, is left to finish or fail
on its own: `run` returns when it does (the caller's nursery waits for it; make sure what
must not wait, such as detaching streams, happens on `gone` instead). If a close was asked
for, it is still attempted after that send returns: a peer that was only slow then hears
why nothing more comes, and reconnects.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Awaitable, Callable

import trio

log = logging.getLogger("aura.ws")
Message = dict[str, Any]
BUFFER_BYTES = 64 * 1024


class SocketGone(Exception):
    """The websocket is closed or its peer is unreachable: nothing more can be sent."""


class SocketWriter:
    """Owns one websocket's sends. `send` is the ASGI send; `liveness` is polled by the
    watchdog (see the module's docstring); `silent_s=None` turns that rule off."""

    def __init__(self, send: Callable[[Message], Awaitable[None]], *, stall_s: float,
                 silent_s: float | None, liveness: Callable[[], float | None],
                 buffer_bytes: int = BUFFER_BYTES) -> None:
        self._send = send
        self.stall_s = stall_s
        self.silent_s = silent_s
        self._liveness = liveness
        self.buffer_bytes = buffer_bytes
        limits = [s for s in (stall_s, silent_s) if s]
        self._tick = min(1.0, min(limits) / 8) if limits else 1.0  # the watchdog's period
        self.gone = trio.Event()
        self.why_gone = ""
        self._frames: deque[tuple[str, int]] = deque()  # (text, its size in bytes)
        self._buffered = 0
        self._sending = False
        self._send_started_at = 0.0
        self._backed_up_at = -float("inf")  # when a send of ours was last seen blocked
        self._progress_at = 0.0  # last completed send, or when work arrived at an idle writer
        self._close: Message | None = None
        self._settled = trio.Event()  # the close was handed over, or the socket is gone
        self._admission = trio.Lock()  # fair: room goes to senders in arrival order
        self._room = trio.lowlevel.ParkingLot()
        self._work = trio.lowlevel.ParkingLot()

    async def cancel_when_gone(self, scope: trio.CancelScope) -> None:
        """Cancel `scope` (the connection's work) once the socket is gone."""
        await self.gone.wait()
        scope.cancel()

    # --- the senders' side ---------------------------------------------------------------

    async def send_text(self, frame: bytes) -> None:
        """Queue one UTF-8 text frame; waits while the buffer is full. Raises `SocketGone`."""
        text = frame.decode()  # here: a frame that is not UTF-8 fails its sender only
        async with self._admission:
            # A frame larger than the whole buffer still goes, alone.
            while (self._accepting() and self._buffered
                   and self._buffered + len(frame) > self.buffer_bytes):
                await self._room.park()
            if not self._accepting():
                raise SocketGone(self.why_gone or "the websocket is closing")
            if not self._busy:
                self._progress_at = trio.current_time()
            self._frames.append((text, len(frame)))
            self._buffered += len(frame)
            self._work.unpark_all()

    async def close(self, code: int, reason: str | None = None) -> None:
        """Queue the close frame after every frame already queued, and wait until it is
        handed to the server. If the socket is gone, return at once: the close is still
        sent if the send in flight ever completes."""
        if self._close is None:
            if not self._busy:
                self._progress_at = trio.current_time()
            self._close = {"type": "websocket.close", "code": code}
            if reason:
                self._close["reason"] = reason
            self._room.unpark_all()  # senders waiting for room will not get any
            self._work.unpark_all()
        await self._settled.wait()

    # --- the writer task -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SocketWriter] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Write until the close frame is sent. Once the socket is gone, `run` waits for
        `close` (or cancellation) and tries that frame, bounded by `stall_s`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch)
            task_status.started(self)
            try:
                await self._write()
            finally:
                self._settled.set()
                nursery.cancel_scope.cancel()

    async def _write(self) -> None:
        while not self.gone.is_set():
            if self._frames:
                text, size = self._frames[0]  # still counted in the buffer while in flight
                await self._send_one({"type": "websocket.send", "text": text})
                self._frames.popleft()
                self._buffered -= size
                self._room.unpark_all()
            elif self._close is not None:
                await self._send_one(self._close)
                return
            else:
                await self._work.park()
        # Gone, and the send in flight (if any) has returned: a peer that was only slow
        # may still hear the close frame, once the owner asks for it.
        while self._close is None:
            await self._work.park()
        with trio.move_on_after(self.stall_s):
            try:
                await self._send(self._close)
            except Exception:  # noqa: BLE001 - gone already: nobody to tell
                pass

    async def _send_one(self, message: Message) -> None:
        self._sending = True
        self._send_started_at = trio.current_time()
        try:
            await self._send(message)
        except Exception as exc:  # noqa: BLE001 - the server's; the socket is unusable
            log.exception("websocket send failed")
            self._declare_gone(f"the send failed: {exc!r}")
        else:
            self._progress_at = trio.current_time()
            self._note_backed_up(self._progress_at)
        finally:
            self._sending = False

    def _note_backed_up(self, now: float) -> None:
        """A send in flight for a tick or more: the path to the peer is full."""
        if now - self._send_started_at >= self._tick:
            self._backed_up_at = now

    @property
    def _busy(self) -> bool:
        return self._sending or bool(self._frames) or (
            self._close is not None and not self._settled.is_set())

    def _accepting(self) -> bool:
        return self._close is None and not self.gone.is_set()

    # --- the watchdog ----------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await trio.sleep(self._tick)
            now = trio.current_time()
            if self._busy and now - self._progress_at >= self.stall_s:
                self._declare_gone(f"no frame could be sent for {self.stall_s:g} s")
                return
            if self._sending:
                self._note_backed_up(now)
            silence = self._liveness()
            if self.silent_s and silence is not None and \
                    min(silence, now - self._backed_up_at) >= self.silent_s:
                self._declare_gone(f"no answer from the peer for {silence:.1f} s")
                return

    def _declare_gone(self, why: str) -> None:
        if self.gone.is_set():
            return
        log.info("websocket gone: %s", why)
        self.why_gone = f"the websocket is gone: {why}"
        self.gone.set()
        self._settled.set()
        self._room.unpark_all()
        self._work.unpark_all()
