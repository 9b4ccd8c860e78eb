"""Each ledger backend, fresh for one test: the settings that point a router (or
`open_stores`) at an empty ledger on the machine's real services.

- sqlite: a file under the test's own directory.
- postgres: a schema of its own in the `test` database of the local PostgreSQL
  (`DATABASE_URL` sets `search_path` to it), dropped by `drop_postgres_schemas`.
- redis: database 15 of the local Redis, flushed (under pytest-xdist, each worker has
  its own databases: `redis_db`).

A service that cannot be reached skips the test with a loud reason (scripts/test starts
both services when they are down; only a machine without them skips).
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
_SCHEMAS: list[str] = []


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    port = {"postgres": 5432, "redis": 6379}[service]
    if not _reachable(port):
        pytest.skip(f"!!! {service} is not reachable on 127.0.0.1:{port}: the {service} "
                    f"backend is NOT tested here (scripts/test starts it when it can) !!!")


def fresh_postgres_url() -> str:
    import psycopg

    require("postgres")
    schema = f"aura_test_{os.getpid()}_{secrets.token_hex(4)}"  # the pid: see below
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    _SCHEMAS.append(schema)
    return f"{POSTGRES_ADMIN_URL}?options={quote(f'-csearch_path={schema}')}"


def drop_postgres_schemas(*, leftovers: bool = False) -> None:
    """Drop the schemas this run made (`leftovers`: and those a killed run left, never
    those of a test run still going on this machine)."""
    if not _SCHEMAS and not (leftovers and _reachable(5432)):
        return
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        if leftovers:
            _SCHEMAS.extend(name for (name,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'aura\\_test\\_%'")
                if not _made_by_a_live_run(name))
        while _SCHEMAS:
            conn.execute(f"DROP SCHEMA IF EXISTS {_SCHEMAS.pop()} CASCADE")


def _made_by_a_live_run(schema: str) -> bool:
    pid = schema.removeprefix("aura_test_").split("_", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


REDIS_DBS_PER_WORKER = 3  # the tests use databases 13, 14 and 15 of one run


def redis_db(db: int) -> int:
    """This test process's own number for database `db`: under pytest-xdist each worker
    gets its own three databases (gw0: 13-15, gw1: 10-12, ...), so that two workers never
    flush each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    return db - REDIS_DBS_PER_WORKER * index


def fresh_redis_url(db: int = 15) -> str:
    """Database `db` (as `redis_db` maps it) of the local Redis, emptied (a plain RESP
    exchange: it may run inside a test's event loop)."""
    require("redis")
    db = redis_db(db)
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as sock:
        sock.sendall(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n*1\r\n$7\r\nFLUSHDB\r\n"
                     % (len(str(db)), db))
        answer = b""
        while answer.count(b"\r\n") < 2:
            answer += sock.recv(64)
    assert answer == b"+OK\r\n+OK\r\n", answer
    return f"redis://127.0.0.1:6379/{db}"


def backend_env(backend: str, data_dir: Path) -> dict[str, str]:
    """The environment for a router (or `load_config`) on a fresh, empty `backend`."""
    env = {"DATA_DIR": str(data_dir), "BILLING_BACKEND": backend}
    if backend == "postgres":
        env["DATABASE_URL"] = fresh_postgres_url()
    elif backend == "redis":
        env["REDIS_URL"] = fresh_redis_url()
    return env
