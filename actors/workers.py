"""`WORKERS=N`: N router processes on one port, and the supervisor that runs them
(docs/configuration.md "Workers", docs/deployment.md).

With `WORKERS=1` (the default) none of this runs: `aura-router serve` is the router. With
more, the process started by `aura-router serve` is a small supervisor that never opens
the ledger or serves a request. It

* reserves the port: binds (not listens on) a socket with `SO_REUSEPORT`, after checking
  with a plain bind that nothing else holds it, so that `--port 0` is chosen once and
  another program cannot take the port while every worker is down;
* starts N workers, each `python -m actors.cli serve --worker-fd FD ...`, a whole router
  (its own instance id, lease and holds in the shared ledger) that binds the same port
  with `SO_REUSEPORT` itself (`actors.root.hypercorn_config`); the kernel spreads new
  connections across the workers' listening sockets;
* prints `listening on http://HOST:PORT` once every worker has said it is ready, so
  that line keeps meaning "ready to serve";
* restarts a worker that exits, whatever the reason, with backoff and a restart budget
  (`RestartBudget`, pure), logging why; a worker that cannot start the first time stops
  the whole thing (as a single router that cannot start does), and so does a worker
  past its budget: the supervisor then exits 1;
* gives the workers one fresh private `PROMETHEUS_MULTIPROC_DIR` (made before the first
  worker starts, removed when the supervisor exits): each worker's metrics live in files
  there, and a scrape on any worker renders them all (router/metrics.py); a worker that
  exits has its live gauges removed (`mark_process_dead`), its counters kept;
* on SIGTERM or SIGINT sends SIGTERM to every worker (each finishes its in-flight
  requests for `SHUTDOWN_GRACE_S`, then settles and stops), waits for them, kills what is
  left after the grace plus `STOP_MARGIN_S` (at once on a second signal) and exits 0.

Why separate processes started with `subprocess` and not `fork`: trio (and the threads
SQLite and hypercorn may start) do not survive a fork, and a fresh interpreter per worker
is what a restart needs anyway. Why `SO_REUSEPORT` rather than one listening socket
inherited by every worker (hypercorn's `fd://`): the kernel balances connections across
the workers instead of every worker waking for every connection and the busiest one
sometimes winning; the cost is that connections still queued in a worker's accept queue
when it dies are reset (the clients retry), where a shared socket would keep them for
the survivors.

One socket pair per worker is its status line and lifeline: the worker writes `ready`
on it once it listens; it never gets data back, and reads EOF when the supervisor is gone
(even after a `kill -9`), then stops itself gracefully, so no worker outlives its
supervisor. Workers run in their own process group, so a Ctrl-C at a terminal reaches
only the supervisor, which forwards it once, as SIGTERM.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import trio
from prometheus_client.multiprocess import mark_process_dead

from router.logs import configure_logging

if TYPE_CHECKING:
    from router.config import Config

log = logging.getLogger("aura.workers")

# After SHUTDOWN_GRACE_S (hypercorn's graceful window for in-flight requests) a worker
# still stops its actors and settles what was cancelled; this is how long that may take
# before the supervisor kills it.
STOP_MARGIN_S = 5.0
READY = b"ready\n"

# (port, status fd in the worker) -> the worker's command line
WorkerCommand = Callable[[int, int], list[str]]


# --- the restart budget (pure) ---------------------------------------------------------

@dataclass
class RestartBudget:
    """When to restart a worker that exited, and when to give up.

    `exited(now, ran_s)` returns the delay before the restart, or None past the budget:
    more than `max_restarts` exits within `window_s`. The delay doubles from
    `backoff_initial_s` up to `backoff_max_s` (with jitter from `rng`), and starts afresh
    after a worker that had run for `stable_s`: a worker that dies once a day is
    restarted at once, one that dies at start is not restarted in a tight loop.
    """

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    stable_s: float = 30.0
    rng: Callable[[], float] = random.random
    _exits: deque[float] = field(default_factory=deque, init=False, repr=False)
    _backoff: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._backoff = self.backoff_initial_s

    def exited(self, now: float, ran_s: float) -> float | None:
        if ran_s >= self.stable_s:
            self._backoff = self.backoff_initial_s
        self._exits.append(now)
        while self._exits and self._exits[0] < now - self.window_s:
            self._exits.popleft()
        if len(self._exits) > self.max_restarts:
            return None
        delay = self._backoff * (0.5 + self.rng() / 2)
        self._backoff = min(self._backoff * 2, self.backoff_max_s)
        return delay


def exit_reason(returncode: int) -> str:
    """`Popen.returncode` in words: negative is the signal that killed the process."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


# --- the port ----------------------------------------------------------------------------

def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    host = host.strip("[]")  # the way hypercorn reads a bind
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port)


def _socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, address = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` with `SO_REUSEPORT` and never listening: it holds the
    port for the workers (port 0: the kernel's choice, made once) without taking any of
    their connections. A plain bind first refuses a port that something else holds:
    `SO_REUSEPORT` alone would silently share it with another router of the same user."""
    with _socket(host, port, reuse_port=False) as probe:
        port = probe.getsockname()[1]
    return _socket(host, port, reuse_port=True)


def reuse_port_socket(host: str, port: int) -> int:
    """A worker's own listening socket on the shared port, as a file descriptor for
    hypercorn's `fd://` bind (hypercorn owns it from then on; it calls `listen`)."""
    sock = _socket(host, port, reuse_port=True)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock.detach()


# --- the supervisor ------------------------------------------------------------------------

class WorkersFailed(Exception):
    """A worker could not start, or exited too often: the supervisor stops and exits 1."""


@dataclass
class _Stop:
    graceful: trio.Event = field(default_factory=trio.Event)  # SIGTERM the workers
    now: trio.Event = field(default_factory=trio.Event)  # kill them (a second signal)


class Worker:
    """One of the N slots: runs its router process, restarts it, stops it. The slot, not
    the process, is what the supervisor's nursery owns: one task per slot."""

    def __init__(self, index: int, command: Callable[[int], list[str]], stop: _Stop,
                 grace_s: float, budget: RestartBudget, metrics_dir: str | None = None
                 ) -> None:
        self.index = index
        self.command = command
        self.metrics_dir = metrics_dir  # the workers' PROMETHEUS_MULTIPROC_DIR
        self.stop = stop
        self.grace_s = grace_s
        self.budget = budget
        self.ready = trio.Event()  # the first process of this slot is serving
        self.pid: int | None = None

    async def run(self) -> None:
        while not self.stop.graceful.is_set():
            started = trio.current_time()
            returncode = await self._run_once()
            if self.stop.graceful.is_set():
                return
            reason = exit_reason(returncode)
            if not self.ready.is_set():
                raise WorkersFailed(f"worker {self.index} (pid {self.pid}) {reason} before "
                                    "it was ready")
            now = trio.current_time()
            delay = self.budget.exited(now, now - started)
            if delay is None:
                raise WorkersFailed(
                    f"worker {self.index} (pid {self.pid}) {reason}, more than "
                    f"{self.budget.max_restarts} times within {self.budget.window_s:g} s: "
                    "giving up")
            log.warning("worker %d (pid %d) %s; restarting it in %.1f s", self.index,
                        self.pid, reason, delay)
            with trio.move_on_after(delay):
                await self.stop.graceful.wait()

    async def _run_once(self) -> int:
        ours, theirs = socket.socketpair()
        with trio.socket.from_stdlib_socket(ours) as status:
            try:
                env = None if self.metrics_dir is None else {
                    **os.environ, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
                proc = await trio.lowlevel.open_process(
                    self.command(theirs.fileno()), pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL, process_group=0, env=env)
            finally:
                theirs.close()  # the worker's end lives in the worker only: EOF = gone
            self.pid = proc.pid
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._note_ready, status, proc.pid)
                    nursery.start_soon(self._stop_when_asked, proc)
                    await proc.wait()
                    nursery.cancel_scope.cancel()
            finally:
                if proc.returncode is None:  # cancelled: another slot gave up
                    with trio.CancelScope(shield=True):
                        await self._terminate(proc)
            assert proc.returncode is not None
            if self.metrics_dir is not None:  # its holds, streams and connections are gone
                mark_process_dead(proc.pid, self.metrics_dir)
            return proc.returncode  # the status socket closes here, after the process

    async def _note_ready(self, status: trio.socket.SocketType, pid: int) -> None:
        line = b""
        while len(line) < len(READY) and (data := await status.recv(len(READY) - len(line))):
            line += data
        if line == READY:
            log.info("worker %d (pid %d) is ready", self.index, pid)
            self.ready.set()
        # Nothing else is read: the socket stays open as the worker's lifeline.

    async def _stop_when_asked(self, proc: trio.Process) -> None:
        await self.stop.graceful.wait()
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.grace_s + STOP_MARGIN_S):
            await self.stop.now.wait()
        if proc.returncode is None:
            log.warning("worker %d (pid %d) still running: killing it", self.index, proc.pid)
            proc.kill()

    async def _terminate(self, proc: trio.Process) -> None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.grace_s + STOP_MARGIN_S):
            await proc.wait()
            return
        proc.kill()
        await proc.wait()


async def _watch_signals(signals: trio.abc.ReceiveChannel[int], stop: _Stop) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.graceful.is_set():
            log.info("%s: stopping the workers", name)
            stop.graceful.set()
        else:
            log.warning("%s again: killing the workers now", name)
            stop.now.set()


async def _announce(workers: list[Worker], url: str,
                    on_listening: Callable[[list[str]], None]) -> None:
    for worker in workers:
        await worker.ready.wait()
    on_listening([url])


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    return [leaf for exc in group.exceptions
            for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])]


async def supervise(config: "Config", command: WorkerCommand,
                    on_listening: Callable[[list[str]], None],
                    budget: Callable[[], RestartBudget] = RestartBudget) -> int:
    """Run `config.workers` workers on `config.host:config.port` until a signal (0) or a
    worker that cannot be kept running (1)."""
    stop = _Stop()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # A port that cannot be bound raises: `aura-router` says so in one line, exit 1.
        reservation = reserve_port(config.host, config.port)
        metrics_dir = tempfile.mkdtemp(prefix="aura-metrics-")
        with reservation:
            host, port = reservation.getsockname()[:2]
            url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            workers = [Worker(i, lambda fd: command(port, fd), stop, config.shutdown_grace_s,
                              budget(), metrics_dir) for i in range(config.workers)]
            failed = False
            try:
                async with trio.open_nursery() as outer:
                    outer.start_soon(_watch_signals, signals, stop)
                    outer.start_soon(_announce, workers, url, on_listening)
                    async with trio.open_nursery() as slots:
                        for worker in workers:
                            slots.start_soon(worker.run)
                    outer.cancel_scope.cancel()
            except* WorkersFailed as group:
                failed = True
                for exc in _leaves(group):
                    log.error("%s; stopping the others", exc)
            finally:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("every worker has stopped")
    return 1 if failed else 0


def run_supervisor(config: "Config", command: WorkerCommand,
                   on_listening: Callable[[list[str]], None]) -> int:
    configure_logging(config)
    return trio.run(supervise, config, command, on_listening)


# --- in a worker ---------------------------------------------------------------------------

async def serve_as_worker(config: "Config", status_fd: int) -> None:
    """Serve as one of the supervisor's workers: `actors.root.serve`, then `ready` on the
    status socket; EOF on it (the supervisor is gone) stops this worker as SIGTERM does."""
    from actors.root import serve

    with trio.socket.from_stdlib_socket(socket.socket(fileno=status_fd)) as status:
        async with trio.open_nursery() as nursery:
            async def serve_then_stop(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(config, task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(serve_then_stop)
            await status.send(READY)
            while await status.recv(64):
                pass
            log.warning("the supervisor is gone: stopping")
            os.kill(os.getpid(), signal.SIGTERM)  # the same graceful stop as a signal's


def run_worker(config: "Config", status_fd: int) -> int:
    try:
        trio.run(serve_as_worker, config, status_fd)
    except KeyboardInterrupt:
        pass
    return 0
