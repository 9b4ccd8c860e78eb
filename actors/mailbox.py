"""Actors: a task that owns a bounded mailbox of frozen-dataclass messages.

Others hold a `Handle` (the send side). `tell` is fire-and-forget with backpressure (a
full mailbox makes the sender wait); `ask` sends a message carrying a one-slot reply
channel and waits for the answer, re-raising the actor's error in the caller. An actor
that crashes while handling an `ask` answers it with the error before dying, so no caller
waits forever; its supervisor restarts it on the same mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Failure:
    error: BaseException


class Reply(Generic[R]):
    """The one-shot answer slot an `ask` message carries."""

    __slots__ = ("_send",)

    def __init__(self, send: trio.MemorySendChannel[Any]) -> None:
        self._send = send

    def set(self, value: R) -> None:
        try:
            self._send.send_nowait(value)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # answered already, or the asker has gone: nothing to do

    def fail(self, error: BaseException) -> None:
        self.set(Failure(error))  # type: ignore[arg-type]


class Handle(Generic[M]):
    """What other tasks hold to talk to an actor."""

    __slots__ = ("_send",)

    def __init__(self, send: trio.MemorySendChannel[M]) -> None:
        self._send = send

    async def tell(self, message: M) -> None:
        await self._send.send(message)

    async def ask(self, make: Any) -> Any:
        """`make(reply)` builds the message; returns what the actor puts in the reply."""
        send, receive = trio.open_memory_channel[Any](1)
        async with receive:
            await self._send.send(make(Reply(send)))
            answer = await receive.receive()
        if isinstance(answer, Failure):
            raise answer.error
        return answer

    def close(self) -> None:
        self._send.close()


class Actor(Generic[M]):
    """Subclasses implement `handle`; `serve` runs the loop on a given mailbox."""

    mailbox_size: int = 16

    async def setup(self) -> None:
        """Acquire what the actor owns before it reports ready."""

    async def teardown(self) -> None:
        """Release what `setup` acquired; runs on every exit, shielded."""

    async def handle(self, message: M) -> None:
        raise NotImplementedError

    async def serve(self, mailbox: trio.MemoryReceiveChannel[M], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.setup()
            task_status.started()
            async for message in mailbox:
                try:
                    await self.handle(message)
                except Exception as exc:
                    reply = getattr(message, "reply", None)
                    if isinstance(reply, Reply):
                        reply.fail(exc)
                    raise
        finally:
            with trio.CancelScope(shield=True):
                await self.teardown()


def open_mailbox(size: int) -> tuple[Handle[Any], trio.MemoryReceiveChannel[Any]]:
    send, receive = trio.open_memory_channel[Any](size)
    return Handle(send), receive
