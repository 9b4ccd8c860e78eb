"""PostgreSQL connections driven by Trio's own I/O waits: what the ledger's statements
run on, without a worker thread.

psycopg's async API needs asyncio (psycopg issue #29), and its sync API in worker
threads measured ~0.44 ms of CPU per statement here (the thread hand-off, and the GIL
contended with the event loop), about 6x the statement itself. So each connection is a
psycopg connection whose libpq handle (`psycopg.pq`, psycopg's documented libpq
wrapper) runs non-blocking: a statement is sent with `send_query_params`, and the task
waits for the socket with `trio.lowlevel.wait_readable`, as psycopg's own asyncio wait
does with the asyncio loop. Parameters and rows go through psycopg's `Transformer`, the
adaptation its cursors use, so values convert exactly as psycopg converts them
(~0.07 ms of CPU per statement here).

A statement, once sent, runs to its end even if the caller is cancelled (shielded, with
a deadline): a connection is never left half-way through an answer. A connection that
breaks is closed and replaced on the next checkout; meanwhile callers get
`BillingUnavailable` (503: fail closed).
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, AsyncIterator, Sequence

import psycopg
import trio
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

from router.errors import BillingUnavailable

STATEMENT_DEADLINE_S = 10.0
_UNAVAILABLE = "the billing ledger cannot be reached right now; retry shortly"
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY)


@lru_cache(maxsize=256)
def numbered(sql: str) -> bytes:
    """`%s` placeholders as PostgreSQL's `$1, $2, ...` (the statements here hold no
    literal `%`)."""
    count = iter(range(1, 1000))
    return re.sub(r"%s", lambda _: f"${next(count)}", sql).encode()


class TrioConnection:
    """One connection; one statement at a time (the pool hands it to one task)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self.pgconn.nonblocking = 1
        self.transformer = Transformer(conn)
        self.rowcount = 0

    @property
    def broken(self) -> bool:
        return self.conn.closed or self.pgconn.status != pq.ConnStatus.OK

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (and `rowcount`)."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + STATEMENT_DEADLINE_S
            try:
                return await self._execute(sql, params)
            except psycopg.OperationalError as exc:
                self.close()
                raise BillingUnavailable(_UNAVAILABLE) from exc
            except OSError as exc:
                self.close()
                raise BillingUnavailable(_UNAVAILABLE) from exc
        self.close()  # the deadline passed with the answer still out: drop the connection
        raise BillingUnavailable(_UNAVAILABLE)

    async def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        tx, pgconn = self.transformer, self.pgconn
        values = tx.dump_sequence(params, [PyFormat.AUTO] * len(params)) if params else None
        pgconn.send_query_params(numbered(sql), values,
                                 param_types=tx.types if params else None,
                                 param_formats=tx.formats if params else None,
                                 result_format=pq.Format.BINARY)
        while pgconn.flush():
            await trio.lowlevel.wait_writable(pgconn.socket)
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            await trio.lowlevel.wait_readable(pgconn.socket)
        result = None
        error = None
        while (each := pgconn.get_result()) is not None:
            if each.status not in _OK and error is None:
                error = each
            result = each
        if error is not None:
            raise psycopg.errors.error_from_result(error, encoding=tx.encoding)
        if result is None or result.status != pq.ExecStatus.TUPLES_OK:
            self.rowcount = int(result.command_tuples or 0) if result is not None else 0
            return []
        tx.set_pgresult(result)
        self.rowcount = result.ntuples
        return tx.load_rows(0, result.ntuples, tuple)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.execute(sql, params)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[TrioConnection]:
        """BEGIN ... COMMIT, rolled back on any error (for the few multi-statement writes:
        grants, keys, Idempotency-Key claims)."""
        await self.execute("BEGIN")
        try:
            yield self
        except BaseException:
            if not self.broken:
                await self.execute("ROLLBACK")
            raise
        await self.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class TrioPool:
    """At most `size` connections, opened on first need and replaced when they break."""

    def __init__(self, url: str, size: int, connect_timeout_s: float) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._idle: list[TrioConnection] = []
        self._slots = trio.Semaphore(size)

    def _connect(self) -> TrioConnection:
        return TrioConnection(psycopg.connect(self.url, autocommit=True,
                                              connect_timeout=int(self.connect_timeout_s)))

    def add(self, conn: psycopg.Connection) -> None:
        """A connection opened elsewhere (at start-up)."""
        self._idle.append(TrioConnection(conn))

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[TrioConnection]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.broken:
                if conn is not None:
                    conn.close()
                try:  # connecting blocks: in a worker thread, this once
                    conn = await trio.to_thread.run_sync(self._connect)
                except psycopg.Error as exc:
                    raise BillingUnavailable(_UNAVAILABLE) from exc
            try:
                yield conn
            finally:
                if not conn.broken:
                    self._idle.append(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
